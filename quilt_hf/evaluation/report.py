"""Evaluation outputs: results JSON, a Markdown table across models, PNG plots, and model-index entries.

- ``results/<model>__<benchmark>__<task>.json``: one file per model x benchmark x task, with the metrics,
  the settings and the versions that produced them;
- ``results.md``: one table per task, models as rows and benchmarks as columns;
- ``plots/*.png``: per-class recall and confusion matrix (classification), recall@k curves (retrieval);
- ``model-index``: `huggingface_hub.EvalResult` entries merged into a model card's metadata, so the Hub
  shows them on the model page.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

RESULT_VERSION = 1
TASK_TITLES = {
    "zero_shot": "Zero-shot classification",
    "linear_probe": "Linear probe",
    "retrieval": "Retrieval",
}


def slug(text: str) -> str:
    """A file-name-safe form of a model or benchmark name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "model"


def result_record(
    model: str, benchmark, task: str, metrics: dict, settings: dict | None = None, source: str = ""
) -> dict:
    """The JSON record of one model x benchmark x task."""
    import datasets
    import torch
    import transformers

    from quilt_hf import __version__

    return {
        "version": RESULT_VERSION,
        "model": model,
        "benchmark": benchmark.name,
        "benchmark_pretty_name": benchmark.pretty_name,
        "hub_id": benchmark.hub_id,
        "data_source": source,
        "task": task,
        "metrics": metrics,
        "settings": settings or {},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "quilt_hf": __version__,
            "transformers": transformers.__version__,
            "datasets": datasets.__version__,
            "torch": torch.__version__,
        },
    }


def result_path(output_dir: str | Path, record: dict) -> Path:
    return (
        Path(output_dir)
        / "results"
        / f"{slug(record['model'])}__{record['benchmark']}__{record['task']}.json"
    )


def write_result(record: dict, output_dir: str | Path) -> Path:
    """Write one record as JSON; returns its path."""
    path = result_path(output_dir, record)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, allow_nan=True) + "\n")
    return path


def load_results(output_dir: str | Path) -> list[dict]:
    """Every record under ``output_dir/results``."""
    return [json.loads(p.read_text()) for p in sorted((Path(output_dir) / "results").glob("*.json"))]


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _cell(record: dict) -> str:
    m = record["metrics"]
    if record["task"] == "zero_shot":
        return f"{_pct(m['acc1'])} / {_pct(m['balanced_accuracy'])}"
    if record["task"] == "linear_probe":
        parts = []
        for key, value in m["fractions"].items():
            parts.append(f"{key}: {_pct(value['acc1_mean'])} ± {_pct(value['acc1_std'])}")
        return "<br>".join(parts)
    ks = m.get("ks", [1, 5, 10])
    i2t = "/".join(_pct(m[f"text_retrieval_recall@{k}"]) for k in ks)
    t2i = "/".join(_pct(m[f"image_retrieval_recall@{k}"]) for k in ks)
    return f"i→t {i2t}<br>t→i {t2i}"


_TABLE_NOTES = {
    "zero_shot": "top-1 accuracy / balanced accuracy, %",
    "linear_probe": "top-1 accuracy per training fraction, mean ± std over seeds, %",
    "retrieval": "recall@1/5/10, %, image→text and text→image",
}


def results_tables(records: Sequence[dict]) -> list[tuple[str, list[str], list[list[str]]]]:
    """One table per task: (title, header, rows) with models as rows and benchmarks as columns."""
    tables = []
    for task, title in TASK_TITLES.items():
        subset = [r for r in records if r["task"] == task]
        if not subset:
            continue
        benchmarks = list(dict.fromkeys(r["benchmark"] for r in subset))
        models = list(dict.fromkeys(r["model"] for r in subset))
        cells = {(r["model"], r["benchmark"]): _cell(r) for r in subset}
        rows = [[model] + [cells.get((model, b), "") for b in benchmarks] for model in models]
        tables.append((f"{title} ({_TABLE_NOTES[task]})", ["model", *benchmarks], rows))
    return tables


def markdown_table(records: Sequence[dict]) -> str:
    """One Markdown table per task: models as rows, benchmarks as columns."""
    lines: list[str] = []
    for title, header, rows in results_tables(records):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|---|" + "---|" * (len(header) - 1)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    notes = [
        f"- {record['model']} on {record['benchmark']} ({record['task']}): {record['metrics']['split_note']}"
        for record in records
        if record["metrics"].get("split_note")
    ]
    notes += [
        f"- {record['model']} on {record['benchmark']} ({record['task']}): scored on all {record['metrics']['num_samples']} "
        "images (the data has no test split)"
        for record in records
        if record["task"] == "zero_shot" and record["metrics"].get("split") == "all"
    ]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------
# Plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_per_class_recall(metrics: dict, path: str | Path, title: str = "") -> Path:
    """Horizontal bars of each class's recall."""
    plt = _pyplot()
    names = list(metrics["per_class_recall"])
    values = [v if v is not None else 0.0 for v in metrics["per_class_recall"].values()]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(names) + 1.2))
    ax.barh(range(len(names)), values, color="#8e5ea2")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("recall")
    ax.axvline(metrics.get("balanced_accuracy", 0), color="black", linestyle="--", linewidth=1)
    ax.set_title(title or "per-class recall", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_confusion_matrix(metrics: dict, path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix with counts."""
    import numpy as np

    plt = _pyplot()
    matrix = np.asarray(metrics["confusion_matrix"], dtype=float)
    names = metrics.get("class_names") or [str(i) for i in range(len(matrix))]
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    size = 0.5 * len(names) + 2.5
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(names) <= 20:
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(
                    j,
                    i,
                    int(matrix[i, j]),
                    ha="center",
                    va="center",
                    color="white" if normalised[i, j] > 0.5 else "black",
                    fontsize=8,
                )
    ax.set_title(title or "confusion matrix", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_recall_at_k(records: Sequence[dict], path: str | Path, title: str = "") -> Path:
    """Recall@k curves, one line per model and direction, for retrieval records."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for record in records:
        metrics = record["metrics"]
        ks = metrics.get("ks", [1, 5, 10])
        for direction, style in (("text_retrieval", "-"), ("image_retrieval", "--")):
            label = f"{record['model']} {'image→text' if direction == 'text_retrieval' else 'text→image'}"
            ax.plot(ks, [metrics[f"{direction}_recall@{k}"] for k in ks], style, marker="o", label=label)
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax.set_title(title or "retrieval recall@k")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def write_plots(records: Sequence[dict], output_dir: str | Path) -> list[Path]:
    """Every plot for ``records`` under ``output_dir/plots``."""
    folder = Path(output_dir) / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for record in records:
        stem = f"{slug(record['model'])}__{record['benchmark']}__{record['task']}"
        if record["task"] in ("zero_shot", "linear_probe"):
            short = Path(record["model"]).name or record["model"]
            title = f"{short}\n{record['benchmark_pretty_name']} · {record['task']}"
            paths.append(
                plot_per_class_recall(record["metrics"], folder / f"{stem}__per_class_recall.png", title)
            )
            paths.append(plot_confusion_matrix(record["metrics"], folder / f"{stem}__confusion.png", title))
    retrieval = [r for r in records if r["task"] == "retrieval"]
    for benchmark in dict.fromkeys(r["benchmark"] for r in retrieval):
        subset = [r for r in retrieval if r["benchmark"] == benchmark]
        paths.append(
            plot_recall_at_k(subset, folder / f"{benchmark}__recall_at_k.png", f"{benchmark} retrieval")
        )
    return paths


# --------------------------------------------------------------------------------------------------------
# model-index


def eval_results(records: Iterable[dict]):
    """`huggingface_hub.EvalResult` entries for ``records`` (the model card's ``model-index``)."""
    from huggingface_hub import EvalResult

    results = []
    for record in records:
        m = record["metrics"]
        common = {
            "dataset_type": record.get("hub_id") or record["benchmark"],
            "dataset_name": record["benchmark_pretty_name"],
            "dataset_split": m.get("split", "test"),
            "verified": False,
        }
        if record["task"] == "zero_shot":
            task = {"task_type": "zero-shot-image-classification", "task_name": "Zero-shot classification"}
            results.append(
                EvalResult(
                    **task,
                    **common,
                    metric_type="accuracy",
                    metric_name="Top-1 accuracy",
                    metric_value=round(100 * m["acc1"], 2),
                )
            )
            results.append(
                EvalResult(
                    **task,
                    **common,
                    metric_type="balanced_accuracy",
                    metric_name="Balanced accuracy",
                    metric_value=round(100 * m["balanced_accuracy"], 2),
                )
            )
        elif record["task"] == "linear_probe":
            task = {"task_type": "image-classification", "task_name": "Linear probe"}
            for key, value in m["fractions"].items():
                results.append(
                    EvalResult(
                        **task,
                        **common,
                        metric_type="accuracy",
                        metric_name=f"Linear probe accuracy ({key} of train)",
                        metric_config=f"train_fraction={key}",
                        metric_value=round(100 * value["acc1_mean"], 2),
                    )
                )
        elif record["task"] == "retrieval":
            task = {"task_type": "image-text-retrieval", "task_name": "Image-text retrieval"}
            for k in m.get("ks", [1, 5, 10]):
                for direction, label in (
                    ("text_retrieval", "image-to-text"),
                    ("image_retrieval", "text-to-image"),
                ):
                    results.append(
                        EvalResult(
                            **task,
                            **common,
                            metric_type="recall",
                            metric_name=f"{label} recall@{k}",
                            metric_config=f"{label}@{k}",
                            metric_value=round(100 * m[f"{direction}_recall@{k}"], 2),
                        )
                    )
    return results


def _key(result) -> tuple:
    return (
        result.task_type,
        result.dataset_type,
        result.dataset_config,
        result.dataset_split,
        result.metric_type,
        result.metric_config,
        result.metric_name,
    )


def update_model_card(
    card_path: str | Path, records: Iterable[dict], *, model_name: str | None = None
) -> Path:
    """Merge the records' model-index entries into a model card (``README.md`` or a model folder).

    Entries with the same task, dataset, split and metric are replaced; others are kept. A missing card is
    created. Returns the card's path.
    """
    from huggingface_hub import ModelCard, ModelCardData

    path = Path(card_path)
    if path.is_dir() or not path.suffix:
        path = path / "README.md"
    if path.is_file():
        card = ModelCard.load(path)
    else:
        card = ModelCard.from_template(ModelCardData(library_name="transformers"))
    new = eval_results(records)
    merged = {_key(r): r for r in (card.data.eval_results or [])}
    for result in new:
        merged[_key(result)] = result
    card.data.eval_results = list(merged.values())
    card.data.model_name = card.data.model_name or model_name or path.parent.name
    path.parent.mkdir(parents=True, exist_ok=True)
    card.save(path)
    return path


def write_report(records: Sequence[dict], output_dir: str | Path) -> dict[str, Path | list[Path]]:
    """``results.md`` and the plots for ``records``; returns their paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    table = output_dir / "results.md"
    table.write_text("# Evaluation results\n\n" + markdown_table(records))
    return {"markdown": table, "plots": write_plots(records, output_dir)}

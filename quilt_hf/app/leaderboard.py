"""The leaderboard: evaluation results of several models as one table per task and benchmark.

Sources, each row labelled with where it came from:

- ``quilt eval`` JSON results (``<eval output>/results/*.json``), "measured here";
- the ``model-index`` in the card (README.md) of a model folder or Hub model, "model card";
- the zero-shot accuracies the Quilt-1M paper published for QuiltNet, CLIP, PLIP and BiomedCLIP
  (:data:`PUBLISHED_ZERO_SHOT`), "published, not measured here".
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

MEASURED = "measured here (quilt eval)"
MODEL_CARD = "model card (model-index)"
PUBLISHED = "published, not measured here"
TASK_NAMES = {"zero_shot": "zero-shot", "linear_probe": "linear probe", "retrieval": "retrieval"}
_TASK_TYPES = {
    "zero-shot-image-classification": "zero_shot",
    "image-classification": "linear_probe",
    "image-text-retrieval": "retrieval",
}

#: Zero-shot accuracy (%) published in Ikezogwo et al., "Quilt-1M" (NeurIPS 2023), read off the paper's bar chart
#: and rounded (the QuiltNet variant is not stated there). Benchmark -> model -> accuracy.
PUBLISHED_ZERO_SHOT: dict[str, dict[str, float]] = {
    "skin_cancer": {"CLIP": 5, "BiomedCLIP": 25, "PLIP": 37, "QuiltNet": 45},
    "pcam": {"CLIP": 62, "BiomedCLIP": 53, "PLIP": 59, "QuiltNet": 65},
    "nct_crc": {"CLIP": 26, "BiomedCLIP": 52, "PLIP": 54, "QuiltNet": 60},
    "mhist": {"CLIP": 53, "BiomedCLIP": 40, "PLIP": 58, "QuiltNet": 63},
    "lc25000_lung": {"CLIP": 61, "BiomedCLIP": 72, "PLIP": 79, "QuiltNet": 80},
    "lc25000_colon": {"CLIP": 62, "BiomedCLIP": 91, "PLIP": 78, "QuiltNet": 93},
    "bach": {"CLIP": 26, "BiomedCLIP": 55, "PLIP": 43, "QuiltNet": 41},
    "sicapv2": {"CLIP": 39, "BiomedCLIP": 46, "PLIP": 45, "QuiltNet": 39},
    "databiox": {"CLIP": 38, "BiomedCLIP": 31, "PLIP": 39, "QuiltNet": 43},
    "renal_cell": {"CLIP": 20, "BiomedCLIP": 47, "PLIP": 51, "QuiltNet": 53},
    "osteo": {"CLIP": 19, "BiomedCLIP": 51, "PLIP": 54, "QuiltNet": 64},
    "skin_tumor": {"CLIP": 10, "BiomedCLIP": 37, "PLIP": 56, "QuiltNet": 58},
}


@dataclass(frozen=True)
class Entry:
    """One figure: a model's value of a metric on a benchmark and task, in percent."""

    task: str
    benchmark: str
    model: str
    source: str
    metric: str
    value: float


def _benchmark_name(dataset_type: str, dataset_name: str) -> str:
    from quilt_hf.evaluation.registry import BENCHMARKS

    for name, benchmark in BENCHMARKS.items():
        if dataset_type in (name, benchmark.hub_id) or dataset_name == benchmark.pretty_name:
            return name
    return dataset_type or dataset_name


def entries_from_record(record: dict) -> list[Entry]:
    """Entries of one ``quilt eval`` JSON record."""
    task, metrics = record["task"], record["metrics"]
    base = {"task": task, "benchmark": record["benchmark"], "model": record["model"], "source": MEASURED}
    out = []

    def add(metric: str, value) -> None:
        if isinstance(value, (int, float)):
            out.append(Entry(**base, metric=metric, value=round(100 * float(value), 2)))

    if task == "zero_shot":
        add("top-1 accuracy", metrics.get("acc1"))
        add("balanced accuracy", metrics.get("balanced_accuracy"))
    elif task == "linear_probe":
        for fraction, value in (metrics.get("fractions") or {}).items():
            add(f"accuracy ({fraction} of train)", value.get("acc1_mean"))
    elif task == "retrieval":
        for k in metrics.get("ks", [1, 5, 10]):
            add(f"image→text R@{k}", metrics.get(f"text_retrieval_recall@{k}"))
            add(f"text→image R@{k}", metrics.get(f"image_retrieval_recall@{k}"))
    return out


def entries_from_results(folder: str | Path) -> list[Entry]:
    """Entries of every JSON record in a ``quilt eval`` output folder (``results/*.json``) or a folder of them."""
    folder = Path(folder)
    files = sorted((folder / "results").glob("*.json")) or sorted(folder.glob("*.json"))
    if not files:
        logger.warning("--results %s: no quilt eval JSON results found", folder)
    out = []
    for file in files:
        try:
            record = json.loads(file.read_text())
            out += entries_from_record(record)
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            logger.warning("%s: not a quilt eval result (%s); skipped", file, error)
    return out


def entries_from_model_card(model: str) -> list[Entry]:
    """Entries of the ``model-index`` in a model folder's README.md or a Hub model's card."""
    from huggingface_hub import ModelCard

    path = Path(model)
    try:
        card = ModelCard.load(path / "README.md" if path.is_dir() else model)
    except Exception as error:  # no card, offline, or no such model: the leaderboard still shows the rest
        logger.warning("%s: no readable model card (%s)", model, error)
        return []
    name = getattr(card.data, "model_name", None) or model
    out = []
    for result in card.data.eval_results or []:
        task = _TASK_TYPES.get(result.task_type, result.task_type)
        metric = result.metric_name or result.metric_type
        if task == "zero_shot" and result.metric_type == "accuracy":
            metric = "top-1 accuracy"
        elif task == "zero_shot" and result.metric_type == "balanced_accuracy":
            metric = "balanced accuracy"
        out.append(
            Entry(
                task=task,
                benchmark=_benchmark_name(result.dataset_type, result.dataset_name),
                model=str(name),
                source=MODEL_CARD,
                metric=str(metric),
                value=float(result.metric_value),
            )
        )
    return out


def published_entries() -> list[Entry]:
    """The paper's zero-shot figures, labelled as published, not measured here."""
    return [
        Entry("zero_shot", benchmark, f"{model} (paper)", PUBLISHED, "top-1 accuracy", float(value))
        for benchmark, models in PUBLISHED_ZERO_SHOT.items()
        for model, value in models.items()
    ]


def collect(models: list[str] = (), results: list[str] = (), published: bool = True) -> list[Entry]:
    """Every entry from the given model folders / Hub names, ``quilt eval`` folders and the paper.

    A model-card figure that the same model's JSON results also give is kept once (the JSON one).
    """
    entries: list[Entry] = []
    for folder in results:
        entries += entries_from_results(folder)
    measured = {(e.task, e.benchmark, e.model, e.metric) for e in entries}
    for model in models:
        entries += [
            e for e in entries_from_model_card(model) if (e.task, e.benchmark, e.model, e.metric) not in measured
        ]
    if published:
        entries += published_entries()
    return entries


def table_names(entries: list[Entry]) -> list[str]:
    """The tables, as "task · benchmark", measured ones first, then by name."""
    keys = {(e.task, e.benchmark) for e in entries}
    has_measured = {(e.task, e.benchmark) for e in entries if e.source != PUBLISHED}
    ordered = sorted(keys, key=lambda k: (k not in has_measured, list(TASK_NAMES).index(k[0]) if k[0] in TASK_NAMES
                                          else 9, k[1]))
    return [f"{TASK_NAMES.get(t, t)} · {b}" for t, b in ordered]


def table(entries: list[Entry], name: str):
    """One leaderboard table as a ``pandas.DataFrame``: a row per model and source, a column per metric, sorted by
    the first metric (best first)."""
    import pandas as pd

    task_label, _, benchmark = name.partition(" · ")
    task = {v: k for k, v in TASK_NAMES.items()}.get(task_label, task_label)
    chosen = [e for e in entries if e.task == task and e.benchmark == benchmark]
    if not chosen:
        return pd.DataFrame(columns=["model", "source"])
    metrics = list(dict.fromkeys(e.metric for e in chosen))
    rows: dict[tuple[str, str], dict] = {}
    for e in chosen:
        rows.setdefault((e.model, e.source), {"model": e.model, "source": e.source})[e.metric] = e.value
    frame = pd.DataFrame(list(rows.values()), columns=["model", "source", *metrics])
    return frame.sort_values(metrics[0], ascending=False, na_position="last").reset_index(drop=True)

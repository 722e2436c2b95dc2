"""``quilt eval``: run the evaluation tasks of several models on several benchmarks and report.

Example::

    quilt eval --model path/to/model openai/clip-vit-base-patch32 --benchmarks quilt_offline_patches nct_crc \\
        --tasks zero_shot linear_probe retrieval --output outputs/eval
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from quilt_hf.errors import UserFacingError

logger = logging.getLogger(__name__)

ALL_TASKS = ("zero_shot", "linear_probe", "retrieval")


@dataclass
class EvalConfig:
    """Evaluate CLIP-like models (zero-shot, linear probe, retrieval) on histopathology benchmarks."""

    model: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Models: Hub names or folders of transformers dual encoders, or open_clip:ARCH/PRETRAINED "
            "/ open_clip:hf-hub:ORG/NAME. Empty: the default CLIP model (offline stand-in when the "
            "Hub is unreachable)."
        },
    )
    benchmarks: list[str] = field(
        default_factory=lambda: ["quilt_offline_patches"],
        metadata={
            "help": "Registered benchmark names (see quilt_hf/evaluation/registry.py), local folders or Hub "
            "dataset names. A folder with image+caption columns is a retrieval benchmark."
        },
    )
    tasks: list[str] = field(
        default_factory=lambda: list(ALL_TASKS),
        metadata={
            "help": "Tasks among zero_shot, linear_probe, retrieval; each runs on the benchmarks it applies to."
        },
    )
    output: str = field(
        default="outputs/eval", metadata={"help": "Output folder (results/, results.md, plots/)."}
    )
    data: list[str] = field(
        default_factory=list,
        metadata={"help": "Where a benchmark's data lives, as NAME=FOLDER (Hub, ImageFolder or CSV layout)."},
    )
    batch_size: int = field(default=64, metadata={"help": "Images per forward pass."})
    device: str | None = field(
        default=None, metadata={"help": "cpu, cuda, cuda:1 ...; default cuda if available."}
    )
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "Feature cache folder (default OUTPUT/feature_cache); 'none' keeps memory only."},
    )
    fractions: list[float] = field(
        default_factory=lambda: [0.01, 0.1, 1.0], metadata={"help": "Linear-probe training fractions."}
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Linear-probe seeds."})
    max_samples: int | None = field(default=None, metadata={"help": "Keep at most this many rows per split."})
    retrieval_split: str = field(
        default="test", metadata={"help": "Split for retrieval (falls back to the only one)."}
    )
    model_card: str | None = field(
        default=None,
        metadata={
            "help": "Model card (README.md or model folder) to merge the model-index into; 'auto' = each "
            "model's own folder when it is a local folder."
        },
    )


def _data_dirs(entries: list[str]) -> dict[str, str]:
    dirs = {}
    for entry in entries:
        name, sep, folder = entry.partition("=")
        if not sep or not name or not folder:
            raise UserFacingError(f"--data {entry!r}: expected NAME=FOLDER")
        dirs[name] = folder
    return dirs


def run_eval(config: EvalConfig) -> list[dict]:
    """Run ``config``; writes results JSON, Markdown, plots and (if asked) the model-index. Returns the records."""
    from quilt_hf.evaluation import linear_probe, retrieval, zero_shot
    from quilt_hf.evaluation.adapters import load_model
    from quilt_hf.evaluation.features import FeatureCache
    from quilt_hf.evaluation.registry import load_benchmark
    from quilt_hf.evaluation.report import (
        load_results,
        result_record,
        update_model_card,
        write_report,
        write_result,
    )

    unknown = sorted(set(config.tasks) - set(ALL_TASKS))
    if unknown:
        raise UserFacingError(f"unknown task(s) {unknown}; choose among {list(ALL_TASKS)}")
    output = Path(config.output)
    cache_dir = (
        None
        if (config.cache_dir or "").lower() == "none"
        else Path(config.cache_dir or output / "feature_cache")
    )
    cache = FeatureCache(cache_dir)
    data_dirs = _data_dirs(config.data)
    benchmarks = [
        load_benchmark(name, data_dir=data_dirs.get(name), max_samples=config.max_samples)
        for name in config.benchmarks
    ]
    records: list[dict] = []
    for spec in config.model or [""]:
        model = load_model(spec, device=config.device)
        model_name = spec or model.name
        model_records = []
        for data in benchmarks:
            for task in config.tasks:
                if task not in data.benchmark.tasks:
                    logger.info("skipping %s on %s (a %s benchmark)", task, data.name, data.benchmark.task)
                    continue
                if task == "zero_shot":
                    metrics = zero_shot.evaluate(model, data, batch_size=config.batch_size, cache=cache)
                    settings = {"templates": list(data.benchmark.templates), "split": metrics["split"]}
                elif task == "linear_probe":
                    if "train" not in data.splits and not data.unsplit:
                        logger.warning("skipping linear_probe on %s: no train split", data.name)
                        continue
                    metrics = linear_probe.evaluate(
                        model,
                        data,
                        fractions=config.fractions,
                        seeds=config.seeds,
                        batch_size=config.batch_size,
                        cache=cache,
                    )
                    settings = {"fractions": config.fractions, "seeds": config.seeds}
                    if "split_note" in metrics:
                        settings["split"] = metrics["split_note"]
                else:
                    split = _retrieval_split(config.retrieval_split, list(data.splits))
                    metrics = retrieval.evaluate(
                        model, data, split=split, batch_size=config.batch_size, cache=cache
                    )
                    settings = {"split": split}
                record = result_record(
                    model_name,
                    data.benchmark,
                    task,
                    metrics,
                    dict(settings, batch_size=config.batch_size, max_samples=config.max_samples),
                    source=data.source,
                )
                logger.info("wrote %s", write_result(record, output))
                model_records.append(record)
        card = config.model_card
        if card == "auto":
            card = spec if spec and Path(spec).is_dir() else None
        if card and model_records:
            logger.info(
                "model-index merged into %s",
                update_model_card(card, model_records, model_name=Path(model_name).name),
            )
        records += model_records
    if not records:
        raise UserFacingError(f"no task applies: tasks {config.tasks} on benchmarks {config.benchmarks}")
    paths = write_report(load_results(output), output)  # earlier runs into the same folder stay in the table
    logger.info("report: %s (%d plots)", paths["markdown"], len(paths["plots"]))
    return records


def _retrieval_split(wanted: str, splits: list[str]) -> str:
    """The split retrieval is scored on: the one asked for, else the only one, else a held-out one; never a
    training split when another exists (scores on training pairs flatter a fine-tuned model)."""
    if wanted in splits:
        return wanted
    if len(splits) == 1:
        return splits[0]
    for held_out in ("test", "validation"):
        if held_out in splits:
            logger.info("no %r split: retrieval is scored on %r", wanted, held_out)
            return held_out
    raise UserFacingError(f"no {wanted!r} split for retrieval among {splits}; pass --retrieval_split")

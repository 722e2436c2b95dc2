"""``quilt publish``: pairs tables from one or more sources merged into a Hub-layout folder (and pushed when asked).

Steps (:mod:`quilt_hf.publishing.merge`), over the inputs read a batch at a time (memory is flat in the rows):
plan the merge from 64-bit hashes per row (each row keeps its ``subset`` and provenance): exact and near-duplicate
images (:mod:`quilt_hf.publishing.dedup`), images of ``--exclude_benchmarks``, reviewers' flags with
``--drop_flagged`` (a merged pair or image keeps the flags of all its rows), repeated pairs, splits per group of
rows sharing a video or an image; then write ``data/<subset>/<split>-*.parquet`` shards (one config per subset
plus ``all``, the default) as the rows come, ``stats.json``, ``stats/*.png``, ``drops.jsonl`` (every row not
published, with its reason: rows in = rows out + drops) and the card. The folder is staged beside ``--output``
and swapped in, so a crash leaves the previous version whole.

``split_by_video`` (one table, split by a stable hash of ``video_id``) stays for callers of the old API.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datasets import Dataset, Image

from quilt_hf import atomic, object_store
from quilt_hf.atomic import staging_dir
from quilt_hf.errors import UserFacingError
from quilt_hf.publishing.dedup import DEFAULT_MIN_SIMILARITY
from quilt_hf.publishing.embedding_dedup import DEFAULT_EMBEDDING_THRESHOLD, ImageEmbedder
from quilt_hf.publishing.hub import (
    DATASET_CARD_TEMPLATE,
    DEFAULT_MAX_SHARD_BYTES,
    ShardSetWriter,
    _is_hub_folder,
    push_folder_to_hub,
    recover_folder,
    swap_in,
)
from quilt_hf.publishing.merge import (
    SPLITS,
    MergeReport,
    arrow_table,
    merged_features,
    plan_merge,
    write_merged,
)
from quilt_hf.publishing.stats import PLOTS, StatsAccumulator, markdown_tables, write_plots
from quilt_hf.publishing.tables import DropLog, PairSource

logger = logging.getLogger(__name__)


@dataclass
class PublishConfig:
    """Merge pairs tables (from `quilt curate` or `quilt import`) into one Hub-layout dataset: duplicate images
    merged, evaluation images removed when asked, split so that no video or image is in two splits, one config
    per subset plus `all`, with a card, statistics and plots; optionally push it to the Hub (token from
    $HF_TOKEN)."""

    dataset: list[str] = field(
        metadata={"help": "Pairs tables to merge: outputs of `quilt curate` (pairs/, also on an object store: "
                  "s3://bucket/prefix/pairs, copied down first) or `quilt import`, Hub-layout folders or parquet "
                  "files."}
    )
    output: str = field(metadata={"help": "Folder to write the Hub-layout dataset to (README.md + data/*.parquet)."})
    val_fraction: float = field(default=0.1, metadata={"help": "Share of videos/images held out as validation."})
    test_fraction: float = field(default=0.0, metadata={"help": "Share of videos/images held out as test."})
    keep_release_split: bool = field(
        default=False,
        metadata={"help": "Keep the inputs' own `split` column (the release's); a video or image the input put in "
                  "several splits goes to the most held-out one. Rows without a split are hashed."},
    )
    exclude_benchmarks: list[str] = field(
        default_factory=list,
        metadata={"help": "Evaluation benchmarks (registered names or folders) whose images, and their near "
                  "duplicates, are removed from the dataset; counted in stats.json."},
    )
    min_similarity: float = field(
        default=DEFAULT_MIN_SIMILARITY,
        metadata={"help": "Cosine of the 16x16 perceptual fingerprints at or above which two images are the same "
                  "image (see quilt_hf.publishing.dedup)."},
    )
    max_shard_bytes: int = field(default=DEFAULT_MAX_SHARD_BYTES, metadata={"help": "Target size of a parquet shard."})
    pretty_name: str = field(default="Quilt-style histopathology image-text pairs", metadata={"help": "Card title."})
    license: str = field(default="other", metadata={"help": "Licence identifier for the card."})
    subset_licenses: list[str] = field(
        default_factory=list,
        metadata={"help": "Licence of a subset as NAME=LICENCE (repeatable); shown per subset on the card."},
    )
    repo_id: str | None = field(default=None, metadata={"help": "Hub dataset repository (org/name) to push to."})
    push: bool = field(default=False, metadata={"help": "Upload the folder to --repo-id (needs network + HF_TOKEN)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace --output if it exists."})
    drop_flagged: bool = field(
        default=False,
        metadata={"help": "Drop pairs flagged by reviewers (`quilt app`): flags in --flags, else in each "
                  "<--dataset>.flags.jsonl and in <--output>.flags.jsonl. A flag drops every row of its merged "
                  "pair (same image group and caption); not_histology and offensive_phi drop every caption of the "
                  "merged image. Each dropped row is in drops.jsonl (reason flagged:<reasons>) and stats.json."},
    )
    flags: list[str] = field(default_factory=list, metadata={"help": "Flags files for --drop_flagged."})
    dedup_model: str | None = field(
        default=None,
        metadata={"help": "Also merge images whose embeddings by this CLIP-like model (folder or Hub name, e.g. "
                  "the output of `quilt train`; or open_clip:...) have a cosine >= --dedup_embedding_threshold, "
                  "on top of the fingerprint (see quilt_hf.publishing.embedding_dedup)."},
    )
    dedup_embedding_threshold: float = field(
        default=DEFAULT_EMBEDDING_THRESHOLD,
        metadata={"help": "Embedding cosine at or above which two images are merged with --dedup_model; depends "
                  "on the model: choose it from `python bench/bench_quilt1m.py --dedup_model M` (lowest copy vs "
                  "highest distinct-pair similarity)."},
    )


def video_split(video_id: str, val_fraction: float, test_fraction: float) -> str:
    """The split of a video: a stable function of its id (same answer on every machine and run)."""
    bucket = int(hashlib.sha256(video_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if bucket < test_fraction:
        return "test"
    if bucket < test_fraction + val_fraction:
        return "validation"
    return "train"


def split_by_video(pairs: Dataset, val_fraction: float = 0.1, test_fraction: float = 0.0) -> dict[str, Dataset]:
    """Split a pairs table by video; the ``split`` column is filled. Empty splits are left out.

    With very few videos a hash split can leave the validation split empty; then the last training video (in
    sorted order) is moved there when ``val_fraction > 0`` and at least two training videos remain.
    """
    if not 0 <= val_fraction + test_fraction < 1:
        raise UserFacingError("val_fraction + test_fraction must be in [0, 1)")
    videos = sorted(set(pairs["video_id"]))
    assignment = {v: video_split(v, val_fraction, test_fraction) for v in videos}
    train_videos = [v for v in videos if assignment[v] == "train"]
    if val_fraction > 0 and len(train_videos) > 1 and "validation" not in assignment.values():
        assignment[train_videos[-1]] = "validation"
    pairs = pairs.map(lambda row: {"split": assignment[row["video_id"]]}, desc="Assigning splits")
    splits = {}
    for name in ("train", "validation", "test"):
        part = pairs.filter(lambda row, name=name: row["split"] == name, desc=f"Selecting {name}")
        if len(part):
            splits[name] = part
    return splits


_DOWNLOAD = ".download-"  # a table copied down from an object store, beside --output

#: What we know of the release's sources; a subset not listed shows "see its source" on the card.
KNOWN_SUBSETS = {
    "quilt": ("Narrated histopathology videos on YouTube (Quilt-1M video part, or `quilt curate`)",
              "the videos' own terms; research use"),
    "openpath": ("OpenPath: pathology images shared on Twitter (PLIP)", "the posts' own terms; research use"),
    "pubmed": ("PMC-OA: figures of open-access PubMed Central articles", "the articles' licences (mostly CC)"),
    "laion": ("LAION-5B histopathology subset", "LAION metadata CC-BY 4.0; images under their owners' terms"),
}


def _config_name(subset: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", subset).strip("_") or "unnamed"
    return "subset_all" if name == "all" else name


def _benchmark_fingerprints(names: list[str]) -> dict[str, list]:
    if not names:
        return {}
    from quilt_hf.evaluation.registry import load_benchmark
    from quilt_hf.publishing.merge import image_keys

    result = {}
    for name in names:
        data = load_benchmark(name)
        fingerprints = []
        for split in data.splits.values():
            column = next((c for c, f in split.features.items() if isinstance(f, Image)), None)
            if column is None:
                raise UserFacingError(f"--exclude_benchmarks {name}: it has no image column")
            table = arrow_table(split.cast_column(column, Image(decode=False))).select([column]).rename_columns(["image"])
            fingerprints += image_keys(table)[2]
        result[name] = fingerprints
        logger.info("benchmark %s: %d images to keep out", name, len(fingerprints))
    return result


def _card_body(config: PublishConfig, subsets: list[str], stats: dict, report: dict, plots: dict[str, str],
               sources: dict[str, list[str]]) -> str:
    licences = dict(item.split("=", 1) for item in config.subset_licenses if "=" in item)
    lines = ["## Subsets", "", "| config | source | licence | provenance (inputs) |", "|---|---|---|---|"]
    for subset in subsets:
        source, licence = KNOWN_SUBSETS.get(subset, ("see its source", "see its source"))
        lines.append(f"| `{_config_name(subset)}` | {source} | {licences.get(subset, licence)} | "
                     f"{', '.join(sorted(sources.get(subset, [])))} |")
    lines += [
        "",
        "Load one subset with `load_dataset(PATH, \"<config>\")`; the default config `all` holds every subset.",
        "",
        "## Merging",
        "",
        "Images were compared across all inputs: exact duplicates by content hash, near duplicates (re-encoded, "
        "resized, recoloured, cropped by a few pixels) by a 16x16 grayscale fingerprint at cosine >= "
        f"{config.min_similarity} (`quilt_hf.publishing.dedup`)"
        + (f" and by image embeddings of `{config.dedup_model}` at cosine >= {config.dedup_embedding_threshold}"
           if config.dedup_model else "")
        + "; each duplicate group keeps one image with all its "
        "captions. Splits are assigned per group of rows sharing a video or an image, so no video and no image is "
        "in two splits" + (" (the inputs' own splits were kept where given)." if config.keep_release_split else ".")
        + (f" Images of {', '.join(config.exclude_benchmarks)} and their near duplicates were removed."
           if config.exclude_benchmarks else ""),
        "",
        "## Statistics",
        "",
        markdown_tables(stats, report),
        "",
    ]
    lines += [f"![{PLOTS[name]}](stats/{file})" for name, file in plots.items()]
    return "\n".join(lines)


def _flags(source: Path, config: PublishConfig) -> dict[str, set[str]]:
    """The reviewers' flags (`quilt app`) that apply to input ``source``: pair key -> reasons."""
    from quilt_hf.flags import default_flags_path, flag_reasons

    files = config.flags or [default_flags_path(source), default_flags_path(config.output)]
    reasons = flag_reasons(files)
    logger.info("%d flagged pair(s) for %s (flags: %s)", len(reasons), source, ", ".join(map(str, files)))
    return reasons


def _download(url: str, folder: Path) -> str:
    """The current set's table at ``url`` (``s3://bucket/out/pairs``) copied into ``folder/out/pairs`` (the
    input keeps the output's name, as a local ``out/pairs`` would)."""
    if object_store.current_set(url) is not None:
        raise UserFacingError(f"--dataset {url} is a `quilt curate` output: give its table, {url.rstrip('/')}/pairs")
    resolved = object_store.resolve(url)
    fs, remote = object_store.filesystem(resolved)
    parent, _, name = url.rstrip("/").rpartition("/")
    local = folder / parent.rpartition("/")[2] / name
    files = fs.find(remote)
    if not files:
        raise UserFacingError(f"--dataset {url}: no table there (resolved to {resolved})")
    logger.info("downloading %s (%d files) to %s", resolved, len(files), local)
    targets = [local / posixpath.relpath(f, remote.rstrip("/")) if f != remote else local / posixpath.basename(f)
               for f in files]
    fs.get(files, [str(t) for t in targets])
    return str(local)


def run_publish(config: PublishConfig) -> Path:
    """Run ``quilt publish``: merge the ``--dataset`` tables and write (and push) the Hub-layout folder.

    The inputs are read a batch at a time, twice (:mod:`quilt_hf.publishing.merge`): memory holds a few dozen
    bytes per row plus one batch, not the table. A table on an object store (the output of ``quilt curate
    --output s3://...``) is first copied into a temporary folder beside ``--output``.
    """
    inputs = [config.dataset] if isinstance(config.dataset, str) else list(config.dataset)
    if not inputs:
        raise UserFacingError("--dataset: give at least one pairs table")
    output = Path(config.output)
    recover_folder(output)
    if output.exists() and not config.overwrite:
        raise UserFacingError(f"{output} exists; choose another output or pass --overwrite")
    if output.exists() and not _is_hub_folder(output):
        raise UserFacingError(f"{output} exists and is not a Hub-layout dataset folder: refusing to replace it")
    embedder = ImageEmbedder(config.dedup_model).load() if config.dedup_model else None  # fails before any work
    if not any(object_store.on_object_store(path) for path in inputs):
        return _publish(config, inputs, embedder)
    if config.drop_flagged and not config.flags:
        from quilt_hf.flags import default_flags_path

        logger.warning("--drop_flagged: a table on an object store has no flags file beside it here; only "
                       "--flags and %s are read", default_flags_path(output))
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic.clean_leftovers(output.parent, (f"{_DOWNLOAD}*",), older_than_s=atomic.LEFTOVER_AGE_S)  # killed runs'
    with tempfile.TemporaryDirectory(prefix=_DOWNLOAD, dir=output.parent) as folder:
        with atomic.keep_alive(folder):
            local = [_download(path, Path(folder) / str(i)) if object_store.on_object_store(path) else path
                     for i, path in enumerate(inputs)]
            return _publish(config, local, embedder, copied_from=dict(zip(local, inputs)))


def _publish(config: PublishConfig, inputs: list[str], embedder, copied_from: dict[str, str] | None = None) -> Path:
    from huggingface_hub import DatasetCard, DatasetCardData

    from quilt_hf.cards import template_path

    sources: dict[str, PairSource] = {}
    flags: dict[str, dict[str, set[str]]] = {}
    for path in inputs:
        source = Path(object_store.local_path(path))
        if not source.exists():
            raise UserFacingError(f"--dataset {source}: no such folder; point it at the output of `quilt curate`")
        name = source.name if source.name != "pairs" else source.parent.name or "pairs"
        while name in sources:
            name += "_"
        try:
            sources[name] = PairSource(source)
        except UserFacingError as error:
            original = (copied_from or {}).get(path, path)
            if original == path:
                raise
            raise UserFacingError(f"--dataset {original} (copied to a temporary folder): {error}") from error
        if config.drop_flagged:
            flags[name] = _flags(source, config)
    if sum(s.num_rows for s in sources.values()) == 0:
        raise UserFacingError(f"--dataset {config.dataset} has no pairs to publish; see its stats.json for the drop "
                              "reasons")
    output = Path(config.output)
    started = time.perf_counter()
    features = merged_features(sources)
    report = MergeReport()
    plan = plan_merge(
        sources,
        min_similarity=config.min_similarity,
        benchmark_fingerprints=_benchmark_fingerprints(config.exclude_benchmarks),
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        keep_release_split=config.keep_release_split,
        flags=flags,
        drop_flagged=config.drop_flagged,
        report=report,
        embedder=embedder,
        embedding_threshold=config.dedup_embedding_threshold,
    )
    if config.drop_flagged:
        logger.info("dropped %d flagged pair(s) (%d flagged themselves, the rest share a flagged pair or image); "
                    "%d left", report.flagged_dropped, report.flagged_rows, plan.kept)
    if plan.kept == 0:
        raise UserFacingError("nothing left to publish after merging (see the drop reasons logged above)")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(output)
    try:
        writer = ShardSetWriter(staging / "data", features, config.max_shard_bytes)
        accumulator = StatsAccumulator()
        drops = DropLog(staging / "drops.jsonl")
        try:
            counts = write_merged(sources, plan, features, _ConfigParts(writer), drops, accumulator)
        except BaseException:
            writer.abort()
            raise
        finally:
            drops.close()
        written = writer.close()
        subsets = sorted({subset for subset, _ in written})
        splits_present = {split for _, split in written}
        configs = [{"config_name": "all", "default": True,
                    "data_files": [{"split": s, "path": f"data/*/{s}-*"} for s in SPLITS if s in splits_present]}]
        for subset in subsets:
            config_name = _config_name(subset)
            configs.append({"config_name": config_name, "data_files": [
                {"split": s, "path": f"data/{config_name}/{s}-*"} for s in SPLITS if (config_name, s) in written]})
        stats = accumulator.result()
        merge_figures = asdict(report)
        merge_figures["dropped_rows"] = counts["dropped"]
        plots = write_plots(stats, staging / "stats")
        (staging / "stats.json").write_text(json.dumps({"stats": stats, "merge": merge_figures}, indent=2))
        card_data = DatasetCardData(
            pretty_name=config.pretty_name,
            license=config.license,
            configs=configs,
            dataset_info={"features": features._to_yaml_list()},
            task_categories=["zero-shot-image-classification"],
            tags=["histopathology", "quilt"],
        )
        num_rows = {s: accumulator.num_rows(s) for s in SPLITS if s in splits_present}
        card = DatasetCard.from_template(
            card_data,
            template_path=str(template_path(DATASET_CARD_TEMPLATE)),
            pretty_name=config.pretty_name,
            body=_card_body(config, subsets, stats, merge_figures, plots, plan.sources),
            num_rows=num_rows,
        )
        card.save(staging / "README.md")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    swap_in(staging, output)
    seconds = time.perf_counter() - started
    logger.info(
        "Hub-layout dataset: %s (%s; %d rows in, %d out, %d dropped) in %.1f s",
        output, ", ".join(f"{k}: {v}" for k, v in num_rows.items()), counts["rows_in"], counts["rows_out"],
        counts["dropped"], seconds,
    )
    if config.push:
        if not config.repo_id:
            raise UserFacingError("--push needs --repo_id org/name")
        push_folder_to_hub(output, config.repo_id)
    return output


class _ConfigParts:
    """Sends a subset's rows to the writer part named by its config (``data/<config>/``)."""

    def __init__(self, writer: ShardSetWriter):
        self.writer = writer

    def write(self, subset: str, split: str, table) -> None:
        self.writer.write(_config_name(subset), split, table)

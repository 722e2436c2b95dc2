"""``quilt publish``: a curated pairs table to a Hub-layout folder (and to the Hub when asked).

Splits are assigned per video (a stable hash of ``video_id``), so no video contributes pairs to two splits.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset, load_from_disk

from quilt_hf.errors import UserFacingError
from quilt_hf.hub import push_folder_to_hub, write_hub_folder

logger = logging.getLogger(__name__)


@dataclass
class PublishConfig:
    """Write a curated pairs table (from `quilt curate`) as a Hub-layout dataset folder, split by video, with a
    dataset card; optionally push it to the Hub (token from $HF_TOKEN)."""

    dataset: str = field(metadata={"help": "Pairs table written by `quilt curate` (a save_to_disk folder)."})
    output: str = field(metadata={"help": "Folder to write the Hub-layout dataset to (README.md + data/*.parquet)."})
    val_fraction: float = field(default=0.1, metadata={"help": "Share of videos held out as the validation split."})
    test_fraction: float = field(default=0.0, metadata={"help": "Share of videos held out as the test split."})
    pretty_name: str = field(default="Quilt-style histopathology image-text pairs", metadata={"help": "Card title."})
    license: str = field(default="other", metadata={"help": "Licence identifier for the card."})
    repo_id: str | None = field(default=None, metadata={"help": "Hub dataset repository (org/name) to push to."})
    push: bool = field(default=False, metadata={"help": "Upload the folder to --repo-id (needs network + HF_TOKEN)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace --output if it exists."})
    drop_flagged: bool = field(
        default=False,
        metadata={"help": "Drop pairs flagged by reviewers (`quilt app`): flags in --flags, else in "
                  "<--dataset>.flags.jsonl and <--output>.flags.jsonl. The count is logged."},
    )
    flags: list[str] = field(default_factory=list, metadata={"help": "Flags files for --drop_flagged."})


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


def run_publish(config: PublishConfig) -> Path:
    source = Path(config.dataset)
    if not source.is_dir():
        raise UserFacingError(f"--dataset {source}: not a folder; point it at the output of `quilt curate`")
    pairs = load_from_disk(str(source))
    if not isinstance(pairs, Dataset):
        raise UserFacingError(f"--dataset {source}: expected one pairs table, found {type(pairs).__name__}")
    if len(pairs) == 0:
        raise UserFacingError(f"--dataset {source} has no pairs to publish; see its stats.json for the drop reasons")
    if config.drop_flagged:
        from quilt_hf.flags import default_flags_path, drop_flagged, flagged_keys

        files = config.flags or [default_flags_path(source), default_flags_path(config.output)]
        pairs, dropped = drop_flagged(pairs, flagged_keys(files))
        logger.info("dropped %d flagged pair(s) (flags: %s); %d left", dropped, ", ".join(map(str, files)), len(pairs))
        if len(pairs) == 0:
            raise UserFacingError("every pair is flagged: nothing left to publish")
    splits = split_by_video(pairs, config.val_fraction, config.test_fraction)
    folder = write_hub_folder(
        splits,
        config.output,
        pretty_name=config.pretty_name,
        license=config.license,
        extra_card_data={"task_categories": ["zero-shot-image-classification"], "tags": ["histopathology", "quilt"]},
        overwrite=config.overwrite,
    )
    logger.info("Hub-layout dataset: %s (%s)", folder, ", ".join(f"{k}: {len(v)}" for k, v in splits.items()))
    if config.push:
        if not config.repo_id:
            raise UserFacingError("--push needs --repo-id org/name")
        push_folder_to_hub(folder, config.repo_id)
    return folder

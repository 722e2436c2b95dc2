"""Reviewer flags on image-text pairs: a small table kept beside a dataset, never inside it.

A reviewer (in ``quilt app``'s Flag tab, or from code) marks a pair as a wrong image, wrong text, not histology,
a duplicate or offensive / PHI, with a note. Each flag is one JSON line appended to a flags file
(``<dataset folder>.flags.jsonl`` by default), so writing a flag never rewrites the dataset, a crash loses at most
the line being written, and the file reads back as a table (``datasets.load_dataset("json", data_files=...)``).
``quilt publish --drop_flagged`` drops the flagged pairs and counts them.

A pair is identified by :func:`pair_key`: its ``image_id`` and a hash of its caption, columns that publishing
keeps, so a flag made on a published folder applies to the curated table it was published from.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from quilt_hf.errors import UserFacingError

logger = logging.getLogger(__name__)

#: Reasons a reviewer can give, and what each means.
FLAG_REASONS: dict[str, str] = {
    "wrong_image": "the image does not show what the text describes",
    "wrong_text": "the text is wrong or garbled for this image",
    "not_histology": "the image is not a histology image (slide, face, diagram, ...)",
    "duplicate": "the same pair (or image) appears elsewhere",
    "offensive_phi": "offensive content or protected health information",
}
FLAGS_SUFFIX = ".flags.jsonl"
#: Reasons that are about the image itself, not about one caption of it: when images are merged (``quilt publish``)
#: such a flag applies to every pair of the merged image; the others apply to the pair (image, caption).
IMAGE_FLAG_REASONS: tuple[str, ...] = ("not_histology", "offensive_phi")


def pair_key(image_id: str, caption: str) -> str:
    """The stable identity of a pair: its image id and the first 12 hex digits of its caption's SHA-256."""
    return f"{image_id}#{hashlib.sha256((caption or '').encode()).hexdigest()[:12]}"


def default_flags_path(dataset: str | os.PathLike) -> Path:
    """Where the flags of a dataset folder live by default: a file beside the folder, ``<folder>.flags.jsonl``."""
    return Path(str(dataset).rstrip("/\\") + FLAGS_SUFFIX)


def add_flag(
    path: str | os.PathLike,
    *,
    image_id: str,
    caption: str,
    reason: str,
    note: str = "",
    reviewer: str = "",
    video_id: str = "",
    chunk_id: int | None = None,
) -> dict:
    """Append one flag to the flags file at ``path`` (created with its folder if missing).

    Args:
        path (`str` or `Path`): the flags file.
        image_id (`str`): the pair's ``image_id``.
        caption (`str`): the pair's ``caption`` (part of its identity, see :func:`pair_key`).
        reason (`str`): one of :data:`FLAG_REASONS`.
        note (`str`): free text from the reviewer.
        reviewer (`str`): who flagged it.
        video_id (`str`), chunk_id (`int`, *optional*): where the pair came from (kept for people reading the file).

    Returns:
        `dict`: the record written.
    """
    if reason not in FLAG_REASONS:
        raise UserFacingError(f"unknown flag reason {reason!r}; choose one of {', '.join(FLAG_REASONS)}")
    if not image_id:
        raise UserFacingError("a flag needs the pair's image_id")
    record = {
        "pair_key": pair_key(image_id, caption),
        "image_id": image_id,
        "video_id": video_id,
        "chunk_id": -1 if chunk_id is None else int(chunk_id),
        "caption": (caption or "")[:300],
        "reason": reason,
        "note": note.strip(),
        "reviewer": reviewer.strip(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, ensure_ascii=False) + "\n"
    # One write of one line in append mode: concurrent reviewers never interleave within a record.
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    logger.info("flagged %s as %s in %s", record["pair_key"], reason, path)
    return record


def load_flags(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict]:
    """Every flag in the given flags files (missing files are skipped; a torn last line is skipped with a warning)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    records = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("%s:%d: unreadable flag line skipped", path, number)
                continue
            if isinstance(record, Mapping) and record.get("pair_key"):
                records.append(dict(record))
    return records


def flagged_keys(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> set[str]:
    """The pair keys flagged in the given flags files."""
    return {record["pair_key"] for record in load_flags(paths)}


def flag_reasons(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> dict[str, set[str]]:
    """Pair key -> the reasons it was flagged for, from the given flags files."""
    reasons: dict[str, set[str]] = {}
    for record in load_flags(paths):
        reasons.setdefault(record["pair_key"], set()).add(str(record.get("reason") or "unspecified"))
    return reasons


def drop_flagged(pairs, keys: set[str]):
    """Drop the flagged pairs from a ``datasets.Dataset``.

    Args:
        pairs (`datasets.Dataset`): a pairs table with ``image_id`` and ``caption``.
        keys (`set[str]`): pair keys to drop (from :func:`flagged_keys`).

    Returns:
        `tuple[datasets.Dataset, int]`: the kept pairs and how many were dropped.
    """
    if not keys:
        return pairs, 0
    missing = {"image_id", "caption"} - set(pairs.column_names)
    if missing:
        raise UserFacingError(f"cannot match flags: the table has no {sorted(missing)} column")
    keep = [
        pair_key(image_id, caption) not in keys for image_id, caption in zip(pairs["image_id"], pairs["caption"])
    ]
    kept = pairs.select([i for i, k in enumerate(keep) if k])
    return kept, len(pairs) - len(kept)

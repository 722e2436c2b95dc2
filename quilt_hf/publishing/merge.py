"""Merge pairs tables from several sources into one: duplicate images, decontamination, leakage-safe splits.

Everything runs on Arrow tables in batches (memory-mapped inputs, images read a batch at a time), so memory
stays flat in the number of rows; only one fingerprint per distinct image is held.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, Features

from quilt_hf.errors import UserFacingError
from quilt_hf.publishing.dedup import DEFAULT_MIN_SIMILARITY, content_hash, fingerprint, matches_any, near_duplicate_groups

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
_SPLIT_ALIASES = {"train": "train", "val": "validation", "valid": "validation", "validation": "validation",
                  "dev": "validation", "test": "test"}


@dataclass
class MergeReport:
    """Counts of what merging did (written to ``stats.json``)."""

    rows_in: dict[str, int] = field(default_factory=dict)
    images: int = 0
    exact_duplicate_images: int = 0
    near_duplicate_images: int = 0
    duplicate_pairs_dropped: int = 0
    contaminated_rows: dict[str, int] = field(default_factory=dict)
    contaminated_images: dict[str, int] = field(default_factory=dict)
    split_groups: int = 0
    release_split_moves: int = 0


def arrow_table(dataset: Dataset) -> pa.Table:
    if dataset._indices is not None:
        dataset = dataset.flatten_indices()
    return dataset.data.table


def concat_inputs(datasets: dict[str, Dataset]) -> tuple[pa.Table, Features]:
    """One table over every input (columns missing from an input are null there) and its features."""
    features: dict = {}
    tables = []
    for name, dataset in datasets.items():
        for column, feature in dataset.features.items():
            features.setdefault(column, feature)
        table = arrow_table(dataset)
        subset = table.column("subset") if "subset" in table.column_names else pa.nulls(len(table), pa.string())
        subset = pc.if_else(pc.or_(pc.is_null(subset), pc.equal(subset, "")), pa.scalar(name), subset)
        table = table.set_column(table.column_names.index("subset"), "subset", subset) if "subset" in table.column_names \
            else table.append_column("subset", subset)
        tables.append(table)
    features = Features(features)
    schema = features.arrow_schema
    conformed = []
    for table in tables:
        columns = [
            table.column(name).cast(schema.field(name).type) if name in table.column_names
            else pa.nulls(len(table), schema.field(name).type)
            for name in schema.names
        ]
        conformed.append(pa.Table.from_arrays(columns, schema=schema))
    return pa.concat_tables(conformed), features


def _image_bytes(cell: dict | None) -> bytes | None:
    if not cell:
        return None
    if cell.get("bytes"):
        return cell["bytes"]
    if cell.get("path"):
        try:
            with open(cell["path"], "rb") as handle:
                return handle.read()
        except OSError:
            return None
    return None


def image_keys(table: pa.Table, batch_rows: int = 2048) -> tuple[np.ndarray, list[bytes | None], list]:
    """For each row, the index of its distinct image (by content; -1 without an image); and, per distinct
    image, the row that first holds it and its fingerprint."""
    from tqdm.auto import tqdm

    keys = np.full(len(table), -1, dtype=np.int64)
    first_row: list[int] = []
    fingerprints: list = []
    seen: dict[str, int] = {}
    if "image" not in table.column_names or table.column("image").null_count == len(table):
        return keys, first_row, fingerprints
    offset = 0
    column = table.column("image")
    with tqdm(total=len(table), desc="Fingerprinting images", unit=" rows", mininterval=5) as bar:
        for start in range(0, len(table), batch_rows):
            cells = column.slice(start, batch_rows).to_pylist()
            for i, cell in enumerate(cells):
                data = _image_bytes(cell)
                if data is None:
                    continue
                digest = content_hash(data)
                key = seen.get(digest)
                if key is None:
                    key = seen[digest] = len(first_row)
                    first_row.append(start + i)
                    fingerprints.append(fingerprint(data))
                keys[start + i] = key
            bar.update(len(cells))
            offset += len(cells)
    return keys, first_row, fingerprints


def _stable_bucket(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def assign_splits(
    video_ids: list[str],
    image_groups: list[str],
    release_splits: list[str] | None,
    val_fraction: float,
    test_fraction: float,
) -> tuple[list[str], int, int]:
    """Split rows so that all rows of a video and all rows of an image land on one side.

    Rows are joined into groups through shared videos and shared images (connected components); a group's split
    is a stable hash of its first key, or, with ``release_splits``, the release's split (a group the release put
    on several sides goes to the most held-out of them: test, then validation). With very few groups and none
    drawn for validation, the last training group moves there.

    Returns:
        `tuple`: the split of each row, the number of groups, the rows moved off their release split.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not 0 <= val_fraction + test_fraction < 1:
        raise UserFacingError("val_fraction + test_fraction must be in [0, 1)")
    nodes: dict[str, int] = {}
    rows, cols = [], []
    for row, (video, image) in enumerate(zip(video_ids, image_groups)):
        image_node = nodes.setdefault("i:" + image, len(nodes))
        rows.append(row)
        cols.append(image_node)
        if video:
            rows.append(row)
            cols.append(nodes.setdefault("v:" + video, len(nodes)))
    size = len(video_ids)
    # A bipartite graph rows <-> keys; its components are the groups.
    total = size + len(nodes)
    graph = coo_matrix((np.ones(len(rows), np.int8), (np.array(rows), np.array(cols) + size)), shape=(total, total))
    count, labels = connected_components(graph, directed=False)
    row_labels = labels[:size]
    first_row: dict[int, int] = {}
    for row, label in enumerate(row_labels.tolist()):
        first_row.setdefault(label, row)
    order = sorted(first_row, key=first_row.get)
    moves = 0
    if release_splits is not None:
        rank = {"test": 2, "validation": 1, "train": 0}
        wanted: dict[int, str] = {}
        for row, label in enumerate(row_labels.tolist()):
            split = _SPLIT_ALIASES.get((release_splits[row] or "").strip().lower(), "")
            if split and rank[split] > rank.get(wanted.get(label, ""), -1):
                wanted[label] = split
        group_split = {}
        for label in order:
            row = first_row[label]
            key = video_ids[row] or image_groups[row]
            group_split[label] = wanted.get(label) or _hash_split(key, val_fraction, test_fraction)
        splits = [group_split[label] for label in row_labels.tolist()]
        moves = sum(
            1 for row, split in enumerate(splits)
            if _SPLIT_ALIASES.get((release_splits[row] or "").strip().lower(), split) != split
        )
        return splits, len(order), moves
    group_split = {}
    for label in order:
        row = first_row[label]
        group_split[label] = _hash_split(video_ids[row] or image_groups[row], val_fraction, test_fraction)
    train = [label for label in order if group_split[label] == "train"]
    if val_fraction > 0 and len(train) > 1 and "validation" not in group_split.values():
        last = max(train, key=lambda label: video_ids[first_row[label]] or image_groups[first_row[label]])
        group_split[last] = "validation"
    return [group_split[label] for label in row_labels.tolist()], len(order), moves


def _hash_split(key: str, val_fraction: float, test_fraction: float) -> str:
    bucket = _stable_bucket(key)
    if bucket < test_fraction:
        return "test"
    if bucket < test_fraction + val_fraction:
        return "validation"
    return "train"


def merge_tables(
    table: pa.Table,
    *,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    benchmark_fingerprints: dict[str, list] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    keep_release_split: bool = False,
    report: MergeReport,
    drops: list[dict],
) -> pa.Table:
    """Deduplicate, decontaminate and split one concatenated table; returns the table to publish.

    Duplicate images (exact or near) are replaced by their group's first image, so each image is stored once per
    group with all its captions; a pair repeated with the same caption on the same image is dropped. Rows whose
    image is a near duplicate of an image of a named benchmark are dropped. ``split`` is filled.
    """
    keys, first_rows, fingerprints = image_keys(table)
    report.images = len(first_rows)
    groups = near_duplicate_groups(fingerprints, min_similarity) if first_rows else np.zeros(0, np.int64)
    report.exact_duplicate_images = int((keys >= 0).sum()) - len(first_rows) if len(first_rows) else 0
    report.near_duplicate_images = int((groups != np.arange(len(groups))).sum())
    keep = np.ones(len(table), dtype=bool)
    image_ids = table.column("image_id").to_pylist()
    provenance = table.column("provenance").to_pylist() if "provenance" in table.column_names else [""] * len(table)
    # Decontamination: drop rows whose image group touches any benchmark image.
    for name, references in (benchmark_fingerprints or {}).items():
        hit = matches_any(fingerprints, references, min_similarity)
        hit_groups = set(groups[hit].tolist())
        bad = np.array([k >= 0 and int(groups[k]) in hit_groups for k in keys.tolist()], dtype=bool) & keep
        report.contaminated_images[name] = int(hit.sum())
        report.contaminated_rows[name] = int(bad.sum())
        for row in np.nonzero(bad)[0].tolist():
            drops.append({"reason": f"benchmark:{name}", "image_id": image_ids[row], "provenance": provenance[row]})
        keep &= ~bad
    # One image per group: rows point at the group's first row; identical captions on one image are one pair.
    canonical_row = np.arange(len(table))
    group_key = [""] * len(table)
    captions = table.column("caption").to_pylist()
    seen_pairs: set[tuple[str, str]] = set()
    for row, key in enumerate(keys.tolist()):
        if key >= 0:
            group = int(groups[key])
            canonical_row[row] = first_rows[group]
            group_key[row] = f"g{group}"
        else:
            group_key[row] = "id:" + (image_ids[row] or provenance[row] or str(row))
        if not keep[row]:
            continue
        pair = (group_key[row], captions[row] or "")
        if key >= 0 or image_ids[row]:
            if pair in seen_pairs:
                keep[row] = False
                report.duplicate_pairs_dropped += 1
                drops.append({"reason": "duplicate_pair", "image_id": image_ids[row], "provenance": provenance[row]})
                continue
            seen_pairs.add(pair)
    if (canonical_row != np.arange(len(table))).any():  # only then copy the image columns
        index = pa.array(canonical_row)
        for name in ("image", "image_id", "image_path"):
            position = table.column_names.index(name)
            table = table.set_column(position, name, table.column(name).take(index))
    if not keep.all():
        table = table.filter(pa.array(keep))
    group_key = [g for g, k in zip(group_key, keep.tolist()) if k]
    # Splits: a video's rows and an image's rows never straddle two splits.
    video_ids = [v or "" for v in table.column("video_id").to_pylist()]
    release = table.column("split").to_pylist() if keep_release_split else None
    splits, report.split_groups, report.release_split_moves = assign_splits(
        video_ids, group_key, release, val_fraction, test_fraction
    )
    table = table.set_column(table.column_names.index("split"), "split", pa.array(splits, pa.string()))
    return table


def split_counts(table: pa.Table) -> dict[str, Counter]:
    """Rows per (subset, split)."""
    counts: dict[str, Counter] = {}
    for subset, split in zip(table.column("subset").to_pylist(), table.column("split").to_pylist()):
        counts.setdefault(subset, Counter())[split] += 1
    return counts


def subset_split_ranges(table: pa.Table) -> dict:
    """Rows ordered by (subset, split) with one ``take`` (none when already in order), and the row range of each
    (subset, split) pair in it, so each part is a zero-copy slice. The ordered table is under ``"__table__"``."""
    subsets = table.column("subset").to_pylist()
    splits = table.column("split").to_pylist()
    split_rank = {name: i for i, name in enumerate(SPLITS)}
    subset_rank = {name: i for i, name in enumerate(sorted(set(subsets)))}
    keys = np.array([subset_rank[a] * 8 + split_rank.get(b, 7) for a, b in zip(subsets, splits)], dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    if (np.diff(keys) < 0).any():
        table = table.take(pa.array(order))
        keys = keys[order]
    ranges: dict = {"__table__": table}
    names = {v: k for k, v in subset_rank.items()}
    for key in np.unique(keys).tolist():
        start, stop = int(np.searchsorted(keys, key, "left")), int(np.searchsorted(keys, key, "right"))
        if key % 8 < len(SPLITS):
            ranges[(names[key // 8], SPLITS[key % 8])] = (start, stop)
    return ranges

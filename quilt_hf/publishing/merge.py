"""Merge pairs tables from several sources into one: duplicate images, decontamination, leakage-safe splits.

Everything runs on Arrow tables in batches (memory-mapped inputs, images read a batch at a time), so memory
stays flat in the number of rows; only one fingerprint per distinct image is held.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, Features, Value

from quilt_hf.errors import UserFacingError
from quilt_hf.publishing.dedup import (
    DEFAULT_MIN_SIMILARITY,
    combine_groups,
    content_hash,
    fingerprint,
    matches_any,
    near_duplicate_groups,
)

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
    embedding_duplicate_images: int = 0  # of near_duplicate_images, merged only by --dedup_model's embeddings
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
        subset = pc.if_else(pc.or_kleene(pc.is_null(subset), pc.equal(subset, "")), pa.scalar(name), subset)
        table = table.set_column(table.column_names.index("subset"), "subset", subset) if "subset" in table.column_names \
            else table.append_column("subset", subset)
        # Provenance: the input's name where a row has none (tables from `quilt curate` carry no such column).
        if "provenance" in table.column_names:
            filled = pc.fill_null(table.column("provenance"), name)
            table = table.set_column(table.column_names.index("provenance"), "provenance", filled)
        else:
            table = table.append_column("provenance", pa.array([name] * len(table), pa.string()))
        tables.append(table)
    features.setdefault("provenance", Value("string"))
    features.setdefault("subset", Value("string"))  # added above when an input has none
    features.setdefault("split", Value("string"))  # filled by the merge; a bare table may lack it
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
    return keys, first_row, fingerprints


def _stable_bucket(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def codes(column, missing: tuple = ("",)) -> tuple[np.ndarray, pa.Array]:
    """Integer codes of a string column (``-1`` for null and ``missing`` values) and its dictionary of distinct
    values (an Arrow array: no Python string is made per row or per distinct value)."""
    encoded = pc.dictionary_encode(column)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks() if encoded.num_chunks else pa.array([], pa.dictionary(pa.int32(), pa.string()))
    dictionary = encoded.dictionary
    indices = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    for value in missing:
        position = pc.index(dictionary, value).as_py() if len(dictionary) else -1
        if position is not None and position >= 0:
            indices[indices == position] = -1
    return indices, dictionary


def _values_at(dictionary: pa.Array, positions: np.ndarray) -> list:
    """``dictionary[positions]`` as Python values, None where a position is -1."""
    if not len(positions):
        return []
    taken = dictionary.take(pa.array(np.maximum(positions, 0))).to_pylist() if len(dictionary) else [None] * len(positions)
    return [v if p >= 0 else None for v, p in zip(taken, positions.tolist())]


def split_groups(video_codes: np.ndarray, image_nodes: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of rows joined through shared videos (``video_codes``, -1 for none) and shared image
    nodes (every row has one); returns (number of groups, group label of each row)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    size = len(image_nodes)
    if size == 0:
        return 0, np.zeros(0, np.int64)
    _, image_nodes = np.unique(image_nodes, return_inverse=True)
    images = int(image_nodes.max()) + 1
    has_video = video_codes >= 0
    rows = np.concatenate([np.arange(size), np.nonzero(has_video)[0]])
    cols = np.concatenate([image_nodes, images + video_codes[has_video]]) + size
    total = size + images + (int(video_codes.max()) + 1 if has_video.any() else 0)
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(total, total))
    _, labels = connected_components(graph, directed=False)
    _, row_labels = np.unique(labels[:size], return_inverse=True)
    return int(row_labels.max()) + 1, row_labels


def assign_split_codes(
    group_labels: np.ndarray,
    group_keys: list[str],
    release_ranks: np.ndarray | None,
    val_fraction: float,
    test_fraction: float,
) -> tuple[np.ndarray, int]:
    """The split (index into :data:`SPLITS`) of each row from its group.

    ``group_keys[g]`` is the stable text a group is hashed by (its first video id, else its first image id). With
    ``release_ranks`` (per row: the release's split as an index into ``SPLITS``, -1 for none) a group takes the most
    held-out split the release gave any of its rows. With no group drawn for validation and at least two for
    training, the training group with the largest key moves to validation (tiny datasets).

    Returns:
        `tuple`: the split index of each row, and the rows moved off their release split.
    """
    if not 0 <= val_fraction + test_fraction < 1:
        raise UserFacingError("val_fraction + test_fraction must be in [0, 1)")
    hashed = np.array([SPLITS.index(_hash_split(k, val_fraction, test_fraction)) for k in group_keys], np.int64)
    if release_ranks is not None:
        wanted = np.full(len(group_keys), -1, np.int64)
        np.maximum.at(wanted, group_labels, release_ranks)
        group_split = np.where(wanted >= 0, wanted, hashed)
        splits = group_split[group_labels]
        return splits, int(((release_ranks >= 0) & (release_ranks != splits)).sum())
    group_split = hashed
    train = np.nonzero(group_split == 0)[0]
    if val_fraction > 0 and len(train) > 1 and not (group_split == 1).any():
        group_split[max(train.tolist(), key=lambda g: group_keys[g])] = 1
    return group_split[group_labels], 0


def assign_splits(
    video_ids: list[str],
    image_groups: list[str],
    release_splits: list[str] | None,
    val_fraction: float,
    test_fraction: float,
) -> tuple[list[str], int, int]:
    """Split rows so that all rows of a video and all rows of an image land on one side (list interface of
    :func:`split_groups` + :func:`assign_split_codes`).

    Returns:
        `tuple`: the split of each row, the number of groups, the rows moved off their release split.
    """
    video_codes, _ = codes(pa.array(video_ids, pa.string()))
    image_codes, _ = codes(pa.array(image_groups, pa.string()), missing=())
    count, labels = split_groups(video_codes, image_codes)
    first = _first_rows(labels, count)
    keys = [video_ids[r] or image_groups[r] for r in first.tolist()]
    ranks = None
    if release_splits is not None:
        ranks = np.array([_rank(s) for s in release_splits], np.int64)
    splits, moves = assign_split_codes(labels, keys, ranks, val_fraction, test_fraction)
    return [SPLITS[i] for i in splits.tolist()], count, moves


def _rank(split: str | None) -> int:
    name = _SPLIT_ALIASES.get((split or "").strip().lower())
    return SPLITS.index(name) if name else -1


def _first_rows(labels: np.ndarray, count: int) -> np.ndarray:
    first = np.full(count, len(labels), np.int64)
    np.minimum.at(first, labels, np.arange(len(labels)))
    return first


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
    embedder=None,
    embedding_threshold: float | None = None,
) -> pa.Table:
    """Deduplicate, decontaminate and split one concatenated table; returns the table to publish.

    Duplicate images (exact or near) are replaced by their group's first image, so each image is stored once per
    group with all its captions; a pair repeated with the same caption on the same image is dropped. Rows whose
    image is a near duplicate of an image of a named benchmark are dropped. ``split`` is filled. Per-row work is
    done on integer codes (numpy), never on one Python object per row.
    """
    size = len(table)
    keys, first_rows, fingerprints = image_keys(table)
    report.images = len(first_rows)
    groups = near_duplicate_groups(fingerprints, min_similarity) if first_rows else np.zeros(0, np.int64)
    if embedder is not None and first_rows:  # optional: embedding similarity on top of the fingerprint
        from quilt_hf.publishing.embedding_dedup import DEFAULT_EMBEDDING_THRESHOLD, embedding_groups

        threshold = DEFAULT_EMBEDDING_THRESHOLD if embedding_threshold is None else embedding_threshold
        combined = combine_groups(groups, embedding_groups(table, first_rows, embedder, threshold))
        report.embedding_duplicate_images = int((combined != np.arange(len(combined))).sum()
                                                - (groups != np.arange(len(groups))).sum())
        groups = combined
    has_image = keys >= 0
    report.exact_duplicate_images = int(has_image.sum()) - len(first_rows) if first_rows else 0
    report.near_duplicate_images = int((groups != np.arange(len(groups))).sum())
    row_group = np.where(has_image, groups[np.maximum(keys, 0)] if len(groups) else -1, -1)
    keep = np.ones(size, dtype=bool)

    def record(rows: np.ndarray, reason: str) -> None:
        index = pa.array(rows)
        ids = table.column("image_id").take(index).to_pylist()
        where = table.column("provenance").take(index).to_pylist() if "provenance" in table.column_names else [""] * len(ids)
        drops.extend({"reason": reason, "image_id": i, "provenance": w} for i, w in zip(ids, where))

    for name, references in (benchmark_fingerprints or {}).items():
        hit = matches_any(fingerprints, references, min_similarity)
        hit_groups = np.unique(groups[hit])
        bad = has_image & np.isin(row_group, hit_groups) & keep
        report.contaminated_images[name] = int(hit.sum())
        report.contaminated_rows[name] = int(bad.sum())
        record(np.nonzero(bad)[0], f"benchmark:{name}")
        keep &= ~bad
    # Image node of each row: its duplicate group, else its image_id, else the row itself.
    image_codes, image_values = codes(table.column("image_id"))
    images = len(first_rows)
    image_node = np.where(has_image, row_group, np.where(image_codes >= 0, images + image_codes, -1))
    no_image = image_node < 0
    image_node[no_image] = images + len(image_values) + np.nonzero(no_image)[0]
    # One pair per (image, caption).
    caption_codes, caption_values = codes(table.column("caption"), missing=())
    eligible = np.nonzero(keep & ~no_image)[0]
    pair_key = image_node[eligible] * (len(caption_values) + 1) + caption_codes[eligible] + 1
    _, first = np.unique(pair_key, return_index=True)
    repeated = np.ones(len(eligible), bool)
    repeated[first] = False
    if repeated.any():
        record(eligible[repeated], "duplicate_pair")
        keep[eligible[repeated]] = False
    report.duplicate_pairs_dropped = int(repeated.sum())
    if len(groups) and (groups != np.arange(len(groups))).any():  # near duplicates: rows point at the kept image
        canonical = np.where(has_image, np.asarray(first_rows, np.int64)[groups[np.maximum(keys, 0)]], np.arange(size))
        index = pa.array(canonical)
        for name in ("image", "image_id", "image_path"):
            table = table.set_column(table.column_names.index(name), name, table.column(name).take(index))
        image_codes, image_values = codes(table.column("image_id"))
    if not keep.all():
        table = table.filter(pa.array(keep))
        image_node, image_codes = image_node[keep], image_codes[keep]
    # Splits: a video's rows and an image's rows never straddle two splits.
    video_codes, video_values = codes(table.column("video_id"))
    count, labels = split_groups(video_codes, image_node)
    first = _first_rows(labels, count)
    keys_text = [
        v if v is not None else (i if i is not None else f"row:{r}")
        for r, v, i in zip(first.tolist(), _values_at(video_values, video_codes[first]),
                           _values_at(image_values, image_codes[first]))
    ]
    ranks = None
    if keep_release_split:
        split_codes, split_values = codes(table.column("split"))
        value_rank = np.array([_rank(v) for v in split_values.to_pylist()] + [-1], np.int64)
        ranks = value_rank[split_codes]  # -1 indexes the trailing "no split"
    splits, report.release_split_moves = assign_split_codes(labels, keys_text, ranks, val_fraction, test_fraction)
    report.split_groups = count
    split_array = pa.DictionaryArray.from_arrays(pa.array(splits, pa.int8()), pa.array(list(SPLITS))).cast(pa.string())
    return table.set_column(table.column_names.index("split"), "split", split_array)


def subset_split_ranges(table: pa.Table) -> dict:
    """Rows ordered by (subset, split) with one ``take`` (none when already in order), and the row range of each
    (subset, split) pair in it, so each part is a zero-copy slice. The ordered table is under ``"__table__"``."""
    subset_codes, subset_values = codes(table.column("subset"), missing=())
    split_codes, split_values = codes(table.column("split"), missing=())
    subset_values, split_values = subset_values.to_pylist(), split_values.to_pylist()
    order_of = np.argsort(np.argsort(np.array(subset_values, dtype=object))) if subset_values else np.zeros(0, np.int64)
    subset_rank = {name: int(order_of[i]) for i, name in enumerate(subset_values)}
    split_of_code = np.array([SPLITS.index(v) if v in SPLITS else 7 for v in split_values] + [7], np.int64)
    keys = order_of[subset_codes] * 8 + split_of_code[split_codes]
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

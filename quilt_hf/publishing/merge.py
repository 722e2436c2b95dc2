"""Merge pairs tables from several sources into one: duplicate images, flags, decontamination, leakage-safe splits.

Memory stays flat in the number of rows: the inputs are read a batch at a time, twice.

1. :func:`plan_merge` reads the key columns (image bytes where present, ``image_id``, ``video_id``, ``caption``,
   ``split``, ``subset``) and keeps per row only fixed-size numbers: 64-bit hashes of the ids and of the caption
   (:mod:`quilt_hf.publishing.hashing`), the index of its distinct image, its release split, its subset and its
   flags (about 40 bytes a row; no Python object and no dictionary of captions per row). Per distinct image it
   keeps a content hash and a fingerprint. From these it decides each row's fate: its duplicate group, whether
   it is dropped (benchmark image, flagged, repeated pair) and its split.
2. :func:`write_merged` reads every column again and sends each kept row to the shard writer of its (subset,
   split), rows of near-duplicate images pointing at their group's first image; each drop is written to the drop
   log as it comes, and the statistics are counted on the way.

Rows in = rows out + drops is checked at the end.
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
from quilt_hf.publishing.embedding_dedup import DEFAULT_EMBEDDING_THRESHOLD, StreamingEmbeddings
from quilt_hf.publishing.hashing import MISSING, mix64, string_hashes

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
_SPLIT_ALIASES = {"train": "train", "val": "validation", "valid": "validation", "validation": "validation",
                  "dev": "validation", "test": "test"}
#: Columns the planning pass reads.
KEY_COLUMNS = ("image", "image_id", "video_id", "caption", "split", "subset")
#: Bytes of Arrow data a batch may hold (text-only tables: many rows a batch; image tables: few).
BATCH_BYTES = 4 * 1024 * 1024
_KIND_GROUP, _KIND_ROW = np.uint64(3 << 62), np.uint64(2 << 62)
_LOW_BITS = np.uint64((1 << 62) - 1)


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
    flagged_rows: int = 0
    flagged_dropped: int = 0
    split_groups: int = 0
    release_split_moves: int = 0


@dataclass
class MergePlan:
    """The fate of every input row (arrays indexed by the row's position over all inputs in order)."""

    rows: int
    subset_names: list[str]
    subset: np.ndarray  # int16 index into subset_names
    split: np.ndarray  # int8 index into SPLITS (-1 for a dropped row)
    drop: np.ndarray  # int16: 0 kept, k > 0 dropped for drop_reasons[k - 1]
    drop_reasons: list[str]
    rewrite_rows: np.ndarray  # rows whose image is replaced by their duplicate group's first image...
    rewrite_to: np.ndarray  # ...found at this row
    rewrite_bytes: np.ndarray  # bool per rewrite row: a near duplicate (other bytes), not an exact copy
    repeat_rows: np.ndarray  # rows dropped as a repeated pair (checked against the text in write_merged)...
    repeat_of: np.ndarray  # ...of this row
    repeat_by_id: np.ndarray  # bool: the pair was matched by image_id (no image): the ids are compared too
    sources: dict[str, list[str]] = field(default_factory=dict)  # subset -> inputs it came from

    @property
    def kept(self) -> int:
        return int((self.drop == 0).sum())


def arrow_table(dataset: Dataset) -> pa.Table:
    if dataset._indices is not None:
        dataset = dataset.flatten_indices()
    return dataset.data.table


def merged_features(sources: dict) -> Features:
    """The columns of the merged table: every input's columns (the first input's type wins) plus ``provenance``,
    ``subset`` and ``split``."""
    features: dict = {}
    for source in sources.values():
        for column, feature in source.features.items():
            features.setdefault(column, feature)
    features.setdefault("provenance", Value("string"))
    features.setdefault("subset", Value("string"))  # filled with the input's name where a row has none
    features.setdefault("split", Value("string"))  # filled by the merge; a bare table may lack it
    return Features(features)


def _filled(column, name: str) -> pa.Array:
    """``column`` with nulls and empty strings replaced by ``name``."""
    column = column.cast(pa.string())
    return pc.if_else(pc.or_kleene(pc.is_null(column), pc.equal(column, "")), pa.scalar(name), column)


def conform(batch: pa.Table, name: str, schema: pa.Schema) -> pa.Table:
    """A batch of input ``name`` with the merged table's columns: missing ones null, ``subset`` and
    ``provenance`` filled with the input's name where a row has none (tables from `quilt curate` carry neither)."""
    size = len(batch)
    columns = []
    for field_ in schema:
        if field_.name == "subset":
            column = _filled(batch.column("subset") if "subset" in batch.column_names else pa.nulls(size, pa.string()), name)
        elif field_.name == "provenance" and "provenance" in batch.column_names:
            column = pc.fill_null(batch.column("provenance").cast(pa.string()), name)
        elif field_.name == "provenance":
            column = pa.array([name] * size, pa.string())
        elif field_.name in batch.column_names:
            column = batch.column(field_.name)
        else:
            column = pa.nulls(size, field_.type)
        if column.type != field_.type:
            column = column.cast(field_.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _key_column(batch: pa.Table, name: str) -> pa.ChunkedArray | pa.Array:
    if name in batch.column_names:
        column = batch.column(name)
        return column if column.type == pa.string() or name == "image" else column.cast(pa.string())
    return pa.nulls(len(batch), pa.string())


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


class DistinctImages:
    """Distinct images by content, in the order met: per image the row that first holds it and its fingerprint.

    Args:
        on_new (`Callable`, *optional*): called with the bytes of each new distinct image.
    """

    def __init__(self, on_new=None):
        self.first_rows: list[int] = []
        self.fingerprints: list = []
        self._seen: dict[str, int] = {}
        self._on_new = on_new

    def key(self, cell, row: int) -> int:
        """The index of the distinct image in ``cell`` (an image cell of row ``row``); -1 without one."""
        data = _image_bytes(cell)
        if data is None:
            return -1
        digest = content_hash(data)
        key = self._seen.get(digest)
        if key is None:
            key = self._seen[digest] = len(self.first_rows)
            self.first_rows.append(row)
            self.fingerprints.append(fingerprint(data))
            if self._on_new is not None:
                self._on_new(data)
        return key


def image_keys(table: pa.Table, batch_rows: int = 2048) -> tuple[np.ndarray, list[bytes | None], list]:
    """For each row, the index of its distinct image (by content; -1 without an image); and, per distinct
    image, the row that first holds it and its fingerprint."""
    from tqdm.auto import tqdm

    keys = np.full(len(table), -1, dtype=np.int64)
    images = DistinctImages()
    if "image" not in table.column_names or table.column("image").null_count == len(table):
        return keys, images.first_rows, images.fingerprints
    column = table.column("image")
    with tqdm(total=len(table), desc="Fingerprinting images", unit=" rows", mininterval=5) as bar:
        for start in range(0, len(table), batch_rows):
            cells = column.slice(start, batch_rows).to_pylist()
            keys[start : start + len(cells)] = [images.key(cell, start + i) for i, cell in enumerate(cells)]
            bar.update(len(cells))
    return keys, images.first_rows, images.fingerprints


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
    hashed = np.array([SPLITS.index(_hash_split(k, val_fraction, test_fraction)) for k in group_keys], np.int8)
    train = np.nonzero(hashed == 0)[0]
    largest = max(train.tolist(), key=lambda g: group_keys[g]) if len(train) else -1
    return split_codes_from_hashes(group_labels, hashed, largest, release_ranks, val_fraction, test_fraction)


def split_codes_from_hashes(
    group_labels: np.ndarray,
    hashed: np.ndarray,
    largest_train_group: int,
    release_ranks: np.ndarray | None,
    val_fraction: float,
    test_fraction: float,
) -> tuple[np.ndarray, int]:
    """:func:`assign_split_codes` from each group's hashed split (``hashed``, index into :data:`SPLITS`) and the
    training group with the largest key (-1 for none), so that no key string per group need be held."""
    if not 0 <= val_fraction + test_fraction < 1:
        raise UserFacingError("val_fraction + test_fraction must be in [0, 1)")
    if release_ranks is not None:
        wanted = np.full(len(hashed), -1, np.int8)
        np.maximum.at(wanted, group_labels, release_ranks.astype(np.int8))
        group_split = np.where(wanted >= 0, wanted, hashed).astype(np.int8)
        splits = group_split[group_labels]
        return splits, int(((release_ranks >= 0) & (release_ranks != splits)).sum())
    group_split = hashed.astype(np.int8)
    if val_fraction > 0 and (group_split == 0).sum() > 1 and not (group_split == 1).any():
        group_split[largest_train_group] = 1
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


def _small_codes(column, names: dict[str, int], missing_is: int | None = None) -> np.ndarray:
    """Codes of a low-cardinality string column (subset, split) through the growing ``names`` table; nulls get
    ``missing_is`` (or a code of their own when None)."""
    encoded = pc.dictionary_encode(column)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    local = np.array([names.setdefault(v, len(names)) for v in encoded.dictionary.to_pylist()] + [-1], np.int64)
    indices = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    codes_ = local[indices]
    if missing_is is not None:
        codes_[indices < 0] = missing_is
    return codes_


def _flag_bits(batch: pa.Table, reasons_by_key: dict[str, set[str]], reason_bits: dict[str, int]) -> np.ndarray:
    """Bit mask of each row's flag reasons (``reason_bits[reason]`` is its bit), matched by pair key."""
    from quilt_hf.flags import pair_key

    bits = np.zeros(len(batch), np.int64)
    if not reasons_by_key or "image_id" not in batch.column_names:
        return bits
    image_ids = {key.rsplit("#", 1)[0] for key in reasons_by_key}
    image_id = batch.column("image_id").cast(pa.string())
    candidates = np.nonzero(pc.fill_null(pc.is_in(image_id, value_set=pa.array(sorted(image_ids), pa.string())),
                                         False).to_numpy(zero_copy_only=False))[0]
    if not len(candidates):
        return bits
    index = pa.array(candidates)
    captions = _key_column(batch, "caption").take(index).to_pylist()
    for row, value, caption in zip(candidates.tolist(), image_id.take(index).to_pylist(), captions):
        for reason in reasons_by_key.get(pair_key(value, caption), ()):
            bits[row] |= 1 << reason_bits.setdefault(reason, len(reason_bits))
    return bits


def _batch_rows(source, batch_bytes: int = BATCH_BYTES) -> int:
    per_row = getattr(source, "bytes_per_row", 0) or 0
    return int(min(65_536, max(64, batch_bytes // max(per_row, 1))))


def release_free_memory() -> None:
    """Give freed memory back to the system: Arrow's allocator and the C heap (glibc) keep freed pages for reuse,
    which would make the memory a step held show as used by the next one."""
    import ctypes

    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def plan_merge(
    sources: dict,
    *,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    benchmark_fingerprints: dict[str, list] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    keep_release_split: bool = False,
    flags: dict[str, dict[str, set[str]]] | None = None,
    drop_flagged: bool = False,
    report: MergeReport,
    embedder=None,
    embedding_threshold: float | None = None,
) -> MergePlan:
    """Decide the fate of every row of ``sources`` (name -> :class:`~quilt_hf.publishing.tables.PairSource`) in
    one pass over their key columns (and one over their id columns for the split keys).

    Duplicate images (exact or near) point at their group's first image, so each image is stored once per group
    with all its captions; a pair repeated with the same caption on the same image is dropped. Rows whose image is
    a near duplicate of an image of a named benchmark are dropped. With ``flags`` (input name -> pair key ->
    reasons) a merged pair carries the union of its rows' flags, and a merged image the union of its rows' image
    flags (:data:`~quilt_hf.flags.IMAGE_FLAG_REASONS`); with ``drop_flagged`` every row so flagged is dropped,
    with its reasons. Splits never put one video or one image on two sides.

    Args:
        sources (`dict`): input name -> table, read in this order.
        min_similarity (`float`): fingerprint cosine at which two images are the same image.
        benchmark_fingerprints (`dict`, *optional*): benchmark name -> fingerprints of its images.
        val_fraction (`float`), test_fraction (`float`): shares of split groups held out.
        keep_release_split (`bool`): keep the inputs' own ``split`` (the most held-out one per group).
        flags (`dict`, *optional*): reviewer flags per input.
        drop_flagged (`bool`): drop flagged rows.
        embedder (`ImageEmbedder`, *optional*): also merge images whose embeddings reach ``embedding_threshold``
            (:mod:`quilt_hf.publishing.embedding_dedup`; each distinct image is embedded once, in the pass).
        embedding_threshold (`float`, *optional*): cosine for ``embedder``; its default when None.
        report (`MergeReport`): filled with the counts.

    Returns:
        `MergePlan`: what :func:`write_merged` applies.
    """
    from tqdm.auto import tqdm

    from quilt_hf.flags import IMAGE_FLAG_REASONS

    if not 0 <= val_fraction + test_fraction < 1:
        raise UserFacingError("val_fraction + test_fraction must be in [0, 1)")
    total = sum(s.num_rows for s in sources.values())
    # Per row: 2 + 1 + 3 * 8 + 4 + 2 = 33 bytes.
    subset = np.empty(total, np.int16)
    rank = np.full(total, -1, np.int8)
    id_hash, video_hash, caption_hash = (np.empty(total, np.uint64) for _ in range(3))
    image_key = np.full(total, -1, np.int32)
    flag_bits = np.zeros(total, np.int16)
    subset_names: dict[str, int] = {}
    split_names: dict[str, int] = {}
    reason_bits: dict[str, int] = {}
    subsets_of: dict[str, set[int]] = {}
    embeddings = StreamingEmbeddings(embedder) if embedder is not None else None
    images = DistinctImages(on_new=embeddings.add if embeddings is not None else None)
    offset = 0
    with tqdm(total=total, desc="Planning the merge", unit=" rows", mininterval=5) as bar:
        for name, source in sources.items():
            report.rows_in[name] = source.num_rows
            for batch in source.iter_batches(list(KEY_COLUMNS), _batch_rows(source)):
                size, end = len(batch), offset + len(batch)
                if end > total:
                    raise RuntimeError(f"{name}: more rows than its metadata says ({source.num_rows})")
                rows = slice(offset, end)
                subset[rows] = _small_codes(_filled(_key_column(batch, "subset"), name), subset_names)
                subsets_of.setdefault(name, set()).update(np.unique(subset[rows]).tolist())
                if keep_release_split:
                    codes_ = _small_codes(_key_column(batch, "split"), split_names, missing_is=-1)
                    value_rank = np.array([_rank(v) for v in sorted(split_names, key=split_names.get)] + [-1], np.int8)
                    rank[rows] = value_rank[codes_]
                id_hash[rows] = string_hashes(_key_column(batch, "image_id"), empty_is_missing=True)
                video_hash[rows] = string_hashes(_key_column(batch, "video_id"), empty_is_missing=True)
                caption_hash[rows] = string_hashes(_key_column(batch, "caption"))
                image = batch.column("image") if "image" in batch.column_names else None
                if image is not None and image.null_count < size:
                    image_key[rows] = [images.key(cell, offset + i) for i, cell in enumerate(image.to_pylist())]
                flag_bits[rows] = _flag_bits(batch, (flags or {}).get(name, {}), reason_bits)
                offset = end
                bar.update(size)
    if offset != total:
        raise RuntimeError(f"read {offset} rows where the inputs' metadata says {total}")
    first_rows, fingerprints = images.first_rows, images.fingerprints
    del images
    release_free_memory()

    # Duplicate images: rows of a group point at its first image (the group's earliest row holds it).
    report.images = len(first_rows)
    groups = near_duplicate_groups(fingerprints, min_similarity) if first_rows else np.zeros(0, np.int64)
    if embeddings is not None and first_rows:  # optional: embedding similarity on top of the fingerprint
        threshold = DEFAULT_EMBEDDING_THRESHOLD if embedding_threshold is None else embedding_threshold
        combined = combine_groups(groups, near_duplicate_groups(embeddings.finish(), threshold))
        report.embedding_duplicate_images = int((combined != np.arange(len(combined))).sum()
                                                - (groups != np.arange(len(groups))).sum())
        groups = combined
    image_rows = np.nonzero(image_key >= 0)[0]
    report.exact_duplicate_images = len(image_rows) - len(first_rows)
    report.near_duplicate_images = int((groups != np.arange(len(groups))).sum())
    image_group = groups[image_key[image_rows]] if len(image_rows) else np.zeros(0, np.int64)
    canonical = np.asarray(first_rows, np.int64)[image_group] if len(image_rows) else np.zeros(0, np.int64)
    moved = canonical != image_rows
    rewrite_rows, rewrite_to = image_rows[moved], canonical[moved]
    # An exact copy already holds the group's bytes: only its id and path change, so the writer keeps no bytes
    # for it (many rows share one image in the release); a near duplicate takes the first image's bytes too.
    rewrite_bytes = (image_group != image_key[image_rows])[moved] if len(image_rows) else np.zeros(0, bool)
    del moved, image_key

    drop = np.zeros(total, np.int16)
    reasons: list[str] = []

    def mark(rows: np.ndarray, reason: str) -> int:
        rows = rows[drop[rows] == 0]
        if len(rows):
            reasons.append(reason)
            drop[rows] = len(reasons)
        return len(rows)

    # Benchmark images and their near duplicates.
    for name, references in (benchmark_fingerprints or {}).items():
        hit = matches_any(fingerprints, references, min_similarity)
        report.contaminated_images[name] = int(hit.sum())
        report.contaminated_rows[name] = mark(image_rows[np.isin(image_group, np.unique(groups[hit]))],
                                              f"benchmark:{name}")
    del fingerprints

    # Image node of each row: its duplicate group, else its image_id, else the row itself.
    node = id_hash & _LOW_BITS
    alone = np.nonzero(id_hash == MISSING)[0]
    node[alone] = _KIND_ROW | alone.astype(np.uint64)
    node[image_rows] = _KIND_GROUP | image_group.astype(np.uint64)
    has_node = id_hash != MISSING
    has_node[image_rows] = True
    del id_hash, alone, image_group

    # Flags: a pair carries its rows' flags, an image its rows' image flags.
    report.flagged_rows = int((flag_bits != 0).sum())
    if report.flagged_rows:
        bits = flag_bits.astype(np.int64)
        flagged = _union_over(bits, (caption_hash, node))
        image_bits = sum(1 << bit for reason, bit in reason_bits.items() if reason in IMAGE_FLAG_REASONS)
        if image_bits:
            flagged |= _union_over(bits & image_bits, (node,))
        if drop_flagged:
            names = {bit: reason for reason, bit in reason_bits.items()}
            for value in np.unique(flagged[flagged != 0]).tolist():
                reason = "+".join(sorted(names[b] for b in names if value >> b & 1))
                report.flagged_dropped += mark(np.nonzero(flagged == value)[0], f"flagged:{reason}")
        del bits, flagged
    del flag_bits

    # One pair per (image, caption): later rows repeating a pair are dropped (sorted a sixteenth at a time).
    repeat_rows, repeat_of = _repeated_pairs(node, caption_hash, has_node & (drop == 0))
    report.duplicate_pairs_dropped = mark(repeat_rows, "duplicate_pair")
    del caption_hash, has_node
    release_free_memory()

    # Splits: a video's rows and an image's rows never straddle two splits.
    kept = drop == 0
    count, labels = _split_groups_of(node, video_hash, kept)
    kept_rows = np.nonzero(kept)[0]
    first = kept_rows[_first_rows(labels, count)]
    hashed, largest = _hashed_group_splits(sources, first, kept, node, rewrite_rows, rewrite_to, val_fraction,
                                           test_fraction)
    del node, video_hash
    splits, report.release_split_moves = split_codes_from_hashes(
        labels, hashed, largest, rank[kept_rows] if keep_release_split else None, val_fraction, test_fraction)
    report.split_groups = count
    split = np.full(total, -1, np.int8)
    split[kept_rows] = splits
    del labels, splits, kept_rows, rank
    release_free_memory()
    names_by_code = sorted(subset_names, key=subset_names.get)
    sources_of: dict[str, list[str]] = {}
    for name, codes_ in subsets_of.items():
        for code in sorted(codes_):
            sources_of.setdefault(names_by_code[code], []).append(name)
    return MergePlan(
        rows=total,
        subset_names=names_by_code,
        subset=subset,
        split=split,
        drop=drop,
        drop_reasons=reasons,
        rewrite_rows=rewrite_rows,
        rewrite_to=rewrite_to,
        rewrite_bytes=rewrite_bytes,
        repeat_rows=repeat_rows,
        repeat_of=repeat_of,
        repeat_by_id=~np.isin(repeat_rows, image_rows),
        sources=sources_of,
    )


def _repeated_pairs(node: np.ndarray, caption_hash: np.ndarray, eligible: np.ndarray,
                    partitions: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Rows (among ``eligible``) whose (node, caption hash) an earlier row has, and that earlier row. The rows
    are cut into ``partitions`` by their pair hash and each part sorted on its own: the sort's temporaries
    hold a part, not the table."""
    pair = mix64(node ^ mix64(caption_hash))
    part = (pair >> np.uint64(60)).astype(np.int8) if partitions == 16 else (pair % np.uint64(partitions)).astype(np.int8)
    found_rows, found_of = [], []
    for index in range(partitions):
        rows = np.nonzero(eligible & (part == index))[0]
        if len(rows) < 2:
            continue
        rows = rows[np.argsort(pair[rows], kind="stable")]  # equal pairs stay in row order
        same = ((pair[rows[1:]] == pair[rows[:-1]]) & (node[rows[1:]] == node[rows[:-1]])
                & (caption_hash[rows[1:]] == caption_hash[rows[:-1]]))
        if not same.any():
            continue
        run_start = np.concatenate([[True], ~same])
        first_of_run = rows[np.maximum.accumulate(np.where(run_start, np.arange(len(rows)), 0))]
        found_rows.append(rows[1:][same])
        found_of.append(first_of_run[1:][same])
    if not found_rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(found_rows), np.concatenate(found_of)


def _split_groups_of(node: np.ndarray, video_hash: np.ndarray, kept: np.ndarray) -> tuple[int, np.ndarray]:
    """:func:`split_groups` of the kept rows, computed on a graph of their image nodes and videos only (a row
    joins its node to its video): (number of groups, group of each kept row, numbered by first appearance)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nodes, node_code = np.unique(node[kept], return_inverse=True)
    with_video = video_hash[kept] != MISSING
    videos, video_code = np.unique(video_hash[kept][with_video], return_inverse=True)
    size = len(nodes) + len(videos)
    if size == 0:
        return 0, np.zeros(0, np.int64)
    edges = np.unique(np.stack([node_code[with_video], len(nodes) + video_code]), axis=1)
    graph = coo_matrix((np.ones(edges.shape[1], np.int8), (edges[0], edges[1])), shape=(size, size))
    _, component = connected_components(graph, directed=False)
    labels = component[node_code]
    del node_code, component, edges, graph
    first = np.full(int(labels.max()) + 1, len(labels), np.int64)  # number groups by their first row
    np.minimum.at(first, labels, np.arange(len(labels)))
    present = first < len(labels)
    rank = np.full(len(first), -1, np.int64)
    rank[present] = np.argsort(np.argsort(first[present], kind="stable"), kind="stable")
    return int(present.sum()), rank[labels]


def _hashed_group_splits(sources: dict, first: np.ndarray, kept: np.ndarray, node: np.ndarray,
                         rewrite_rows: np.ndarray, rewrite_to: np.ndarray, val_fraction: float,
                         test_fraction: float) -> tuple[np.ndarray, int]:
    """The hashed split of each group and the training group with the largest key, from the group's key: the
    video id of its first row (``first[g]``), else its image id (its duplicate group's first image's), else
    ``row:<position among kept rows>``. One pass over the two id columns; per group only the split is kept."""
    order = np.argsort(first, kind="stable")
    wanted = first[order]
    moved_at = np.searchsorted(rewrite_rows, wanted)
    moved = (moved_at < len(rewrite_rows)) & (rewrite_rows[np.minimum(moved_at, len(rewrite_rows) - 1)] == wanted) \
        if len(rewrite_rows) else np.zeros(len(wanted), bool)
    target_of = dict(zip(wanted[moved].tolist(), rewrite_to[moved_at[moved]].tolist()))
    targets = np.unique(rewrite_to[moved_at[moved]]) if moved.any() else np.zeros(0, np.int64)
    target_ids: dict[int, str | None] = {}
    alone = (node[wanted] & ~_LOW_BITS) == _KIND_ROW
    positions = {}
    if alone.any():
        kept_before = np.cumsum(kept) - 1
        positions = dict(zip(wanted[alone].tolist(), kept_before[wanted[alone]].tolist()))
    hashed = np.zeros(len(first), np.int8)
    largest: tuple[str, int] | None = None
    offset = 0
    for source in sources.values():
        for batch in source.iter_batches(["video_id", "image_id"], _batch_rows(source, 8 * BATCH_BYTES)):
            size = len(batch)
            lo, hi = np.searchsorted(targets, [offset, offset + size])
            if hi > lo:
                local = pa.array(targets[lo:hi] - offset)
                target_ids.update(zip(targets[lo:hi].tolist(), _key_column(batch, "image_id").take(local).to_pylist()))
            lo, hi = np.searchsorted(wanted, [offset, offset + size])
            if hi > lo:
                local = pa.array(wanted[lo:hi] - offset)
                for group, row, video, image in zip(order[lo:hi].tolist(), wanted[lo:hi].tolist(),
                                                    _key_column(batch, "video_id").take(local).to_pylist(),
                                                    _key_column(batch, "image_id").take(local).to_pylist()):
                    if row in target_of:
                        image = target_ids.get(target_of[row])
                    key = video or image or f"row:{positions.get(row, row)}"
                    split = SPLITS.index(_hash_split(key, val_fraction, test_fraction))
                    hashed[group] = split
                    if split == 0 and (largest is None or key > largest[0]):
                        largest = (key, group)
            offset += size
    return hashed, largest[1] if largest is not None else -1


def _union_over(bits: np.ndarray, key_arrays: tuple[np.ndarray, ...]) -> np.ndarray:
    """For each row, the OR of ``bits`` over all rows with the same keys (the last of ``key_arrays`` sorts first)."""
    order = np.lexsort(key_arrays)
    keys = [k[order] for k in key_arrays]
    start = np.ones(len(order), bool)
    if len(order) > 1:
        start[1:] = np.logical_or.reduce([k[1:] != k[:-1] for k in keys])
    run = np.cumsum(start) - 1
    union = np.zeros(int(run[-1]) + 1 if len(run) else 0, np.int64)
    np.bitwise_or.at(union, run, bits[order])
    result = np.empty_like(bits)
    result[order] = union[run]
    return result


def write_merged(sources: dict, plan: MergePlan, features: Features, writer, drops, stats=None) -> dict[str, int]:
    """Second pass: every row of ``sources`` to ``writer`` (a :class:`~quilt_hf.publishing.hub.ShardSetWriter`,
    parts named by subset) or to ``drops`` (``drops.add(reason, image_id=..., provenance=...)``), applying
    ``plan``. A planned repeated-pair drop is made only when the caption text (and, for rows without an image,
    the image id) really equals the kept row's: a hash collision never loses a row. Besides one batch, this pass
    holds the image of each duplicate group's first row (other rows point at it) until the end: state per
    duplicate group, none per row.

    Returns:
        `dict`: ``{"rows_in", "rows_out", "dropped"}``.
    """
    from tqdm.auto import tqdm

    schema = features.arrow_schema
    split_names = pa.array(list(SPLITS) + [None], pa.string())
    targets = np.unique(plan.rewrite_to)
    byte_targets = np.unique(plan.rewrite_to[plan.rewrite_bytes])  # images whose bytes near duplicates take
    order = np.argsort(plan.rewrite_rows, kind="stable")
    rewrite_rows, rewrite_to = plan.rewrite_rows[order], plan.rewrite_to[order]
    rewrite_bytes = plan.rewrite_bytes[order]
    repeat_order = np.argsort(plan.repeat_rows, kind="stable")
    repeat_rows, repeat_of = plan.repeat_rows[repeat_order], plan.repeat_of[repeat_order]
    repeat_by_id = plan.repeat_by_id[repeat_order]
    originals = np.unique(repeat_of)
    canonical_cells: dict[int, tuple] = {}
    original_pairs: dict[int, tuple] = {}
    image_columns = [c for c in ("image", "image_id", "image_path") if c in schema.names]
    split = plan.split.copy()
    drop = plan.drop.copy()
    rows_out = dropped = offset = 0
    with tqdm(total=plan.rows, desc="Writing shards", unit=" rows", mininterval=5) as bar:
        for name, source in sources.items():
            for batch in source.iter_batches(None, _batch_rows(source)):
                table = conform(batch, name, schema)
                size, end = len(table), offset + len(table)
                rows = slice(offset, end)
                # Remember what later rows need: the images others point at, the pairs others repeat.
                lo, hi = np.searchsorted(targets, [offset, end])
                if hi > lo:
                    local = pa.array(targets[lo:hi] - offset)
                    with_bytes = np.isin(targets[lo:hi], byte_targets)
                    cells = zip(*(table.column(c).take(local).to_pylist() if c != "image"
                                  else [cell if keep else None for cell, keep in
                                        zip(table.column(c).take(local).to_pylist(), with_bytes.tolist())]
                                  for c in image_columns))
                    canonical_cells.update(zip(targets[lo:hi].tolist(), cells))
                lo, hi = np.searchsorted(originals, [offset, end])
                if hi > lo:
                    local = pa.array(originals[lo:hi] - offset)
                    pairs = zip(table.column("caption").take(local).to_pylist(),
                                table.column("image_id").take(local).to_pylist())
                    original_pairs.update(zip(originals[lo:hi].tolist(), pairs))
                # Repeated pairs: confirm with the text before dropping.
                lo, hi = np.searchsorted(repeat_rows, [offset, end])
                if hi > lo:
                    local = pa.array(repeat_rows[lo:hi] - offset)
                    for row, of, by_id, caption, image_id in zip(
                        repeat_rows[lo:hi].tolist(), repeat_of[lo:hi].tolist(), repeat_by_id[lo:hi].tolist(),
                        table.column("caption").take(local).to_pylist(), table.column("image_id").take(local).to_pylist(),
                    ):
                        kept_caption, kept_id = original_pairs[of]
                        if caption != kept_caption or (by_id and image_id != kept_id):
                            logger.warning("row %d: a hash collision, not a repeated pair; kept", row)
                            drop[row], split[row] = 0, split[of]
                # Drops, with the row's own image id.
                dropping = np.nonzero(drop[rows])[0]
                if len(dropping):
                    local = pa.array(dropping)
                    for code, image_id, where in zip(drop[rows][dropping].tolist(),
                                                     table.column("image_id").take(local).to_pylist(),
                                                     table.column("provenance").take(local).to_pylist()):
                        drops.add(plan.drop_reasons[code - 1], image_id=image_id, provenance=where)
                    dropped += len(dropping)
                # Rows of duplicate images point at their group's first image.
                lo, hi = np.searchsorted(rewrite_rows, [offset, end])
                if hi > lo:
                    for position, column in enumerate(image_columns):
                        chosen = slice(lo, hi) if column != "image" else np.nonzero(rewrite_bytes[lo:hi])[0] + lo
                        rows_ = rewrite_rows[chosen]
                        if not len(rows_):
                            continue
                        index = np.arange(size, dtype=np.int64)
                        index[rows_ - offset] = size + np.arange(len(rows_))
                        extra = pa.array([canonical_cells[t][position] for t in rewrite_to[chosen].tolist()],
                                         schema.field(column).type)
                        merged = pa.concat_arrays([table.column(column).combine_chunks(), extra]).take(pa.array(index))
                        table = table.set_column(table.schema.get_field_index(column), schema.field(column), merged)
                split_codes = split[rows].astype(np.int64)
                table = table.set_column(table.schema.get_field_index("split"), schema.field("split"),
                                         split_names.take(pa.array(np.where(split_codes >= 0, split_codes, len(SPLITS)))))
                keep = drop[rows] == 0
                part_key = np.where(keep, plan.subset[rows].astype(np.int64) * 8 + split_codes, -1)
                for key in np.unique(part_key[keep]).tolist():
                    part = table.filter(pa.array(part_key == key))
                    writer.write(plan.subset_names[key // 8], SPLITS[key % 8], part)
                    if stats is not None:
                        stats.add(part)
                    rows_out += len(part)
                offset = end
                bar.update(size)
                del table, batch
                release_free_memory()  # per batch: the allocators would otherwise keep each batch's pages
    if rows_out + dropped != plan.rows:
        raise RuntimeError(f"row accounting broken: {plan.rows} in, {rows_out} out, {dropped} dropped")
    return {"rows_in": plan.rows, "rows_out": rows_out, "dropped": dropped}



"""Read a pairs dataset page by page, without loading it into memory.

:class:`PairStore` opens a Hub-layout folder (parquet shards), a ``save_to_disk`` folder (memory-mapped Arrow)
or a Hub dataset name (downloaded parquet files, or the local Hugging Face cache offline) as a
``pyarrow.dataset.Dataset``. Only the small facet columns used for filtering (subset, split, pathology,
magnification, video, chunk) are read whole, once; a page reads just its rows through ``Dataset.take``, the images
of those rows included.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quilt_hf.errors import UserFacingError

logger = logging.getLogger(__name__)

FACET_COLUMNS = ("subset", "split", "pathology", "magnification", "video_id", "chunk_id", "image_id")
#: Columns shown as text in the detail view, in this order (others follow).
TEXT_COLUMNS = ("caption", "medical_text", "roi_text", "corrected_text", "noisy_text")
MAGNIFICATION_NAMES = {-1: "not stated", 0: "<=10x", 1: "10-20x", 2: ">20x"}


@dataclass(frozen=True)
class Filters:
    """What the Browse tab filters on; empty / None means any."""

    subset: str = ""
    split: str = ""
    pathology: str = ""
    magnification: int | None = None
    video_id: str = ""

    def is_empty(self) -> bool:
        return self == Filters()


def _hub_files(repo_id: str) -> list[Path]:
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(repo_id, repo_type="dataset", allow_patterns=["*.parquet", "*.md"])
    except Exception as error:  # offline and not cached, or no such repository
        raise UserFacingError(
            f"--dataset {repo_id}: not a folder here and could not be fetched from the Hub ({error}); "
            "give a local folder (a `quilt publish` output or a `quilt curate` pairs table)"
        ) from error
    return sorted(Path(folder).rglob("*.parquet"))


def open_arrow_dataset(source: str | os.PathLike):
    """A ``pyarrow.dataset.Dataset`` over a pairs dataset, and the local folder it lives in (None for Hub names).

    Args:
        source: a Hub-layout folder (``data/*.parquet``), a folder of parquet files, a ``save_to_disk`` folder, a
            single parquet file, or a Hub dataset name ``org/name``.
    """
    import pyarrow as pa
    import pyarrow.dataset as pads

    path = Path(source)
    if path.is_file() and path.suffix == ".parquet":
        return pads.dataset([str(path)], format="parquet"), path.parent
    if path.is_dir():
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            from datasets import Dataset, DatasetDict, load_from_disk

            loaded = load_from_disk(str(path))  # memory-mapped: nothing is read yet
            parts = list(loaded.values()) if isinstance(loaded, DatasetDict) else [loaded]
            tables = []
            for part in parts:
                if not isinstance(part, Dataset):
                    continue
                if part._indices is not None:  # a selection not yet flattened
                    part = part.flatten_indices()
                tables.append(part.data.table)
            table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
            return pads.dataset(table), path
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise UserFacingError(
                f"--dataset {path}: no parquet files and no save_to_disk table in this folder; point it at a "
                "`quilt publish` output or a `quilt curate` pairs folder"
            )
        return pads.dataset([str(f) for f in files], format="parquet"), path
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", str(source)) and not path.exists():  # a Hub name, org/name
        return pads.dataset([str(f) for f in _hub_files(str(source))], format="parquet"), None
    raise UserFacingError(f"--dataset {source}: no such folder or file")


def decode_image(value):
    """A PIL image from an ``Image`` feature cell (``{"bytes", "path"}``), or None."""
    from PIL import Image

    if not value:
        return None
    if value.get("bytes"):
        return Image.open(io.BytesIO(value["bytes"]))
    if value.get("path") and Path(value["path"]).is_file():
        return Image.open(value["path"])
    return None


class RowReader:
    """Reads rows by number, touching only the parquet row groups that hold them.

    ``pyarrow.dataset.Dataset.take`` scans the dataset from the start up to the last index asked for, so a page near
    the end of a million rows costs a read of nearly all of it. Here each parquet file's row-group sizes (footer
    metadata) give every row group's first row number; a page reads its one or two row groups (the images of a
    published dataset are written in row groups of about 100 rows), and the last few are kept. An in-memory
    (memory-mapped) table is read with ``Table.take``.
    """

    def __init__(self, dataset, cache_size: int = 8):
        import pyarrow.dataset as pads

        self.table = dataset.to_table() if isinstance(dataset, pads.InMemoryDataset) else None
        self.files: list = []
        starts, groups = [0], []
        if self.table is None:
            import pyarrow.parquet as pq

            for number, path in enumerate(dataset.files):
                handle = pq.ParquetFile(path)
                self.files.append(handle)
                for group in range(handle.metadata.num_row_groups):
                    groups.append((number, group))
                    starts.append(starts[-1] + handle.metadata.row_group(group).num_rows)
        self.groups = groups
        self.starts = np.asarray(starts, dtype=np.int64)
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _row_group(self, index: int, columns: tuple[str, ...]):
        key = (index, columns)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            number, group = self.groups[index]
            table = self.files[number].read_row_group(group, columns=list(columns))
            self._cache[key] = table
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return table

    def take(self, sorted_rows: np.ndarray, columns: list[str]):
        """A table of ``sorted_rows`` (ascending row numbers) with ``columns``."""
        import pyarrow as pa

        if self.table is not None:
            return self.table.select(columns).take(pa.array(sorted_rows))
        group_of_row = np.searchsorted(self.starts, sorted_rows, side="right") - 1
        parts = []
        for index in np.unique(group_of_row):
            local = sorted_rows[group_of_row == index] - self.starts[index]
            parts.append(self._row_group(int(index), tuple(columns)).take(pa.array(local)))
        return pa.concat_tables(parts)


class PairStore:
    """Paged, filtered access to a pairs dataset.

    Args:
        source (`str`): see :func:`open_arrow_dataset`.
        cache_dir (`str`, *optional*): where search indexes and embeddings are cached; default: a folder beside
            the dataset (``<folder>.quilt-app-cache``), or ``$QUILT_HF_HOME/app-cache/<name>`` for Hub names.
    """

    def __init__(self, source: str | os.PathLike, cache_dir: str | os.PathLike | None = None):
        self.source = str(source)
        self.dataset, self.folder = open_arrow_dataset(source)
        self.columns = list(self.dataset.schema.names)
        if "image" not in self.columns or "caption" not in self.columns:
            raise UserFacingError(
                f"--dataset {source}: not a pairs table (needs image and caption columns; has {self.columns})"
            )
        self.fingerprint = self._fingerprint()
        if cache_dir is None:
            if self.folder is not None:
                cache_dir = self.folder.with_name(self.folder.name + ".quilt-app-cache")
            else:
                from quilt_hf.models import quilt_home

                cache_dir = Path(quilt_home()) / "app-cache" / self.source.replace("/", "__")
        self.cache_dir = Path(cache_dir)
        self._reader = RowReader(self.dataset)
        facet_columns = [c for c in FACET_COLUMNS if c in self.columns]
        self.facets = self.dataset.to_table(columns=facet_columns)
        self.num_rows = self.facets.num_rows
        self._selections: OrderedDict[Filters, np.ndarray] = OrderedDict()
        self._histology_scores: dict[str, float] | None = None
        self._videos: dict[str, dict] | None = None
        logger.info("dataset %s: %d pairs", self.source, self.num_rows)

    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        for file in getattr(self.dataset, "files", None) or []:
            stat = os.stat(file)
            digest.update(f"{file}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        if not getattr(self.dataset, "files", None) and self.folder is not None:
            for file in sorted(self.folder.glob("*.arrow")):
                stat = file.stat()
                digest.update(f"{file}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        digest.update(str(self.dataset.schema).encode())
        return digest.hexdigest()[:16]

    # ---- facets -------------------------------------------------------------------------------------------
    def choices(self, column: str, limit: int = 1000) -> list[str]:
        """Distinct values of a facet column (flattened for lists), sorted; at most ``limit``."""
        import pyarrow.compute as pc

        if column not in self.facets.column_names:
            return []
        values = self.facets[column]
        if column == "pathology":
            values = pc.list_flatten(values)
        unique = sorted(str(v) for v in pc.unique(values).to_pylist() if v not in (None, ""))
        return unique[:limit]

    def select(self, filters: Filters = Filters()) -> np.ndarray:
        """Row numbers matching ``filters`` (cached for the last few filter settings)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if filters in self._selections:
            self._selections.move_to_end(filters)
            return self._selections[filters]
        mask = np.ones(self.num_rows, dtype=bool)
        for column, value in (("subset", filters.subset), ("split", filters.split), ("video_id", filters.video_id)):
            if value and column in self.facets.column_names:
                mask &= pc.fill_null(pc.equal(self.facets[column], value), False).to_numpy(zero_copy_only=False)
        if filters.magnification is not None and "magnification" in self.facets.column_names:
            column = pc.cast(self.facets["magnification"], pa.int64())
            mask &= pc.fill_null(pc.equal(column, filters.magnification), False).to_numpy(zero_copy_only=False)
        if filters.pathology and "pathology" in self.facets.column_names:
            lists = self.facets["pathology"]
            hits = pc.equal(pc.list_flatten(lists), filters.pathology).to_numpy(zero_copy_only=False)
            parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
            has = np.zeros(self.num_rows, dtype=bool)
            has[parents[hits]] = True
            mask &= has
        rows = np.flatnonzero(mask)
        self._selections[filters] = rows
        while len(self._selections) > 16:
            self._selections.popitem(last=False)
        return rows

    # ---- rows ---------------------------------------------------------------------------------------------
    def take(self, rows, columns: list[str] | None = None) -> list[dict]:
        """The given rows as dicts (``columns`` only, default all), in the order given."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return []
        order = np.argsort(rows, kind="stable")
        records = self._reader.take(rows[order], columns or self.columns).to_pylist()
        out: list[dict] = [{}] * len(rows)
        for position, record in zip(order, records):
            record["_row"] = int(rows[position])
            out[position] = record
        return out

    def page(self, filters: Filters = Filters(), page: int = 0, page_size: int = 24) -> tuple[list[dict], int]:
        """One page of pairs (with images) and the number of matching pairs."""
        rows = self.select(filters)
        start = max(0, page) * page_size
        return self.take(rows[start : start + page_size], columns=self.card_columns()), len(rows)

    def card_columns(self) -> list[str]:
        wanted = ("image", "caption", "image_id", "video_id", "chunk_id", "split", "subset")
        return [c for c in wanted if c in self.columns]

    def row(self, row: int) -> dict:
        """Every column of one row (the image decoded to a PIL image)."""
        if not 0 <= row < self.num_rows:
            raise UserFacingError(f"row {row} is out of range (0..{self.num_rows - 1})")
        record = self.take([row])[0]
        record["image"] = decode_image(record.get("image"))
        return record

    def same_chunk(self, row: int, limit: int = 12) -> list[int]:
        """Rows of the images cut from the same chunk of the same video (the row itself included)."""
        import pyarrow.compute as pc

        if not {"video_id", "chunk_id"} <= set(self.facets.column_names):
            return [row]
        video = self.facets["video_id"][row].as_py()
        chunk = self.facets["chunk_id"][row].as_py()
        mask = pc.and_(pc.equal(self.facets["video_id"], video), pc.equal(self.facets["chunk_id"], chunk))
        return np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))[:limit].tolist()

    def histology_score(self, record: dict) -> float | None:
        """The image's histology score: a ``histology_score`` column, else the curated chunks table beside it."""
        if record.get("histology_score") is not None:
            return float(record["histology_score"])
        if self._histology_scores is None:
            self._histology_scores = self._load_histology_scores()
        return self._histology_scores.get(record.get("image_id", ""))

    def _curated_table(self, name: str, columns: set[str]):
        """A table of the curation output beside the dataset (``<name>/`` next to a pairs folder, or
        ``curated/<name>/`` next to a published folder) with ``columns``, memory-mapped; None if there is none."""
        if self.folder is None:
            return None
        for folder in (self.folder.parent / name, self.folder.parent / "curated" / name):
            if (folder / "state.json").is_file():
                from datasets import load_from_disk

                table = load_from_disk(str(folder))
                if columns <= set(table.column_names):
                    return table.data.table.select(sorted(columns))
        return None

    def _load_histology_scores(self) -> dict[str, float]:
        table = self._curated_table("chunks", {"image_id", "histology_score"})
        if table is None:
            return {}
        return dict(zip(table["image_id"].to_pylist(), table["histology_score"].to_pylist()))

    def video_location(self, video_id: str, start: float = 0.0) -> str:
        """Where a video can be watched: its URL (YouTube links jump to ``start``) or local path, from the curated
        videos table beside the dataset; "" when unknown."""
        if self._videos is None:
            table = self._curated_table("videos", {"video_id", "url", "path"})
            self._videos = {} if table is None else {r["video_id"]: r for r in table.to_pylist()}
        video = self._videos.get(video_id)
        if not video:
            return ""
        url = video.get("url") or ""
        if "youtube.com/watch" in url or "youtu.be/" in url:
            return f"{url}{'&' if '?' in url else '?'}t={int(start)}s"
        return url or video.get("path") or ""

    def iter_batches(self, columns: list[str], batch_size: int = 1024):
        """Record batches of ``columns`` over the whole dataset, in row order."""
        yield from self.dataset.to_batches(columns=columns, batch_size=batch_size)

"""Pairs tables on disk: a streaming writer (parquet shards typed with ``PAIR_FEATURES``), the drop log that
goes with it, and one loader for every shape a pairs table comes in.

An imported table is a folder of ``pairs-NNNNN.parquet`` shards whose schema carries the ``datasets`` features
(so ``load_dataset("parquet", ...)`` types the ``image`` column as an image), ``drops.jsonl`` (one line per input
row that is not in the table, with its reason) and ``report.json`` (the counts). Rows are written in batches, so
memory stays flat in the number of rows.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from datasets import Dataset, Features, Value

from quilt_hf.errors import UserFacingError
from quilt_hf.schema import PAIR_FEATURES, empty_row

logger = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 10_000
DEFAULT_SHARD_BYTES = 256 * 1024 * 1024
#: Columns added to ``PAIR_FEATURES`` by every importer: where the row came from.
PROVENANCE_FEATURES = {
    "provenance": Value("string"),  # input file (or dataset) and row, "lookup.csv:17"
}


def pair_features(extra: dict | None = None) -> Features:
    """``PAIR_FEATURES`` plus the provenance column plus ``extra`` (name -> feature)."""
    return Features({**PAIR_FEATURES, **PROVENANCE_FEATURES, **(extra or {})})


class DropLog:
    """Rows that did not make it into a table, each with a reason; written as JSON lines as they come."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = self.path.open("w", encoding="utf-8")
        self.counts: Counter[str] = Counter()

    def add(self, reason: str, **where) -> None:
        self.counts[reason] += 1
        self._file.write(json.dumps({"reason": reason, **where}, ensure_ascii=False) + "\n")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        self._file.close()


class PairTableWriter:
    """Write rows (dicts over ``features``) to parquet shards in ``folder``, a batch at a time.

    Args:
        folder (`str` or `Path`): where the shards go (created).
        features (`Features`): the table's columns; missing keys of a row take :func:`empty_row` defaults.
        batch_rows (`int`): rows buffered before a write.
        max_shard_bytes (`int`): a new shard starts once a shard holds this many bytes of Arrow data.
    """

    def __init__(
        self,
        folder: str | Path,
        features: Features,
        *,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        max_shard_bytes: int = DEFAULT_SHARD_BYTES,
    ):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.features = features
        self.schema = features.arrow_schema
        self.defaults = empty_row(features)
        self.batch_rows = batch_rows
        self.max_shard_bytes = max_shard_bytes
        self._rows: list[dict] = []
        self._writer = None
        self._shard_bytes = 0
        self.num_shards = 0
        self.num_rows = 0

    def write(self, row: dict) -> None:
        self._rows.append(row)
        if len(self._rows) >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = self._rows
        if not rows:
            return
        present: set[str] = set()
        for keys in {tuple(row) for row in rows}:  # rows of one source share their keys: few distinct tuples
            present.update(keys)
        columns = {
            name: [row.get(name, default) for row in rows] if name in present else [default] * len(rows)
            for name, default in self.defaults.items()
        }
        table = pa.Table.from_pydict(columns, schema=self.schema)
        if self._writer is None or self._shard_bytes >= self.max_shard_bytes:
            self._close_writer()
            path = self.folder / f"pairs-{self.num_shards:05d}.parquet"
            self._writer = pq.ParquetWriter(str(path), self.schema)
            self.num_shards += 1
            self._shard_bytes = 0
        self._writer.write_table(table)
        self._shard_bytes += table.nbytes
        self.num_rows += len(rows)
        self._rows = []

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self) -> None:
        self.flush()
        if self.num_shards == 0:  # an empty table is still a table
            import pyarrow.parquet as pq

            pq.write_table(self.features.arrow_schema.empty_table(), str(self.folder / "pairs-00000.parquet"))
            self.num_shards = 1
        self._close_writer()


class PairSource:
    """One pairs table on disk, read a batch at a time (nothing is memory-mapped or converted: publishing a
    million rows holds one batch of them, not the table).

    Args:
        path (`str` or `Path`): any shape :func:`load_pairs` accepts.

    Attributes:
        features (`Features`): the table's columns.
        num_rows (`int`): its rows.
        bytes_per_row (`int`): uncompressed bytes of a row on average (to size batches).
    """

    def __init__(self, path: str | Path):
        import pyarrow.parquet as pq
        from datasets import load_from_disk

        from quilt_hf.atomic import read_set_ready

        self.path = Path(path)
        read_set_ready(self.path.parent)  # a `quilt curate` output whose commit was interrupted: finish it first
        self.kind = "parquet"
        if self.path.is_dir() and (self.path / "state.json").is_file():
            dataset = load_from_disk(str(self.path))  # memory-mapped: reads the features and the file list only
            if not isinstance(dataset, Dataset):
                raise UserFacingError(f"{self.path}: expected one pairs table, found {type(dataset).__name__}")
            if dataset._indices is not None:
                raise UserFacingError(f"{self.path}: a table saved with an indices mapping; save it flattened")
            self.kind, self.files = "arrow", [f["filename"] for f in dataset.cache_files]
            self.features, self.num_rows = dataset.features, len(dataset)
            self.bytes_per_row = sum(Path(f).stat().st_size for f in self.files) // max(self.num_rows, 1)
            return
        self.files = _parquet_files(self.path)
        schema = pq.read_schema(self.files[0])
        self.features = Features.from_arrow_schema(schema)
        metadata = [pq.read_metadata(f) for f in self.files]
        self.num_rows = sum(m.num_rows for m in metadata)
        data_bytes = sum(m.row_group(i).total_byte_size for m in metadata for i in range(m.num_row_groups))
        self.bytes_per_row = data_bytes // max(self.num_rows, 1)  # uncompressed: what a batch holds in memory

    def iter_batches(self, columns: list[str] | None = None, batch_rows: int = 65_536):
        """Yield the table as ``pyarrow.Table`` batches (``columns`` only, when given; each at most
        ``batch_rows`` rows for parquet, one record batch of the file for ``save_to_disk`` tables)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        wanted = None if columns is None else [c for c in columns if c in self.features]
        for file in self.files:
            if self.kind == "arrow":
                with pa.OSFile(file) as handle:  # read, not memory-mapped: pages do not stay resident
                    reader = pa.ipc.open_stream(handle)
                    for batch in reader:
                        table = pa.Table.from_batches([batch])
                        yield table.select(wanted) if wanted is not None else table
            else:
                parquet = pq.ParquetFile(file, pre_buffer=False)  # pre-buffering holds whole row groups
                present = None if wanted is None else [c for c in wanted if c in parquet.schema_arrow.names]
                for batch in parquet.iter_batches(batch_size=batch_rows, columns=present, use_threads=False):
                    yield pa.Table.from_batches([batch])


def _parquet_files(path: Path) -> list[str]:
    if path.is_file() and path.suffix == ".parquet":
        files = [str(path)]
    elif path.is_dir():
        files = sorted(str(p) for p in path.glob("pairs-*.parquet")) or sorted(
            str(p) for p in path.glob("data/**/*.parquet")
        )
    else:
        files = []
    if not files:
        raise UserFacingError(
            f"--dataset {path}: not a pairs table (expected the output of `quilt curate`, `quilt import`, "
            "a Hub-layout folder or a parquet file)"
        )
    return files


def load_pairs(path: str | Path) -> Dataset:
    """Load a pairs table from any of its shapes: a ``save_to_disk`` folder (``quilt curate``), a folder of
    parquet shards (``quilt import``), a Hub-layout folder, or one parquet file.

    Raises:
        UserFacingError: a path that holds none of these.
    """
    from datasets import load_dataset, load_from_disk

    from quilt_hf.atomic import read_set_ready

    path = Path(path)
    read_set_ready(path.parent)  # a `quilt curate` output whose commit was interrupted: finish it first
    if path.is_dir() and (path / "state.json").is_file():
        pairs = load_from_disk(str(path))
        if not isinstance(pairs, Dataset):
            raise UserFacingError(f"{path}: expected one pairs table, found {type(pairs).__name__}")
        return pairs
    files = _parquet_files(path)
    return load_dataset("parquet", data_files=files, split="train")

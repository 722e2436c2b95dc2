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
    return load_dataset("parquet", data_files=files, split="train")

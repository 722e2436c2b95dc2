"""Hub layout: write a dataset as a folder the Hub (and ``load_dataset(folder)``) reads, and push it.

A Hub-layout folder is ``README.md`` (a dataset card whose YAML ``configs`` names the data files) plus
``data/<split>-NNNNN-of-NNNNN.parquet`` shards with images embedded as bytes, so the folder is
self-contained. ``load_dataset(folder)`` works offline; ``push_to_hub`` uploads the same files.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from datasets import Dataset, DatasetDict

from quilt_hf.atomic import recover_dir as recover_folder
from quilt_hf.atomic import staging_dir
from quilt_hf.atomic import swap_dir as swap_in
from quilt_hf.errors import UserFacingError

logger = logging.getLogger(__name__)

DEFAULT_MAX_SHARD_BYTES = 500 * 1024 * 1024
DATASET_CARD_TEMPLATE = "dataset_card.md"
#: What a Hub-layout folder written here may hold (anything else means it is not ours to replace).
HUB_FOLDER_ENTRIES = {"README.md", "data", ".gitattributes", "stats", "stats.json", "drops.jsonl"}
BENCHMARK_CARD_TEMPLATE = "benchmark_card.md"


def _embed_external_files(dataset: Dataset) -> Dataset:
    """Replace image/audio paths by their bytes, as ``push_to_hub`` does, so shards are self-contained."""
    from datasets.features.features import require_decoding
    from datasets.table import embed_table_storage

    if not any(require_decoding(f, ignore_decode_attribute=True) for f in dataset.features.values()):
        return dataset
    if not _has_unembedded_files(dataset):
        return dataset
    return dataset.with_format("arrow").map(embed_table_storage, batched=True, desc="Embedding images").with_format(
        None
    )


def _has_unembedded_files(dataset: Dataset) -> bool:
    """False when every top-level image/audio cell already holds its bytes (or is null): nothing to embed."""
    from datasets import Audio, Image
    from datasets.features.features import require_decoding

    if any(require_decoding(f, ignore_decode_attribute=True) and not isinstance(f, (Image, Audio))
           for f in dataset.features.values()):
        return True  # nested images: let datasets walk them
    table = dataset.data.table if dataset._indices is None else dataset.flatten_indices().data.table
    return table_needs_embedding(table, dataset.features)


def _holds_paths(column) -> bool:
    """True when some cell of an Image/Audio column has a path but no bytes (it must be read to be embedded)."""
    import pyarrow.compute as pc

    if column.null_count == len(column):
        return False
    path_only = pc.and_(pc.is_null(pc.struct_field(column, "bytes")), pc.is_valid(pc.struct_field(column, "path")))
    return bool(pc.any(path_only).as_py())


def write_shards(dataset: Dataset, folder: Path, split: str, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> int:
    """Write ``dataset`` as ``folder/<split>-NNNNN-of-NNNNN.parquet`` shards of about ``max_shard_bytes`` each,
    images embedded; returns the number of shards."""
    embedded = _embed_external_files(dataset)
    if embedded._indices is not None:
        embedded = embedded.flatten_indices()
    return write_table_shards(embedded.data.table, embedded.features, folder, split, max_shard_bytes)


def write_table_shards(table, features, folder: Path, split: str, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> int:
    """:func:`write_shards` for an Arrow table whose images already hold their bytes (no ``Dataset`` is built:
    building one fingerprints, and so copies, an in-memory table)."""
    import pyarrow.parquet as pq
    from datasets import Image

    folder.mkdir(parents=True, exist_ok=True)
    size = table.nbytes or 1
    shards = max(1, min(len(table), int(size / max_shard_bytes) + 1)) if len(table) else 1
    schema = features.arrow_schema  # carries the `datasets` features, so images load as images
    table = table.cast(schema)
    has_images = any(isinstance(f, Image) for f in features.values())
    group_rows = 100 if has_images else 10_000  # small row groups for images, as datasets writes them
    per_shard = -(-len(table) // shards) if len(table) else 0
    for index in range(shards):
        part = table.slice(index * per_shard, per_shard)
        # Row groups are written one slice at a time: memory holds one row group, not the shard.
        with pq.ParquetWriter(str(folder / f"{split}-{index:05d}-of-{shards:05d}.parquet"), schema) as writer:
            for offset in range(0, max(len(part), 1), group_rows):
                writer.write_table(part.slice(offset, group_rows), row_group_size=group_rows)
    logger.info("wrote %s/%s: %d rows in %d shard(s)", folder.name, split, len(table), shards)
    return shards


class ShardSetWriter:
    """Parquet shards for several parts of a dataset (``folder/<part>/<split>-NNNNN-of-NNNNN.parquet``), written
    as rows arrive in any order and amount: each part buffers at most one row group (and all parts together at
    most :attr:`MAX_BUFFERED_BYTES`: past it the largest buffer is written as a shorter row group, so many
    subsets do not multiply the memory), a shard closes once it holds about ``max_shard_bytes`` of Arrow data,
    and shards get their ``-of-NNNNN`` names in :meth:`close`.

    Args:
        folder (`Path`): the ``data`` folder.
        features (`Features`): the columns (their ``datasets`` types go into every shard's schema).
        max_shard_bytes (`int`): target size of a shard.
    """

    MAX_BUFFERED_BYTES = 64 * 1024 * 1024

    def __init__(self, folder: Path, features, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES):
        from datasets import Image

        self.folder = Path(folder)
        self.features = features
        self.schema = features.arrow_schema  # carries the `datasets` features, so images load as images
        self.max_shard_bytes = max(1, int(max_shard_bytes))
        self._image_columns = [name for name, f in features.items() if isinstance(f, Image)]
        self._group_rows: dict[tuple[str, str], int] = {}
        self._buffers: dict[tuple[str, str], list] = {}
        self._buffered: dict[tuple[str, str], int] = {}
        self._buffered_bytes: dict[tuple[str, str], int] = {}
        self._writers: dict[tuple[str, str], object] = {}
        self._shard_bytes: dict[tuple[str, str], int] = {}
        self._shards: dict[tuple[str, str], list[Path]] = {}
        self.rows: dict[tuple[str, str], int] = {}

    def write(self, part: str, split: str, table) -> None:
        """Add rows (a table with the writer's schema; image paths are embedded as bytes) to ``part/split``."""
        if not len(table):
            return
        if table_needs_embedding(table, self.features):
            from datasets.table import embed_table_storage

            table = embed_table_storage(table)
        key = (part, split)
        if key not in self._group_rows:  # small row groups for images, as datasets writes them; not for text
            has_images = any(table.column(c).null_count < len(table) for c in self._image_columns)
            self._group_rows[key] = 100 if has_images else 10_000
        self._buffers.setdefault(key, []).append(table)
        self._buffered[key] = self._buffered.get(key, 0) + len(table)
        self._buffered_bytes[key] = self._buffered_bytes.get(key, 0) + table.nbytes
        self.rows[key] = self.rows.get(key, 0) + len(table)
        if self._buffered[key] >= self._group_rows[key]:
            self._flush(key, final=False)
        while sum(self._buffered_bytes.values()) > self.MAX_BUFFERED_BYTES:
            self._flush(max(self._buffered_bytes, key=self._buffered_bytes.get), final=True)

    def _flush(self, key: tuple[str, str], final: bool) -> None:
        import pyarrow as pa

        pending = pa.concat_tables(self._buffers.pop(key)).combine_chunks() if key in self._buffers else None
        self._buffered[key] = self._buffered_bytes[key] = 0
        if pending is None:
            return
        group_rows = self._group_rows[key]
        whole = len(pending) if final else len(pending) - len(pending) % group_rows
        for offset in range(0, whole, group_rows):
            self._write_group(key, pending.slice(offset, min(group_rows, whole - offset)))
        if whole < len(pending):  # copied: a slice would keep all of ``pending`` alive
            rest = pending.take(pa.array(range(whole, len(pending))))
            self._buffers[key], self._buffered[key], self._buffered_bytes[key] = [rest], len(rest), rest.nbytes

    def _write_group(self, key: tuple[str, str], rows) -> None:
        import pyarrow.parquet as pq

        while len(rows):
            if key not in self._writers:
                shards = self._shards.setdefault(key, [])
                path = self.folder / key[0] / f"{key[1]}-{len(shards):05d}.parquet.partial"
                path.parent.mkdir(parents=True, exist_ok=True)
                self._writers[key] = pq.ParquetWriter(str(path), self.schema)
                shards.append(path)
                self._shard_bytes[key] = 0
            room = self.max_shard_bytes - self._shard_bytes[key]
            per_row = max(1, rows.nbytes // len(rows))
            take = max(1, min(len(rows), room // per_row))
            piece = rows.slice(0, take)
            self._writers[key].write_table(piece, row_group_size=len(piece))
            self._shard_bytes[key] += piece.nbytes
            rows = rows.slice(take)
            if self._shard_bytes[key] >= self.max_shard_bytes:
                self._writers.pop(key).close()

    def abort(self) -> None:
        """Close every open shard without writing what is buffered (the run failed: the caller removes the
        folder); the Parquet writers' file handles are released either way."""
        self._buffers.clear()
        for writer in self._writers.values():
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - a writer that cannot close is discarded with its folder
                logger.debug("a shard writer did not close cleanly", exc_info=True)
        self._writers.clear()

    def close(self) -> dict[tuple[str, str], int]:
        """Write what is buffered, close every shard and name it ``<split>-NNNNN-of-NNNNN.parquet``.

        Returns:
            `dict`: (part, split) -> rows written.
        """
        for key in list(self._buffers):
            self._flush(key, final=True)
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        for (part, split), shards in self._shards.items():
            for index, path in enumerate(shards):
                path.rename(path.parent / f"{split}-{index:05d}-of-{len(shards):05d}.parquet")
            logger.info("wrote %s/%s: %d rows in %d shard(s)", part, split, self.rows[(part, split)], len(shards))
        return dict(self.rows)


def table_needs_embedding(table, features) -> bool:
    """True when a top-level image/audio column of ``table`` has a cell with a path but no bytes."""
    from datasets import Audio, Image

    for name, feature in features.items():
        if isinstance(feature, (Image, Audio)) and name in table.column_names and _holds_paths(table.column(name)):
            return True
    return False


def write_hub_folder(
    splits: Mapping[str, Dataset] | DatasetDict | Dataset,
    folder: str | Path,
    *,
    card_text: str | None = None,
    pretty_name: str = "Quilt-style histopathology image-text pairs",
    license: str = "other",
    extra_card_data: dict | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    overwrite: bool = False,
    template: str = DATASET_CARD_TEMPLATE,
) -> Path:
    """Write ``splits`` as a Hub-layout dataset folder.

    The folder is assembled under a temporary name beside ``folder`` and renamed at the end, so an
    interrupted call never leaves a half-written dataset.

    Args:
        splits (`Mapping[str, Dataset]` or `Dataset`): the splits to write (a single dataset is "train").
        folder (`str` or `Path`): where to write; it must not exist unless ``overwrite``.
        card_text (`str`, *optional*): Markdown body of the dataset card; a short default otherwise.
        pretty_name (`str`): the card's name.
        license (`str`): the card's licence identifier.
        extra_card_data (`dict`, *optional*): more card metadata (tags, task_categories, ...).
        max_shard_bytes (`int`): target size of a parquet shard.
        overwrite (`bool`): replace an existing folder.
        template (`str`): card template in ``quilt_hf/model_cards/``: ``dataset_card.md`` for curated pairs,
            ``benchmark_card.md`` for evaluation benchmarks.

    Returns:
        `Path`: the folder.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    from quilt_hf.cards import template_path

    if isinstance(splits, Dataset):
        splits = {"train": splits}
    if not splits:
        raise UserFacingError("nothing to write: no split has rows")
    folder = Path(folder)
    recover_folder(folder)
    if folder.exists() and not overwrite:
        raise UserFacingError(f"{folder} exists; choose another output or pass overwrite")
    if folder.exists() and not _is_hub_folder(folder):
        raise UserFacingError(f"{folder} exists and is not a Hub-layout dataset folder: refusing to replace it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(folder)
    try:
        data_files = []
        for split, dataset in splits.items():
            write_shards(dataset, staging / "data", split, max_shard_bytes)
            data_files.append({"split": split, "path": f"data/{split}-*"})
        card_data = DatasetCardData(
            pretty_name=pretty_name,
            license=license,
            configs=[{"config_name": "default", "data_files": data_files}],
            dataset_info={"features": next(iter(splits.values())).features._to_yaml_list()},
            **(extra_card_data or {}),
        )
        card = DatasetCard.from_template(
            card_data,
            template_path=str(template_path(template)),
            pretty_name=pretty_name,
            body=card_text or "",
            num_rows={split: len(dataset) for split, dataset in splits.items()},
        )
        card.save(staging / "README.md")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    swap_in(staging, folder)
    return folder


def _is_hub_folder(folder: Path) -> bool:
    """True for an empty folder or one holding only what ``write_hub_folder`` writes (safe to replace)."""
    return folder.is_dir() and {p.name for p in folder.iterdir()} <= HUB_FOLDER_ENTRIES


def push_folder_to_hub(folder: str | Path, repo_id: str, *, private: bool = True, token_env: str = "HF_TOKEN") -> str:
    """Upload a Hub-layout folder to ``repo_id`` (a dataset repository); the token comes from ``token_env``.

    Returns:
        `str`: the URL of the commit.
    """
    from huggingface_hub import HfApi

    token = os.environ.get(token_env)  # never logged
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset")
    logger.info("pushed %s to %s", folder, repo_id)
    return str(commit)

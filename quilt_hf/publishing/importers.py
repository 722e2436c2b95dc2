"""``quilt import``: other people's image-text data as our pairs table (``PAIR_FEATURES`` + provenance).

Formats:

- ``quilt1m``: the Quilt-1M release (``quilt_1M_lookup.csv`` + image folders or zip parts read in place);
- ``table``: a CSV / JSONL / parquet table with an image column (a path, relative to the table, or a URL) and a
  text column: the shape PMC-OA, OpenPath and LAION subsets come in. URLs are never fetched; give
  ``--url_cache DIR`` holding the files already downloaded, found by their full URL (:class:`UrlCache`: a
  ``manifest.csv``/``manifest.jsonl`` of ``url,path``, img2dataset's ``<key>.jpg`` + ``<key>.json``, or files
  named by the SHA-256 of the URL), else the row is a recorded drop;
- ``folder``: an image-caption folder (``x.jpg`` beside ``x.txt``);
- ``hf``: any ``datasets`` dataset (a ``save_to_disk`` folder, or a name ``load_dataset`` resolves offline) with an
  image and a text column; every split is imported (each row keeps its split in ``split``) unless ``--split``.

Every input row ends up in the table or in ``drops.jsonl`` with a reason; ``report.json`` holds the counts (and,
for ``quilt1m``, the images without a row, listed in ``orphan_images.txt``). The output folder is written
under a temporary name and swapped in at the end, so an interrupted import never leaves a half-written table.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Value

from quilt_hf.atomic import staging_dir
from quilt_hf.errors import UserFacingError
from quilt_hf.publishing.hub import recover_folder, swap_in
from quilt_hf.publishing.release import (
    LOOKUP_COLUMNS,
    CellError,
    ImageStore,
    parse_int_cell,
    parse_list_cell,
    parse_text_cell,
    video_id_of,
)
from quilt_hf.publishing.tables import DropLog, PairTableWriter, pair_features
from quilt_hf.schema import MAGNIFICATION_UNKNOWN

logger = logging.getLogger(__name__)

FORMATS = ("quilt1m", "table", "folder", "hf")


@dataclass
class ImportConfig:
    """Import image-text pairs from another source (the Quilt-1M release, a CSV/JSONL/parquet table, an
    image-caption folder or a `datasets` dataset) as a pairs table that `quilt publish` merges."""

    format: str = field(metadata={"help": f"Input format: one of {', '.join(FORMATS)}."})
    output: str = field(metadata={"help": "Folder for the pairs table (parquet shards, drops.jsonl, report.json)."})
    lookup: str | None = field(default=None, metadata={"help": "quilt1m: the release's quilt_1M_lookup.csv."})
    images: list[str] = field(
        default_factory=list,
        metadata={"help": "quilt1m: image folders and/or zip parts (read in place); the first source wins when "
                  "two hold the same name, so list the variant you want (full size or 512 px) first."},
    )
    source: str | None = field(
        default=None, metadata={"help": "table/folder/hf: the table file, the folder, or the dataset (folder or name)."}
    )
    image_column: str = field(default="image", metadata={"help": "table/hf: column with the image (path, URL or image)."})
    text_column: str = field(default="caption", metadata={"help": "table/hf: column with the caption."})
    subset: str | None = field(
        default=None, metadata={"help": "table/folder/hf: the subset name of these rows (default: the source's name)."}
    )
    url_cache: str | None = field(
        default=None,
        metadata={"help": "table: folder of files already downloaded, matched by their full URL: a manifest.csv "
                  "or manifest.jsonl of url,path (paths relative to the folder), img2dataset's <key>.jpg beside "
                  "<key>.json holding the url, or files named <sha256 of the URL>.<ext>."},
    )
    split: str | None = field(
        default=None,
        metadata={"help": "hf: import only this split (default: every split; each row keeps its split in `split`)."},
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace --output if it exists."})


@dataclass
class ImportResult:
    """What an import wrote and dropped."""

    folder: Path
    rows_in: int = 0
    rows_out: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    orphan_images: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "drops": self.drops,
            "orphan_images": self.orphan_images,
            "seconds": round(self.seconds, 3),
        }


def _image_cell(data: bytes | None, name: str) -> dict | None:
    return None if data is None else {"bytes": data, "path": name}


def _image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the image header (no full decode); raises on an unreadable image."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.size


# ---------------------------------------------------------------------------------------------------------- quilt1m


def _lookup_extra_features(header: list[str]) -> dict:
    extra = {"release_index": Value("int64")}
    for name in header:
        if name and name not in LOOKUP_COLUMNS and name not in extra:
            extra[name] = Value("string")
    return extra


def import_quilt1m(lookup: str | Path, images: list[str], folder: Path, drops: DropLog) -> ImportResult:
    """Stream ``quilt_1M_lookup.csv`` into a pairs table in ``folder``.

    Rows keep every column: the release's columns map to ``PAIR_FEATURES`` (lists parsed, text lists joined),
    the unnamed index becomes ``release_index`` and any other column (``single_wsi``, ``not_histology``, ...) is
    kept as a string column of its own. Without ``images`` the table is text-only (``image`` is null); with
    them, a row whose image is missing or unreadable is dropped with that reason, and images no row names are
    counted and listed in ``orphan_images.txt``.
    """
    from tqdm.auto import tqdm

    lookup = Path(lookup)
    if not lookup.is_file():
        raise UserFacingError(f"--lookup {lookup}: no such file (the release's quilt_1M_lookup.csv)")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    result = ImportResult(folder)
    store = ImageStore(images) if images else None
    if store is not None:
        logger.info("found %d images in %d source(s)", len(store), len(images))
        if not len(store):
            raise UserFacingError(f"--images {images}: no image files found there")
    referenced: set[str] = set()
    with lookup.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise UserFacingError(f"--lookup {lookup} is empty")
        missing = [c for c in LOOKUP_COLUMNS if c not in header]
        if missing:
            raise UserFacingError(
                f"--lookup {lookup}: missing columns {missing}; expected the release's columns {list(LOOKUP_COLUMNS)}"
            )
        index = {name: i for i, name in enumerate(header)}
        extra = _lookup_extra_features(header)
        extra_names = [n for n in extra if n != "release_index"]
        unnamed = index.get("", index.get("Unnamed: 0"))
        writer = PairTableWriter(folder, pair_features(extra))
        positions = [index[name] for name in LOOKUP_COLUMNS]  # cells unpack in LOOKUP_COLUMNS order
        num_fields = len(header)
        for line, cells in enumerate(tqdm(reader, desc="Importing quilt_1M_lookup.csv", unit=" rows", mininterval=5)):
            result.rows_in += 1
            provenance = f"{lookup.name}:{line}"  # data row number (0-based; a quoted caption may span lines)
            if len(cells) != num_fields:
                drops.add("malformed_row", row=line, provenance=provenance, fields=len(cells))
                continue
            (caption, image_path, subset, split, pathology, roi_text, noisy_text, corrected_text, med_umls_ids,
             magnification, height, width) = [cells[i] for i in positions]
            try:
                row = {
                    "caption": parse_text_cell(caption),
                    "image_path": image_path,
                    "subset": subset,
                    "split": split,
                    "pathology": parse_list_cell(pathology),
                    "roi_text": parse_text_cell(roi_text),
                    "noisy_text": parse_text_cell(noisy_text),
                    "corrected_text": parse_text_cell(corrected_text),
                    "med_umls_ids": parse_list_cell(med_umls_ids),
                    "magnification": parse_int_cell(magnification, MAGNIFICATION_UNKNOWN),
                    "height": parse_int_cell(height, 0),
                    "width": parse_int_cell(width, 0),
                    "release_index": parse_int_cell(cells[unnamed], line) if unnamed is not None else line,
                }
            except CellError as error:
                drops.add("bad_cell", row=line, provenance=provenance, error=str(error))
                continue
            if row["magnification"] not in (0, 1, 2):
                row["magnification"] = MAGNIFICATION_UNKNOWN
            name = row["image_path"]
            row["image_id"] = Path(name).stem
            row["video_id"] = video_id_of(name)
            row["source"] = "quilt1m_release"
            row["provenance"] = provenance
            for extra_name in extra_names:
                row[extra_name] = cells[index[extra_name]]
            if store is not None:
                referenced.add(Path(name).name)
                data = store.read(name)
                if data is None:
                    drops.add("missing_image", row=line, provenance=provenance, image_path=name)
                    continue
                try:
                    width_px, height_px = _image_size(data)
                except Exception as error:  # PIL raises several kinds for a broken file
                    drops.add("unreadable_image", row=line, provenance=provenance, image_path=name, error=str(error))
                    continue
                row["image"] = _image_cell(data, name)
                if not row["height"] or not row["width"]:
                    row["width"], row["height"] = width_px, height_px
            writer.write(row)
        writer.close()
    result.rows_out = writer.num_rows
    if store is not None:
        orphans = sorted(set(store.locations) - referenced)
        result.orphan_images = len(orphans)
        (folder / "orphan_images.txt").write_text("".join(f"{o}\n" for o in orphans), encoding="utf-8")
        store.close()
    return result


# ------------------------------------------------------------------------------------------------ other sources


def _iter_table(path: Path) -> Iterator[dict]:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        with path.open(newline="", encoding="utf-8") as handle:
            yield from csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
    elif suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as error:
                        yield {"__error__": f"bad JSON line: {error}"}
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(str(path)).iter_batches(batch_size=4096):
            yield from batch.to_pylist()
    else:
        raise UserFacingError(f"--source {path}: expected a .csv, .tsv, .jsonl or .parquet table")


class UrlCache:
    """Files a user's downloader already fetched, found by their full URL (two URLs with the same file name
    never collide). A folder may use any mix of these layouts:

    - a manifest, ``manifest.csv`` (columns ``url,path``) or ``manifest.jsonl`` (``{"url": ..., "path": ...}``),
      paths relative to the folder;
    - img2dataset's ``files`` output: ``<key>.jpg`` (any image suffix) beside ``<key>.json`` whose ``url`` is the
      URL (a ``status`` other than ``success`` is skipped); searched in every sub-folder;
    - files named by the SHA-256 (hex) of the URL: ``<sha256>.<ext>``.

    URLs are compared exactly as written (surrounding spaces removed).

    Args:
        folder (`str` or `Path`): the cache folder.
    """

    MANIFESTS = ("manifest.csv", "manifest.jsonl")
    _SHA256 = re.compile(r"[0-9a-f]{64}")

    def __init__(self, folder: str | Path):
        from quilt_hf.publishing.release import IMAGE_SUFFIXES

        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise UserFacingError(f"--url_cache {self.folder}: no such folder")
        self.by_url: dict[str, Path] = {}
        self.by_hash: dict[str, Path] = {}
        images: dict[Path, Path] = {}  # path without suffix -> image file
        sidecars: list[Path] = []
        for path in self.folder.rglob("*"):
            if not path.is_file():
                continue
            suffix = path.suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                images[path.with_suffix("")] = path
                if self._SHA256.fullmatch(path.stem):
                    self.by_hash[path.stem] = path
            elif suffix == ".json":
                sidecars.append(path)
        for sidecar in sidecars:  # img2dataset: <key>.json beside <key>.jpg
            image = images.get(sidecar.with_suffix(""))
            if image is None:
                continue
            try:
                meta = json.loads(sidecar.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(meta, dict) and meta.get("url") and meta.get("status", "success") == "success":
                self.by_url.setdefault(str(meta["url"]).strip(), image)
        root, outside = self.folder.resolve(), 0
        for record in self._manifest():
            url, path = str(record.get("url") or "").strip(), record.get("path")
            if url and path:
                target = (self.folder / str(path)).resolve()
                if not target.is_relative_to(root):  # "../x" or an absolute path: not a file of this cache
                    outside += 1
                    continue
                self.by_url[url] = target
        if outside:
            logger.warning("--url_cache %s: %d manifest path(s) point outside the folder; ignored", self.folder, outside)
        logger.info("--url_cache %s: %d files by URL, %d by URL hash", self.folder, len(self.by_url), len(self.by_hash))

    def _manifest(self) -> Iterator[dict]:
        csv_manifest, jsonl_manifest = (self.folder / name for name in self.MANIFESTS)
        if csv_manifest.is_file():
            with csv_manifest.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                if not {"url", "path"} <= set(reader.fieldnames or ()):
                    raise UserFacingError(f"{csv_manifest}: expected the columns url,path")
                yield from reader
        if jsonl_manifest.is_file():
            with jsonl_manifest.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if line.strip():
                        try:
                            yield json.loads(line)
                        except json.JSONDecodeError as error:
                            raise UserFacingError(f"{jsonl_manifest}:{number}: not JSON ({error})") from error

    def path(self, url: str) -> Path | None:
        """The cached file of ``url``, or None."""
        url = url.strip()
        found = self.by_url.get(url) or self.by_hash.get(hashlib.sha256(url.encode()).hexdigest())
        return found if found is not None and found.is_file() else None


def _resolve_image(value, base: Path, url_cache: UrlCache | None) -> tuple[bytes | None, str, str]:
    """(bytes, name, drop reason) for an image cell: a path (relative to the table), a URL, or image bytes."""
    if isinstance(value, dict) and value.get("bytes"):
        return value["bytes"], value.get("path") or "", ""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), "", ""
    if isinstance(value, dict):
        value = value.get("path")
    if not value:
        return None, "", "no_image"
    text = str(value)
    if text.startswith(("http://", "https://")):
        name = text.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        cached = url_cache.path(text) if url_cache is not None else None
        if cached is not None:
            return cached.read_bytes(), name, ""
        return None, name, "url_not_fetched"
    path = Path(text) if Path(text).is_absolute() else base / text
    if not path.is_file():
        return None, text, "missing_image"
    return path.read_bytes(), path.name, ""


def _write_generic(rows: Iterator[tuple[str, dict]], folder: Path, drops: DropLog, config: ImportConfig, subset: str,
                   base: Path, url_cache: UrlCache | None) -> ImportResult:
    result = ImportResult(folder)
    writer = PairTableWriter(folder, pair_features(), batch_rows=512)
    for provenance, record in rows:
        result.rows_in += 1
        if "__error__" in record:
            drops.add("malformed_row", provenance=provenance, error=record["__error__"])
            continue
        text = record.get(config.text_column)
        if text is None or not str(text).strip():
            drops.add("no_text", provenance=provenance)
            continue
        data, name, reason = _resolve_image(record.get(config.image_column), base, url_cache)
        if reason:
            drops.add(reason, provenance=provenance, image=name)
            continue
        try:
            width, height = _image_size(data)
        except Exception as error:  # PIL raises several kinds for a broken file
            drops.add("unreadable_image", provenance=provenance, image=name, error=str(error))
            continue
        row = {
            "caption": parse_text_cell(str(text)),
            "image": _image_cell(data, name),
            "image_path": name,
            "image_id": Path(name).stem if name else provenance,
            "video_id": str(record.get("video_id") or ""),
            "subset": subset,
            "split": str(record.get("split") or ""),
            "width": width,
            "height": height,
            "magnification": MAGNIFICATION_UNKNOWN,
            "source": config.format,
            "provenance": provenance,
        }
        if "pathology" in record and record["pathology"] is not None:
            value = record["pathology"]
            row["pathology"] = [str(v) for v in value] if isinstance(value, list) else parse_list_cell(str(value))
        writer.write(row)
    writer.close()
    result.rows_out = writer.num_rows
    return result


def _folder_rows(folder: Path) -> Iterator[tuple[str, dict]]:
    from quilt_hf.publishing.release import IMAGE_SUFFIXES

    for image in sorted(folder.rglob("*")):
        if image.suffix.lower() not in IMAGE_SUFFIXES or not image.is_file():
            continue
        caption = image.with_suffix(".txt")
        text = caption.read_text(encoding="utf-8", errors="replace") if caption.is_file() else None
        yield str(image.relative_to(folder)), {"image": str(image), "caption": text}


def _hf_rows(source: str, image_column: str, text_column: str, split: str | None = None) -> Iterator[tuple[str, dict]]:
    """Rows of every split of a ``datasets`` dataset (or of ``split``), each with its split in ``split``."""
    from datasets import Dataset, Image, load_dataset, load_from_disk

    path = Path(source)
    try:
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            loaded = load_from_disk(str(path))
        else:
            loaded = load_dataset(source)
    except Exception as error:  # offline, missing, not a dataset
        raise UserFacingError(f"--source {source}: cannot load it as a dataset ({type(error).__name__}: {error})") from error
    if isinstance(loaded, Dataset):
        if split is not None:
            raise UserFacingError(f"--split {split}: {source} is a single table without splits; leave --split out")
        parts = {"": loaded}
    else:
        if split is not None and split not in loaded:
            raise UserFacingError(f"--split {split}: {source} has the splits {list(loaded)}")
        parts = {split: loaded[split]} if split is not None else dict(loaded)
    name = path.name or source
    for split_name, dataset in parts.items():
        for column in (image_column, text_column):
            if column not in dataset.column_names:
                raise UserFacingError(f"--source {source}: no column {column!r} (columns: {dataset.column_names})")
        if isinstance(dataset.features[image_column], Image):
            dataset = dataset.cast_column(image_column, Image(decode=False))
        where = f"{name}/{split_name}" if split_name else name
        for i, record in enumerate(dataset.select_columns([image_column, text_column])):
            yield f"{where}:{i}", {"image": record[image_column], "caption": record[text_column], "split": split_name}


# ------------------------------------------------------------------------------------------------------- command


def run_import(config: ImportConfig) -> ImportResult:
    """Run ``quilt import``; returns what was written and dropped (also in ``<output>/report.json``)."""
    if config.format not in FORMATS:
        raise UserFacingError(f"--format {config.format!r}: expected one of {', '.join(FORMATS)}")
    if config.split is not None and config.format != "hf":
        raise UserFacingError(f"--split is for --format hf (a dataset with splits), not --format {config.format}")
    output = Path(config.output)
    recover_folder(output)
    if output.exists() and not config.overwrite:
        raise UserFacingError(f"--output {output} exists; choose another folder or pass --overwrite")
    if output.exists() and not (output / "report.json").is_file():
        raise UserFacingError(f"--output {output} exists and is not an imported table: refusing to replace it")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(output)
    started = time.perf_counter()
    try:
        drops = DropLog(staging / "drops.jsonl")
        try:
            if config.format == "quilt1m":
                if not config.lookup:
                    raise UserFacingError("--format quilt1m needs --lookup quilt_1M_lookup.csv")
                result = import_quilt1m(config.lookup, list(config.images), staging, drops)
            else:
                if not config.source:
                    raise UserFacingError(f"--format {config.format} needs --source")
                source = Path(config.source)
                subset = config.subset or source.stem or str(config.source)
                url_cache = UrlCache(config.url_cache) if config.url_cache else None
                if config.format == "table":
                    if not source.is_file():
                        raise UserFacingError(f"--source {source}: no such table file")
                    rows = ((f"{source.name}:{i}", r) for i, r in enumerate(_iter_table(source)))
                    base = source.parent
                elif config.format == "folder":
                    if not source.is_dir():
                        raise UserFacingError(f"--source {source}: no such folder")
                    rows, base = _folder_rows(source), source
                    config = ImportConfig(**{**config.__dict__, "image_column": "image", "text_column": "caption"})
                else:
                    rows = _hf_rows(config.source, config.image_column, config.text_column, config.split)
                    base = Path(".")
                    config = ImportConfig(**{**config.__dict__, "image_column": "image", "text_column": "caption"})
                result = _write_generic(rows, staging, drops, config, subset, base, url_cache)
        finally:
            drops.close()
        result.drops = dict(drops.counts)
        result.seconds = time.perf_counter() - started
        if result.rows_out + drops.total != result.rows_in:
            raise RuntimeError(f"row accounting broken: {result.rows_in} in, {result.rows_out} out, {drops.total} dropped")
        (staging / "report.json").write_text(json.dumps({"format": config.format, **result.as_dict()}, indent=2))
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    swap_in(staging, output)
    result.folder = output
    logger.info(
        "imported %d of %d rows into %s (%s dropped: %s; %d orphan images) in %.1f s",
        result.rows_out, result.rows_in, output, sum(result.drops.values()), result.drops or "none",
        result.orphan_images, result.seconds,
    )
    return result

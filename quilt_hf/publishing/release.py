"""The Quilt-1M release's file formats: its CSV tables, their Python-literal list cells and its image archives.

Facts the code relies on (from the release's public repository and issue tracker):

- ``quilt_1M_lookup.csv``: one row per image-text pair with the columns :data:`LOOKUP_COLUMNS` plus an unnamed
  index column (later releases add ``single_wsi`` and ``not_histology``). ``pathology`` and ``med_umls_ids`` are
  Python-literal lists in strings (``"['Breast', 'Renal']"``); the text columns hold a plain string or such a
  list. ``magnification`` (0/1/2) is only set for the video part.
- ``quilt_recon.csv`` (:data:`RECON_COLUMNS`) and ``quilt_data.csv`` (:data:`DATA_COLUMNS`) describe the video
  part for users who rebuild its images from their own downloads.
- Images ship as zip parts (a full-size and a 512 px variant with the same file names); YouTube images are named
  ``<video_id>_image_<uuid>.jpg``. Pairing is many-to-many: about 650K images serve about 1M rows.

List cells are parsed with :func:`ast.literal_eval` (never ``eval``) behind a regular-expression fast path for the
common shape (a flat list of quoted strings), which is what keeps the import above 20,000 rows/s.
"""

from __future__ import annotations

import ast
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

LOOKUP_COLUMNS: tuple[str, ...] = (
    "caption",
    "image_path",
    "subset",
    "split",
    "pathology",
    "roi_text",
    "noisy_text",
    "corrected_text",
    "med_umls_ids",
    "magnification",
    "height",
    "width",
)
#: Columns of later releases, kept when present.
LOOKUP_OPTIONAL_COLUMNS: tuple[str, ...] = ("single_wsi", "not_histology")
RECON_COLUMNS: tuple[str, ...] = ("video_id", "key_frame_times", "predictions", "stable_times")
DATA_COLUMNS: tuple[str, ...] = (
    "video_id",
    "pair_chunk_time",
    "height",
    "width",
    "fps",
    "chunk_id",
    "image_path",
    "it_pair",
    "medical_text",
)
RELEASE_SUBSETS: tuple[str, ...] = ("quilt", "openpath", "pubmed", "laion")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")

_QUOTED = r"'[^'\\]*'|\"[^\"\\]*\""
_FLAT_STRING_LIST = re.compile(rf"\[\s*(?:(?:{_QUOTED})\s*(?:,\s*(?:{_QUOTED})\s*)*,?\s*)?\]\Z")
_QUOTED_ITEM = re.compile(_QUOTED)
_YOUTUBE_IMAGE = re.compile(r"(?P<video_id>[A-Za-z0-9_-]{11})_image_[0-9a-fA-F-]{8,}\.\w+\Z")


class CellError(ValueError):
    """A cell that is neither a plain value nor a Python-literal list."""


def parse_list_cell(cell: str | None) -> list[str]:
    """A ``pathology`` / ``med_umls_ids`` cell as a list of strings.

    Accepts ``"['a', 'b']"`` (Python literal, parsed with :func:`ast.literal_eval`), ``"[]"``, an empty cell
    (``[]``) and a bare value (``"Breast"`` -> ``["Breast"]``). Nested lists are flattened.

    Raises:
        CellError: a cell that starts like a list but is not a valid literal.
    """
    if cell is None:
        return []
    text = cell.strip()
    if not text or text in ("nan", "None", "[]"):
        return []
    if not text.startswith(("[", "(")):
        return [text]
    if _FLAT_STRING_LIST.match(text):
        return [item[1:-1] for item in _QUOTED_ITEM.findall(text)]
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as error:
        raise CellError(f"not a Python-literal list: {text[:80]!r}") from error
    return [str(item) for item in _flatten(value)]


def _flatten(value) -> Iterator:
    if isinstance(value, (list, tuple, set)):
        for item in value:
            yield from _flatten(item)
    elif value is not None:
        yield value


def parse_text_cell(cell: str | None) -> str:
    """A text cell (``caption``, ``roi_text``, ...) as one string: a plain string is kept as it is, a
    Python-literal list of strings is joined with single spaces."""
    if cell is None:
        return ""
    text = cell.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            return " ".join(parse_list_cell(text))
        except CellError:
            return cell  # text that merely looks like a list
    return cell


def parse_int_cell(cell: str | None, default: int) -> int:
    """``"2"``, ``"2.0"`` -> 2; an empty or ``nan`` cell -> ``default``.

    Raises:
        CellError: anything else.
    """
    if cell is None:
        return default
    text = cell.strip()
    if not text or text.lower() in ("nan", "none"):
        return default
    try:
        return int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError as error:
            raise CellError(f"not a number: {text[:40]!r}") from error
        if number != number:
            return default
        return int(number)


def parse_literal(cell: str):
    """A ``quilt_recon.csv`` cell (nested lists, tuples, dicts of numbers) via :func:`ast.literal_eval`."""
    try:
        return ast.literal_eval(cell.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError) as error:
        raise CellError(f"not a Python literal: {cell[:80]!r}") from error


def video_id_of(image_path: str) -> str:
    """The YouTube id in a video image's name (``<video_id>_image_<uuid>.jpg``); "" for other images."""
    match = _YOUTUBE_IMAGE.match(Path(image_path).name)
    return match.group("video_id") if match else ""


@dataclass(frozen=True)
class ImageLocation:
    """Where one image lives: a file, or a member of a zip part."""

    container: str  # the file itself, or the zip part
    member: str = ""  # name inside the zip part; "" for a plain file


class ImageStore:
    """Images found in folders and zip parts, looked up by file name; read in place (zips are never unpacked).

    When several sources hold the same name (the full-size and the 512 px variant), the source given first wins.

    Args:
        sources (`Iterable[str | Path]`): folders (searched recursively) and ``.zip`` files.
    """

    def __init__(self, sources: Iterable[str | Path]):
        self.locations: dict[str, ImageLocation] = {}
        self.duplicate_names = 0
        self._zips: dict[str, zipfile.ZipFile] = {}
        for source in sources:
            path = Path(source)
            if path.is_dir():
                entries = (
                    (p.name, ImageLocation(str(p)))
                    for p in sorted(path.rglob("*"))
                    if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                )
            elif path.is_file() and zipfile.is_zipfile(path):
                archive = self._open(str(path))
                entries = (
                    (Path(info.filename).name, ImageLocation(str(path), info.filename))
                    for info in archive.infolist()
                    if not info.is_dir() and Path(info.filename).suffix.lower() in IMAGE_SUFFIXES
                )
            else:
                raise FileNotFoundError(f"--images {path}: neither a folder nor a zip file")
            for name, location in entries:
                if name in self.locations:
                    self.duplicate_names += 1
                    continue
                self.locations[name] = location

    def _open(self, path: str) -> zipfile.ZipFile:
        if path not in self._zips:
            self._zips[path] = zipfile.ZipFile(path)
        return self._zips[path]

    def __len__(self) -> int:
        return len(self.locations)

    def __contains__(self, name: str) -> bool:
        return Path(name).name in self.locations

    def read(self, name: str) -> bytes | None:
        """The bytes of image ``name`` (matched by file name), or None when no source has it."""
        location = self.locations.get(Path(name).name)
        if location is None:
            return None
        if location.member:
            return self._open(location.container).read(location.member)
        return Path(location.container).read_bytes()

    def close(self) -> None:
        for archive in self._zips.values():
            archive.close()
        self._zips.clear()

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

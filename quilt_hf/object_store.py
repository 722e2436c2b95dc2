"""Outputs on an object store (``s3://``, ``gs://``, ... through fsspec), committed as one set.

An object store has no rename, so :mod:`quilt_hf.atomic`'s swap becomes copies under the same journal:

1. every entry is written into a local folder, then uploaded under ``URL/.staging-<id>/`` (a crash here leaves
   the old set untouched);
2. ``URL/.commit.json`` is written (one PUT, atomic): from this instant the new set is the committed one;
3. each entry's old objects are removed and the staged ones copied in (server-side copies); then the journal
   and the staging prefix are removed.

A crash during step 3 leaves the journal: :func:`roll_forward` (called by the next writer, and by
:func:`read_set_ready` for readers) redoes step 3 from the start, which is idempotent, so a reader that calls
:func:`read_set_ready` first reads the whole old set or the whole new one.

Where the store is and who may write to it comes from fsspec's and the store's own configuration (for S3:
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` / ``AWS_PROFILE``, ... or fsspec's ``FSSPEC_S3_*`` variables); no
credential passes through quilt_hf's options or logs.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quilt_hf import atomic
from quilt_hf.atomic import _STAGING, JOURNAL, _unique
from quilt_hf.errors import MissingDependencyError, UserFacingError

logger = logging.getLogger(__name__)

__all__ = ["clean_leftovers", "commit_set", "filesystem", "is_url", "join", "read_set_ready", "roll_forward"]

# the fsspec protocol -> the package that implements it (named in the error when it is missing)
_PACKAGES = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", None), "gcs": ("gcsfs", None),
             "az": ("adlfs", None), "abfs": ("adlfs", None)}


def is_url(path: str | Path) -> bool:
    """True for a URL with a scheme other than ``file://`` (an object store or another fsspec filesystem)."""
    text = str(path)
    return "://" in text and not text.startswith("file://")


def join(url: str, *names: str) -> str:
    """``url`` with ``names`` appended, one ``/`` between each."""
    return "/".join([url.rstrip("/"), *names])


def filesystem(url: str):
    """The fsspec filesystem of ``url`` and the path inside it (``bucket/prefix`` for S3).

    Raises:
        MissingDependencyError: the package of the URL's protocol is not installed.
        UserFacingError: a URL fsspec cannot open.
    """
    import fsspec

    protocol = url.split("://", 1)[0]
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as error:
        package, extra = _PACKAGES.get(protocol, (f"the fsspec implementation of {protocol}://", None))
        raise MissingDependencyError(package, extra, f"outputs at {protocol}:// URLs") from error
    except ValueError as error:
        raise UserFacingError(f"{url}: not a location fsspec can open ({error})") from error


def _exists(fs, path: str) -> bool:
    fs.invalidate_cache(path)  # another process (a killed writer, a worker) may have changed it
    return fs.exists(path)


def _upload(fs, local: Path, remote: str) -> None:
    if local.is_dir():
        files = [p for p in sorted(local.rglob("*")) if p.is_file()]
        fs.put([str(p) for p in files], [f"{remote}/{p.relative_to(local).as_posix()}" for p in files])
    else:
        fs.put_file(str(local), remote)


def _copy(fs, source: str, target: str) -> None:
    if fs.isdir(source):
        files = fs.find(source)
        fs.copy(files, [f"{target}/{f[len(source) + 1:]}" for f in files])
    else:
        fs.copy(source, target)


def commit_set(url: str, writers: dict[str, Callable[[Path], Any]], *, local_dir: str | Path | None = None) -> None:
    """Replace several entries under ``url`` as one set (local staging, upload, journal, copies; see the
    module doc).

    Args:
        url (`str`): where the entries live (``s3://bucket/prefix``).
        writers (`dict[str, Callable[[Path], Any]]`): entry name -> a function that writes that entry (a file
            or a folder) at the local path it is given. All run before anything under ``url`` changes.
        local_dir (`str` or `Path`, *optional*): where the entries are written before the upload (default: the
            system's temporary folder); it needs room for the whole set.
    """
    fs, root = filesystem(url)
    roll_forward(url)
    local = Path(tempfile.mkdtemp(prefix=_STAGING, dir=local_dir))
    staging = f"{_STAGING}{_unique()}"
    try:
        for name, write in writers.items():
            write(local / name)
            atomic._on_step("staged", local / name)
        for name in writers:
            _upload(fs, local / name, f"{root}/{staging}/{name}")
        atomic._on_step("uploaded", Path(staging))
    except BaseException:
        if _exists(fs, f"{root}/{staging}"):
            fs.rm(f"{root}/{staging}", recursive=True)
        raise
    finally:
        shutil.rmtree(local, ignore_errors=True)
    fs.pipe_file(f"{root}/{JOURNAL}", json.dumps({"staging": staging, "entries": list(writers)}).encode())
    atomic._on_step("journaled", Path(JOURNAL))
    roll_forward(url)


def roll_forward(url: str) -> bool:
    """Finish a set replacement that a journal under ``url`` records (idempotent); True when there was one."""
    fs, root = filesystem(url)
    journal = f"{root}/{JOURNAL}"
    if not _exists(fs, journal):
        return False
    record = json.loads(fs.cat_file(journal))
    staging = f"{root}/{record['staging']}"
    for name in record["entries"]:  # every entry again: a copy cut short looks like a finished one
        target = f"{root}/{name}"
        if _exists(fs, target):
            fs.rm(target, recursive=True)
        _copy(fs, f"{staging}/{name}", target)
        atomic._on_step("swapped", Path(name))
    fs.rm_file(journal)
    clean_leftovers(url)
    return True


def clean_leftovers(url: str) -> list[str]:
    """Remove the staging prefixes killed writers left under ``url`` (after finishing a journal's commit).
    Returns the removed paths."""
    fs, root = filesystem(url)
    if _exists(fs, f"{root}/{JOURNAL}"):
        roll_forward(url)
    if not _exists(fs, root):
        return []
    removed = []
    for entry in fs.ls(root, detail=False):
        if entry.rstrip("/").rsplit("/", 1)[-1].startswith(_STAGING):
            fs.rm(entry, recursive=True)
            removed.append(entry)
    return removed


def read_set_ready(url: str) -> str:
    """Before reading a committed set: finish any interrupted replacement so the set read is a whole one."""
    try:
        roll_forward(url)
    except (OSError, PermissionError) as error:  # read-only credentials: the journal stays for the next writer
        logger.warning("%s: an interrupted commit could not be finished (%s)", url, error)
    return url

"""Outputs on an object store (``s3://``, ``gs://``, ... through fsspec), committed as one set.

An object store has no rename and a multi-object copy is not atomic, so a set is never replaced in place. Each
commit writes a new, complete set under its own prefix and then switches one pointer object:

1. every entry is written into a local folder, then uploaded under ``URL/sets/<id>/`` (``<id>`` starts with the
   UTC time; a crash here leaves the old set current and an orphan prefix);
2. ``URL/latest.json`` is written (one PUT, atomic) naming ``<id>``: from this instant the new set is the current
   one;
3. sets that are neither current nor written to within :data:`RETENTION_S` are deleted: a replaced set (its
   ``replaced_at`` object was written just before the switch) once readers that resolved it have had that long
   to read it; a set never marked replaced (a killed writer's orphan) only once its commit began more than
   :data:`ORPHAN_RETENTION_S` ago, so that a writer that stalled after its upload does not lose its set (it also
   checks its set is whole before the switch).

Readers resolve ``URL/pairs`` to ``URL/sets/<id>/pairs`` through the pointer (:func:`resolve`) and never write:
concurrent readers, a reader during a commit and two writers on one URL each see a whole set (the last pointer
written wins), and a reader needs no write rights.

Where the store is and who may write to it comes from fsspec's and the store's own configuration (for S3:
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` / ``AWS_PROFILE``, ... or fsspec's ``FSSPEC_S3_*`` variables); no
credential passes through quilt_hf's options or logs.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from quilt_hf import atomic
from quilt_hf.atomic import _STAGING, _unique
from quilt_hf.errors import MissingDependencyError, UserFacingError

logger = logging.getLogger(__name__)

__all__ = [
    "ORPHAN_RETENTION_S", "POINTER", "RETENTION_S", "SETS", "check_writable", "commit_set", "current_set",
    "filesystem", "is_url", "join", "local_path", "on_object_store", "remove_old_sets", "resolve",
]

POINTER = "latest.json"  # names the current set
SETS = "sets"  # URL/sets/<id>/<entry>
RETENTION_S = 3600.0  # a replaced set is kept this long after its last write (readers that resolved it)
ORPHAN_RETENTION_S = 86400.0  # a set never marked replaced (a killed or stalled writer's) is kept this long
REPLACED = "replaced_at"  # written into a set when another one replaces it (restarts its retention)
COMMITTED = "committed_at"  # written into a set just before the pointer names it
_SET_ID = re.compile(r"^\d{8}T\d{6}Z-")  # what commit_set names a set (a folder placeholder never matches)

# the fsspec protocol -> the package that implements it (named in the error when it is missing)
_PACKAGES = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", None), "gcs": ("gcsfs", None),
             "az": ("adlfs", None), "abfs": ("adlfs", None)}


def is_url(path: str | Path) -> bool:
    """True for a URL with a scheme other than ``file://`` (an object store or another fsspec filesystem)."""
    text = str(path)
    return "://" in text and not text.startswith("file://")


def on_object_store(path: str | Path) -> bool:
    """A URL this module reads and writes: :func:`is_url`, but not the Hub (``hf://``, read through datasets)."""
    return is_url(path) and not str(path).startswith("hf://")


def local_path(path: str) -> str:
    """``path`` without a ``file://`` scheme (a local folder given as a URL)."""
    return path[len("file://"):] if path.startswith("file://") else path


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
    path = url.rsplit("::", 1)[-1].partition("://")[2].split("?", 1)[0]  # the last filesystem's path, no query
    if "//" in path.rstrip("/"):  # an empty segment (an empty $PREFIX in a script): stores list such keys oddly
        raise UserFacingError(f"{url}: the path has an empty segment ('//'); give it without")
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as error:
        package, extra = _PACKAGES.get(protocol, (f"the fsspec implementation of {protocol}://", None))
        raise MissingDependencyError(package, extra, f"outputs at {protocol}:// URLs") from error
    except ValueError as error:
        raise UserFacingError(f"{url}: not a location fsspec can open ({error})") from error


def _exists(fs, path: str) -> bool:
    fs.invalidate_cache(path)  # another process (a writer, a worker) may have changed it
    return fs.exists(path)


def check_writable(url: str) -> None:
    """Write and delete a small object under ``url`` before any work, so that a missing bucket or missing
    rights fail the run at its start, not after hours of curation.

    Raises:
        UserFacingError: the store refused (its reason included).
    """
    fs, root = filesystem(url)
    probe = f"{root}/.probe-{_unique()}"
    try:
        fs.pipe_file(probe, b"quilt_hf write check")
        fs.rm_file(probe)
    except Exception as error:  # OSError, botocore's EndpointConnectionError, ...
        raise UserFacingError(f"--output {url}: cannot write there ({type(error).__name__}: {error}); check that "
                              "the bucket exists and the credentials allow writing and deleting") from error


def commit_set(url: str, writers: dict[str, Callable[[Path], Any]], *, local_dir: str | Path | None = None) -> str:
    """Write several entries under ``url`` as one new set and make it the current one (see the module doc).

    Args:
        url (`str`): where the sets live (``s3://bucket/prefix``).
        writers (`dict[str, Callable[[Path], Any]]`): entry name -> a function that writes that entry (a file
            or a folder) at the local path it is given. All run before anything under ``url`` changes.
        local_dir (`str` or `Path`, *optional*): where the entries are written before the upload (default: the
            system's temporary folder); it needs room for the whole set.

    Returns:
        `str`: the new set's URL (``url/sets/<id>``).
    """
    fs, root = filesystem(url)
    set_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{_unique()}"
    prefix = f"{root}/{SETS}/{set_id}"
    local = Path(tempfile.mkdtemp(prefix=_STAGING, dir=local_dir))
    try:
        with atomic.keep_alive(local):  # an upload may outlast the age at which other runs remove leftovers
            for name, write in writers.items():
                write(local / name)
                atomic._on_step("staged", local / name)
            files = sorted(p for p in local.rglob("*") if p.is_file() and p != local / atomic.ALIVE)
            targets = [f"{prefix}/{p.relative_to(local).as_posix()}" for p in files]
            fs.put([str(p) for p in files], targets)
            atomic._on_step("uploaded", Path(set_id))
            now = datetime.now(timezone.utc).isoformat()
            fs.pipe_file(f"{prefix}/{COMMITTED}", now.encode())  # its age restarts
            fs.invalidate_cache(prefix)
            missing = set(targets) - set(fs.find(prefix))
            if missing:  # another run's cleanup took it while this one stalled: never name a broken set
                raise UserFacingError(f"{url}: {len(missing)} file(s) of the new set {set_id} were removed before "
                                      "it became current (this run stalled for longer than the retention); run again")
    except BaseException:
        try:
            if _exists(fs, prefix):
                fs.rm(prefix, recursive=True)
        except Exception as error:  # the store is gone too: a later commit removes the orphan
            logger.warning("%s: the partly uploaded set %s could not be removed (%s)", url, set_id, error)
        raise
    finally:
        shutil.rmtree(local, ignore_errors=True)
    previous = current_set(url)
    if previous is not None:  # its retention counts from now: a reader may have resolved it a moment ago
        fs.pipe_file(f"{filesystem(previous)[1]}/{REPLACED}", now.encode())
    fs.pipe_file(f"{root}/{POINTER}", json.dumps({"set": set_id, "entries": list(writers), "committed": now}).encode())
    atomic._on_step("committed", Path(POINTER))
    try:
        remove_old_sets(url)
    except Exception as error:  # the new set is current: cleanup is left to the next commit
        logger.warning("%s: old sets not removed (%s: %s)", url, type(error).__name__, error)
    return join(url, SETS, set_id)


def current_set(url: str) -> str | None:
    """The URL of the current set under ``url`` (``url/sets/<id>``), or None when nothing was committed there."""
    fs, root = filesystem(url)
    pointer = f"{root}/{POINTER}"
    if not _exists(fs, pointer):
        return None
    return join(url, SETS, json.loads(fs.cat_file(pointer))["set"])


def resolve(url: str) -> str:
    """An entry of a committed set (``s3://bucket/out/pairs``) as the current set's copy
    (``s3://bucket/out/sets/<id>/pairs``); any other URL as it is."""
    parent, _, name = url.rstrip("/").rpartition("/")
    current = current_set(parent) if "://" in parent and not parent.endswith(":/") else None
    return join(current, name) if current else url


def _last_written(fs, prefix: str) -> float | None:
    """The newest modification time of the objects under ``prefix`` (seconds since the epoch)."""
    newest = None
    for path, info in fs.find(prefix, detail=True).items():
        stamp = info.get("LastModified") or info.get("last_modified") or info.get("mtime") or info.get("updated")
        if stamp is None:
            try:
                stamp = fs.modified(path)
            except (NotImplementedError, OSError):
                return None
        if isinstance(stamp, str):
            stamp = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        seconds = stamp.timestamp() if isinstance(stamp, datetime) else float(stamp)
        newest = seconds if newest is None else max(newest, seconds)
    return newest


def _started(set_id: str) -> float:
    """When the writer of ``set_id`` began its commit (the UTC time its name starts with)."""
    try:
        return datetime.strptime(set_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:  # not a time after all: counts as just begun (kept)
        return time.time()


def remove_old_sets(url: str, retention_s: float | None = None) -> list[str]:
    """Delete the sets under ``url`` that are not current and were last written more than ``retention_s`` ago
    (default :data:`RETENTION_S`): replaced sets, and sets never marked replaced (killed writers' orphans, the
    loser of two runs' race for the pointer) once their commit began more than :data:`ORPHAN_RETENTION_S` ago.
    Another writer's upload in progress and a set a reader resolved less than that ago stay. Returns the
    removed set URLs."""
    retention_s = RETENTION_S if retention_s is None else retention_s
    fs, root = filesystem(url)
    current = current_set(url)
    current_id = current.rsplit("/", 1)[-1] if current else None
    if not _exists(fs, f"{root}/{SETS}"):
        return []
    removed = []
    for prefix in fs.ls(f"{root}/{SETS}", detail=False):
        set_id = prefix.rstrip("/").rsplit("/", 1)[-1]
        if set_id == current_id or not _SET_ID.match(set_id):  # the current set; a placeholder, a stranger
            continue
        try:
            written = _last_written(fs, prefix)
            if written is None or time.time() - written <= retention_s:  # fresh, or an unknown age: kept
                continue
            if not _exists(fs, f"{prefix}/{REPLACED}") and time.time() - _started(set_id) <= ORPHAN_RETENTION_S:
                continue  # never current, or lost a race for the pointer: maybe a writer that stalled, kept longer
            fs.rm(prefix, recursive=True)
            removed.append(join(url, SETS, set_id))
        except FileNotFoundError:  # another writer's cleanup took it first
            continue
    if removed:
        logger.info("%s: removed %d old or orphaned set(s)", url, len(removed))
    return removed

"""Atomic writes: a file, a folder, or a set of outputs replaced all at once or not at all.

Every write goes to a hidden temporary name in the target's own folder (same file system, so the final
``os.replace`` / ``os.rename`` is atomic) and is renamed over the target only when complete.

A *set* (several files and folders that belong together, e.g. a curation run's ``videos/``, ``chunks/``,
``pairs/`` and ``stats.json``) is staged in one hidden folder, then swapped in under a journal:

1. every new entry is written into ``.staging-<id>/`` (a crash here leaves the old set untouched);
2. ``.commit.json`` is written atomically: from this instant the new set is the committed one;
3. each old entry is moved aside (``.old-<id>-<name>``) and the staged one renamed in; then the journal,
   the staging folder and the old entries are removed.

A crash during step 3 leaves the journal: :func:`roll_forward` (called by the next writer, and by
:func:`read_set_ready` for readers) finishes the swap, so a reader sees either the whole old set or the whole
new one. :func:`clean_leftovers` removes what a killed writer left before its journal existed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "JOURNAL",
    "clean_leftovers",
    "commit_set",
    "LEFTOVER_AGE_S",
    "keep_alive",
    "read_set_ready",
    "recover_dir",
    "replace_dir",
    "roll_forward",
    "staging_dir",
    "swap_dir",
    "write_bytes",
    "write_json",
    "write_text",
]

JOURNAL = ".commit.json"
_TMP, _OLD, _STAGING = ".tmp-", ".old-", ".staging-"


def _on_step(stage: str, path: Path) -> None:
    """Hook called at each stage of an atomic write (tests use it to kill a process mid-write)."""


def _unique() -> str:
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not supported on this platform / file system
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary name, fsync, rename).

    Args:
        path (`str` or `Path`): the final file; its folder is created when missing.
        data (`bytes`): the whole content.

    Returns:
        `Path`: ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{_TMP}{path.name}-{_unique()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            _on_step("written", tmp)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _on_step("replaced", path)
    return path


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`write_bytes`)."""
    return write_bytes(path, text.encode(encoding))


def write_json(path: str | Path, value: Any, **dumps_kwargs) -> Path:
    """Write ``value`` as JSON to ``path`` atomically; ``dumps_kwargs`` go to ``json.dumps``."""
    return write_text(path, json.dumps(value, **dumps_kwargs))


def temporary_dir(target: str | Path) -> Path:
    """A fresh hidden folder next to ``target`` to build it in (then :func:`replace_dir`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{_TMP}{target.name}-{_unique()}")
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def replace_dir(tmp: str | Path, target: str | Path, *, keep_existing: bool = False) -> Path:
    """Rename the complete folder ``tmp`` to ``target``.

    Args:
        tmp: the built folder (from :func:`temporary_dir`).
        target: the final folder.
        keep_existing (`bool`): when ``target`` already exists, keep it and discard ``tmp`` (content-addressed
            caches: another run committed the same content first); else the old folder is replaced.
    """
    tmp, target = Path(tmp), Path(target)
    if target.exists():
        if keep_existing:
            shutil.rmtree(tmp, ignore_errors=True)
            return target
        swap_dir(tmp, target)
    else:
        os.rename(tmp, target)
    _fsync_dir(target.parent)
    _on_step("replaced", target)
    return target


def _previous_name(folder: Path) -> Path:
    """Where :func:`swap_dir` keeps the old version while the new one is renamed in."""
    return folder.parent / f".{folder.name}.previous"


def recover_dir(folder: str | Path) -> None:
    """Undo what a crash in the middle of :func:`swap_dir` left: the previous version is put back where it was
    missing, and staging folders of unfinished writes (``.<name>.staging-*``, see :func:`staging_dir`) are removed."""
    folder = Path(folder)
    previous = _previous_name(folder)
    if previous.is_dir() and not folder.exists():
        os.replace(previous, folder)
        logger.warning("restored the previous version of %s (an earlier write stopped half-way)", folder)
    for leftover in folder.parent.glob(f".{folder.name}.staging-*"):  # only what staging_dir makes
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)


def staging_dir(folder: str | Path) -> Path:
    """A fresh hidden folder beside ``folder`` to build its next version in (then :func:`swap_dir`); a crashed
    build's leftover is removed by :func:`recover_dir`, and nothing else beside ``folder`` is."""
    import tempfile

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{folder.name}.staging-", dir=folder.parent))


def swap_dir(staging: str | Path, folder: str | Path) -> None:
    """Replace ``folder`` by the finished ``staging`` folder (same file system) so that at every instant either
    the old or the new version is whole: the old one is renamed aside, the new one renamed in, and only then
    the old one deleted. A crash between the two renames is undone by :func:`recover_dir`."""
    staging, folder = Path(staging), Path(folder)
    previous = _previous_name(folder)
    if previous.exists():
        shutil.rmtree(previous)
    if folder.exists():
        os.replace(folder, previous)
    try:
        os.replace(staging, folder)
    except BaseException:
        if previous.exists() and not folder.exists():
            os.replace(previous, folder)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def commit_set(folder: str | Path, writers: dict[str, Callable[[Path], Any]]) -> None:
    """Replace several entries of ``folder`` as one set (staging folder, journal, swap; see the module doc).

    Args:
        folder (`str` or `Path`): where the entries live.
        writers (`dict[str, Callable[[Path], Any]]`): entry name -> a function that writes that entry (a file
            or a folder) at the path it is given. All run before anything in ``folder`` changes.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    roll_forward(folder)
    staging = folder / f"{_STAGING}{_unique()}"
    staging.mkdir()
    try:
        for name, write in writers.items():
            write(staging / name)
            _on_step("staged", staging / name)
        _fsync_dir(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_json(folder / JOURNAL, {"staging": staging.name, "entries": list(writers)})
    _on_step("journaled", folder / JOURNAL)
    roll_forward(folder)


def roll_forward(folder: str | Path) -> bool:
    """Finish a set swap that a journal in ``folder`` records (idempotent); True when there was one."""
    folder = Path(folder)
    journal = folder / JOURNAL
    if not journal.is_file():
        return False
    record = json.loads(journal.read_text())
    staging = folder / record["staging"]
    for name in record["entries"]:
        staged, target = staging / name, folder / name
        if staged.exists() or staged.is_symlink():  # not yet swapped in
            if target.exists() or target.is_symlink():
                old = folder / f"{_OLD}{_unique()}-{name}"
                os.rename(target, old)
            os.rename(staged, target)
            _on_step("swapped", target)
    _fsync_dir(folder)
    journal.unlink()
    _fsync_dir(folder)
    _remove(staging)
    clean_leftovers(folder)
    return True


ALIVE = ".alive"  # touched every HEARTBEAT_S by the run that owns a working folder (:func:`keep_alive`)
HEARTBEAT_S = 60.0
LEFTOVER_AGE_S = 3600.0  # a working folder in a shared place untouched this long is a killed run's


@contextlib.contextmanager
def keep_alive(folder: str | Path, every_s: float = HEARTBEAT_S):
    """Touch ``folder/.alive`` every ``every_s`` seconds while the block runs, so that an age-based
    :func:`clean_leftovers` by another run never takes a live run's working folder (its files may sit unchanged
    for hours, e.g. during a long upload). Creates ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ALIVE
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                marker.touch()
            except OSError:  # the folder was removed (the run's own cleanup): nothing left to keep
                return

    marker.touch()  # alive from the start, before the thread's first turn (a cleanup may look at once)
    thread = threading.Thread(target=beat, name=f"keep-alive {folder.name}", daemon=True)
    thread.start()
    try:
        yield folder
    finally:
        stop.set()
        thread.join()


def _last_touched(path: Path) -> float:
    """When a working folder was last shown alive: the newest modification time in its tree, its heartbeat
    (:func:`keep_alive`) included."""
    try:
        stamps = [path.lstat().st_mtime]  # the heartbeat file is one of the tree's entries
        if path.is_dir() and not path.is_symlink():
            for root, folders, files in os.walk(path):
                stamps += [os.lstat(os.path.join(root, name)).st_mtime for name in folders + files]
    except FileNotFoundError:  # removed meanwhile
        return time.time()
    return max(stamps)


def clean_leftovers(folder: str | Path, patterns: Iterable[str] = (f"{_TMP}*", f"{_OLD}*", f"{_STAGING}*"), *,
                    older_than_s: float | None = None) -> list[Path]:
    """Remove what killed writers left in ``folder`` (temporary, old and staging entries), unless a journal
    still needs them (then roll it forward first). Returns the removed paths.

    Args:
        older_than_s (`float`, *optional*): only entries untouched for that long (a folder other live runs
            share, such as the step cache); default: all.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    if (folder / JOURNAL).is_file():
        roll_forward(folder)
    removed = []
    for pattern in patterns:
        for leftover in folder.glob(pattern):
            if older_than_s is not None and time.time() - _last_touched(leftover) < older_than_s:
                continue
            _remove(leftover)
            removed.append(leftover)
    return removed


def read_set_ready(folder: str | Path) -> Path:
    """Before reading a committed set: finish any interrupted swap so the set read is a whole one."""
    folder = Path(folder)
    if (folder / JOURNAL).is_file():
        try:
            roll_forward(folder)
        except OSError as error:  # read-only folder: the journal stays for the next writer
            logger.warning("%s: an interrupted commit could not be finished (%s)", folder, error)
    return folder

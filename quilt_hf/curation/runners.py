"""Runners: what schedules the pipeline's steps, kept apart from the steps themselves.

- :class:`LocalRunner` (default): each step is a ``datasets`` ``map``/``filter`` with a ``desc=`` progress bar.
- :class:`~quilt_hf.curation.ray_runner.RayRunner` (its own module, so the local runner never imports Ray):
  the same step objects on Ray Data, CPU steps as tasks and model steps as actor pools; the ``ray`` extra.
- :class:`IsolatedWorker`: runs one function call in a separate (spawned) process with a timeout, killed
  and restarted when it hangs or crashes. Decoding runs there: decord can deadlock holding the GIL, and
  a native crash on a corrupt file must not take the run with it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import select
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

logger = logging.getLogger(__name__)


class WorkerTimeout(TimeoutError):
    """The isolated call ran past its time limit; the worker was killed."""


class WorkerCrashed(RuntimeError):
    """The isolated worker process died (a native crash) during the call."""


class WorkerError(RuntimeError):
    """The isolated call raised; the message holds the original exception's type and text."""


def _read_message(stream) -> Any:
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError("worker closed its pipe")
    size = int.from_bytes(header, "little")
    body = stream.read(size)
    if len(body) < size:
        raise EOFError("worker closed its pipe")
    return pickle.loads(body)  # messages between this process and its own worker only


def _write_message(stream, value: Any) -> None:
    body = pickle.dumps(value)
    stream.write(len(body).to_bytes(8, "little") + body)
    stream.flush()


def _serve() -> None:
    """The worker's loop: read (function, args, kwargs), answer (ok, result or error text)."""
    reader = os.fdopen(os.dup(0), "rb")
    writer = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints of native libraries go to stderr, never into the protocol
    while True:
        try:
            message = _read_message(reader)
        except EOFError:
            return
        if message is None:
            return
        function, args, kwargs = message
        try:
            answer = (True, function(*args, **kwargs))
        except BaseException as error:  # report every failure to the parent, keep serving
            answer = (False, f"{type(error).__name__}: {error}")
        _write_message(writer, answer)


class IsolatedWorker:
    """A worker process (``python -m quilt_hf.curation.runners``, no shell) that runs one call at a time
    with a timeout; it is killed after a hang and restarted after a hang or a crash.

    The function and its arguments travel pickled between this process and its own worker, so the
    function must be importable (a module-level function).
    """

    def __init__(self):
        self._process: subprocess.Popen | None = None

    def _start(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        # glibc gives each decoding thread its own heap ("arena") that keeps freed frames; two arenas keep the
        # worker's peak lower and steadier (bench/bench_memory.py). A value the user set is kept.
        env.setdefault("MALLOC_ARENA_MAX", "2")
        self._process = subprocess.Popen(  # fixed argv, no shell
            [sys.executable, "-m", "quilt_hf.curation.runners"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )

    def _kill(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait(10)
            for stream in (self._process.stdin, self._process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
        self._process = None

    def call(self, function: Callable, *args, timeout: float, **kwargs) -> Any:
        """Run ``function(*args, **kwargs)`` in the worker; raise WorkerTimeout / WorkerCrashed / WorkerError.

        A call interrupted midway (e.g. Ray cancelling the task that runs it: KeyboardInterrupt) ends the
        worker process, so its answer is never read by the next call."""
        if self._process is None or self._process.poll() is not None:
            self._kill()
            self._start()
        try:
            return self._exchange(function, args, kwargs, timeout)
        except (WorkerTimeout, WorkerCrashed, WorkerError):
            raise
        except BaseException:  # interrupted with the request in flight: the pipe is no longer in step
            self._kill()
            raise

    def _exchange(self, function: Callable, args: tuple, kwargs: dict, timeout: float) -> Any:
        try:
            _write_message(self._process.stdin, (function, args, kwargs))
        except (BrokenPipeError, OSError) as error:
            self._kill()
            raise WorkerCrashed(f"worker died before the call ({error})") from error
        ready, _, _ = select.select([self._process.stdout], [], [], timeout)
        if not ready:
            self._kill()
            raise WorkerTimeout(f"no result after {timeout:.0f} s")
        try:
            ok, value = _read_message(self._process.stdout)
        except EOFError as error:
            self._process.wait(10)
            code = self._process.returncode
            self._kill()
            raise WorkerCrashed(f"worker died (exit code {code})") from error
        if not ok:
            raise WorkerError(value)
        return value

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            try:
                _write_message(self._process.stdin, None)
                self._process.wait(5)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                pass
        self._kill()

    def __reduce__(self):
        # A worker never travels to another process: unpickled there (a Ray task), it is that process's
        # shared worker, so the tasks a Ray worker process runs one after another use one decoding process
        # instead of starting one per video.
        return (process_worker, ())


_PROCESS_WORKER: IsolatedWorker | None = None


def process_worker() -> IsolatedWorker:
    """This process's shared :class:`IsolatedWorker` (what an unpickled worker becomes). Its process ends
    with this one: the worker's loop stops when its pipe closes, and it is closed at exit."""
    global _PROCESS_WORKER
    if _PROCESS_WORKER is None:
        import atexit

        _PROCESS_WORKER = IsolatedWorker()
        atexit.register(_PROCESS_WORKER.close)
    return _PROCESS_WORKER


def end_process_worker() -> None:
    """End this process's shared decoding process, if any (the next call starts a new one, e.g. at this
    process's new priority)."""
    if _PROCESS_WORKER is not None:
        _PROCESS_WORKER.close()


@dataclass
class Step:
    """One step of the pipeline over the videos table.

    ``kind="map"``: ``fn(row) -> dict`` of updated columns; ``kind="filter"``: ``fn(row) -> bool``;
    ``kind="flat_map"``: ``fn(row) -> list[dict]`` (rows of a new table with ``features``).
    ``after``: called when the step is done with every row (e.g. to free what only this step needed).
    """

    name: str
    fn: Callable
    kind: Literal["map", "filter", "flat_map"] = "map"
    fingerprint: str = ""
    features: Any = None
    after: Callable[[], None] | None = None  # called once the step has run over every row (LocalRunner)
    pool: str = ""  # a model step's pool name (asr, histology, text): an actor pool under Ray; "" = CPU task
    setup: Callable[[], None] | None = None  # loads the step's model (once per Ray actor)
    counters: Callable[[], dict] | None = None  # the step owner's counters (Ray sums them across workers)
    # ``batch_fn(rows) -> list[dict]``: the map of several rows at once (a Ray model actor's call; e.g. Whisper
    # over the windows of several videos); the same results as ``fn`` row by row
    batch_fn: Callable[[list[dict]], list[dict]] | None = None


@dataclass
class LocalRunner:
    """Runs steps as ``datasets`` transforms in this process (the default)."""

    timings: dict[str, float] = field(default_factory=dict)

    def run(self, dataset, steps: Sequence[Step]):
        for step in steps:
            began = time.perf_counter()
            extra = {}
            if step.fingerprint:  # ours, so datasets never hashes the step objects (models inside)
                blob = f"{dataset._fingerprint}-{step.fingerprint}".encode()
                extra["new_fingerprint"] = hashlib.sha256(blob).hexdigest()[:32]
            if step.kind == "map":
                dataset = dataset.map(step.fn, desc=step.name, **extra)
            elif step.kind == "filter":
                dataset = dataset.filter(step.fn, desc=step.name, **extra)
            else:
                def expand(batch, fn=step.fn, features=step.features):
                    rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
                    out = [new for row in rows for new in fn(row)]
                    return {name: [r[name] for r in out] for name in features}

                dataset = dataset.map(
                    expand, batched=True, batch_size=1, remove_columns=dataset.column_names,
                    features=step.features, desc=step.name, **extra,
                )
            if step.after is not None:
                step.after()
            self.timings[step.name] = self.timings.get(step.name, 0.0) + time.perf_counter() - began
        return dataset


if __name__ == "__main__":
    _serve()

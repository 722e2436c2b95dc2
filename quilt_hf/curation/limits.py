"""Per-video time limits for the steps that run in this process (ASR, LLM text correction).

Decoding runs in a worker process that is killed at its limit. A model's ``generate`` cannot be killed from
outside without losing the loaded model, so these steps cooperate instead: the pipeline opens a
:func:`time_limit` around one video's work, and the model code asks :func:`remaining` for the time left (to
pass ``max_time`` to ``generate``, which stops decoding at that moment) and calls :func:`check` between
windows/batches, which raises :class:`StepTimeout` once the limit is spent. The video is then dropped with a
``*_timeout`` reason and the run goes on.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

__all__ = ["StepTimeout", "check", "remaining", "time_limit"]

_local = threading.local()


class StepTimeout(TimeoutError):
    """A per-video step ran past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float | None, what: str = "step") -> Iterator[None]:
    """Bound the work inside the block to ``seconds`` (None or <= 0: no limit). Nested limits keep the
    earliest deadline."""
    previous = getattr(_local, "deadline", None)
    deadline = previous
    if seconds is not None and seconds > 0:
        mine = (time.monotonic() + seconds, what, seconds)
        deadline = mine if previous is None or mine[0] < previous[0] else previous
    _local.deadline = deadline
    try:
        yield
    finally:
        _local.deadline = previous


def remaining() -> float | None:
    """Seconds left under the current limit (None when there is none; never negative)."""
    deadline = getattr(_local, "deadline", None)
    return None if deadline is None else max(0.0, deadline[0] - time.monotonic())


def check() -> None:
    """Raise :class:`StepTimeout` when the current limit is spent."""
    deadline = getattr(_local, "deadline", None)
    if deadline is not None and time.monotonic() >= deadline[0]:
        raise StepTimeout(f"{deadline[1]} did not finish in {deadline[2]:.0f} s")

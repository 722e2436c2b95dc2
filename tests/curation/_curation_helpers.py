"""Picklable helpers for the curation tests (the isolated worker imports them by name)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class FakeTranscript:
    language: str
    text: str
    segments: list = field(default_factory=list)


class FakeTranscriber:
    """A deterministic stand-in for WhisperTranscriber: one 2-second segment per 2 s of audio."""

    model_name = "fake-asr"
    backend = "fake"
    language = "en"

    def transcribe(self, audio: np.ndarray) -> FakeTranscript:
        seconds = int(len(audio) / 16000)
        segments = [
            {"start": float(t), "end": float(t + 2), "text": f"at {t} seconds the tissue shows nuclei"}
            for t in range(0, seconds - 1, 2)
        ]
        return FakeTranscript("en", " ".join(s["text"] for s in segments), segments)

    def transcribe_many(self, audios):
        return [self.transcribe(a) for a in audios]


class SlowTranscriber(FakeTranscriber):
    """FakeTranscriber that takes ``seconds`` per video, like a real Whisper that paces the steps after it."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def transcribe(self, audio: np.ndarray) -> FakeTranscript:
        time.sleep(self.seconds)
        return super().transcribe(audio)


def frames_or_hang(path, folder, options, duration):
    """The real frame stage, except that files named *hang* never return (a decoder deadlock)."""
    from quilt_hf.curation.frames import extract_to_folder

    if "hang" in os.path.basename(path):
        time.sleep(3600)
    return extract_to_folder(path, folder, options, duration)


def crash_worker():
    os._exit(3)


def raise_error():
    raise ValueError("boom")


def add(a, b):
    return a + b


class KillingTranscriber(FakeTranscriber):
    """FakeTranscriber that SIGKILLs its own process when it reads a video whose name holds ``victim``: the
    first time only (a marker file in ``marker_dir`` remembers it), or every time with ``always``."""

    def __init__(self, marker_dir: str, victim: str, always: bool = False):
        self.marker_dir, self.victim, self.always = marker_dir, victim, always

    def transcribe_file(self, path: str) -> FakeTranscript:
        import signal
        from pathlib import Path

        from quilt_hf.curation.asr import load_audio

        name = os.path.basename(path)
        if self.victim in name:
            marker = Path(self.marker_dir) / f"killed-{name}"
            if self.always or not marker.exists():
                marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)
        return self.transcribe(load_audio(path))


class UnloadableTranscriber(FakeTranscriber):
    """A transcriber whose model cannot load (``load()`` raises ModelLoadError)."""

    def load(self) -> None:
        from quilt_hf.errors import ModelLoadError

        raise ModelLoadError("--asr_model", "missing-whisper", "no such folder")


class BatchingTranscriber(FakeTranscriber):
    """FakeTranscriber with ``transcribe_files`` (as WhisperTranscriber): each call writes how many videos it got
    into ``marker_dir``; with ``victim``, a call (batch or alone) that holds that video SIGKILLs its process."""

    def __init__(self, marker_dir: str, victim: str = ""):
        self.marker_dir, self.victim = marker_dir, victim

    def _maybe_die(self, paths) -> None:
        import signal

        if self.victim and any(self.victim in os.path.basename(str(p)) for p in paths):
            os.kill(os.getpid(), signal.SIGKILL)

    def transcribe_file(self, path: str) -> FakeTranscript:
        from quilt_hf.curation.asr import load_audio

        self._maybe_die([path])
        return self.transcribe(load_audio(path))

    def transcribe_files(self, paths, prompts=None) -> list:
        from pathlib import Path

        from quilt_hf.curation.asr import load_audio

        Path(self.marker_dir, f"call-{os.getpid()}-{time.time_ns()}").write_text(str(len(paths)))
        self._maybe_die(paths)
        return [self.transcribe(load_audio(p)) for p in paths]


def frames_recording_pids(marker_dir: str, path, folder, options, duration):
    """The real frame stage; notes (parent pid, own pid) of the decoding process that ran it in ``marker_dir``."""
    from pathlib import Path

    from quilt_hf.curation.frames import extract_to_folder

    Path(marker_dir, f"{os.getppid()}-{os.getpid()}-{os.path.basename(path)}").touch()
    return extract_to_folder(path, folder, options, duration)


def frames_recording_niceness(marker_dir: str, path, folder, options, duration):
    """The real frame stage; notes the niceness of the decoding process that ran it in ``marker_dir``."""
    from pathlib import Path

    from quilt_hf.curation.frames import extract_to_folder

    Path(marker_dir, f"{os.nice(0)}-{os.path.basename(path)}").touch()
    return extract_to_folder(path, folder, options, duration)


class ThreadsRecordingTranscriber(FakeTranscriber):
    """FakeTranscriber that notes the torch threads and the niceness of the process it runs in (the Ray ASR
    actor), and whether it is called on the thread that loaded it ("same") or another ("other")."""

    def __init__(self, marker_dir: str):
        self.marker_dir = marker_dir
        self.loaded_on = None

    def load(self) -> None:
        import threading

        self.loaded_on = threading.get_ident()

    def transcribe(self, audio: np.ndarray) -> FakeTranscript:
        import threading
        from pathlib import Path

        import torch

        thread = "same" if threading.get_ident() == self.loaded_on else "other"
        Path(self.marker_dir, f"{torch.get_num_threads()}-{os.nice(0)}-{os.getpid()}-{thread}").touch()
        return super().transcribe(audio)

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

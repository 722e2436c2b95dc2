"""Tiny randomly initialised models for the benches' ``--smoke`` runs and memory benches (never downloaded)."""

from __future__ import annotations

from pathlib import Path


def tiny_whisper(folder: Path) -> Path:
    """A tiny random Whisper with the real tokenizer (the tests' fixture, with a few tokens per window)."""
    from quilt_hf.offline import tiny_random_whisper

    return tiny_random_whisper(folder, max_length=10, keep_generation_fields=True)

"""Test data factories: synthetic lecture videos (PyAV, H.264 + AAC) and H&E-like / slide-like images.

Import them as ``from factories import ...`` (tests/ is on the path); fixtures live in conftest.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEMO_CORPUS = REPO / "demo_corpus"


@dataclass
class Scene:
    """One stretch of a synthetic video: an RGB image shown for ``seconds`` (optionally moving)."""

    image: np.ndarray  # H x W x 3 uint8
    seconds: float
    drift: tuple[int, int] = (0, 0)  # pixels per second of horizontal/vertical pan


def _frame_at(scene: Scene, t: float, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    image = scene.image
    dx, dy = int(scene.drift[0] * t), int(scene.drift[1] * t)
    if (dx, dy) != (0, 0):
        image = np.roll(image, shift=(dy, dx), axis=(0, 1))
    if image.shape[:2] != (height, width):
        from PIL import Image

        image = np.asarray(Image.fromarray(image).resize((width, height)))
    return image


def write_video(
    path: Path,
    scenes: Sequence[Scene],
    *,
    fps: int = 10,
    size: tuple[int, int] = (96, 128),
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    audio_start: float = 0.0,
) -> Path:
    """Write an H.264 (+ AAC when ``audio`` is given) MP4 of ``scenes`` with PyAV; returns ``path``.
    ``audio_start``: seconds after the first video frame at which the audio track begins."""
    import av

    height, width = size
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "18"}
        audio_stream = None
        if audio is not None:
            audio_stream = container.add_stream("aac", rate=sample_rate)
            audio_stream.layout = "mono"
        for scene in scenes:
            for k in range(max(1, round(scene.seconds * fps))):
                frame = av.VideoFrame.from_ndarray(_frame_at(scene, k / fps, size), format="rgb24")
                for packet in video.encode(frame):
                    container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio_stream is not None:
            samples = np.clip(audio, -1, 1).astype(np.float32)
            step = 1024
            for offset in range(0, len(samples), step):
                chunk = samples[offset : offset + step][None, :]
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate = sample_rate
                frame.pts = offset + round(audio_start * sample_rate)
                frame.time_base = Fraction(1, sample_rate)
                for packet in audio_stream.encode(frame):
                    container.mux(packet)
            for packet in audio_stream.encode():
                container.mux(packet)
    return path


def histology_like_image(seed: int, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    """A pink/purple H&E-like texture: a random field of nuclei on eosin background."""
    rng = np.random.default_rng(seed)
    height, width = size
    image = np.empty((height, width, 3), np.float32)
    image[:] = (232, 170, 200)
    image += rng.normal(0, 12, image.shape)
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(height * width // 150):
        cy, cx, r = rng.integers(0, height), rng.integers(0, width), rng.integers(2, 5)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        image[mask] = (90, 50, 140)
    return np.clip(image, 0, 255).astype(np.uint8)


def slide_like_image(seed: int, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    """A non-histology frame: a white slide with dark text-like bars."""
    rng = np.random.default_rng(seed)
    height, width = size
    image = np.full((height, width, 3), 250, np.uint8)
    for row in range(10, height - 10, 14):
        length = int(rng.integers(width // 3, width - 20))
        image[row : row + 5, 10 : 10 + length] = 30
    return image


def tone(seconds: float, sample_rate: int = 16000, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.2 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def write_audio_only(path: Path, seconds: float = 2.0) -> None:
    """An audio-only container (AAC in MP4/M4A)."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        samples = tone(seconds)
        for offset in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[offset : offset + 1024][None], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 16000, offset, Fraction(1, 16000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)

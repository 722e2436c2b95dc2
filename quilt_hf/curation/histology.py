"""Histology filter: is this frame histopathology? A pluggable classifier; every decision keeps its score.

Backends, one interface (``name``, ``load()``, ``predict(images) -> list[(is_histology, score)]``):

- ``learned`` (default, offline): colour-texture features and a small numpy MLP trained on generated frames
  (:mod:`quilt_hf.curation.histology_learned`, weights in ``quilt_hf/data/histology_mlp.json``);
- ``heuristic`` (offline, no model): H&E stain colour and texture statistics, tuned on the demo corpus;
- ``quilt-ensemble:DIR``: Quilt's released filter (two ConvNeXt-Tiny classifiers and a DINO ViT-S/16 linear
  head; a frame is histology when any says so), run on transformers (:mod:`quilt_hf.curation.histology_quilt`);
- a transformers image-classification model, by Hub name or local folder (the positive class is any label
  containing "histo", "patholog", "tissue" or "positive", else label index 1);
- zero-shot with any CLIP-like model (``zero-shot:<model>``, or a model folder whose config is CLIP-like),
  comparing a histology prompt with non-histology prompts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

logger = logging.getLogger(__name__)

HISTOLOGY_VERSION = "1"
POSITIVE_WORDS = ("histo", "patholog", "tissue", "positive", "h&e")


class HistologyClassifier(Protocol):
    """What the pipeline needs of a histology filter.

    ``load()`` loads the model once per process before any video is processed, and raises
    :class:`~quilt_hf.errors.ModelLoadError` (naming the model and the fix) when it cannot; ``predict`` must
    not be the first to find that out.
    """

    name: str

    def load(self) -> None: ...

    def predict(self, images: Sequence[np.ndarray]) -> list[tuple[bool, float]]: ...


def stain_features(image: np.ndarray) -> dict[str, float]:
    """Colour and texture statistics of an RGB image (uint8), computed on a 128-px thumbnail.

    Shares are of the non-white area (at least a quarter of the frame), so a low-power view of tissue on
    white glass counts like a full field. ``textured``: share of pixels whose 5x5 neighbourhood varies
    (local standard deviation > 0.02): tissue is grainy everywhere, while slides, titles, drawings and
    studio shots have flat areas. ``he``: share of textured pixels with an H&E hue (pink eosin or purple haematoxylin, 250-360 or 0-10
    degrees, saturated enough); ``dab``: the same for the brown DAB of immunohistochemistry (10-45 degrees,
    saturated, not bright); ``white``: near-white share.
    """
    from PIL import Image
    from scipy.ndimage import uniform_filter

    thumb = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
    thumb.thumbnail((128, 128))
    rgb = np.asarray(thumb, np.float32) / 255.0
    hsv = np.asarray(thumb.convert("HSV"), np.float32) / 255.0
    hue, sat, val = hsv[..., 0] * 360.0, hsv[..., 1], hsv[..., 2]
    gray = rgb.mean(-1)
    local_std = np.sqrt(np.maximum(uniform_filter(gray**2, 5) - uniform_filter(gray, 5) ** 2, 0))
    textured = local_std > 0.02
    colour = (sat >= 0.12) & (val >= 0.2) & (val <= 0.98)
    he = ((hue >= 250) | (hue <= 10)) & colour
    dab = (hue > 10) & (hue <= 45) & (sat >= 0.3) & (val >= 0.2) & (val <= 0.85)
    white = (val > 0.92) & (sat < 0.08)
    area = max(float((~white).mean()), 0.25)  # low-power views: tissue on white glass
    return {
        "textured": min(1.0, float((textured & ~white).mean()) / area),
        "he": min(1.0, float((he & textured).mean()) / area),
        "dab": min(1.0, float((dab & textured).mean()) / area),
        "white": float(white.mean()),
    }


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


@dataclass
class HeuristicHistologyClassifier:
    """Fast offline histology detector from stain colour and texture (no model weights).

    ``score = sigmoid(20 (stained - stain_center)) * sigmoid(20 (textured - texture_center))`` where
    ``stained`` is the share of textured H&E or DAB pixels and ``textured`` the share of textured pixels
    (see :func:`stain_features`). Tissue fields score near 1; titles (flat colour), slides and diagrams
    (white, flat), and presenter shots (flat walls, little stain) near 0.
    """

    stain_center: float = 0.2
    texture_center: float = 0.62
    threshold: float = 0.5
    name: str = "heuristic-stain-texture-v3"
    model_free = True  # no model to load once: the Ray runner runs it in the CPU task that decoded the frames

    def load(self) -> None:
        """Nothing to load (no weights)."""

    def score(self, image: np.ndarray) -> float:
        f = stain_features(image)
        return _sigmoid(20 * (f["he"] + f["dab"] - self.stain_center)) * _sigmoid(20 * (f["textured"] - self.texture_center))

    def predict(self, images: Sequence[np.ndarray]) -> list[tuple[bool, float]]:
        scores = [self.score(np.asarray(image)) for image in images]
        return [(s >= self.threshold, s) for s in scores]


@dataclass
class _PipelineClassifier:
    """A histology filter backed by a transformers pipeline built on first use (once per process)."""

    model: str
    threshold: float = 0.5
    device: str | int | None = None
    batch_size: int = 16
    name: str = ""
    _pipe: object = field(default=None, repr=False)
    task = ""  # the pipeline task
    prefix = ""  # provenance name prefix

    def __post_init__(self):
        self.name = self.name or f"{self.prefix}:{self.model}"

    def load(self) -> None:
        """Build the pipeline now (once); raise :class:`~quilt_hf.errors.ModelLoadError` when it cannot be."""
        from quilt_hf.errors import ModelLoadError, UserFacingError

        try:
            self._pipeline()
        except UserFacingError:
            raise
        except Exception as error:  # from_pretrained raises many kinds
            from pathlib import Path

            folder = Path(self.model).expanduser()
            if folder.is_dir() and not (folder / "config.json").is_file():
                reason = "no transformers model in that folder (no config.json)"
            else:
                reason = f"the model cannot be loaded ({type(error).__name__}: {error})"
            raise ModelLoadError(
                "--histology", self.model, reason,
                f"give a {self.task} model (Hub name or folder), or --histology heuristic",
            ) from error

    def __getstate__(self):  # a loaded pipeline never travels to another process (Ray): it loads there
        return {**self.__dict__, "_pipe": None}

    def _pipeline(self):
        if self._pipe is None:
            from transformers import pipeline

            self._pipe = pipeline(self.task, model=self.model, device=self.device)
        return self._pipe


@dataclass
class TransformersHistologyClassifier(_PipelineClassifier):
    """Any transformers image-classification model (Hub name or folder) as a histology filter."""

    task = "image-classification"
    prefix = "image-classification"

    def _positive(self, label: str, labels: list[str]) -> bool:
        lower = label.lower()
        if any(word in lower for word in POSITIVE_WORDS) and not lower.startswith(("non", "not")):
            return True
        return not any(any(w in name.lower() for w in POSITIVE_WORDS) for name in labels) and label in ("LABEL_1", "1")

    def predict(self, images: Sequence[np.ndarray]) -> list[tuple[bool, float]]:
        from PIL import Image

        pipe = self._pipeline()
        labels = list(pipe.model.config.id2label.values())
        outputs = pipe([Image.fromarray(np.asarray(i)) for i in images], top_k=len(labels), batch_size=self.batch_size)
        results = []
        for scores in outputs:
            score = sum(s["score"] for s in scores if self._positive(s["label"], labels))
            results.append((score >= self.threshold, float(score)))
        return results


@dataclass
class ZeroShotHistologyClassifier(_PipelineClassifier):
    """Zero-shot histology filter with any CLIP-like model (``zero-shot-image-classification`` pipeline)."""

    positive: Sequence[str] = ("an H&E stained histopathology image", "a microscopy image of tissue")
    negative: Sequence[str] = (
        "a presentation slide with text", "a person talking", "a diagram", "a photograph", "a title screen",
    )
    task = "zero-shot-image-classification"
    prefix = "zero-shot"

    def predict(self, images: Sequence[np.ndarray]) -> list[tuple[bool, float]]:
        from PIL import Image

        labels = list(self.positive) + list(self.negative)
        outputs = self._pipeline()(
            [Image.fromarray(np.asarray(i)) for i in images], candidate_labels=labels, batch_size=self.batch_size
        )
        if isinstance(outputs, list) and outputs and isinstance(outputs[0], dict):
            outputs = [outputs]
        results = []
        for scores in outputs:
            score = sum(s["score"] for s in scores if s["label"] in self.positive)
            results.append((score >= self.threshold, float(score)))
        return results


def _is_clip_like(model: str) -> bool:
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model)
    except Exception:  # unknown name offline: let the image-classification path report it
        return False
    return hasattr(config, "text_config") and hasattr(config, "vision_config")


def build_histology_classifier(spec: str | None = "learned", threshold: float | None = None, device=None) -> HistologyClassifier:
    """A histology classifier from a string: ``heuristic``, ``learned`` (or ``learned:<weights.json>``),
    ``quilt-ensemble:<folder>``, ``zero-shot:<model>``, or a model name/folder (CLIP-like models are used
    zero-shot, others as image classifiers)."""
    spec = spec or "learned"
    extra = {} if threshold is None else {"threshold": threshold}
    if spec == "heuristic":
        return HeuristicHistologyClassifier(**extra)
    if spec == "learned" or spec.startswith("learned:"):
        from quilt_hf.curation.histology_learned import LearnedHistologyClassifier

        return LearnedHistologyClassifier(spec.split(":", 1)[1] if ":" in spec else None, **extra)
    if spec.startswith("quilt-ensemble:"):
        from quilt_hf.curation.histology_quilt import QuiltEnsembleHistologyClassifier

        return QuiltEnsembleHistologyClassifier(spec.split(":", 1)[1], device=device, **extra)
    if spec.startswith("zero-shot:"):
        return ZeroShotHistologyClassifier(spec.split(":", 1)[1], device=device, **extra)
    if _is_clip_like(spec):
        return ZeroShotHistologyClassifier(spec, device=device, **extra)
    return TransformersHistologyClassifier(spec, device=device, **extra)

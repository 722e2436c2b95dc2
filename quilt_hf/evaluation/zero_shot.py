"""Zero-shot classification: class embeddings from prompts, images assigned to the nearest class.

Each class embedding is the normalised mean of the normalised text embeddings of every
(template, class name) pair: prompt ensembling over templates and synonyms, as CLIP and open_clip do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from quilt_hf.errors import UserFacingError
from quilt_hf.evaluation.features import FeatureCache, image_features, normalize, text_features
from quilt_hf.evaluation.metrics import classification_metrics

logger = logging.getLogger(__name__)

TASK = "zero_shot"


def class_prompts(class_names: Sequence[Sequence[str]], templates: Sequence[str]) -> list[list[str]]:
    """For each class, every template filled with every one of its names."""
    return [[template.format(c=name) for name in names for template in templates] for names in class_names]


def zero_shot_classifier(
    model,
    class_names: Sequence[Sequence[str]],
    templates: Sequence[str],
    *,
    cache: FeatureCache | None = None,
) -> torch.Tensor:
    """A ``(num_classes, dim)`` matrix of normalised class embeddings (prompt ensembles)."""
    prompts = class_prompts(class_names, templates)
    flat = [p for group in prompts for p in group]
    embeddings = normalize(text_features(model, flat, cache=cache))
    weights, start = [], 0
    for group in prompts:
        weights.append(embeddings[start : start + len(group)].mean(dim=0))
        start += len(group)
    return normalize(torch.stack(weights))


def evaluate(
    model,
    dataset,
    *,
    split: str | None = None,
    templates: Sequence[str] | None = None,
    batch_size: int = 64,
    cache: FeatureCache | None = None,
) -> dict:
    """Zero-shot classification of a benchmark's ``split``.

    Args:
        model (`DualEncoderAdapter`): from `load_model`.
        dataset (`BenchmarkData`): from `load_benchmark` (classification).
        split (`str`, *optional*): the split role to score; default ``test``, or ``all`` for unsplit data (a
            plain folder of class subfolders: zero-shot needs no training data, so all of it is scored).
        templates (`Sequence[str]`, *optional*): prompt templates with ``{c}``; default the benchmark's.
        batch_size (`int`): images per forward pass.
        cache (`FeatureCache`, *optional*): feature cache shared between tasks.

    Returns:
        `dict`: ``acc1``, ``acc5`` (more than 5 classes), ``balanced_accuracy``, ``mean_per_class_recall``,
        ``per_class_recall``, ``confusion_matrix``, ``class_names``, ``num_samples``, ``num_classes``,
        ``num_templates``, ``split``.
    """
    benchmark = dataset.benchmark
    if not benchmark.classes:
        raise UserFacingError(
            f"{benchmark.pretty_name} has no classes: zero-shot classification does not apply"
        )
    templates = list(templates or benchmark.templates)
    split = split or getattr(dataset, "evaluation_role", "test")
    data = dataset.split(split)
    labels = np.asarray(data[benchmark.label_column], dtype=np.int64)
    images = normalize(
        image_features(
            model,
            data,
            column=benchmark.image_column,
            batch_size=batch_size,
            cache=cache,
            desc=f"{benchmark.name}/{split}",
        )
    )
    classifier = zero_shot_classifier(
        model, [spec.names for spec in benchmark.classes], templates, cache=cache
    )
    scores = (images @ classifier.T).numpy()
    metrics = classification_metrics(scores, labels, benchmark.class_names)
    metrics.update(class_names=benchmark.class_names, num_templates=len(templates), split=split)
    logger.info(
        "%s zero-shot: acc1 %.4f, balanced %.4f",
        benchmark.name,
        metrics["acc1"],
        metrics["balanced_accuracy"],
    )
    return metrics

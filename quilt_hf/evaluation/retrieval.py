"""Cross-modal retrieval: image-to-text and text-to-image recall at k, several captions per image.

Keys follow CLIP_benchmark: ``image_retrieval_recall@k`` is text -> image (a caption retrieves its image
among all images), ``text_retrieval_recall@k`` is image -> text (an image counts as found when any of
its captions is in the top k).

Captions of one image are grouped by the benchmark's ``group_column`` (``image_id`` in pairs tables), or
given as a list in the caption column; otherwise each row is its own image.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from quilt_hf.errors import UserFacingError
from quilt_hf.evaluation.features import FeatureCache, image_features, normalize, text_features
from quilt_hf.evaluation.metrics import DEFAULT_KS, recall_at_k

logger = logging.getLogger(__name__)

TASK = "retrieval"


def group_captions(data, image_column: str, caption_column: str, group_column: str | None):
    """Unique images and their captions: returns (row index of each image, captions, caption owners)."""
    captions_raw = data[caption_column]
    image_rows: list[int] = []
    captions: list[str] = []
    owners: list[int] = []
    if group_column and group_column in data.column_names:
        first_row: dict[str, int] = {}
        for row, group in enumerate(data[group_column]):
            if group not in first_row:
                first_row[group] = len(image_rows)
                image_rows.append(row)
            texts = captions_raw[row] if isinstance(captions_raw[row], list) else [captions_raw[row]]
            for text in texts:
                captions.append(text)
                owners.append(first_row[group])
        return image_rows, captions, owners
    for row, value in enumerate(captions_raw):
        texts = value if isinstance(value, list) else [value]
        image_rows.append(row)
        for text in texts:
            captions.append(text)
            owners.append(row)
    return image_rows, captions, owners


def evaluate(
    model,
    dataset,
    *,
    split: str = "test",
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 64,
    cache: FeatureCache | None = None,
) -> dict:
    """Image-text retrieval on a benchmark's ``split``.

    Args:
        model (`DualEncoderAdapter`): from `load_model`.
        dataset (`BenchmarkData`): a retrieval benchmark (image and caption columns).
        split (`str`): split role.
        ks (`Sequence[int]`): recall cut-offs.
        batch_size (`int`): images per forward pass.
        cache (`FeatureCache`, *optional*): feature cache.

    Returns:
        `dict`: ``image_retrieval_recall@k`` and ``text_retrieval_recall@k`` for each k, ``mean_recall``,
        ``num_images``, ``num_texts``, ``split``.
    """
    benchmark = dataset.benchmark
    data = dataset.split(split)
    if benchmark.caption_column not in data.column_names:
        raise UserFacingError(
            f"{benchmark.pretty_name}: no {benchmark.caption_column!r} column for retrieval"
        )
    rows, captions, owners = group_captions(
        data, benchmark.image_column, benchmark.caption_column, benchmark.group_column
    )
    unique = data if len(rows) == len(data) else data.select(rows)
    images = normalize(
        image_features(
            model,
            unique,
            column=benchmark.image_column,
            batch_size=batch_size,
            cache=cache,
            desc=f"{benchmark.name}/{split}",
        )
    )
    texts = normalize(text_features(model, captions, cache=cache))
    metrics: dict = recall_at_k(images @ texts.T, owners, ks)
    metrics["mean_recall"] = float(np.mean(list(metrics.values())))
    metrics.update(num_images=len(rows), num_texts=len(captions), split=split, ks=list(ks))
    logger.info(
        "%s retrieval: %s", benchmark.name, ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if "@" in k)
    )
    return metrics

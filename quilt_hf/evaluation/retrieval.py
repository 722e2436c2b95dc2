"""Cross-modal retrieval: image-to-text and text-to-image recall at k, several captions per image.

Keys follow CLIP_benchmark: ``image_retrieval_recall@k`` is text -> image (a caption retrieves its image
among all images), ``text_retrieval_recall@k`` is image -> text (an image counts as found when any of
its captions is in the top k).

Ties count against the model. An image without a caption (an empty list, ``None`` or blank text) stays in the
gallery and counts as a miss in ``text_retrieval_recall`` (as in CLIP_benchmark); a ``k`` larger than the number
of images or texts is left out of the results (it would rank every candidate and score 1.0), with a warning.

Captions of one image are grouped by the benchmark's ``group_column`` (``image_id`` in pairs tables), or
given as a list in the caption column; otherwise each row is its own image.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from quilt_hf.errors import UserFacingError
from quilt_hf.evaluation.features import FeatureCache, image_features, normalize, text_features
from quilt_hf.evaluation.metrics import DEFAULT_KS, recall_at_k, usable_ks

logger = logging.getLogger(__name__)

TASK = "retrieval"


def _texts(value) -> list[str]:
    """The non-blank captions of one cell (a string, a list of strings, or None)."""
    texts = value if isinstance(value, list) else [value]
    return [text for text in texts if isinstance(text, str) and text.strip()]


def group_captions(data, image_column: str, caption_column: str, group_column: str | None):
    """Unique images and their captions: returns (row index of each image, captions, caption owners).

    Blank or missing captions are skipped; their image is kept (it then has no caption and counts as a miss).
    """
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
            for text in _texts(captions_raw[row]):
                captions.append(text)
                owners.append(first_row[group])
        return image_rows, captions, owners
    for row, value in enumerate(captions_raw):
        image_rows.append(row)
        for text in _texts(value):
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
    if not captions:
        raise UserFacingError(f"{benchmark.pretty_name}/{split}: no caption to retrieve with")
    texts = normalize(text_features(model, captions, cache=cache))
    used_ks = usable_ks(ks, len(rows), len(captions))
    if not used_ks:
        raise UserFacingError(
            f"{benchmark.pretty_name}/{split}: {len(rows)} images and {len(captions)} texts are fewer than every k "
            f"of {list(ks)}; pass smaller cut-offs"
        )
    metrics: dict = recall_at_k(images @ texts.T, owners, used_ks)
    metrics["mean_recall"] = float(np.mean(list(metrics.values())))
    metrics.update(
        num_images=len(rows),
        num_texts=len(captions),
        num_images_without_caption=len(rows) - len(set(owners)),
        split=split,
        ks=used_ks,
    )
    if len(used_ks) < len(ks):
        metrics["ks_left_out"] = [int(k) for k in ks if k not in used_ks]
    logger.info(
        "%s retrieval: %s", benchmark.name, ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if "@" in k)
    )
    return metrics

"""Metrics shared by the tasks and by training (computed locally: ``evaluate.load`` needs the network).

One tie rule for every metric here: **ties count against the model**. A true class (or a true image, or an
image's best caption) that scores exactly the same as a competitor is ranked behind it, so

- top-k accuracy counts a row as correct only when fewer than ``k`` other classes score *at least* as high as
  the true class;
- the prediction behind the confusion matrix and the per-class recall is the arg-max, except that a true class
  tied at the maximum loses to the first competing class, so ``acc1 == trace(confusion) / N`` always;
- retrieval recall ranks the right item behind every other item with an equal score.

A model that outputs constant scores therefore scores 0, not the rate of a lucky index order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)

DEFAULT_KS = (1, 5, 10)


def _nan_against_the_model(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """NaN scores count against the model, like ties: a NaN on a right answer scores -inf, a NaN on a wrong one
    +inf (a model whose outputs went NaN must not score perfectly because every comparison with NaN is False)."""
    nan = np.isnan(scores)
    if not nan.any():
        return scores
    return np.where(nan & positives, -np.inf, np.where(nan, np.inf, scores))


def true_class_rank(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """0-based rank of each row's true class, ties counted against the model.

    Args:
        scores (`np.ndarray`): ``(n, num_classes)`` scores.
        labels (`np.ndarray`): ``(n,)`` true class indices.

    Returns:
        `np.ndarray`: for each row, the number of *other* classes that score at least as high as the true one.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    scores = _nan_against_the_model(scores, _one_hot(labels, scores.shape[1]))
    true_score = scores[np.arange(len(labels)), labels]
    return (scores >= true_score[:, None]).sum(axis=1) - 1


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose true label is among the ``k`` highest scores (ties count against the model).

    Args:
        scores (`np.ndarray`): ``(n, num_classes)`` scores.
        labels (`np.ndarray`): ``(n,)`` true class indices.
        k (`int`): the cut-off; at least 1 (a ``k`` above the number of classes counts every row as correct).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if len(labels) == 0:
        return float("nan")
    return float((true_class_rank(scores, labels) < k).mean())


def predictions_ties_against(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Arg-max predictions, where a true class tied at the maximum loses to the first competing class.

    This makes the confusion matrix agree with :func:`topk_accuracy` at ``k=1``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    scores = _nan_against_the_model(scores, _one_hot(labels, scores.shape[1]))
    predictions = scores.argmax(axis=1)
    rows = np.arange(len(labels))
    at_max = scores == scores.max(axis=1, keepdims=True)
    tied_true = at_max[rows, labels] & (at_max.sum(axis=1) > 1)
    if tied_true.any():
        competitors = at_max[tied_true].copy()
        competitors[np.arange(int(tied_true.sum())), labels[tied_true]] = False
        predictions[tied_true] = competitors.argmax(axis=1)
    return predictions


def _one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    positives = np.zeros((len(labels), num_classes), dtype=bool)
    positives[np.arange(len(labels)), labels] = True
    return positives


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def classification_metrics(scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict:
    """The stable classification keys: ``acc1``, ``acc5`` (more than 5 classes), ``balanced_accuracy`` (=
    ``mean_per_class_recall``, over the classes present), ``per_class_recall``, ``confusion_matrix``.

    Ties count against the model in every key (see the module docstring), so ``acc1`` equals the confusion
    matrix's trace over the number of samples.
    """
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = len(class_names)
    predictions = predictions_ties_against(scores, labels)
    matrix = confusion_matrix(labels, predictions, num_classes)
    support = matrix.sum(axis=1)
    recall = np.divide(np.diag(matrix), support, out=np.full(num_classes, np.nan), where=support > 0)
    present = support > 0
    balanced = float(np.mean(recall[present])) if present.any() else float("nan")
    metrics = {
        "acc1": topk_accuracy(scores, labels, 1),
        "balanced_accuracy": balanced,
        "mean_per_class_recall": balanced,
        "per_class_recall": {
            name: (None if np.isnan(r) else float(r)) for name, r in zip(class_names, recall)
        },
        "confusion_matrix": matrix.tolist(),
        "num_samples": len(labels),
        "num_classes": int(num_classes),
    }
    if num_classes > 5:
        metrics["acc5"] = topk_accuracy(scores, labels, 5)
    return metrics


def usable_ks(ks: Sequence[int], num_images: int, num_texts: int) -> list[int]:
    """The cut-offs of ``ks`` that fit both galleries (``k <= num_images`` and ``k <= num_texts``).

    A larger ``k`` would rank every candidate and score a trivial 1.0, so it is left out with a warning.
    """
    kept = [int(k) for k in ks if k <= min(num_images, num_texts)]
    dropped = [int(k) for k in ks if k not in kept]
    if dropped:
        logger.warning(
            "recall@%s left out: only %d images and %d texts to rank (k larger than the gallery would score 1.0)",
            ",".join(map(str, dropped)),
            num_images,
            num_texts,
        )
    return kept


def recall_at_k(
    similarity: torch.Tensor | np.ndarray, text_to_image: Sequence[int], ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """Recall@k both ways from an ``(num_images, num_texts)`` similarity matrix.

    Ties count against the model: the right item is ranked behind every other item with an equal score (two
    identical images with one caption each score R@1 = 0, not 1). An image without any caption counts as a miss
    in ``text_retrieval_recall`` (as in CLIP_benchmark), and every image is in the denominator.

    Args:
        similarity: image x text scores.
        text_to_image (`Sequence[int]`): for each text, the index of its image.
        ks (`Sequence[int]`): the cut-offs, each at most the number of images and of texts (see
            :func:`usable_ks` to filter them).

    Returns:
        `dict`: ``image_retrieval_recall@k`` (text -> image) and ``text_retrieval_recall@k`` (image -> text).

    Raises:
        `ValueError`: a ``k`` larger than a gallery (every candidate would be retrieved: a trivial 1.0), or
        ``text_to_image`` of the wrong length.
    """
    sim = torch.as_tensor(np.asarray(similarity), dtype=torch.float32)
    num_images, num_texts = sim.shape
    owner = torch.as_tensor(list(text_to_image), dtype=torch.long)
    if owner.numel() != num_texts:
        raise ValueError(f"text_to_image has {owner.numel()} entries for {num_texts} texts")
    too_large = [k for k in ks if k > min(num_images, num_texts) or k < 1]
    if too_large:
        raise ValueError(
            f"recall@k needs 1 <= k <= the gallery size ({num_images} images, {num_texts} texts); got k={too_large}"
        )
    positives = torch.zeros(num_images, num_texts, dtype=torch.bool)
    positives[owner, torch.arange(num_texts)] = True
    sim = torch.from_numpy(_nan_against_the_model(sim.numpy(), positives.numpy())).float()
    results: dict[str, float] = {}
    # 0-based rank of the right image per text: every other image scoring at least as high is ahead of it.
    true_image_score = sim[owner, torch.arange(num_texts)]
    text_rank = (sim >= true_image_score[None, :]).sum(dim=0) - 1
    # 0-based rank of each image's best caption: every non-matching text scoring at least as high is ahead.
    best_caption = torch.where(positives, sim, torch.tensor(float("-inf"))).max(dim=1).values
    has_caption = positives.any(dim=1)
    negatives_ahead = (~positives) & (sim >= best_caption[:, None])
    image_rank = torch.where(has_caption, negatives_ahead.sum(dim=1), torch.tensor(num_texts))  # no caption: miss
    for k in ks:
        results[f"image_retrieval_recall@{k}"] = float((text_rank < k).float().mean())
        results[f"text_retrieval_recall@{k}"] = float((image_rank < k).float().mean())
    return results

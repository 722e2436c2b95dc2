"""Metrics shared by the tasks and by training (computed locally: ``evaluate.load`` needs the network)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

DEFAULT_KS = (1, 5, 10)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose true label is among the ``k`` highest scores."""
    if len(labels) == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, kth=k - 1, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def classification_metrics(scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict:
    """The stable classification keys: ``acc1``, ``acc5`` (more than 5 classes), ``balanced_accuracy`` (=
    ``mean_per_class_recall``, over the classes present), ``per_class_recall``, ``confusion_matrix``."""
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = len(class_names)
    predictions = scores.argmax(axis=1)
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


def recall_at_k(
    similarity: torch.Tensor | np.ndarray, text_to_image: Sequence[int], ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """Recall@k both ways from an ``(num_images, num_texts)`` similarity matrix.

    Args:
        similarity: image x text scores.
        text_to_image (`Sequence[int]`): for each text, the index of its image.
        ks (`Sequence[int]`): the cut-offs.

    Returns:
        `dict`: ``image_retrieval_recall@k`` (text -> image) and ``text_retrieval_recall@k`` (image -> text).
    """
    sim = torch.as_tensor(np.asarray(similarity), dtype=torch.float32)
    num_images, num_texts = sim.shape
    owner = torch.as_tensor(list(text_to_image), dtype=torch.long)
    if owner.numel() != num_texts:
        raise ValueError(f"text_to_image has {owner.numel()} entries for {num_texts} texts")
    positives = torch.zeros(num_images, num_texts, dtype=torch.bool)
    positives[owner, torch.arange(num_texts)] = True
    results: dict[str, float] = {}
    # Rank with ties counted against the model: the number of strictly better scores decides the rank.
    true_image_score = sim[owner, torch.arange(num_texts)]
    text_rank = (sim > true_image_score[None, :]).sum(dim=0)  # 0-based rank of the right image per text
    best_caption = torch.where(positives, sim, torch.tensor(float("-inf"))).max(dim=1).values
    has_caption = positives.any(dim=1)
    image_rank = (torch.where(positives, torch.tensor(float("-inf")), sim) > best_caption[:, None]).sum(dim=1)
    for k in ks:
        results[f"image_retrieval_recall@{k}"] = float((text_rank < k).float().mean())
        results[f"text_retrieval_recall@{k}"] = float((image_rank[has_caption] < k).float().mean())
    return results

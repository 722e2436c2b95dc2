"""Retrieval recall of image and text embeddings, as reported at each evaluation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def retrieval_recall(
    image_embeds: torch.Tensor | np.ndarray,
    text_embeds: torch.Tensor | np.ndarray,
    groups: torch.Tensor | np.ndarray | None = None,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Recall@k of cross-modal retrieval over a set of pairs.

    Row ``i`` of ``image_embeds`` and of ``text_embeds`` form a pair. A retrieved item counts as correct when
    its group equals the query's (rows showing the same image share a group; by default each row is its own).

    Args:
        image_embeds, text_embeds: ``(n, dim)`` embeddings (normalised or not: cosine similarity is used).
        groups: ``(n,)`` integer group of each row, optional.
        ks: the cut-offs.

    Returns:
        `dict`: ``text_retrieval_recall@k`` (image query, texts ranked), ``image_retrieval_recall@k`` (text
        query, images ranked), in CLIP_benchmark's naming, and their mean ``mean_recall@k``.
    """
    image = torch.nn.functional.normalize(torch.as_tensor(np.asarray(image_embeds), dtype=torch.float32), dim=-1)
    text = torch.nn.functional.normalize(torch.as_tensor(np.asarray(text_embeds), dtype=torch.float32), dim=-1)
    n = image.shape[0]
    group = torch.arange(n) if groups is None else torch.as_tensor(np.asarray(groups)).view(-1)
    similarity = image @ text.T  # (images, texts)
    match = group[:, None] == group[None, :]
    metrics = {}
    for k in ks:
        top_texts = similarity.topk(min(k, n), dim=1).indices
        top_images = similarity.T.topk(min(k, n), dim=1).indices
        text_hits = match.gather(1, top_texts).any(dim=1).float().mean().item()
        image_hits = match.T.gather(1, top_images).any(dim=1).float().mean().item()
        metrics[f"text_retrieval_recall@{k}"] = text_hits
        metrics[f"image_retrieval_recall@{k}"] = image_hits
        metrics[f"mean_recall@{k}"] = (text_hits + image_hits) / 2
    return metrics


def compute_retrieval_metrics(eval_prediction) -> dict[str, float]:
    """``compute_metrics`` for :class:`ContrastiveTrainer`: predictions are ``(image_embeds, text_embeds)``
    and label ids the pair groups."""
    image_embeds, text_embeds = eval_prediction.predictions[:2]
    return retrieval_recall(image_embeds, text_embeds, eval_prediction.label_ids)

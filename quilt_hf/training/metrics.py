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
        query, images ranked), in CLIP_benchmark's naming, and their mean ``mean_recall@k``; ties count against
        the model, and a ``k`` above the number of distinct images is left out (logged).
    """
    from quilt_hf.evaluation.metrics import recall_at_k, usable_ks

    image = torch.nn.functional.normalize(torch.as_tensor(np.asarray(image_embeds), dtype=torch.float32), dim=-1)
    text = torch.nn.functional.normalize(torch.as_tensor(np.asarray(text_embeds), dtype=torch.float32), dim=-1)
    n = image.shape[0]
    group = torch.arange(n) if groups is None else torch.as_tensor(np.asarray(groups)).view(-1)
    # Rows of one group show the same image: rank each distinct image once, every caption against them.
    _, owner = torch.unique(group, return_inverse=True)
    first_row = torch.full((int(owner.max()) + 1,), n, dtype=torch.long).scatter_reduce(
        0, owner, torch.arange(n), reduce="amin"
    )
    ks = usable_ks(ks, len(first_row), n)  # a k above the gallery size would score a trivial 1.0
    metrics = recall_at_k(image[first_row] @ text.T, owner.tolist(), ks)
    for k in ks:
        metrics[f"mean_recall@{k}"] = (metrics[f"text_retrieval_recall@{k}"] + metrics[f"image_retrieval_recall@{k}"]) / 2
    return metrics


def compute_retrieval_metrics(eval_prediction) -> dict[str, float]:
    """``compute_metrics`` for :class:`ContrastiveTrainer`: predictions are ``(image_embeds, text_embeds)``
    and label ids the pair groups."""
    image_embeds, text_embeds = eval_prediction.predictions[:2]
    return retrieval_recall(image_embeds, text_embeds, eval_prediction.label_ids)

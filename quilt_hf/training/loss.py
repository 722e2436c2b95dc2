"""Contrastive losses for image-text training: CLIP's symmetric InfoNCE and SigLIP's sigmoid loss.

Global negatives across processes follow open_clip's scalable recipe (``local_loss`` + ``gather_with_grad``):
every process gathers the features of all processes *with* their gradient path, but computes logits only for
its own rows (``local_batch x global_batch``), so the loss step's memory grows linearly with the global batch
instead of quadratically. With data-parallel gradient averaging, the result equals the loss and gradients of
one process that sees the concatenated batch (``tests/training/test_loss.py`` checks this on gloo).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

#: CLIP clamps its temperature so that the logit scale never exceeds 100.
MAX_LOGIT_SCALE = math.log(100.0)


def _dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class _AllGatherWithGrad(torch.autograd.Function):
    """All-gather along the batch axis; the backward pass sums every process's gradient of each slice and
    hands it to the slice's owner (a reduce-scatter; all-reduce where the backend has no reduce-scatter)."""

    @staticmethod
    def forward(ctx, features: torch.Tensor) -> torch.Tensor:
        dist = torch.distributed
        gathered = [torch.empty_like(features) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, features.contiguous())
        return torch.cat(gathered, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        dist = torch.distributed
        grad = grad.contiguous()
        rank, world_size = dist.get_rank(), dist.get_world_size()
        if dist.get_backend() in ("nccl", "xccl"):
            local = torch.empty_like(grad.chunk(world_size)[rank])
            dist.reduce_scatter_tensor(local, grad)
            return local
        dist.all_reduce(grad)
        return grad.chunk(world_size)[rank].contiguous()


def _scale_gradient(tensor: torch.Tensor, factor: float) -> torch.Tensor:
    """``tensor`` unchanged in value, with its gradient multiplied by ``factor``."""
    return tensor * factor - tensor.detach() * (factor - 1)


def gather_features(features: torch.Tensor, *, with_grad: bool = True) -> torch.Tensor:
    """Concatenate ``features`` of every process along the batch axis.

    Args:
        features (`torch.Tensor`): this process's ``(local_batch, dim)`` features; every process must pass the
            same shape.
        with_grad (`bool`): keep the gradient path to the other processes' features (their gradient is summed
            back to the process that owns them). Without it, only this process's slice carries a gradient.

    Returns:
        `torch.Tensor`: ``(world_size * local_batch, dim)``; ``features`` itself when not distributed.
    """
    rank, world_size = _dist_info()
    if world_size == 1:
        return features
    if with_grad:
        return _AllGatherWithGrad.apply(features)
    gathered = [torch.empty_like(features) for _ in range(world_size)]
    torch.distributed.all_gather(gathered, features.contiguous())
    gathered[rank] = features  # own slice keeps its gradient
    return torch.cat(gathered, dim=0)


def infonce_loss(
    image_local: torch.Tensor,
    text_local: torch.Tensor,
    image_all: torch.Tensor,
    text_all: torch.Tensor,
    logit_scale: torch.Tensor,
    offset: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE of the local rows against all columns.

    Row ``i`` of ``image_local`` matches row ``offset + i`` of ``text_all`` (and likewise for text).

    Returns:
        `tuple`: the loss (mean over local rows of both directions) and the local image-to-text logits.
    """
    logits_per_image = logit_scale * image_local @ text_all.T
    logits_per_text = logit_scale * text_local @ image_all.T
    labels = torch.arange(image_local.shape[0], device=image_local.device) + offset
    loss = (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2
    return loss, logits_per_image


def sigmoid_loss(
    image_local: torch.Tensor,
    text_all: torch.Tensor,
    logit_scale: torch.Tensor,
    logit_bias: torch.Tensor | float,
    offset: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SigLIP's pairwise sigmoid loss of the local images against all texts, normalised per local image.

    Returns:
        `tuple`: the loss and the local image-to-text logits.
    """
    logits = logit_scale * image_local @ text_all.T + logit_bias
    labels = -torch.ones_like(logits)
    rows = torch.arange(image_local.shape[0], device=logits.device)
    labels[rows, rows + offset] = 1.0
    loss = -F.logsigmoid(labels * logits).sum() / image_local.shape[0]
    return loss, logits


@dataclass
class ContrastiveLossOutput:
    """What :class:`ClipLoss` returns.

    Args:
        loss (`torch.Tensor`): the scalar loss of this process's rows.
        logits_per_image (`torch.Tensor`): ``(local_batch, global_batch)`` image-to-text logits (or
            ``(global, global)`` when ``local_loss=False``).
        labels (`torch.Tensor`): the column of each row's matching text.
    """

    loss: torch.Tensor
    logits_per_image: torch.Tensor
    labels: torch.Tensor


def check_loss_options(loss_type: str, local_loss: bool, gather_with_grad: bool) -> None:
    """Refuses settings whose gradients match neither one large batch nor open_clip (raises `ValueError`)."""
    if loss_type not in ("clip", "sigmoid"):
        raise ValueError(f"loss_type must be 'clip' or 'sigmoid', got {loss_type!r}")
    if not gather_with_grad and (local_loss or loss_type == "sigmoid"):
        raise ValueError(
            f"loss_type={loss_type!r}, local_loss={local_loss}, gather_with_grad=False would drop the "
            "gradient that other processes' rows send to this process's features, so its updates match neither "
            "one large batch nor open_clip. Keep gather_with_grad=True (the default; memory linear in the "
            "batch), or, for the clip loss, set local_loss=False (CLI: --local_loss False) to build the full matrix on "
            "every process."
        )


class ClipLoss(nn.Module):
    """CLIP's contrastive loss with global negatives across processes.

    Args:
        loss_type (`str`, defaults to `"clip"`): ``"clip"`` (symmetric InfoNCE, softmax over the batch) or
            ``"sigmoid"`` (SigLIP's pairwise sigmoid loss; needs a ``logit_bias``).
        local_loss (`bool`, defaults to `True`): compute logits only for this process's rows against the global
            batch (memory linear in the global batch). ``False`` builds the full ``global x global`` matrix on
            every process, as the original CLIP recipe did.
        gather_with_grad (`bool`, defaults to `True`): send gradients back through the gathered features of
            the other processes. Required for exact equivalence with one large batch when ``local_loss`` is on
            (and by the sigmoid loss, which is always local): without it, the gradient of each process's
            features from the other processes' rows is lost, so training would follow neither one large batch
            nor open_clip's full-matrix loss. That combination is refused with a `ValueError`; use
            ``local_loss=False`` (full matrix, gradients rescaled to equal one large batch) to gather without
            gradient.

    Example:

    ```python
    >>> loss_fn = ClipLoss()
    >>> image, text = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1), torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    >>> out = loss_fn(image, text, logit_scale=torch.tensor(14.3))
    >>> out.loss.shape
    torch.Size([])
    ```
    """

    def __init__(
        self,
        loss_type: Literal["clip", "sigmoid"] = "clip",
        local_loss: bool = True,
        gather_with_grad: bool = True,
    ):
        super().__init__()
        check_loss_options(loss_type, local_loss, gather_with_grad)
        self.loss_type = loss_type
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad

    def forward(
        self,
        image_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        logit_scale: torch.Tensor,
        logit_bias: torch.Tensor | float | None = None,
    ) -> ContrastiveLossOutput:
        """Loss of this process's ``(batch, dim)`` normalised embeddings; ``logit_scale`` is already
        exponentiated (a temperature's inverse)."""
        rank, world_size = _dist_info()
        batch = image_embeds.shape[0]
        if self.loss_type == "sigmoid":
            if logit_bias is None:
                raise ValueError("the sigmoid loss needs a logit_bias (the model's, or a fixed value such as -10)")
            # SigLIP needs no symmetric term: each (image, text) pair is one binary decision.
            text_all = gather_features(text_embeds, with_grad=self.gather_with_grad)
            loss, logits = sigmoid_loss(image_embeds, text_all, logit_scale, logit_bias, offset=rank * batch)
            return ContrastiveLossOutput(loss, logits, torch.arange(batch, device=logits.device) + rank * batch)

        if not self.local_loss and not self.gather_with_grad and world_size > 1:
            # Full matrix without gradient through the gathered features: only the local slice carries one.
            # Scale that gradient (not the value) by world_size so that data-parallel averaging matches one
            # big batch, as the temperature's gradient already does.
            image_embeds = _scale_gradient(image_embeds, world_size)
            text_embeds = _scale_gradient(text_embeds, world_size)
        image_all = gather_features(image_embeds, with_grad=self.gather_with_grad)
        text_all = gather_features(text_embeds, with_grad=self.gather_with_grad)
        if self.local_loss or world_size == 1:
            loss, logits = infonce_loss(image_embeds, text_embeds, image_all, text_all, logit_scale, rank * batch)
            labels = torch.arange(batch, device=logits.device) + rank * batch
        else:
            # Full matrix on every process: each computes the same global loss.
            loss, logits = infonce_loss(image_all, text_all, image_all, text_all, logit_scale, 0)
            labels = torch.arange(image_all.shape[0], device=logits.device)
        return ContrastiveLossOutput(loss, logits, labels)

"""ClipLoss against a naive full-matrix reference, and two gloo processes against one process."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.nn.functional as F

from quilt_hf.training.loss import ClipLoss

CONFIGS = [  # (loss_type, local_loss, gather_with_grad)
    ("clip", True, True),
    ("clip", False, True),
    ("clip", False, False),
    ("sigmoid", True, True),
]
BATCH, DIM, WORLD = 8, 12, 2


def naive_clip_loss(image, text, scale):
    """CLIP's loss written out with loops over the full similarity matrix."""
    n = image.shape[0]
    total = 0.0
    for i in range(n):
        row = torch.stack([scale * image[i] @ text[j] for j in range(n)])
        col = torch.stack([scale * text[i] @ image[j] for j in range(n)])
        total = total - torch.log_softmax(row, 0)[i] - torch.log_softmax(col, 0)[i]
    return total / (2 * n)


def naive_sigmoid_loss(image, text, scale, bias):
    n = image.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(n):
            sign = 1.0 if i == j else -1.0
            total = total - F.logsigmoid(sign * (scale * image[i] @ text[j] + bias))
    return total / n


def _features(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(BATCH, DIM, generator=generator), dim=-1)
    text = F.normalize(torch.randn(BATCH, DIM, generator=generator), dim=-1)
    return image, text


def test_clip_loss_matches_naive_reference():
    image, text = _features()
    scale = torch.tensor(7.5)
    out = ClipLoss("clip")(image, text, scale)
    torch.testing.assert_close(out.loss, naive_clip_loss(image, text, scale))
    assert out.logits_per_image.shape == (BATCH, BATCH)
    assert torch.equal(out.labels, torch.arange(BATCH))


def test_sigmoid_loss_matches_naive_reference():
    image, text = _features(1)
    scale, bias = torch.tensor(10.0), torch.tensor(-10.0)
    out = ClipLoss("sigmoid")(image, text, scale, bias)
    torch.testing.assert_close(out.loss, naive_sigmoid_loss(image, text, scale, bias))
    with pytest.raises(ValueError, match="logit_bias"):
        ClipLoss("sigmoid")(image, text, scale)


class _Towers(torch.nn.Module):
    """Two linear 'encoders' and a temperature: enough to check gradients through the loss."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.image = torch.nn.Linear(DIM, DIM)
        self.text = torch.nn.Linear(DIM, DIM)
        self.logit_scale = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, x_image, x_text, loss_fn):
        image = F.normalize(self.image(x_image), dim=-1)
        text = F.normalize(self.text(x_text), dim=-1)
        bias = -5.0 if loss_fn.loss_type == "sigmoid" else None
        return loss_fn(image, text, self.logit_scale.exp(), bias).loss


def _step(rows: slice, config) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    towers = _Towers()
    x_image, x_text = _features(2)
    loss = towers(x_image[rows], x_text[rows], ClipLoss(*config))
    loss.backward()
    return loss.detach(), {name: param.grad for name, param in towers.named_parameters()}


def _worker(rank: int, port: int, results: str):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    local = BATCH // WORLD
    out = {}
    for k, config in enumerate(CONFIGS):
        loss, grads = _step(slice(rank * local, (rank + 1) * local), config)
        # What DistributedDataParallel does: average the gradients (and we average the logged loss).
        for name, grad in grads.items():
            dist.all_reduce(grad)
            out[f"{k}.{name}"] = grad / WORLD
        dist.all_reduce(loss)
        out[f"{k}.loss"] = (loss / WORLD).reshape(1)
    if rank == 0:
        from safetensors.torch import save_file

        save_file({key: value.contiguous() for key, value in out.items()}, results)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_equal_one_process_on_the_whole_batch(tmp_path):
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    results = str(tmp_path / "dist.safetensors")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(_worker, args=(_free_port(), results), nprocs=WORLD, join=True)
    dist_out = load_file(results)
    for k, config in enumerate(CONFIGS):
        loss, grads = _step(slice(None), config)
        torch.testing.assert_close(dist_out[f"{k}.loss"][0], loss, msg=f"loss of {config}")
        for name, grad in grads.items():
            torch.testing.assert_close(dist_out[f"{k}.{name}"], grad, msg=f"gradient of {name} with {config}")


@pytest.mark.parametrize("loss_type", ["clip", "sigmoid"])
def test_local_loss_without_gathered_gradient_is_refused(loss_type):
    with pytest.raises(ValueError, match="gather_with_grad=False"):
        ClipLoss(loss_type, local_loss=True, gather_with_grad=False)
    if loss_type == "sigmoid":
        with pytest.raises(ValueError, match="gather_with_grad=False"):
            ClipLoss(loss_type, local_loss=False, gather_with_grad=False)


def test_training_arguments_refuse_local_loss_without_gathered_gradient(tmp_path):
    from quilt_hf.training.arguments import ContrastiveTrainingArguments

    with pytest.raises(ValueError, match="--local_loss False"):
        ContrastiveTrainingArguments(output_dir=str(tmp_path), gather_with_grad=False)
    args = ContrastiveTrainingArguments(output_dir=str(tmp_path), gather_with_grad=False, local_loss=False)
    assert ClipLoss(args.loss_type, args.local_loss, args.gather_with_grad).local_loss is False

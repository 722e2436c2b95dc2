"""Training benchmark: our ``ContrastiveTrainer`` step against open_clip's own training step.

Both sides train a ViT-B/32-size CLIP (vision 768x12 at 224 px / patch 32, text 512x12, 77 tokens, GELU,
projection 512) from random initialisation with AdamW (lr 5e-4, betas (0.9, 0.98), eps 1e-6, weight decay 0.2
off gains and biases), no gradient clipping, the same batch, precision and synthetic data (same seed). Both
sides use the SAME optimizer implementation, ``--optim`` (default ``adamw_torch``: ``torch.optim.AdamW`` with
torch's default kernel choice; ``adamw_torch_fused``: its fused kernel, the Trainer's own default), and each
prints the optimizer it actually ran. Ours
runs ``Trainer.train`` (our ``compute_loss`` + ``ClipLoss``, the Trainer's optimizer step); the peer runs
open_clip's ``create_model("ViT-B-32")``, ``ClipLoss`` and AdamW as its training loop does. Each side runs in
its own subprocess (peak memory is per process); step times exclude the first ``--warmup`` steps. The script
also reports how the loss step's memory grows with the global batch (local loss vs the full matrix).

open_clip needs torchvision, which cannot live in the project venv: make a separate one
    python3 -m venv /tmp/openclip_venv && /tmp/openclip_venv/bin/pip install torch==2.14.1 torchvision==0.29.1 \
        open_clip_torch transformers
and point ``--openclip-python`` (or ``$OPENCLIP_PYTHON``) at its python. Run:
    .venv/bin/python bench/bench_training.py [--batch 32] [--steps 4] [--device cpu|cuda] [--precision fp32|bf16]

``--smoke``: a tiny CLIP on both sides (2 layers, width 64, 64 px images), batch 4, two timed steps, a small
loss-memory table: offline, CPU, well under a minute; the peer is printed as unavailable when its python or
open_clip cannot be found.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OPENCLIP_PYTHON = "/tmp/openclip_venv/bin/python"
#: Model sizes: ViT-B/32 as QuiltNet, and a tiny one for --smoke (same code paths).
SIZES = {
    "vit-b-32": {"image_size": 224, "vision_width": 768, "vision_layers": 12, "vision_heads": 12,
                 "text_width": 512, "text_layers": 12, "text_heads": 8, "embed_dim": 512},
    "tiny": {"image_size": 64, "vision_width": 64, "vision_layers": 2, "vision_heads": 2,
             "text_width": 64, "text_layers": 2, "text_heads": 2, "embed_dim": 32},
}
SOT, EOT, VOCAB, CONTEXT = 49406, 49407, 49408, 77


# --------------------------------------------------------------------------------------------- shared
def synthetic_batch(batch: int, seed: int, image_size: int = 224):
    """Images (N(0,1) pixels) and CLIP-style token rows [SOT, words..., EOT, 0...] of random lengths."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, image_size, image_size, generator=generator)
    tokens = torch.zeros(batch, CONTEXT, dtype=torch.long)
    lengths = torch.randint(8, CONTEXT - 1, (batch,), generator=generator)
    for row, length in enumerate(lengths.tolist()):
        tokens[row, 0] = SOT
        tokens[row, 1 : length + 1] = torch.randint(1, SOT, (length,), generator=generator)
        tokens[row, length + 1] = EOT
    return images, tokens


def _peak_memory_mb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _autocast(device: str, precision: str):
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


# --------------------------------------------------------------------------------------------- ours
def run_ours(options) -> dict:
    import torch
    from transformers import CLIPConfig, CLIPModel, TrainerCallback

    sys.path.insert(0, str(REPO))
    from quilt_hf.training.arguments import ContrastiveTrainingArguments
    from quilt_hf.training.trainer import ContrastiveTrainer

    torch.manual_seed(0)
    size = SIZES[options.size]
    config = CLIPConfig(
        text_config={"vocab_size": VOCAB, "hidden_size": size["text_width"],
                     "intermediate_size": 4 * size["text_width"], "num_hidden_layers": size["text_layers"],
                     "num_attention_heads": size["text_heads"], "max_position_embeddings": CONTEXT,
                     "hidden_act": "gelu", "bos_token_id": SOT, "eos_token_id": EOT, "pad_token_id": 0},
        vision_config={"hidden_size": size["vision_width"], "intermediate_size": 4 * size["vision_width"],
                       "num_hidden_layers": size["vision_layers"], "num_attention_heads": size["vision_heads"],
                       "image_size": size["image_size"], "patch_size": 32, "hidden_act": "gelu"},
        projection_dim=size["embed_dim"],
    )
    model = CLIPModel(config)
    images, tokens = synthetic_batch(options.batch, options.seed, size["image_size"])

    class Repeat(torch.utils.data.Dataset):
        def __len__(self):
            return options.batch * (options.steps + options.warmup)

        def __getitem__(self, index):
            index %= options.batch
            return {"pixel_values": images[index], "input_ids": tokens[index],
                    "attention_mask": torch.ones(CONTEXT, dtype=torch.long)}

    def collate(rows):
        return {key: torch.stack([row[key] for row in rows]) for key in rows[0]}

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times = []

        def on_step_begin(self, args, state, control, **kwargs):
            _sync(options.device)
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            _sync(options.device)
            self.times.append(time.perf_counter() - self.start)

    timer = StepTimer()
    args = ContrastiveTrainingArguments(
        output_dir=os.path.join(options.workdir, "ours"), per_device_train_batch_size=options.batch,
        max_steps=options.steps + options.warmup, learning_rate=5e-4, weight_decay=0.2, adam_beta2=0.98,
        adam_epsilon=1e-6, warmup_steps=0, max_grad_norm=0.0, logging_steps=10_000, save_strategy="no",
        eval_strategy="no", use_cpu=options.device == "cpu", bf16=options.precision == "bf16",
        fp16=options.precision == "fp16", dataloader_num_workers=0, disable_tqdm=True, seed=options.seed,
        group_column=None, optim=options.optim,
    )
    trainer = ContrastiveTrainer(model, args, data_collator=collate, train_dataset=Repeat(), callbacks=[timer],
                                 compute_metrics=None)
    trainer.train()
    return _result("ours (ContrastiveTrainer)", timer.times[options.warmup :], options, model, trainer.optimizer)


# --------------------------------------------------------------------------------------------- open_clip
def run_openclip(options) -> dict:
    import open_clip
    import torch

    torch.manual_seed(0)
    device = torch.device(options.device)
    size = SIZES[options.size]
    if options.size == "vit-b-32":
        model = open_clip.create_model("ViT-B-32", pretrained=None).to(device)
    else:
        from open_clip.model import CLIP

        vision = {"image_size": size["image_size"], "layers": size["vision_layers"], "width": size["vision_width"],
                  "patch_size": 32, "head_width": size["vision_width"] // size["vision_heads"]}
        text = {"context_length": CONTEXT, "vocab_size": VOCAB, "width": size["text_width"],
                "heads": size["text_heads"], "layers": size["text_layers"]}
        model = CLIP(size["embed_dim"], vision, text).to(device)
    loss_fn = open_clip.ClipLoss()
    # open_clip's main.py: no weight decay on gains, biases, norms and the temperature.
    def exclude(n, p):
        return p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n
    params = list(model.named_parameters())
    optimizer = torch.optim.AdamW(
        [{"params": [p for n, p in params if exclude(n, p) and p.requires_grad], "weight_decay": 0.0},
         {"params": [p for n, p in params if not exclude(n, p) and p.requires_grad], "weight_decay": 0.2}],
        lr=5e-4, betas=(0.9, 0.98), eps=1e-6,
        # The same implementation as the Trainer's --optim: transformers passes fused=True for adamw_torch_fused
        # and nothing (torch's default kernel choice) for adamw_torch.
        **({"fused": True} if options.optim == "adamw_torch_fused" else {}),
    )
    images, tokens = synthetic_batch(options.batch, options.seed, size["image_size"])
    times = []
    model.train()
    for _ in range(options.steps + options.warmup):
        _sync(options.device)
        start = time.perf_counter()  # the host-to-device copy is timed on both sides
        batch_images, batch_tokens = images.to(device), tokens.to(device)
        with _autocast(options.device, options.precision):
            image_features, text_features, logit_scale = model(batch_images, batch_tokens)
            loss = loss_fn(image_features, text_features, logit_scale)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        _sync(options.device)
        times.append(time.perf_counter() - start)
    name = "ViT-B-32" if options.size == "vit-b-32" else "tiny CLIP"
    return _result(f"open_clip ({name}, ClipLoss, AdamW)", times[options.warmup :], options, model, optimizer)


def _optimizer_name(optimizer) -> str:
    """The optimizer class and kernel flags that actually ran (unwrapping accelerate's wrapper)."""
    inner = getattr(optimizer, "optimizer", optimizer)
    defaults = getattr(inner, "defaults", {})
    return f"{type(inner).__module__}.{type(inner).__name__}(fused={defaults.get('fused')}, foreach={defaults.get('foreach')})"


def _result(name: str, times: list[float], options, model, optimizer) -> dict:
    import torch

    step = sorted(times)[len(times) // 2]  # median step time
    return {
        "name": name,
        "optimizer": _optimizer_name(optimizer),
        "torch": torch.__version__,
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "step_s": step,
        "samples_per_s": options.batch / step,
        "peak_memory_mb": round(_peak_memory_mb(options.device)),
    }


# --------------------------------------------------------------------------------------------- loss memory
def loss_step_memory(batches=(256, 1024, 2048, 4096), world_size: int = 8, dim: int = 512, device: str = "cpu"):
    """Memory of one loss forward + backward on rank 0 of ``world_size`` processes, local loss vs full matrix.

    On CUDA: peak allocated bytes above the inputs. On CPU: bytes of tensors saved for backward plus the logits
    (torch does not count CPU allocations); both grow with the logits matrix.
    """
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(REPO))
    from quilt_hf.training.loss import infonce_loss

    rows = []
    batches = (batches[0], *batches)  # the first size twice: its first run pays one-off allocations (cuBLAS)
    for batch in batches:
        local = batch // world_size
        measured = {}
        for mode in ("local", "full"):
            generator = torch.Generator().manual_seed(0)
            image_all = F.normalize(torch.randn(batch, dim, generator=generator), dim=-1).to(device).requires_grad_()
            text_all = F.normalize(torch.randn(batch, dim, generator=generator), dim=-1).to(device).requires_grad_()
            scale = torch.tensor(14.3, device=device)
            saved = []

            def pack(tensor, saved=saved):
                saved.append(tensor.numel() * tensor.element_size())
                return tensor

            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
                if mode == "local":
                    loss, logits = infonce_loss(image_all[:local], text_all[:local], image_all, text_all, scale)
                else:
                    loss, logits = infonce_loss(image_all, text_all, image_all, text_all, scale)
            loss.backward()
            if device == "cuda":
                torch.cuda.synchronize()
                measured[mode] = (torch.cuda.max_memory_allocated() - base) / 2**20
            else:
                measured[mode] = (sum(saved) + 2 * logits.numel() * logits.element_size()) / 2**20
        rows.append((batch, measured["local"], measured["full"]))
    return rows[1:]


# --------------------------------------------------------------------------------------------- driver
def _child(side: str, options) -> dict:
    python = sys.executable if side == "ours" else options.openclip_python
    command = [python, __file__, "--worker", side, "--batch", str(options.batch), "--steps", str(options.steps),
               "--warmup", str(options.warmup), "--device", options.device, "--precision", options.precision,
               "--seed", str(options.seed), "--threads", str(options.threads), "--workdir", options.workdir,
               "--optim", options.optim, "--size", options.size]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)  # no shell
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise SystemExit(f"{side} run failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    return json.loads(lines[-1])


def _peer_missing(options) -> str | None:
    """Why the open_clip peer cannot run (its python or open_clip missing), or None."""
    if not Path(options.openclip_python).is_file():
        return f"no python at {options.openclip_python}"
    probe = subprocess.run([options.openclip_python, "-c", "import open_clip"], capture_output=True, text=True,
                           check=False)
    if probe.returncode != 0:
        return f"open_clip cannot be imported by {options.openclip_python}: {probe.stderr.strip().splitlines()[-1:]}"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per side (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="alternate the two sides this many times; best kept")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads per side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--openclip-python", default=os.environ.get("OPENCLIP_PYTHON", DEFAULT_OPENCLIP_PYTHON))
    parser.add_argument("--workdir", default="/tmp/bench_training")
    parser.add_argument("--skip-peer", action="store_true", help="only our side and the loss-memory table")
    parser.add_argument("--optim", default="adamw_torch", choices=["adamw_torch", "adamw_torch_fused"],
                        help="optimizer implementation, the same on both sides")
    parser.add_argument("--size", default="vit-b-32", choices=sorted(SIZES), help="model size on both sides")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny model, batch 4, 2 steps, CPU: a quick offline check that the script runs")
    parser.add_argument("--worker", choices=["ours", "openclip"], help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.smoke and not options.worker:
        options.size, options.batch, options.steps, options.warmup, options.repeats = "tiny", 4, 2, 1, 1
        options.device, options.precision = "cpu", "fp32"

    if options.worker:
        import torch

        torch.set_num_threads(options.threads)
        result = run_ours(options) if options.worker == "ours" else run_openclip(options)
        print(json.dumps(result), flush=True)
        return

    peer_missing = _peer_missing(options)
    if options.smoke and peer_missing and not options.skip_peer:
        print(f"# peer unavailable: {peer_missing}")
        options.skip_peer = True
    if not options.skip_peer and peer_missing:
        raise SystemExit(
            f"open_clip's python not found at {options.openclip_python}. Make the peer's venv:\n"
            "  python3 -m venv /tmp/openclip_venv && /tmp/openclip_venv/bin/pip install torch==2.14.1 "
            "torchvision==0.29.1 open_clip_torch transformers\n"
            "then pass --openclip-python /tmp/openclip_venv/bin/python (or set OPENCLIP_PYTHON), or use --skip-peer."
        )
    model_name = "ViT-B/32-size" if options.size == "vit-b-32" else "tiny (smoke)"
    print(f"# training step, {model_name} CLIP, batch {options.batch}, {options.precision}, {options.device}, "
          f"{options.threads} CPU threads per side, median of {options.steps} steps after {options.warmup} warm-up")
    best: dict[str, dict] = {}
    sides = ["ours"] if options.skip_peer else ["ours", "openclip"]
    for _ in range(options.repeats):
        for side in sides:
            result = _child(side, options)
            print(f"  {result['name']:<40} torch {result['torch']:<14} {result['parameters_m']:6.1f}M params  "
                  f"{result['samples_per_s']:8.2f} samples/s  peak memory {result['peak_memory_mb']:,} MiB  "
                  f"optimizer {result['optimizer']}")
            if side not in best or result["samples_per_s"] > best[side]["samples_per_s"]:
                best[side] = result
    if "openclip" in best:
        ratio = best["ours"]["samples_per_s"] / best["openclip"]["samples_per_s"]
        memory = best["ours"]["peak_memory_mb"] / best["openclip"]["peak_memory_mb"]
        print(f"ratio ours / open_clip: throughput {ratio:.2f}x (goal >= 0.90x), peak memory {memory:.2f}x")

    print("\n# loss step memory on rank 0 of 8 processes, dim 512 (MiB): local loss (open_clip's local_loss + "
          "gather_with_grad, our default) vs the full global x global matrix")
    print(f"  {'global batch':>12} {'local':>10} {'full':>10} {'full/local':>10}")
    batches = (1024, 4096, 16384, 32768) if options.device == "cuda" else (256, 1024, 2048, 4096)
    if options.smoke:
        batches = (64, 128, 256)
    for batch, local, full in loss_step_memory(batches, device=options.device):
        print(f"  {batch:>12} {local:>10.1f} {full:>10.1f} {full / local:>10.1f}")


if __name__ == "__main__":
    main()

"""Benchmark: the evaluation suite's overhead over a bare model forward, and what the feature cache saves.

Model: a ``CLIPModel`` with the ViT-B/32 configuration (random weights: no CLIP weights exist offline) and
the real CLIP tokenizer. Data: the offline patch benchmark's real histology patches, repeated to
``--num-images``.

Figures printed:

1. peer: the bare loop a user writes, ``processor(images=batch)`` + ``model.get_image_features`` over the
   same images (already decoded PIL images) and batch size;
2. ``zero_shot.evaluate`` on those images with an empty feature cache (decoding, preprocessing, forward,
   prompt encoding, metrics): goal at most 1.10x the peer;
3. a second task on the same data with the cache warm (zero-shot with other templates, and the linear
   probe's feature extraction for that split): goal nearly free.

Run: ``.venv/bin/python bench/bench_eval.py [--num-images 256] [--batch-size 32] [--device cpu]``

``--smoke``: a tiny CLIP (2 layers, width 64, 64 px) on 32 images, one repeat, CPU: a quick offline check that
the script runs (its ratio is dominated by fixed costs and means little).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch


def build_model(folder: Path, device: str, tiny: bool = False):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    from quilt_hf.evaluation.adapters import TransformersAdapter
    from quilt_hf.offline import clip_tokenizer

    clip_tokenizer(folder / "tok").save_pretrained(folder / "tok")
    torch.manual_seed(0)
    if tiny:
        layers = {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2}
        config = CLIPConfig(
            text_config=dict(layers), vision_config=dict(layers, image_size=64, patch_size=32), projection_dim=32
        )
        image_processor = CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
        name = "clip-tiny-random"
    else:
        config = CLIPConfig()  # defaults = openai/clip-vit-base-patch32 sizes
        image_processor = CLIPImageProcessor()
        name = "clip-vit-b32-random"
    model = CLIPModel(config).eval().to(device)
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=CLIPTokenizer.from_pretrained(folder / "tok"))
    return model, processor, TransformersAdapter(model, processor, name=name, device=device)


def bench_data(num_images: int):
    import dataclasses

    from datasets import concatenate_datasets

    from quilt_hf.evaluation.registry import load_benchmark

    data = load_benchmark("quilt_offline_patches")
    pool = concatenate_datasets([data.splits[s] for s in ("train", "validation", "test")])
    repeats = -(-num_images // len(pool))
    images = concatenate_datasets([pool] * repeats).select(range(num_images)).flatten_indices()
    return dataclasses.replace(data, splits={"test": images})


def bare_forward(model, processor, images, batch_size: int, device: str) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            pixels = processor(images=images[i : i + batch_size], return_tensors="pt")["pixel_values"].to(
                device
            )
            out = model.get_image_features(pixel_values=pixels)
            (out if isinstance(out, torch.Tensor) else out.pooler_output).cpu()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each; the fastest counts")
    parser.add_argument("--smoke", action="store_true", help="tiny model, 32 images, one repeat, CPU")
    args = parser.parse_args()
    if args.smoke:
        args.num_images, args.batch_size, args.repeats, args.device = 32, 16, 1, "cpu"
    torch.set_num_threads(args.threads)

    from quilt_hf.evaluation import zero_shot
    from quilt_hf.evaluation.features import FeatureCache, image_features
    from quilt_hf.evaluation.registry import HISTOLOGY_TEMPLATES

    with tempfile.TemporaryDirectory() as tmp:
        model, processor, adapter = build_model(Path(tmp), args.device, tiny=args.smoke)
        data = bench_data(args.num_images)
        images = [
            image.convert("RGB") for image in data.split("test")["image"]
        ]  # the peer gets decoded images
        print(
            f"device {args.device}, threads {args.threads}, {len(images)} images, batch {args.batch_size}, "
            f"CLIPModel {'tiny (smoke)' if args.smoke else 'ViT-B/32'} config "
            f"({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params)"
        )
        bare_forward(model, processor, images[: args.batch_size], args.batch_size, args.device)  # warm-up
        _ = adapter.fingerprint  # computed once per model, not per task
        bare, cold, results = [], [], None
        for _ in range(args.repeats):
            bare.append(bare_forward(model, processor, images, args.batch_size, args.device))
            cache = FeatureCache()
            start = time.perf_counter()
            results = zero_shot.evaluate(adapter, data, batch_size=args.batch_size, cache=cache)
            cold.append(time.perf_counter() - start)
        start = time.perf_counter()
        zero_shot.evaluate(
            adapter, data, templates=HISTOLOGY_TEMPLATES, batch_size=args.batch_size, cache=cache
        )
        warm_other_templates = time.perf_counter() - start
        start = time.perf_counter()
        image_features(adapter, data.split("test"), batch_size=args.batch_size, cache=cache)
        warm_features = time.perf_counter() - start

    t_bare, t_cold = min(bare), min(cold)
    print(
        f"peer  bare forward (processor + get_image_features): {t_bare:8.2f} s  ({len(images) / t_bare:6.1f} img/s)"
        f"   runs {[round(t, 2) for t in bare]}"
    )
    print(
        f"ours  zero_shot.evaluate, empty cache:               {t_cold:8.2f} s  ({len(images) / t_cold:6.1f} img/s)"
        f"   runs {[round(t, 2) for t in cold]}"
    )
    print(f"ratio evaluation / bare forward: {t_cold / t_bare:.3f}  (goal <= 1.10)")
    print(
        f"second task, warm cache: zero-shot with other templates {warm_other_templates:.3f} s "
        f"({warm_other_templates / t_cold:.1%} of cold); linear-probe features of the split {warm_features * 1000:.1f} ms"
    )
    print(f"(zero-shot acc1 of the random model: {results['acc1']:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

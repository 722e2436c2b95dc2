"""Prove that quilt_hf's transformers port of Quilt's frame filter gives the authors' outputs.

Two steps, in two environments:

1. ``reference`` (an environment with torch, torchvision and timm, plus the authors' repository checked out,
   github.com/wisdomikezogwo/quilt1m): writes random weights in the SAME checkpoint layouts as the released
   files (timm training checkpoints with ``module.`` prefixes, ``args`` and an EMA copy; DINO's plain backbone
   state dict; DINO's linear head checkpoint), a few test images, and ``expected.json``: each member's class-1
   probability computed the authors' way (timm ``load_checkpoint`` + torchvision transforms + their
   ``crop_center``; their ``vision_transformer.py`` with ``get_intermediate_layers(x, 4)``)::

       /work/venvs/openclip/bin/python dataset_scripts/check_quilt_filter.py reference \\
           --quilt1m /path/to/quilt1m --output tests/fixtures/quilt_filter            # tiny sizes (committed)
       /work/venvs/openclip/bin/python dataset_scripts/check_quilt_filter.py reference \\
           --quilt1m /path/to/quilt1m --output /tmp/quilt_filter_full --full-size      # real sizes (~110 MB)

2. ``compare`` (quilt_hf's environment): runs :class:`QuiltEnsembleHistologyClassifier` on the folder and
   prints the largest difference from ``expected.json`` (``tests/curation/test_histology_quilt.py`` does the
   same on the committed tiny fixture)::

       python dataset_scripts/check_quilt_filter.py compare tests/fixtures/quilt_filter

Tiny sizes: ConvNeXt depths (1, 1, 2, 1), widths (8, 16, 24, 32); DINO ViT with width 64 (one 64-wide head),
depth 4, patch 16: the same code paths as ConvNeXt-Tiny and ViT-S/16, small enough to commit.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

FILES = ("cyto_histo.pth.tar", "all_inclusive.pth.tar", "dino_checkpoint.pth.tar")


def test_images() -> list[np.ndarray]:
    """Deterministic images of several shapes: smooth colour fields with texture and edges."""
    rng = np.random.default_rng(7)
    images = []
    for height, width in ((90, 160), (150, 200), (128, 128), (100, 250)):
        yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
        base = np.stack([np.sin(6 * xx + k) * np.cos(4 * yy - k) for k in range(3)], -1) * 80 + 128
        images.append(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))
    return images


def reference(quilt1m: Path, output: Path, full_size: bool, seed: int) -> None:
    import argparse as argparse_
    from functools import partial

    import timm
    import torch
    import torchvision.transforms as transforms
    from PIL import Image

    sys.path.insert(0, str(quilt1m / "data"))
    import vision_transformer as vits  # the authors' DINO ViT

    torch.manual_seed(seed)
    output.mkdir(parents=True, exist_ok=True)

    def make_convnext():
        if full_size:
            return timm.create_model("convnext_tiny", num_classes=2, pretrained=False)
        return timm.models.convnext.ConvNeXt(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32), num_classes=2)

    def randomise(model):  # layer scales start at 1e-6 and norms at 1/0: make every weight matter
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("gamma") or "norm" in name:
                    p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.endswith("weight") else 0.0))
        return model.eval()

    args = argparse_.Namespace(model="convnext_tiny.fb_in22k_ft_in1k_384", num_classes=2, input_size=384)
    convnexts = []
    for index, name in enumerate(FILES[:2]):
        model = randomise(make_convnext())
        checkpoint = {"epoch": 5, "arch": "convnext_tiny", "version": 2, "args": args, "metric": 0.9}
        checkpoint["state_dict"] = {f"module.{k}": v for k, v in model.state_dict().items()}
        if index == 1:  # timm prefers the EMA copy when present: store different weights there
            ema = randomise(make_convnext())
            checkpoint["state_dict_ema"] = {f"module.{k}": v for k, v in ema.state_dict().items()}
        torch.save(checkpoint, output / name)
        reloaded = make_convnext()
        with torch.serialization.safe_globals([argparse_.Namespace]):
            timm.models.load_checkpoint(reloaded, str(output / name))  # what timm.create_model(checkpoint_path=) does
        convnexts.append(reloaded.eval())

    dim, depth, heads = (384, 12, 6) if full_size else (64, 4, 1)
    backbone = vits.VisionTransformer(
        patch_size=16, embed_dim=dim, depth=depth, num_heads=heads, mlp_ratio=4, qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
    )
    with torch.no_grad():
        backbone.pos_embed.normal_(0, 0.5)
        backbone.cls_token.normal_(0, 0.5)
        for name, p in backbone.named_parameters():
            if "norm" in name:
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.endswith("weight") else 0.0))
    backbone.eval()
    torch.save(backbone.state_dict(), output / "dino_deitsmall16_pretrain.pth")
    head = torch.nn.Linear(4 * dim, 2)
    with torch.no_grad():
        head.weight.normal_(0, 0.2)
        head.bias.normal_(0, 0.2)
    torch.save(
        {"epoch": 100, "best_acc": 0.95, "state_dict": {f"module.linear.{k}": v for k, v in head.state_dict().items()}},
        output / FILES[2],
    )

    def crop_center(images_tensor, crop_size):  # as in the authors' data/model_utils.py
        height = images_tensor.shape[-1]
        start = height // 2 - crop_size // 2
        cropped = images_tensor[:, :, start : start + crop_size, start : start + crop_size]
        return transforms.functional.resize(cropped, images_tensor.size()[-2:])

    tfms = transforms.Compose(
        [transforms.ToTensor(), transforms.Resize(size=(384, 384)), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
    )
    expected = []
    for index, image in enumerate(test_images()):
        Image.fromarray(image).save(output / f"image_{index}.png")
        row = []
        with torch.no_grad():
            batch = crop_center(tfms(Image.fromarray(image)).unsqueeze(0), 300)
            for model in convnexts:
                row.append(float(model(batch).softmax(-1)[0, 1]))
            batch = crop_center(tfms(Image.fromarray(image)).unsqueeze(0), 224)
            layers = backbone.get_intermediate_layers(batch, 4)
            features = torch.cat([x[:, 0] for x in layers], dim=-1)
            row.append(float(head(features).softmax(-1)[0, 1]))
        expected.append(row)
    (output / "expected.json").write_text(
        json.dumps(
            {
                "members": ["cyto_histo", "all_inclusive", "dino"],
                "class1_probability": expected,
                "made_with": f"timm {timm.__version__}, torch {torch.__version__}, authors' vision_transformer.py",
                "full_size": full_size,
                "seed": seed,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {output}: expected class-1 probabilities {np.round(expected, 4).tolist()}")


def compare(folder: Path) -> float:
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from quilt_hf.curation.histology_quilt import QuiltEnsembleHistologyClassifier

    expected = np.asarray(json.loads((folder / "expected.json").read_text())["class1_probability"])
    images = [np.asarray(Image.open(folder / f"image_{i}.png").convert("RGB")) for i in range(len(expected))]
    got = QuiltEnsembleHistologyClassifier(folder).member_probabilities(images)
    difference = float(np.abs(got - expected).max())
    print(f"{folder}: largest |probability difference| from the authors' code path: {difference:.2e}")
    return difference


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ref = sub.add_parser("reference", help="Write random-weight checkpoints and the authors' outputs (needs timm).")
    ref.add_argument("--quilt1m", type=Path, required=True, help="A checkout of github.com/wisdomikezogwo/quilt1m.")
    ref.add_argument("--output", type=Path, required=True)
    ref.add_argument("--full-size", action="store_true", help="ConvNeXt-Tiny and ViT-S/16 sizes (not committed).")
    ref.add_argument("--seed", type=int, default=0)
    cmp_ = sub.add_parser("compare", help="Run quilt_hf's port on a folder written by `reference`.")
    cmp_.add_argument("folder", type=Path)
    cmp_.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args(argv)
    if args.command == "reference":
        reference(args.quilt1m, args.output, args.full_size, args.seed)
        return 0
    return 0 if compare(args.folder) <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())

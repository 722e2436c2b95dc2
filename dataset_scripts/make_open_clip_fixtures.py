"""Build the open_clip conversion fixtures: tiny random open_clip models and their outputs on fixed inputs.

Run with the REAL open_clip package (it needs torchvision, so in its own environment with open_clip_torch,
torchvision, transformers, safetensors and pyarrow), from the repository root::

    /path/to/openclip-venv/bin/python dataset_scripts/make_open_clip_fixtures.py

Writes ``tests/fixtures/open_clip/``:

- ``inputs/``: three real histology images (patches of the offline benchmark, one of them widened and one
  cropped so that resizing and cropping are exercised) and ``texts.json``;
- ``tiny-bert/``: a tiny BERT config and WordPiece vocabulary (the Hub is unreachable; it stands in for
  PubMedBERT as ``hf_model_name``);
- one folder per architecture, in open_clip's Hub layout (``open_clip_config.json`` and
  ``open_clip_pytorch_model.bin`` or ``open_clip_model.safetensors``), plus ``expected.safetensors``:
  open_clip's preprocessed pixels, token ids, image and text embeddings (not normalised) and logits.

The weights are random, rounded to float16 values and stored as float16 so the files stay small; open_clip
loads them into its float32 model, and every expected output is computed in float32.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import open_clip
import pyarrow.parquet as pq
import safetensors.torch
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "open_clip"
BENCHMARK = ROOT / "benchmarks" / "quilt_offline_patches" / "data" / "test-00000-of-00001.parquet"

TEXTS = [
    "a histopathology image of carcinoma.",
    "H&E stained section of skin, epidermis at high power",
    "immunohistochemistry of the colon",
    "background",
]

# Non-default mean/std (QuiltNet's preprocess_cfg records OpenAI's; these prove they are read, not assumed).
CUSTOM_MEAN = [0.5, 0.45, 0.4]
CUSTOM_STD = [0.25, 0.27, 0.3]

TINY_BERT_CONFIG = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "vocab_size": None,  # filled from the vocabulary
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "hidden_act": "gelu",
    "max_position_embeddings": 256,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}


def vision(patch_size: int, image_size: int) -> dict:
    return {"image_size": image_size, "layers": 2, "width": 32, "head_width": 16, "patch_size": patch_size}


ARCHITECTURES: dict[str, dict] = {
    # QuiltNet-B-32 / OpenAI ViT-B-32-quickgelu style: open_clip's own text transformer, QuickGELU, .bin weights.
    "vit_quickgelu_text": {
        "model_cfg": {
            "embed_dim": 16,
            "quick_gelu": True,
            "vision_cfg": vision(32, 64),
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 4, "heads": 2, "layers": 2},
        },
        "preprocess_cfg": {},
        "weights": "open_clip_pytorch_model.bin",
    },
    # QuiltNet-B-16 / laion ViT-B-16 style: exact GELU, patch 16, custom mean/std, safetensors weights.
    "vit_gelu_text": {
        "model_cfg": {
            "embed_dim": 16,
            "vision_cfg": vision(16, 48),
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 4, "heads": 2, "layers": 2},
        },
        "preprocess_cfg": {"mean": CUSTOM_MEAN, "std": CUSTOM_STD, "interpolation": "bicubic"},
        "weights": "open_clip_model.safetensors",
    },
    # QuiltNet-B-16-PMB style: ViT-B/16 + PubMedBERT, CLS of the last hidden state, MLP projection, 256 tokens.
    "vit_bert_clslast_mlp": {
        "model_cfg": {
            "embed_dim": 16,
            "vision_cfg": vision(16, 32),
            "text_cfg": {
                "hf_model_name": "tiny-bert",
                "hf_tokenizer_name": "tiny-bert",
                "hf_proj_type": "mlp",
                "hf_pooler_type": "cls_last_hidden_state_pooler",
                "context_length": 256,
            },
        },
        "preprocess_cfg": {"mean": CUSTOM_MEAN, "std": CUSTOM_STD},
        "weights": "open_clip_model.safetensors",
    },
    # BERT's own pooler (dense + tanh) and a linear projection: exactly VisionTextDualEncoderModel.
    "vit_bert_cls_linear": {
        "model_cfg": {
            "embed_dim": 16,
            "vision_cfg": vision(32, 64),
            "text_cfg": {
                "hf_model_name": "tiny-bert",
                "hf_tokenizer_name": "tiny-bert",
                "hf_proj_type": "linear",
                "hf_pooler_type": "cls_pooler",
                "context_length": 64,
            },
        },
        "preprocess_cfg": {},
        "weights": "open_clip_model.safetensors",
    },
    # Masked mean pooling and an MLP projection (open_clip's defaults for an HF text tower).
    "vit_bert_mean_mlp": {
        "model_cfg": {
            "embed_dim": 16,
            "vision_cfg": vision(16, 32),
            "text_cfg": {
                "hf_model_name": "tiny-bert",
                "hf_tokenizer_name": "tiny-bert",
                "hf_proj_type": "mlp",
                "hf_pooler_type": "mean_pooler",
                "context_length": 64,
            },
        },
        "preprocess_cfg": {"resize_mode": "squash"},
        "weights": "open_clip_model.safetensors",
    },
}


def write_inputs() -> list[Image.Image]:
    table = pq.read_table(BENCHMARK).to_pylist()
    patches = [Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB") for row in table[:3]]
    wide = Image.new("RGB", (patches[1].width * 2, patches[1].height))
    wide.paste(patches[1], (0, 0))
    wide.paste(patches[2], (patches[1].width, 0))
    tall_crop = patches[2].crop((5, 0, 46, 64))  # 41 x 64: odd width, portrait
    images = [patches[0], wide, tall_crop]
    folder = OUT / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        image.save(folder / f"image_{i}.png")
    (folder / "texts.json").write_text(json.dumps(TEXTS, indent=1) + "\n")
    return [Image.open(folder / f"image_{i}.png").convert("RGB") for i in range(len(images))]


def write_tiny_bert() -> Path:
    from transformers import BertConfig, BertTokenizer

    folder = OUT / "tiny-bert"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    words = sorted({w for text in TEXTS for w in _basic_words(text)})
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789&,.-")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + letters + ["##" + c for c in letters]
    vocab += [w for w in words if w not in vocab] + ["##s", "##ing", "tissue", "tumor", "stain"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(vocab_file=str(folder / "vocab.txt"), do_lower_case=True, model_max_length=256)
    tokenizer.save_pretrained(folder)
    config = dict(TINY_BERT_CONFIG, vocab_size=len(vocab))
    BertConfig(**config).save_pretrained(folder)
    return folder


def _basic_words(text: str) -> list[str]:
    import re

    return re.findall(r"[a-z]+", text.lower())


def round_to_half(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(parameter.half().float())


def build(name: str, spec: dict, images: list[Image.Image]) -> None:
    torch.manual_seed(sum(map(ord, name)))
    folder = OUT / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    config = {"model_cfg": spec["model_cfg"], "preprocess_cfg": spec["preprocess_cfg"]}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    if "hf_tokenizer_name" in spec["model_cfg"]["text_cfg"]:
        # As open_clip's push_to_hf_hub does: the text tower's tokenizer files beside the weights.
        for file in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
            shutil.copy(OUT / "tiny-bert" / file, folder / file)
    # Build the random model through open_clip's own factory (local-dir: reads the config we just wrote).
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}", pretrained_text=False)
    model.eval()
    with torch.no_grad():
        # open_clip initialises the logit scale to log(1/0.07); move it so a wrong scale would show.
        model.logit_scale.fill_(2.5)
        # Random (not zero) biases and norms everywhere, so that no mapping error hides behind an init value.
        for key, parameter in model.named_parameters():
            if parameter.ndim == 1 and key != "logit_scale":
                parameter.add_(torch.randn_like(parameter) * 0.1)
    round_to_half(model)
    state = {k: v.half().contiguous() for k, v in model.state_dict().items()}
    if spec["weights"].endswith(".bin"):
        torch.save(state, folder / spec["weights"])
    else:
        safetensors.torch.save_file(state, folder / spec["weights"])

    # Reload through the public loading path, as a user would, and record its outputs.
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    model.eval()
    pixel_values = torch.stack([preprocess(image) for image in images])
    input_ids = tokenizer(TEXTS)
    with torch.no_grad():
        image_embeds = model.encode_image(pixel_values)
        text_embeds = model.encode_text(input_ids)
        logits_per_image = (
            model.logit_scale.exp()
            * torch.nn.functional.normalize(image_embeds, dim=-1)
            @ torch.nn.functional.normalize(text_embeds, dim=-1).T
        )
    expected = {
        "pixel_values": pixel_values,
        "input_ids": input_ids.to(torch.int64),
        "image_embeds": image_embeds,
        "text_embeds": text_embeds,
        "logits_per_image": logits_per_image,
    }
    safetensors.torch.save_file({k: v.contiguous() for k, v in expected.items()}, folder / "expected.safetensors")
    (folder / "preprocess.txt").write_text(repr(preprocess) + "\n")
    size = sum(p.stat().st_size for p in folder.iterdir())
    print(f"{name}: {type(model).__name__}, {size / 1024:.0f} KiB")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    images = write_inputs()
    write_tiny_bert()
    # open_clip resolves hf_model_name / hf_tokenizer_name "tiny-bert" relative to the working directory.
    import os

    os.chdir(OUT)
    for name, spec in ARCHITECTURES.items():
        build(name, spec, images)
    print(f"open_clip {open_clip.__version__}, torch {torch.__version__}: fixtures in {OUT}")


if __name__ == "__main__":
    main()

"""Print how far each converted fixture's outputs are from open_clip's (max absolute difference, float32).

    python dataset_scripts/report_open_clip_conversion.py

Converts every model in tests/fixtures/open_clip/ with ``quilt_hf.convert.open_clip`` into a temporary folder,
loads it back with ``AutoModel.from_pretrained`` and compares image and text embeddings and logits with the
outputs open_clip recorded (the tests assert <= 1e-5; this prints the figures). No open_clip import needed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModel

from quilt_hf.convert.open_clip import convert_from_open_clip

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "open_clip"
NAMES = ["vit_quickgelu_text", "vit_gelu_text", "vit_bert_clslast_mlp", "vit_bert_cls_linear", "vit_bert_mean_mlp"]


def _features(output) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def main() -> None:
    print("| fixture | transformers class | image embeds | text embeds | logits |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for name in NAMES:
            folder = convert_from_open_clip(
                str(FIXTURES / name), Path(work) / name, text_model=str(FIXTURES / "tiny-bert")
            )
            model = AutoModel.from_pretrained(folder).eval()
            expected = load_file(str(FIXTURES / name / "expected.safetensors"))
            ids, pixels = expected["input_ids"], expected["pixel_values"]
            mask = None if model.config.model_type == "clip" else (ids != model.config.text_config.pad_token_id).long()
            with torch.no_grad():
                image = _features(model.get_image_features(pixel_values=pixels))
                text = _features(model.get_text_features(input_ids=ids, attention_mask=mask))
                logits = model(input_ids=ids, attention_mask=mask, pixel_values=pixels).logits_per_image
            diffs = [
                (a - expected[k]).abs().max().item()
                for a, k in ((image, "image_embeds"), (text, "text_embeds"), (logits, "logits_per_image"))
            ]
            print(f"| {name} | {type(model).__name__} | " + " | ".join(f"{d:.1e}" for d in diffs) + " |")


if __name__ == "__main__":
    main()

"""``quilt eval`` scores an open_clip model and its transformers conversion alike (offline patch benchmark).

Needs the real open_clip package (and torchvision), so it skips where open_clip cannot be imported: the main
CI environment installs open_clip_torch with --no-deps for its vocabulary only. Run it in an environment with
open_clip, e.g. ``PYTHONPATH=. /path/to/openclip-venv/bin/python -m pytest tests/convert/test_open_clip_eval.py``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "open_clip"


def _open_clip_importable() -> str | None:
    try:
        importlib.import_module("open_clip")
    except Exception as error:  # ImportError, or torchvision missing inside open_clip
        return f"open_clip cannot be imported here ({type(error).__name__}: {error}); run in an open_clip environment"
    return None


SKIP_REASON = _open_clip_importable()


def _flatten(prefix: tuple, value, out: dict) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten((*prefix, str(key)), item, out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out[prefix] = float(value)


def _metrics(records: list[dict]) -> dict[tuple, float]:
    out: dict[tuple, float] = {}
    for record in records:
        _flatten((record["task"], record["benchmark"]), record["metrics"], out)
    return out


@pytest.mark.slow
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
@pytest.mark.parametrize("name", ["vit_quickgelu_text", "vit_bert_clslast_mlp"])
def test_eval_gives_the_same_results_through_open_clip_and_the_conversion(tmp_path, monkeypatch, name):
    from quilt_hf.convert.open_clip import convert_from_open_clip
    from quilt_hf.evaluation.cli import EvalConfig, run_eval

    monkeypatch.chdir(FIXTURES)  # open_clip resolves hf_model_name "tiny-bert" from the working directory
    converted = convert_from_open_clip(str(FIXTURES / name), tmp_path / "converted", text_model="tiny-bert")
    results = {}
    for label, spec in (("open_clip", f"open_clip:local-dir:{FIXTURES / name}"), ("transformers", str(converted))):
        config = EvalConfig(
            model=[spec],
            benchmarks=["quilt_offline_patches"],
            tasks=["zero_shot", "linear_probe"],
            output=str(tmp_path / label),
            device="cpu",
            cache_dir="none",
            fractions=[1.0],
            seeds=[0],
        )
        results[label] = _metrics(run_eval(config))
    assert results["open_clip"] and results["open_clip"].keys() == results["transformers"].keys()
    for key, value in results["open_clip"].items():
        assert results["transformers"][key] == pytest.approx(value, abs=1e-6), key
    (tmp_path / "figures.json").write_text(json.dumps({str(k): v for k, v in results["open_clip"].items()}))


@pytest.mark.slow
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
@pytest.mark.parametrize("name", ["vit_quickgelu_text", "vit_gelu_text", "vit_bert_clslast_mlp", "vit_bert_cls_linear"])
def test_converted_back_loads_in_open_clip_with_the_same_outputs(tmp_path, monkeypatch, name):
    import open_clip
    import torch
    from PIL import Image
    from safetensors.torch import load_file

    from quilt_hf.convert.open_clip import convert_from_open_clip, convert_to_open_clip

    monkeypatch.chdir(FIXTURES)
    converted = convert_from_open_clip(str(FIXTURES / name), tmp_path / "hf", text_model="tiny-bert")
    back = convert_to_open_clip(str(converted), tmp_path / "open_clip")
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{back}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{back}")
    model.eval()
    expected = load_file(str(FIXTURES / name / "expected.safetensors"))
    texts = json.loads((FIXTURES / "inputs" / "texts.json").read_text())
    images = [Image.open(FIXTURES / "inputs" / f"image_{i}.png").convert("RGB") for i in range(3)]
    pixels = torch.stack([preprocess(image) for image in images])
    assert torch.equal(pixels, expected["pixel_values"])
    assert torch.equal(tokenizer(texts), expected["input_ids"])
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(pixels), expected["image_embeds"], atol=1e-6, rtol=0)
        torch.testing.assert_close(model.encode_text(tokenizer(texts)), expected["text_embeds"], atol=1e-6, rtol=0)

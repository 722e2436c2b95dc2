"""open_clip <-> transformers conversion, proven on tiny random models built by the real open_clip package.

The fixtures (tests/fixtures/open_clip/, made by dataset_scripts/make_open_clip_fixtures.py) hold open_clip
checkpoints of five architectures and open_clip's own outputs on real histology patches: preprocessed pixels,
token ids, image and text embeddings and logits. open_clip itself is not imported here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from quilt_hf.cli import main as cli_main
from quilt_hf.convert.open_clip import (
    convert_from_open_clip,
    convert_to_open_clip,
    load_open_clip_state_dict,
)
from quilt_hf.convert.open_clip_format import NotConvertibleError, read_open_clip_config
from quilt_hf.errors import UserFacingError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "open_clip"
TINY_BERT = FIXTURES / "tiny-bert"
TEXTS = json.loads((FIXTURES / "inputs" / "texts.json").read_text())
EXPECTED_CLASS = {
    "vit_quickgelu_text": "CLIPModel",
    "vit_gelu_text": "CLIPModel",
    "vit_bert_clslast_mlp": "CustomTextCLIPModel",
    "vit_bert_cls_linear": "VisionTextDualEncoderModel",
    "vit_bert_mean_mlp": "CustomTextCLIPModel",
}
TOLERANCE = 1e-5


def images() -> list[Image.Image]:
    return [Image.open(FIXTURES / "inputs" / f"image_{i}.png").convert("RGB") for i in range(3)]


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("converted")
    return {
        name: convert_from_open_clip(str(FIXTURES / name), root / name, text_model=str(TINY_BERT))
        for name in EXPECTED_CLASS
    }


def load(folder: Path):
    """The model and its processor, on the PIL image backend: open_clip resizes with PIL, and transformers 5
    picks its torchvision backend by default where torchvision is installed (one grey level apart on 0.1-1% of
    resized pixels)."""
    from transformers import AutoModel, AutoProcessor

    return AutoModel.from_pretrained(folder).eval(), AutoProcessor.from_pretrained(folder, backend="pil")


def features(output) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def open_clip_attention_mask(model, input_ids: torch.Tensor) -> torch.Tensor | None:
    """The mask open_clip's HF text tower uses (ids that are not padding); its own tower uses none."""
    if model.config.model_type == "clip":
        return None
    return (input_ids != model.config.text_config.pad_token_id).long()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_CLASS))
def test_converted_outputs_equal_open_clip(converted, name):
    expected = load_file(str(FIXTURES / name / "expected.safetensors"))
    model, _ = load(converted[name])
    assert type(model).__name__ == EXPECTED_CLASS[name]
    input_ids = expected["input_ids"]
    mask = open_clip_attention_mask(model, input_ids)
    with torch.no_grad():
        image_embeds = features(model.get_image_features(pixel_values=expected["pixel_values"]))
        text_embeds = features(model.get_text_features(input_ids=input_ids, attention_mask=mask))
        logits = model(input_ids=input_ids, attention_mask=mask, pixel_values=expected["pixel_values"])
    torch.testing.assert_close(image_embeds, expected["image_embeds"], atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(text_embeds, expected["text_embeds"], atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(logits.logits_per_image, expected["logits_per_image"], atol=TOLERANCE, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_CLASS))
def test_processor_reproduces_open_clip_preprocessing_and_tokens(converted, name):
    expected = load_file(str(FIXTURES / name / "expected.safetensors"))
    model, processor = load(converted[name])
    # Real patches: square, and a widened one (resize + centre crop of the long side).
    pixels = processor(images=images()[:2], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(pixels, expected["pixel_values"][:2], atol=1e-6, rtol=0)

    tokens = processor.tokenizer(TEXTS, padding=True, truncation=True, return_tensors="pt")
    pad = 0  # open_clip pads with id 0 (CLIP BPE) / the tokenizer's [PAD] (0 in the tiny BERT vocabulary)
    for row, ours in zip(expected["input_ids"], tokens["input_ids"]):
        theirs = row[row != pad].tolist() if model.config.model_type != "clip" else row[: row.argmax() + 1].tolist()
        assert ours[: len(theirs)].tolist() == theirs
    # End to end through the processor: the embeddings open_clip gives for the same texts and images.
    with torch.no_grad():
        text_embeds = features(model.get_text_features(**{k: v for k, v in tokens.items() if k != "token_type_ids"}))
        image_embeds = features(model.get_image_features(pixel_values=pixels))
    torch.testing.assert_close(text_embeds, expected["text_embeds"], atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(image_embeds, expected["image_embeds"][:2], atol=TOLERANCE, rtol=0)


@pytest.mark.slow
def test_centre_crop_rounding_is_the_one_known_difference(converted):
    """A known, documented limit: for an odd excess of 4k+3 pixels, open_clip (torchvision) rounds the crop
    offset half to even and CLIPImageProcessor floors it, a one-pixel shift. The portrait crop (41x64 ->
    64x99, excess 35) shows it; the same pixels one row lower match exactly."""
    expected = load_file(str(FIXTURES / "vit_quickgelu_text" / "expected.safetensors"))["pixel_values"][2]
    _, processor = load(converted["vit_quickgelu_text"])
    processor.image_processor.do_center_crop = False
    resized = processor(images=[images()[2]], return_tensors="pt")["pixel_values"][0]
    assert resized.shape[-2:] == (99, 64)
    torch.testing.assert_close(resized[:, 18:82], expected, atol=1e-6, rtol=0)
    assert (resized[:, 17:81] - expected).abs().max() > 0.1


@pytest.mark.slow
def test_config_is_derived_not_assumed(converted):
    from transformers import AutoConfig

    for name in EXPECTED_CLASS:
        source = json.loads((FIXTURES / name / "open_clip_config.json").read_text())["model_cfg"]
        config = AutoConfig.from_pretrained(converted[name])
        vision = config.vision_config
        assert vision.patch_size == source["vision_cfg"]["patch_size"]
        assert vision.image_size == source["vision_cfg"]["image_size"]
        assert vision.hidden_size == source["vision_cfg"]["width"]
        assert vision.num_attention_heads == source["vision_cfg"]["width"] // source["vision_cfg"]["head_width"]
        assert vision.hidden_act == ("quick_gelu" if source.get("quick_gelu") else "gelu")
        assert config.projection_dim == source["embed_dim"]
        if config.model_type == "clip":
            assert config.text_config.max_position_embeddings == source["text_cfg"]["context_length"]
            assert config.text_config.hidden_act == vision.hidden_act
    card = (converted["vit_bert_clslast_mlp"] / "README.md").read_text()
    assert "vit_bert_clslast_mlp" in card and "open_clip -> transformers" in card and "CustomTextCLIPModel" in card


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_CLASS))
def test_round_trip_gives_open_clip_state_dict_exactly(converted, tmp_path, name):
    back = convert_to_open_clip(str(converted[name]), tmp_path / "back")
    original, _ = load_open_clip_state_dict(FIXTURES / name)
    roundtrip = load_file(str(back / "open_clip_model.safetensors"))
    assert sorted(roundtrip) == sorted(original)
    for key, value in original.items():
        assert roundtrip[key].shape == value.shape, key
        assert torch.equal(roundtrip[key], value.float()), key  # fixtures store float16-exact values
    source = read_open_clip_config(json.loads((FIXTURES / name / "open_clip_config.json").read_text()))
    again = read_open_clip_config(json.loads((back / "open_clip_config.json").read_text()))
    assert again == source
    assert "transformers -> open_clip" in (back / "README.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_quickgelu_text", "vit_bert_clslast_mlp"])
def test_zero_shot_pipeline_gives_open_clip_probabilities(converted, name):
    from transformers import pipeline

    expected = load_file(str(FIXTURES / name / "expected.safetensors"))["logits_per_image"][0].softmax(-1)
    classifier = pipeline("zero-shot-image-classification", model=str(converted[name]), device="cpu")
    result = classifier(images()[0], candidate_labels=TEXTS, hypothesis_template="{}")
    scores = torch.tensor([next(r["score"] for r in result if r["label"] == text) for text in TEXTS])
    torch.testing.assert_close(scores, expected, atol=TOLERANCE, rtol=0)


def _copy_with_config(tmp_path: Path, name: str, edit) -> Path:
    folder = tmp_path / name
    shutil.copytree(FIXTURES / name, folder)
    config = json.loads((folder / "open_clip_config.json").read_text())
    edit(config)
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda c: c["model_cfg"]["vision_cfg"].update(timm_model_name="vit_base_patch16_224"), "timm"),
        (lambda c: c["model_cfg"]["vision_cfg"].update(attentional_pool=True), "attentional_pool"),
        (lambda c: c["model_cfg"]["vision_cfg"].update(layers=[1, 1, 1, 1]), "ModifiedResNet"),
        (lambda c: c["model_cfg"]["text_cfg"].update(proj_bias=True), "proj_bias"),
        (lambda c: c["preprocess_cfg"].update(resize_mode="longest"), "resize_mode"),
        (lambda c: c["model_cfg"].update(init_logit_bias=-10), "SigLIP"),
    ],
)
def test_what_cannot_convert_exactly_fails_with_the_reason(tmp_path, edit, reason):
    folder = _copy_with_config(tmp_path, "vit_gelu_text", edit)
    with pytest.raises(NotConvertibleError, match=reason):
        convert_from_open_clip(str(folder), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_hf_text_tower_pooler_not_covered_fails(tmp_path):
    folder = _copy_with_config(
        tmp_path, "vit_bert_mean_mlp", lambda c: c["model_cfg"]["text_cfg"].update(hf_pooler_type="max_pooler")
    )
    with pytest.raises(NotConvertibleError, match="max_pooler"):
        convert_from_open_clip(str(folder), tmp_path / "out", text_model=str(TINY_BERT))


def test_pickled_objects_are_refused(tmp_path):
    folder = tmp_path / "unsafe"
    folder.mkdir()
    shutil.copy(FIXTURES / "vit_quickgelu_text" / "open_clip_config.json", folder)
    torch.save({"visual.proj": torch.zeros(2), "hook": Path("x")}, folder / "open_clip_pytorch_model.bin")
    with pytest.raises(UserFacingError, match="weights_only"):
        load_open_clip_state_dict(folder)


@pytest.mark.slow
def test_cli_converts_and_refuses_to_overwrite(tmp_path, caplog):
    out = tmp_path / "b32"
    argv = ["convert", "--from", "open_clip", "--model", str(FIXTURES / "vit_quickgelu_text"), "--output", str(out)]
    assert cli_main(argv) == 0
    assert {"config.json", "model.safetensors", "README.md", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert cli_main(argv) == 1
    assert "--overwrite" in caplog.text
    assert cli_main(["convert", "--model", str(out), "--output", str(tmp_path / "x")]) == 1
    assert cli_main(["convert", "--to", "open_clip", "--model", str(out), "--output", str(tmp_path / "oc")]) == 0
    assert (tmp_path / "oc" / "open_clip_model.safetensors").is_file()


def test_missing_text_encoder_config_says_what_to_do(tmp_path):
    folder = _copy_with_config(
        tmp_path, "vit_bert_mean_mlp", lambda c: c["model_cfg"]["text_cfg"].update(hf_model_name="no-such/model")
    )
    with pytest.raises(UserFacingError, match="--text_model"):
        convert_from_open_clip(str(folder), tmp_path / "out")


@pytest.mark.slow
def test_auto_classes_load_our_model_in_either_import_order(converted):
    folder = converted["vit_bert_mean_mlp"]
    for code in (
        f"import quilt_hf\nfrom transformers import AutoModel\nprint(type(AutoModel.from_pretrained({str(folder)!r})).__name__)",
        f"from transformers import AutoModel\nimport quilt_hf\nprint(type(AutoModel.from_pretrained({str(folder)!r})).__name__)",
    ):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert result.stdout.strip().endswith("CustomTextCLIPModel"), result.stderr[-2000:]
        assert "could not register" not in result.stderr


def test_importing_quilt_hf_stays_light():
    code = "import sys, quilt_hf.cli; print('torch' in sys.modules, 'transformers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False False"


def test_hub_names_download_only_what_is_needed(tmp_path, monkeypatch):
    """``--model ORG/NAME`` lists the repo, prefers safetensors, and asks snapshot_download for those files only
    (the Hub itself is unreachable in tests: both calls are replaced)."""
    import huggingface_hub

    from quilt_hf.convert.open_clip import resolve_open_clip_source

    calls = {}
    repo = tmp_path / "snapshot"
    shutil.copytree(FIXTURES / "vit_gelu_text", repo)

    def list_repo_files(repo_id, revision=None):
        calls["listed"] = (repo_id, revision)
        return ["open_clip_config.json", "open_clip_pytorch_model.bin", "open_clip_model.safetensors", "README.md"]

    def snapshot_download(repo_id, revision=None, allow_patterns=None):
        calls["patterns"] = allow_patterns
        return str(repo)

    monkeypatch.setattr(huggingface_hub, "list_repo_files", list_repo_files)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    assert resolve_open_clip_source("hf-hub:wisdomik/QuiltNet-B-32", revision="main") == repo
    assert calls["listed"] == ("wisdomik/QuiltNet-B-32", "main")
    assert "open_clip_model.safetensors" in calls["patterns"]
    assert "open_clip_pytorch_model.bin" not in calls["patterns"]
    with pytest.raises(UserFacingError, match="ORG/NAME"):
        resolve_open_clip_source("not-a-folder-or-repo")


@pytest.mark.slow
def test_our_clip_checkpoint_goes_to_open_clip_and_back_unchanged(tiny_clip_dir, tmp_path):
    """A CLIPModel as ``quilt train`` saves it (real CLIP tokenizer, OpenAI-style processor) -> open_clip -> back:
    the same weights and the same outputs."""
    from transformers import AutoModel

    oc = convert_to_open_clip(str(tiny_clip_dir), tmp_path / "oc")
    config = json.loads((oc / "open_clip_config.json").read_text())
    assert config["model_cfg"]["vision_cfg"]["patch_size"] == 8
    assert config["model_cfg"]["text_cfg"]["context_length"] == 77
    assert "quick_gelu" in config["model_cfg"]  # transformers' CLIP default activation is QuickGELU
    back = convert_from_open_clip(str(oc), tmp_path / "hf")
    original, again = AutoModel.from_pretrained(tiny_clip_dir), AutoModel.from_pretrained(back)
    assert original.state_dict().keys() == again.state_dict().keys()
    for key, value in original.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    _, processor = load(back)
    inputs = processor(text=TEXTS, images=images(), return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(again(**inputs).logits_per_image, original(**inputs).logits_per_image)

"""Adapters: transformers CLIPModel and VisionTextDualEncoderModel by folder, open_clip-style models, fingerprints."""

import pytest
import torch
from _eval_fixtures import patch_image

from quilt_hf.errors import UserFacingError
from quilt_hf.evaluation.adapters import OpenClipAdapter, TransformersAdapter, load_model


def test_clip_folder_adapter_matches_model(tiny_clip_dir):
    from transformers import CLIPModel, CLIPProcessor

    adapter = load_model(str(tiny_clip_dir), device="cpu")
    assert isinstance(adapter, TransformersAdapter)
    images = [patch_image(i) for i in range(3)]
    model = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    processor = CLIPProcessor.from_pretrained(tiny_clip_dir)
    with torch.no_grad():
        out = model(**processor(text=["a", "lymphocytes"], images=images, return_tensors="pt", padding=True))
    # CLIPModel's forward returns normalised embeddings; the adapter returns them raw (tasks normalise).
    norm = torch.nn.functional.normalize
    torch.testing.assert_close(
        norm(adapter.encode_images(images), dim=-1), out.image_embeds, atol=1e-5, rtol=1e-4
    )
    torch.testing.assert_close(
        norm(adapter.encode_texts(["a", "lymphocytes"]), dim=-1), out.text_embeds, atol=1e-5, rtol=1e-4
    )
    assert (
        len(adapter.fingerprint) == 16 and adapter.fingerprint == load_model(str(tiny_clip_dir)).fingerprint
    )


def test_vision_text_dual_encoder_folder(tmp_path, clip_tokenizer_dir):
    from transformers import (
        BertConfig,
        CLIPImageProcessor,
        CLIPTokenizer,
        CLIPVisionConfig,
        VisionTextDualEncoderConfig,
        VisionTextDualEncoderModel,
        VisionTextDualEncoderProcessor,
    )

    torch.manual_seed(0)
    vision = CLIPVisionConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
    )
    text = BertConfig(
        vocab_size=49408,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=77,
    )
    config = VisionTextDualEncoderConfig.from_vision_text_configs(vision, text, projection_dim=16)
    VisionTextDualEncoderModel(config).save_pretrained(tmp_path)
    processor = VisionTextDualEncoderProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=CLIPTokenizer.from_pretrained(clip_tokenizer_dir),
    )
    processor.save_pretrained(tmp_path)
    adapter = load_model(str(tmp_path), device="cpu")
    assert adapter.encode_images([patch_image(0), patch_image(1)]).shape == (2, 16)
    assert adapter.encode_texts(["mucin pools"]).shape == (1, 16)


class _FakeOpenClip(torch.nn.Module):
    """The open_clip model surface: encode_image / encode_text."""

    def __init__(self):
        super().__init__()
        self.visual = torch.nn.Linear(3 * 8 * 8, 6)
        self.text = torch.nn.Embedding(100, 6)

    def encode_image(self, pixels):
        return self.visual(pixels.flatten(1))

    def encode_text(self, tokens):
        return self.text(tokens).mean(dim=1)


def test_open_clip_adapter_interface():
    import numpy as np

    def preprocess(image):
        return torch.from_numpy(np.asarray(image.resize((8, 8)), dtype=np.float32) / 255).permute(2, 0, 1)

    def tokenizer(texts):
        return torch.tensor([[len(t) % 100, 1, 2] for t in texts])

    adapter = OpenClipAdapter(_FakeOpenClip(), preprocess, tokenizer, name="open_clip:fake", device="cpu")
    assert adapter.encode_images([patch_image(0)]).shape == (1, 6)
    assert adapter.encode_texts(["a", "bb"]).shape == (2, 6)
    assert len(adapter.fingerprint) == 16


def test_open_clip_missing_gives_install_hint(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "open_clip":
            raise ImportError("no open_clip")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.delitem(__import__("sys").modules, "open_clip", raising=False)
    with pytest.raises(UserFacingError, match="pip install"):
        load_model("open_clip:ViT-B-32/openai", device="cpu")


def test_model_without_feature_methods_is_refused():
    with pytest.raises(UserFacingError, match="dual encoder"):
        TransformersAdapter(torch.nn.Linear(2, 2), name="linear")

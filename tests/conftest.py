"""Shared fixtures: tiny random models with the real tokenizers, a synthetic video factory, the demo corpus.

Tests never touch the network: the Hub is switched off before anything imports huggingface_hub.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # Ray's usage statistics probe the cloud metadata address

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from factories import DEMO_CORPUS, Scene, write_video

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def own_datasets_cache(tmp_path_factory, monkeypatch):
    """Each test has its own `datasets` cache: `load_dataset(folder)` keys its cache on the folder's name and
    files, so two tests publishing to folders of the same name (or a concurrent run) would read each other's
    tables from the user's ~/.cache/huggingface/datasets. Subprocesses inherit it through the environment."""
    import datasets

    folder = tmp_path_factory.mktemp("hf_datasets_cache")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(folder))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", folder)


@pytest.fixture(scope="session")
def clip_tokenizer_dir(tmp_path_factory) -> Path:
    """A folder with OpenAI CLIP's real tokenizer (49,408 ids), built from open_clip's BPE file."""
    from quilt_hf.offline import clip_tokenizer

    folder = tmp_path_factory.mktemp("clip_tokenizer")
    clip_tokenizer(folder).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory, clip_tokenizer_dir) -> Path:
    """A tiny randomly initialised ``CLIPModel`` with the real CLIP tokenizer and a 32x32 image processor,
    saved as a folder that ``from_pretrained`` and the zero-shot pipeline load."""
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTextConfig,
        CLIPTokenizer,
        CLIPVisionConfig,
    )

    torch.manual_seed(0)
    text = CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, projection_dim=16, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    )
    vision = CLIPVisionConfig(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, projection_dim=16,
    )
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16)
    model = CLIPModel(config)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=CLIPTokenizer.from_pretrained(clip_tokenizer_dir))
    folder = tmp_path_factory.mktemp("tiny_clip")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def whisper_tokenizer_dir(tmp_path_factory) -> Path:
    """Whisper's real multilingual tokenizer (51,865 ids), from the offline Whisper base package."""
    from quilt_hf.offline import whisper_tokenizer

    folder = tmp_path_factory.mktemp("whisper_tokenizer")
    whisper_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory) -> Path:
    """A tiny randomly initialised ``WhisperForConditionalGeneration`` with the real tokenizer and feature
    extractor, saved with its processor and generation config."""
    from quilt_hf.offline import tiny_random_whisper

    return tiny_random_whisper(tmp_path_factory.mktemp("tiny_whisper"))


@pytest.fixture
def make_video(tmp_path) -> Callable[..., Path]:
    """Factory: ``make_video(scenes, name="v.mp4", fps=10, size=(96, 128), audio=None)`` writes a real
    H.264/AAC MP4 under the test's temporary folder."""

    def factory(scenes: Sequence[Scene], name: str = "video.mp4", **kwargs) -> Path:
        return write_video(tmp_path / name, scenes, **kwargs)

    return factory


@pytest.fixture(scope="session")
def demo_corpus() -> Path:
    """The committed demo corpus (videos + ground truth)."""
    if not (DEMO_CORPUS / "ground_truth.json").is_file():
        pytest.fail(f"demo corpus missing under {DEMO_CORPUS}; run dataset_scripts/make_demo_corpus.py")
    return DEMO_CORPUS

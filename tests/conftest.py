"""Shared fixtures: tiny random models with the real tokenizers, a synthetic video factory, the demo corpus.

Tests never touch the network: the Hub is switched off before anything imports huggingface_hub.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from fractions import Fraction  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO_CORPUS = REPO / "demo_corpus"

torch.set_num_threads(min(2, os.cpu_count() or 1))


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
def tiny_whisper_dir(tmp_path_factory, whisper_tokenizer_dir) -> Path:
    """A tiny randomly initialised ``WhisperForConditionalGeneration`` with the real tokenizer and feature
    extractor, saved with its processor and generation config."""
    from transformers import (
        AutoTokenizer,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=51865, num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=1500, max_target_positions=448, decoder_start_token_id=50258,
        pad_token_id=50257, bos_token_id=50257, eos_token_id=50257,
    )
    model = WhisperForConditionalGeneration(config)
    generation = model.generation_config
    generation.decoder_start_token_id = 50258
    generation.no_timestamps_token_id = 50363
    generation.is_multilingual = True
    generation.lang_to_id = {"<|en|>": 50259}
    generation.task_to_id = {"transcribe": 50359, "translate": 50358}
    generation.max_length = 64
    tokenizer = AutoTokenizer.from_pretrained(whisper_tokenizer_dir)
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer)
    folder = tmp_path_factory.mktemp("tiny_whisper")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@dataclass
class Scene:
    """One stretch of a synthetic video: an RGB image shown for ``seconds`` (optionally moving)."""

    image: np.ndarray  # H x W x 3 uint8
    seconds: float
    drift: tuple[int, int] = (0, 0)  # pixels per second of horizontal/vertical pan


def _frame_at(scene: Scene, t: float, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    image = scene.image
    dx, dy = int(scene.drift[0] * t), int(scene.drift[1] * t)
    if (dx, dy) != (0, 0):
        image = np.roll(image, shift=(dy, dx), axis=(0, 1))
    if image.shape[:2] != (height, width):
        from PIL import Image

        image = np.asarray(Image.fromarray(image).resize((width, height)))
    return image


def write_video(
    path: Path,
    scenes: Sequence[Scene],
    *,
    fps: int = 10,
    size: tuple[int, int] = (96, 128),
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
) -> Path:
    """Write an H.264 (+ AAC when ``audio`` is given) MP4 of ``scenes`` with PyAV; returns ``path``."""
    import av

    height, width = size
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "18"}
        audio_stream = None
        if audio is not None:
            audio_stream = container.add_stream("aac", rate=sample_rate)
            audio_stream.layout = "mono"
        for scene in scenes:
            for k in range(max(1, round(scene.seconds * fps))):
                frame = av.VideoFrame.from_ndarray(_frame_at(scene, k / fps, size), format="rgb24")
                for packet in video.encode(frame):
                    container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio_stream is not None:
            samples = np.clip(audio, -1, 1).astype(np.float32)
            step = 1024
            for offset in range(0, len(samples), step):
                chunk = samples[offset : offset + step][None, :]
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate = sample_rate
                frame.pts = offset
                frame.time_base = Fraction(1, sample_rate)
                for packet in audio_stream.encode(frame):
                    container.mux(packet)
            for packet in audio_stream.encode():
                container.mux(packet)
    return path


def histology_like_image(seed: int, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    """A pink/purple H&E-like texture: a random field of nuclei on eosin background."""
    rng = np.random.default_rng(seed)
    height, width = size
    image = np.empty((height, width, 3), np.float32)
    image[:] = (232, 170, 200)
    image += rng.normal(0, 12, image.shape)
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(height * width // 150):
        cy, cx, r = rng.integers(0, height), rng.integers(0, width), rng.integers(2, 5)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        image[mask] = (90, 50, 140)
    return np.clip(image, 0, 255).astype(np.uint8)


def slide_like_image(seed: int, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    """A non-histology frame: a white slide with dark text-like bars."""
    rng = np.random.default_rng(seed)
    height, width = size
    image = np.full((height, width, 3), 250, np.uint8)
    for row in range(10, height - 10, 14):
        length = int(rng.integers(width // 3, width - 20))
        image[row : row + 5, 10 : 10 + length] = 30
    return image


def tone(seconds: float, sample_rate: int = 16000, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.2 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


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

"""Fixtures of the training tests: synthetic image-text pairs and a tiny dual-encoder base."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

COLORS = {
    "red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 40),
    "purple": (140, 40, 160), "orange": (240, 140, 20), "pink": (240, 150, 200), "cyan": (40, 220, 220),
    "black": (10, 10, 10), "white": (245, 245, 245), "brown": (120, 70, 30), "gray": (128, 128, 128),
}


def make_pairs(n: int = 12, size: int = 48, seed: int = 0):
    """``n`` image-text pairs: a coloured, lightly textured square and the colour's name in a caption."""
    from datasets import Dataset, Features, Image, Value

    rng = np.random.default_rng(seed)
    names = list(COLORS)
    rows = {"image": [], "caption": [], "image_id": [], "video_id": []}
    for i in range(n):
        name = names[i % len(names)]
        base = np.array(COLORS[name], dtype=np.float32)
        image = np.clip(base + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
        rows["image"].append(image)
        rows["caption"].append(f"a {name} tissue section")
        rows["image_id"].append(f"v{i % 4}_{i}")
        rows["video_id"].append(f"v{i % 4}")
    features = Features(
        {"image": Image(), "caption": Value("string"), "image_id": Value("string"), "video_id": Value("string")}
    )
    return Dataset.from_dict(rows, features=features)


@pytest.fixture(scope="session")
def color_pairs():
    return make_pairs()


@pytest.fixture(scope="session")
def tiny_dual_encoder_dir(tmp_path_factory) -> Path:
    """A ``VisionTextDualEncoderModel``: a tiny random ViT at 32 px and the real all-MiniLM-L6-v2 text tower
    (the offline ``quiltnet-demo-base`` builder at toy size), saved with its processor."""
    from quilt_hf.convert.offline_models import build_quiltnet_demo_base

    folder = tmp_path_factory.mktemp("tiny_dual_encoder")
    build_quiltnet_demo_base(
        folder, image_size=32, patch_size=8, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
        projection_dim=16,
    )
    return folder

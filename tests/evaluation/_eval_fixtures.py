"""Fixtures of the evaluation tests (imported by each test module; no conftest.py here, so the suite's
fixture names stay unambiguous)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def patch_image(seed: int, size: int = 48):
    """A small RGB texture (PIL) that differs with ``seed``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = rng.integers(60, 230, size=3)
    pixels = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="session", name="tiny_adapter")
def fixture_tiny_adapter(tiny_clip_dir):
    from quilt_hf.evaluation.adapters import load_model

    return load_model(str(tiny_clip_dir), device="cpu")


@pytest.fixture(scope="session", name="offline_benchmark")
def fixture_offline_benchmark():
    from quilt_hf.evaluation.registry import load_benchmark

    return load_benchmark("quilt_offline_patches")


@pytest.fixture(scope="session", name="pairs_folder")
def fixture_pairs_folder(tmp_path_factory) -> Path:
    """A synthetic pairs table with the PAIR_FEATURES schema (two captions for some images), in Hub layout."""
    from datasets import Dataset

    from quilt_hf.publishing.hub import write_hub_folder
    from quilt_hf.schema import PAIR_FEATURES, empty_row

    words = ["lymphocytes", "adipose tissue", "colonic glands", "keratin pearls", "mucin pools", "necrosis"]
    rows = []
    for index in range(12):
        image = patch_image(index)
        for caption in range(1 + index % 2):
            row = empty_row(PAIR_FEATURES)
            row.update(
                video_id=f"v{index // 4}",
                chunk_id=index,
                image_id=f"v{index // 4}_{index}_0",
                image=image,
                caption=f"{words[(index + caption) % len(words)]} seen at high power, image {index}",
                subset="quilt",
                split="test",
            )
            rows.append(row)
    dataset = Dataset.from_list(rows, features=PAIR_FEATURES)
    return write_hub_folder({"test": dataset}, tmp_path_factory.mktemp("pairs") / "demo_pairs")

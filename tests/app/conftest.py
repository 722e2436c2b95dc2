"""Fixtures for the app tests: a small Hub-layout pairs dataset and a quilt eval results folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factories import histology_like_image, slide_like_image

CAPTIONS = [
    "Granulomas with multinucleated giant cells in the lung.",
    "Hematoxylin and eosin stain of colon adenocarcinoma with glands.",
    "Basal cell carcinoma with peripheral palisading in the dermis.",
    "Normal lymph node with reactive follicles.",
    "Renal clear cell carcinoma with delicate vasculature.",
    "Osteosarcoma producing osteoid between malignant cells.",
]
PATHOLOGY = [["Pulmonary"], ["Gastrointestinal"], ["Dermatopathology"], ["Hematopathology"], ["Renal"], ["Bone"]]


def build_pairs(n: int = 18):
    """A pairs table with the project's schema: 3 videos, 2 images per chunk, real (synthetic) pictures."""
    from datasets import Dataset
    from PIL import Image

    from quilt_hf.schema import PAIR_FEATURES, empty_row

    rows = []
    for i in range(n):
        video, chunk = f"vid{i % 3}", (i // 3) // 2
        k = i % 6
        picture = histology_like_image(i, (64, 64)) if i % 4 else slide_like_image(i, (64, 64))
        row = empty_row(PAIR_FEATURES)
        row.update(
            video_id=video,
            chunk_id=chunk,
            image_id=f"{video}_{chunk}_{i}",
            image=Image.fromarray(picture),
            caption=CAPTIONS[k],
            medical_text=CAPTIONS[k],
            roi_text="look at the centre" if k == 0 else "",
            corrected_text=CAPTIONS[k].lower(),
            noisy_text=CAPTIONS[k].lower().replace("eosin", "the ascending"),
            pathology=PATHOLOGY[k],
            magnification=[0, 1, 2, -1][i % 4],
            start=float(i),
            end=float(i) + 3,
            text_start=float(i) - 2,
            text_end=float(i) + 3,
            video_duration=60.0,
            subset="quilt",
            split="validation" if video == "vid2" else "train",
            height=64,
            width=64,
        )
        rows.append(row)
    return Dataset.from_list(rows, features=PAIR_FEATURES)


@pytest.fixture(scope="session")
def pairs_dataset(tmp_path_factory) -> Path:
    """A Hub-layout folder (README + data/*.parquet) of 18 pairs, as `quilt publish` writes it."""
    from quilt_hf.hub import write_hub_folder

    pairs = build_pairs()
    folder = tmp_path_factory.mktemp("app") / "dataset"
    splits = {s: pairs.filter(lambda r, s=s: r["split"] == s) for s in ("train", "validation")}
    return write_hub_folder(splits, folder)


@pytest.fixture(scope="session")
def eval_results(tmp_path_factory) -> Path:
    """A `quilt eval` output folder with one zero-shot and one retrieval record."""
    folder = tmp_path_factory.mktemp("eval")
    (folder / "results").mkdir()
    records = [
        {"model": "my-quiltnet", "benchmark": "pcam", "task": "zero_shot",
         "metrics": {"acc1": 0.7125, "balanced_accuracy": 0.70}},
        {"model": "my-quiltnet", "benchmark": "arch", "task": "retrieval",
         "metrics": {"ks": [1, 5], "text_retrieval_recall@1": 0.1, "image_retrieval_recall@1": 0.2,
                     "text_retrieval_recall@5": 0.3, "image_retrieval_recall@5": 0.4}},
    ]
    for record in records:
        path = folder / "results" / f"{record['model']}__{record['benchmark']}__{record['task']}.json"
        path.write_text(json.dumps(record))
    return folder

"""Fixtures for the app tests: a small Hub-layout pairs dataset and a quilt eval results folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pairs_factory import build_pairs


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

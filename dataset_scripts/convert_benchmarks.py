"""Convert the evaluation benchmarks from their original download layouts to Hub-layout datasets.

Each converter reads a benchmark as its authors distribute it and writes a Hub-layout folder (README with
``configs`` + ``data/*.parquet`` with an ``Image`` column and a ``ClassLabel`` ``label`` in the registry's
class order) that ``quilt eval`` finds by name under ``$QUILT_HF_HOME/benchmarks/<name>`` (the default
output) and that ``--push ORG/NAME`` uploads to the Hub.

Layouts understood (``SOURCE`` is the folder you unpacked):

==============  ==========================================================================================
nct_crc         ``NCT-CRC-HE-100K/<CLASS>/*.tif`` (train) and ``CRC-VAL-HE-7K/<CLASS>/*.tif`` (test)
lc25000_lung    ``.../lung_image_sets/<lung_aca|lung_n|lung_scc>/*.jpeg``; stratified 80/20 split (seeded)
lc25000_colon   ``.../colon_image_sets/<colon_aca|colon_n>/*.jpeg``; stratified 80/20 split (seeded)
mhist           ``annotations.csv`` (Image Name, Majority Vote Label, Partition) + ``images/``
sicapv2         ``partition/Test/{Train,Test}.csv|xlsx`` (image_name + one-hot NC/G3/G4/G5) + ``images/``
pcam            ``camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5`` (needs h5py)
arch            ``books_set/`` and/or ``pubmed_set/`` with ``captions.json`` and ``images/``
any other       class folders (``<split>/<CLASS>/*`` or ``<CLASS>/*``, split 80/20 when absent) or a CSV
                with image paths and labels (``--csv FILE --image-column --label-column [--split-column]``)
==============  ==========================================================================================

Example::

    python dataset_scripts/convert_benchmarks.py nct_crc ~/downloads/nct --output ~/.cache/quilt_hf/benchmarks/nct_crc
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quilt_hf.errors import UserFacingError, require
from quilt_hf.evaluation.registry import Benchmark, get_benchmark

logger = logging.getLogger("convert_benchmarks")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
    "testing": "test",
}


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _dataset(
    benchmark: Benchmark, paths: Sequence[str | Path], labels: Sequence[str], extra: dict | None = None
):
    from datasets import ClassLabel, Dataset, Features, Image, Value

    columns = {"image": [str(p) for p in paths], "label": [benchmark.label_index(str(x)) for x in labels]}
    features = {"image": Image(), "label": ClassLabel(names=benchmark.class_keys)}
    for name, values in (extra or {}).items():
        columns[name] = list(values)
        features[name] = Value("string")
    return Dataset.from_dict(columns, features=Features(features))


def stratified_split(labels: Sequence[str], test_fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of the test rows: ``test_fraction`` of each class, seeded."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = round(test_fraction * len(members))
        test[rng.choice(members, size=count, replace=False)] = True
    return test


def from_class_folders(
    benchmark: Benchmark,
    root: Path,
    *,
    split_folders: dict[str, Path] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> dict:
    """One folder per class, optionally under split folders; a seeded stratified split when there is none.

    Class folders are matched to the registry by key, alias or name (case and punctuation ignored);
    folders that match no class are skipped with a warning.
    """
    if split_folders is None:
        found = {
            SPLIT_NAMES[p.name.lower()]: p
            for p in root.iterdir()
            if p.is_dir() and p.name.lower() in SPLIT_NAMES
        }
        split_folders = found or {"all": root}
    splits = {}
    for split, folder in split_folders.items():
        paths, labels = [], []
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            try:
                benchmark.label_index(class_dir.name)
            except UserFacingError:
                logger.warning("%s: folder %s matches no class; skipped", benchmark.name, class_dir)
                continue
            images = _images(class_dir)
            paths += images
            labels += [class_dir.name] * len(images)
        if not paths:
            raise UserFacingError(f"{folder}: no class folders with images for {benchmark.pretty_name}")
        splits[split] = (paths, labels)
    if "all" in splits:
        paths, labels = splits.pop("all")
        test = stratified_split(labels, test_fraction, seed)
        splits["train"] = (
            [p for p, t in zip(paths, test) if not t],
            [x for x, t in zip(labels, test) if not t],
        )
        splits["test"] = ([p for p, t in zip(paths, test) if t], [x for x, t in zip(labels, test) if t])
    return {split: _dataset(benchmark, paths, labels) for split, (paths, labels) in splits.items()}


def _read_table(path: Path) -> list[dict]:
    if path.suffix.lower() in (".xlsx", ".xls"):
        pandas = require("pandas", purpose="reading Excel partition files")
        require("openpyxl", purpose="reading Excel partition files")
        return pandas.read_excel(path).astype(str).to_dict("records")
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def from_csv(
    benchmark: Benchmark,
    table: Path,
    image_dir: Path,
    *,
    image_column: str,
    label_column: str | None = None,
    onehot_columns: Sequence[str] | None = None,
    split_column: str | None = None,
    split: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> dict:
    """A CSV (or Excel) of image file names and labels (a label column or one-hot columns per class)."""
    rows = _read_table(table)
    paths, labels, splits = [], [], []
    for row in rows:
        if onehot_columns:
            hot = [c for c in onehot_columns if str(row.get(c, "0")).strip() not in ("0", "0.0", "", "False")]
            if len(hot) != 1:
                continue  # unlabelled or ambiguous rows are not scored
            label = hot[0]
        else:
            label = row[label_column]
        paths.append(image_dir / row[image_column])
        labels.append(label)
        splits.append(
            SPLIT_NAMES.get(str(row.get(split_column, "")).lower(), split) if split_column else split
        )
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise UserFacingError(f"{len(missing)} images listed in {table} are missing, e.g. {missing[0]}")
    if any(s is None for s in splits):
        test = stratified_split(labels, test_fraction, seed)
        splits = ["test" if t else "train" for t in test]
    result = {}
    for name in dict.fromkeys(splits):
        keep = [i for i, s in enumerate(splits) if s == name]
        result[name] = _dataset(benchmark, [paths[i] for i in keep], [labels[i] for i in keep])
    return result


def convert_nct_crc(source: Path, **_) -> dict:
    benchmark = get_benchmark("nct_crc")
    train = next((p for p in source.rglob("NCT-CRC-HE-100K*") if p.is_dir()), None)
    test = next((p for p in source.rglob("CRC-VAL-HE-7K*") if p.is_dir()), None)
    if train is None or test is None:
        raise UserFacingError(f"{source}: expected NCT-CRC-HE-100K/ and CRC-VAL-HE-7K/ folders")
    return from_class_folders(benchmark, source, split_folders={"train": train, "test": test})


def _lc25000(name: str, sets: str):
    def convert(source: Path, *, seed: int = 0, **_) -> dict:
        root = next((p for p in [source, *source.rglob(sets)] if p.name == sets and p.is_dir()), source)
        return from_class_folders(get_benchmark(name), root, seed=seed)

    return convert


def convert_mhist(source: Path, **_) -> dict:
    table = next(source.rglob("annotations.csv"), None)
    if table is None:
        raise UserFacingError(f"{source}: annotations.csv not found")
    images = table.parent / "images" if (table.parent / "images").is_dir() else table.parent
    return from_csv(
        get_benchmark("mhist"),
        table,
        images,
        image_column="Image Name",
        label_column="Majority Vote Label",
        split_column="Partition",
    )


def convert_sicapv2(source: Path, **_) -> dict:
    benchmark = get_benchmark("sicapv2")
    images = next((p for p in source.rglob("images") if p.is_dir()), source)
    result = {}
    for split in ("Train", "Test"):
        table = next(
            (p for p in source.rglob(f"partition/Test/{split}.*") if p.suffix in (".csv", ".xlsx")), None
        )
        if table is None:
            raise UserFacingError(f"{source}: partition/Test/{split}.xlsx (or .csv) not found")
        result.update(
            from_csv(
                benchmark,
                table,
                images,
                image_column="image_name",
                onehot_columns=["NC", "G3", "G4", "G5"],
                split=split.lower(),
            )
        )
    return result


def convert_pcam(source: Path, **_) -> dict:
    from datasets import ClassLabel, Dataset, Features, Image

    h5py = require("h5py", purpose="reading PatchCamelyon's HDF5 files")
    benchmark = get_benchmark("pcam")
    features = Features({"image": Image(), "label": ClassLabel(names=benchmark.class_keys)})
    result = {}
    for split, role in (("train", "train"), ("valid", "validation"), ("test", "test")):
        x_path = next(source.rglob(f"camelyonpatch_level_2_split_{split}_x.h5"), None)
        y_path = next(source.rglob(f"camelyonpatch_level_2_split_{split}_y.h5"), None)
        if x_path is None or y_path is None:
            continue

        def rows(x_path=x_path, y_path=y_path):
            from PIL import Image as PILImage

            with h5py.File(x_path, "r") as xs, h5py.File(y_path, "r") as ys:
                for index in range(len(xs["x"])):
                    yield {
                        "image": PILImage.fromarray(xs["x"][index]),
                        "label": int(ys["y"][index].reshape(-1)[0]),
                    }

        result[role] = Dataset.from_generator(rows, features=features)
    if not result:
        raise UserFacingError(f"{source}: no camelyonpatch_level_2_split_*_x.h5 / _y.h5 pairs")
    return result


def convert_arch(source: Path, **_) -> dict:
    """ARCH: ``captions.json`` maps an id to ``{"caption", "uuid" | "figure_id", ...}``; images are
    ``images/<uuid>.(png|jpg)``. Rows sharing an image keep one ``image_id``."""
    from datasets import Dataset, Features, Image, Value

    rows = {"image": [], "caption": [], "image_id": [], "subset": []}
    for captions in sorted(source.rglob("captions.json")):
        images = {p.stem: p for p in _images(captions.parent / "images")}
        for key, entry in json.loads(captions.read_text()).items():
            image_key = str(entry.get("uuid") or key)
            if image_key not in images:
                logger.warning("%s: no image for %s", captions, image_key)
                continue
            rows["image"].append(str(images[image_key]))
            rows["caption"].append(entry["caption"])
            rows["image_id"].append(f"{captions.parent.name}/{image_key}")
            rows["subset"].append(captions.parent.name)
    if not rows["image"]:
        raise UserFacingError(f"{source}: no captions.json with images/ found")
    features = Features(
        {"image": Image(), "caption": Value("string"), "image_id": Value("string"), "subset": Value("string")}
    )
    return {"test": Dataset.from_dict(rows, features=features)}


def convert_generic(name: str):
    def convert(source: Path, *, seed: int = 0, **_) -> dict:
        return from_class_folders(get_benchmark(name), source, seed=seed)

    return convert


CONVERTERS = {
    "nct_crc": convert_nct_crc,
    "lc25000_lung": _lc25000("lc25000_lung", "lung_image_sets"),
    "lc25000_colon": _lc25000("lc25000_colon", "colon_image_sets"),
    "mhist": convert_mhist,
    "sicapv2": convert_sicapv2,
    "pcam": convert_pcam,
    "arch": convert_arch,
    **{
        name: convert_generic(name)
        for name in ("databiox", "osteo", "bach", "renal_cell", "skin_cancer", "skin_tumor")
    },
}


def convert(
    name: str,
    source: str | Path,
    output: str | Path,
    *,
    seed: int = 0,
    overwrite: bool = False,
    csv_options: dict | None = None,
) -> Path:
    """Convert benchmark ``name`` from ``source`` into a Hub-layout folder ``output``; returns the folder."""
    from quilt_hf.publishing.hub import BENCHMARK_CARD_TEMPLATE, write_hub_folder

    benchmark = get_benchmark(name)
    source = Path(source).expanduser()
    if not source.is_dir():
        raise UserFacingError(f"{source} is not a folder")
    if csv_options:
        table = Path(csv_options.pop("csv"))
        splits = from_csv(
            benchmark, table, Path(csv_options.pop("image_dir", None) or source), seed=seed, **csv_options
        )
    else:
        splits = CONVERTERS[name](source, seed=seed)
    body = (
        f"{benchmark.pretty_name}, converted to Hub layout by quilt_hf's "
        f"`dataset_scripts/convert_benchmarks.py` from the original download ({benchmark.source_url}).\n\n"
        f"{benchmark.description}\n\nCheck the original licence before publishing this dataset.\n"
    )
    return write_hub_folder(
        splits,
        output,
        card_text=body,
        pretty_name=benchmark.pretty_name,
        license="other",
        extra_card_data={"tags": ["histopathology", "benchmark", "quilt_hf"]},
        overwrite=overwrite,
        template=BENCHMARK_CARD_TEMPLATE,
    )


def main(argv: list[str] | None = None) -> int:
    from quilt_hf.models import quilt_home

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=sorted(CONVERTERS), help="registered benchmark name")
    parser.add_argument("source", help="folder of the original download (unpacked)")
    parser.add_argument("--output", default=None, help="default: $QUILT_HF_HOME/benchmarks/NAME")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the train/test split where there is none"
    )
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument(
        "--csv", default=None, help="a CSV/Excel table of images and labels instead of the known layout"
    )
    parser.add_argument("--image-dir", default=None, help="folder the table's image names are relative to")
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--split-column", default=None)
    parser.add_argument("--push", default=None, metavar="ORG/NAME", help="upload to this Hub dataset repo")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    output = Path(args.output) if args.output else quilt_home() / "benchmarks" / args.name
    csv_options = None
    if args.csv:
        csv_options = {
            "csv": args.csv,
            "image_dir": args.image_dir,
            "image_column": args.image_column,
            "label_column": args.label_column,
            "split_column": args.split_column,
        }
    try:
        folder = convert(
            args.name, args.source, output, seed=args.seed, overwrite=args.overwrite, csv_options=csv_options
        )
        logger.info("wrote %s", folder)
        if args.push:
            from quilt_hf.publishing.hub import push_folder_to_hub

            logger.info("pushed to %s", push_folder_to_hub(folder, args.push))
    except UserFacingError as error:
        logger.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

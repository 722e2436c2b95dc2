"""The registry (QUILT.md's benchmarks, data location, layouts) and the converters on small fake downloads."""

import csv
import importlib.util
import json
from pathlib import Path

import pytest
from _eval_fixtures import REPO, fixture_pairs_folder, patch_image  # noqa: F401  (fixture)

from quilt_hf.errors import UserFacingError
from quilt_hf.evaluation.registry import RETRIEVAL, get_benchmark, load_benchmark


def _converters():
    spec = importlib.util.spec_from_file_location(
        "convert_benchmarks", REPO / "dataset_scripts" / "convert_benchmarks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLASS_COUNTS = {
    "pcam": 2,
    "nct_crc": 9,
    "lc25000_lung": 3,
    "lc25000_colon": 2,
    "mhist": 2,
    "sicapv2": 4,
    "databiox": 3,
    "osteo": 3,
    "bach": 4,
    "renal_cell": 5,
    "skin_cancer": 16,
    "skin_tumor": 4,
}


def test_paper_benchmarks_registered():
    for name, count in CLASS_COUNTS.items():
        benchmark = get_benchmark(name)
        assert len(benchmark.classes) == count, name
        assert all(len(spec.names) >= 2 for spec in benchmark.classes), name  # synonyms for ensembling
        assert all("{c}" in t for t in benchmark.templates)
        assert benchmark.hub_id and benchmark.source_url
    assert get_benchmark("arch").task == RETRIEVAL
    assert get_benchmark("nct_crc").label_index("tum") == 8
    with pytest.raises(UserFacingError, match="unknown benchmark"):
        get_benchmark("nope")


def test_offline_benchmark_loads_from_repo_folder():
    data = load_benchmark("quilt_offline_patches")
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 128, "validation": 32, "test": 64}
    assert data.split("test").features["label"].names == ["carcinoma", "skin", "ihc_colon", "background"]
    assert data.source.endswith("benchmarks/quilt_offline_patches")
    size = sum(
        p.stat().st_size for p in (REPO / "benchmarks" / "quilt_offline_patches").rglob("*") if p.is_file()
    )
    assert size < 2 * 1024 * 1024


def test_missing_data_says_how_to_convert(tmp_path, monkeypatch):
    monkeypatch.setenv("QUILT_HF_HOME", str(tmp_path))
    with pytest.raises(UserFacingError, match="convert_benchmarks.py nct_crc"):
        load_benchmark("nct_crc")


def test_unregistered_pairs_folder_is_retrieval(pairs_folder):
    data = load_benchmark(str(pairs_folder))
    assert data.benchmark.task == RETRIEVAL and data.benchmark.group_column == "image_id"


def _class_tree(root: Path, classes, per_class=5, suffix=".png"):
    for c_index, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            patch_image(100 * c_index + i, size=16).save(root / name / f"{name}_{i}{suffix}")


def test_imagefolder_layout_labels_follow_registry(tmp_path):
    # Folder names in another order and spelling: labels must still follow the registry's class order.
    for split in ("train", "test"):
        _class_tree(tmp_path / split, ["lung_scc", "Lung_N", "lung_aca"], per_class=2)
    data = load_benchmark("lc25000_lung", data_dir=tmp_path)
    test = data.split("test")
    assert test.features["label"].names == ["lung_aca", "lung_n", "lung_scc"]
    assert sorted(test["label"]) == [0, 0, 1, 1, 2, 2]


def test_csv_layout(tmp_path):
    _class_tree(tmp_path / "img", ["HP", "SSA"], per_class=3)
    with (tmp_path / "test.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "label"])
        for name in ("HP", "SSA"):
            for i in range(3):
                writer.writerow([f"img/{name}/{name}_{i}.png", name])
    data = load_benchmark("mhist", data_dir=tmp_path)
    assert data.split("test")["label"] == [0, 0, 0, 1, 1, 1]


def test_convert_nct_crc_layout(tmp_path):
    conv = _converters()
    keys = get_benchmark("nct_crc").class_keys
    _class_tree(tmp_path / "src" / "NCT-CRC-HE-100K", keys, per_class=2, suffix=".tif")
    _class_tree(tmp_path / "src" / "CRC-VAL-HE-7K", keys, per_class=1, suffix=".tif")
    out = conv.convert("nct_crc", tmp_path / "src", tmp_path / "out")
    data = load_benchmark("nct_crc", data_dir=out)
    assert len(data.split("train")) == 18 and len(data.split("test")) == 9
    assert sorted(data.split("test")["label"]) == list(range(9))
    assert "configs:" in (out / "README.md").read_text()


def test_convert_lc25000_without_split_is_stratified(tmp_path):
    conv = _converters()
    _class_tree(
        tmp_path / "lung_colon_image_set" / "lung_image_sets", ["lung_aca", "lung_n", "lung_scc"], 10, ".jpeg"
    )
    out = conv.convert("lc25000_lung", tmp_path, tmp_path / "out")
    data = load_benchmark("lc25000_lung", data_dir=out)
    assert sorted(data.split("test")["label"]) == [0, 0, 1, 1, 2, 2]
    assert len(data.split("train")) == 24


def test_convert_mhist_csv(tmp_path):
    conv = _converters()
    (tmp_path / "images").mkdir()
    rows = [
        ("a.png", "HP", "train"),
        ("b.png", "SSA", "train"),
        ("c.png", "SSA", "test"),
        ("d.png", "HP", "test"),
    ]
    with (tmp_path / "annotations.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["Image Name", "Majority Vote Label", "Number of Annotators who Selected SSA", "Partition"]
        )
        for i, (name, label, split) in enumerate(rows):
            patch_image(i, 16).save(tmp_path / "images" / name)
            writer.writerow([name, label, 0, split])
    out = conv.convert("mhist", tmp_path, tmp_path / "out")
    data = load_benchmark("mhist", data_dir=out)
    assert data.split("train")["label"] == [0, 1] and data.split("test")["label"] == [1, 0]


def test_convert_sicapv2_onehot(tmp_path):
    conv = _converters()
    (tmp_path / "images").mkdir()
    (tmp_path / "partition" / "Test").mkdir(parents=True)
    for split, names in (("Train", ["g3.jpg", "nc.jpg"]), ("Test", ["g5.jpg", "g4.jpg"])):
        with (tmp_path / "partition" / "Test" / f"{split}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image_name", "NC", "G3", "G4", "G5", "G4C"])
            for i, name in enumerate(names):
                patch_image(i, 16).save(tmp_path / "images" / name)
                hot = {"nc": "NC", "g3": "G3", "g4": "G4", "g5": "G5"}[name[:2]]
                writer.writerow([name] + [int(c == hot) for c in ("NC", "G3", "G4", "G5")] + [0])
    out = conv.convert("sicapv2", tmp_path, tmp_path / "out")
    data = load_benchmark("sicapv2", data_dir=out)
    assert data.split("train")["label"] == [1, 0] and data.split("test")["label"] == [3, 2]


def test_convert_arch_captions(tmp_path):
    conv = _converters()
    for subset in ("books_set", "pubmed_set"):
        (tmp_path / subset / "images").mkdir(parents=True)
        captions = {}
        for i in range(3):
            uuid = f"{subset[:2]}{i}"
            patch_image(i, 16).save(tmp_path / subset / "images" / f"{uuid}.png")
            captions[str(i)] = {"uuid": uuid, "caption": f"{subset} figure {i}: glands and stroma"}
        captions["3"] = {"uuid": f"{subset[:2]}0", "caption": "a second caption of the first image"}
        (tmp_path / subset / "captions.json").write_text(json.dumps(captions))
    out = conv.convert("arch", tmp_path, tmp_path / "out")
    data = load_benchmark("arch", data_dir=out)
    test = data.split("test")
    assert len(test) == 8 and len(set(test["image_id"])) == 6

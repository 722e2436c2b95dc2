"""``quilt eval`` on a plain folder of class subfolders (no split folders): zero-shot scores all of it, the
linear probe makes a stratified, seeded split and says so."""

import json

import numpy as np
import pytest
from _eval_fixtures import patch_image

from quilt_hf.cli import Command, parse_command_args
from quilt_hf.evaluation.cli import run_eval
from quilt_hf.evaluation.linear_probe import stratified_holdout

EVAL_COMMAND = Command("eval", "quilt_hf.evaluation.cli", "EvalConfig", "run_eval", "Evaluate models.")
COUNTS = {"adipose": 10, "stroma": 7, "tumor": 5}


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("my_patches")
    seed = 0
    for name, count in COUNTS.items():
        (folder / name).mkdir()
        for i in range(count):
            patch_image(seed).save(folder / name / f"{i}.png")
            seed += 1
    return folder


def test_stratified_holdout_is_seeded_and_keeps_every_class_in_training():
    labels = np.array([0] * 10 + [1] * 7 + [2] * 5 + [3])
    train, test = stratified_holdout(labels, 0.2, seed=0)
    again = stratified_holdout(labels, 0.2, seed=0)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(labels)))
    assert np.bincount(labels[test], minlength=4).tolist() == [2, 1, 1, 0]  # the singleton class stays in train
    assert set(labels[train]) == {0, 1, 2, 3}


def test_quilt_eval_on_a_folder_of_class_subfolders(tiny_clip_dir, class_folder, tmp_path):
    output = tmp_path / "eval"
    config, _ = parse_command_args(
        EVAL_COMMAND,
        ["--model", str(tiny_clip_dir), "--benchmarks", str(class_folder), "--tasks", "zero_shot", "linear_probe",
         "--output", str(output), "--device", "cpu", "--seeds", "0", "--fractions", "1.0", "--cache_dir", "none"],
    )
    records = {record["task"]: record for record in run_eval(config)}
    assert set(records) == {"zero_shot", "linear_probe"}

    zero_shot = records["zero_shot"]["metrics"]
    assert zero_shot["split"] == "all" and zero_shot["num_samples"] == sum(COUNTS.values())
    assert sum(map(sum, zero_shot["confusion_matrix"])) == 22

    probe = records["linear_probe"]["metrics"]
    assert probe["num_samples"] == 2 + 1 + 1  # round(20%) of 10, 7 and 5 images, at least one per class
    # the other 18 are split again for choosing C: 20% of 8, 6 and 4 (2 + 1 + 1) validate, 14 train
    assert probe["fractions"]["100%"]["num_train"] == 14
    assert "stratified 80%/20% train/test split drawn with seed 0" in probe["split_note"]
    saved = json.loads(next((output / "results").glob("*__linear_probe.json")).read_text())
    assert saved["settings"]["split"] == probe["split_note"]
    report = (output / "results.md").read_text()
    assert "## Notes" in report and "stratified 80%/20% train/test split" in report
    assert "scored on all 22 images" in report

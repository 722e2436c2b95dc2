"""The learned histology filter: features, weights, decisions on generated frames, and its training inputs."""

from __future__ import annotations

import importlib.util
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from factories import REPO, Scene, histology_like_image, slide_like_image, write_video

from quilt_hf.curation.histology import build_histology_classifier
from quilt_hf.curation.histology_learned import (
    FEATURE_NAMES,
    LearnedHistologyClassifier,
    MLPWeights,
    frame_features,
    trim_letterbox,
)
from quilt_hf.errors import ModelLoadError

TRAIN_SCRIPT = REPO / "dataset_scripts" / "train_histology_filter.py"


def _training_module():
    spec = importlib.util.spec_from_file_location("train_histology_filter", TRAIN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_learned_is_the_default_and_loads_the_shipped_weights():
    from quilt_hf.curation.cli import CurateConfig

    assert CurateConfig.__dataclass_fields__["histology"].default == "learned"
    classifier = build_histology_classifier(None)
    assert isinstance(classifier, LearnedHistologyClassifier)
    assert isinstance(build_histology_classifier("learned"), LearnedHistologyClassifier)
    assert classifier.load()._mlp.feature_names == FEATURE_NAMES
    assert build_histology_classifier("learned", threshold=0.9).threshold == 0.9


def test_learned_separates_tissue_from_slides_and_look_alikes():
    """Frames drawn with a seed the training never used: tissue of several kinds vs stained-looking negatives."""
    train = _training_module()
    rng = np.random.default_rng(12345)
    tissue = [train.synthetic_tissue(rng) for _ in range(3)] + [train.cytology(rng) for _ in range(2)]
    tissue += [train.low_power(train.synthetic_tissue(rng), rng), histology_like_image(1)]
    others = [train.text_slide(rng, [], pink=True) for _ in range(3)] + [train.diagram(rng) for _ in range(3)]
    others += [train.gross_specimen(rng) for _ in range(2)] + [slide_like_image(2, (288, 512))]
    classifier = build_histology_classifier("learned")
    assert [flag for flag, _ in classifier.predict(tissue)] == [True] * len(tissue)
    assert [flag for flag, _ in classifier.predict(others)] == [False] * len(others)


def test_learned_scores_are_kept_and_empty_input_is_fine():
    classifier = LearnedHistologyClassifier()
    decisions = classifier.predict([histology_like_image(3), slide_like_image(3)])
    assert decisions[0][0] and not decisions[1][0]
    assert 0.5 <= decisions[0][1] <= 1.0 and 0.0 <= decisions[1][1] < 0.5
    assert classifier.predict([]) == []
    import pickle

    clone = pickle.loads(pickle.dumps(classifier))  # to a worker process: without the loaded weights
    assert clone._mlp is None and clone.predict([histology_like_image(3)])[0][0]


def test_letterbox_bars_do_not_change_the_features():
    image = histology_like_image(4, (180, 240))
    boxed = np.zeros((240, 426, 3), np.uint8)
    boxed[30:210, 93:333] = image
    assert trim_letterbox(boxed.astype(np.float32) / 255).shape[:2] == (180, 240)
    np.testing.assert_allclose(frame_features(boxed), frame_features(image), atol=0.05)


def test_weights_round_trip_and_refuse_other_features(tmp_path):
    rng = np.random.default_rng(0)
    n = len(FEATURE_NAMES)
    weights = MLPWeights(
        rng.normal(size=n).astype(np.float32), np.ones(n, np.float32),
        [(rng.normal(size=(n, 4)).astype(np.float32), np.zeros(4, np.float32)), (rng.normal(size=(4, 1)).astype(np.float32), np.zeros(1, np.float32))],
        FEATURE_NAMES, {"note": "test"},
    )
    weights.to_json(tmp_path / "w.json")
    x = rng.normal(size=(3, n)).astype(np.float32)
    np.testing.assert_allclose(MLPWeights.from_json(tmp_path / "w.json")(x), weights(x), rtol=1e-4)
    data = json.loads((tmp_path / "w.json").read_text())
    data["feature_names"] = data["feature_names"][:-1]
    (tmp_path / "old.json").write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="retrain"):
        LearnedHistologyClassifier(tmp_path / "old.json").load()
    with pytest.raises(ModelLoadError, match="train_histology_filter"):
        build_histology_classifier(f"learned:{tmp_path / 'missing.json'}").load()


def _fake_inputs(tmp_path: Path) -> tuple[Path, Path]:
    """A two-scene demo-format corpus and a zip laid out like the scikit-image wheel (tiny images)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_video(corpus / "v.mp4", [Scene(slide_like_image(0), 3), Scene(histology_like_image(0), 3)], fps=5)
    truth = {"videos": [{"video_id": "v", "file": "v.mp4", "intervals": [
        {"start": 0.0, "end": 3.0, "kind": "title", "histology": False},
        {"start": 3.0, "end": 6.0, "kind": "static", "histology": True},
    ]}]}
    (corpus / "ground_truth.json").write_text(json.dumps(truth))
    wheel = tmp_path / "scikit_image-0.26.0-fake.whl"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(wheel, "w") as archive:
        train = _training_module()
        for name in train.PHOTOS:
            buffer = io.BytesIO()
            from PIL import Image

            Image.fromarray((rng.random((40, 60, 3)) * 255).astype(np.uint8)).save(buffer, "PNG")
            archive.writestr(f"skimage/data/{name}", buffer.getvalue())
        buffer = io.BytesIO()
        np.save(buffer, rng.random((3, 25, 25)).astype(np.float32))
        archive.writestr("skimage/data/lfw_subset.npy", buffer.getvalue())
    return corpus, wheel


DRIVER = """
import json, os, runpy, sys
opened = []
def hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        opened.append(os.fsdecode(args[0]))
sys.addaudithook(hook)
import quilt_hf.curation.frames as frames
real = frames.iter_frame_batches
def spy(path, *a, **k):
    opened.append(str(path))  # decord opens videos in C, out of the audit hook's sight
    return real(path, *a, **k)
frames.iter_frame_batches = spy
sys.argv = [sys.argv[1], *sys.argv[3:]]
log = sys.argv.pop(sys.argv.index("--opened-log") + 1); sys.argv.remove("--opened-log")
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    with open(log, "w") as f:
        json.dump(opened, f)
"""


@pytest.mark.slow
def test_training_reads_no_held_out_file(tmp_path):
    """Run the training script end to end on tiny inputs and record every file it opens: only its inputs, the
    Python it imports and its output; nothing under benchmarks/ (the held-out lectures live there)."""
    source = TRAIN_SCRIPT.read_text()
    assert "heldout_lectures" not in source and "benchmarks/" not in source and "histolytics" not in source
    corpus, wheel = _fake_inputs(tmp_path)
    output, log = tmp_path / "w.json", tmp_path / "opened.json"
    (tmp_path / "driver.py").write_text(DRIVER)
    result = subprocess.run(
        [sys.executable, str(tmp_path / "driver.py"), str(TRAIN_SCRIPT), "-", "--demo-corpus", str(corpus),
         "--skimage-wheel", str(wheel), "--output", str(output), "--per-family", "2", "--hidden", "4",
         "--opened-log", str(log)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    opened = {str(Path(p).resolve()) for p in json.loads(log.read_text())}
    assert str((corpus / "v.mp4").resolve()) in opened and str(wheel.resolve()) in opened
    assert not [p for p in opened if "/benchmarks/" in p or "heldout" in p]
    # in the repository it reads only code (and the package's own files): no corpus but the one it was given
    repo = str(REPO.resolve())
    allowed = tuple(f"{repo}/{d}" for d in ("quilt_hf/", "quilt_hf.egg-info/", "dataset_scripts/", ".venv/", "__editable__"))
    repo_reads = {p for p in opened if p.startswith(repo + "/") and not p.startswith(allowed)}
    assert not repo_reads, repo_reads
    assert LearnedHistologyClassifier(output).load()._mlp.meta["frames"] > 0

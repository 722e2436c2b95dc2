"""``quilt demo`` end to end on a two-video corpus (two, so a held-out split exists): every stage runs and the report is written."""

import json
import shutil

import pytest
from datasets import load_dataset, load_from_disk
from factories import DEMO_CORPUS

from quilt_hf.demo import STAGES, DemoConfig, run_demo
from quilt_hf.errors import UserFacingError
from quilt_hf.models import offline_model_path


def _two_video_corpus(tmp_path):
    truth = json.loads((DEMO_CORPUS / "ground_truth.json").read_text())
    videos = sorted(truth["videos"], key=lambda v: v["duration"])[:2]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for video in videos:
        shutil.copy(DEMO_CORPUS / video["file"], corpus / video["file"])
    (corpus / "ground_truth.json").write_text(json.dumps({**truth, "videos": videos}))
    return corpus


def test_demo_without_a_corpus_says_what_to_do(tmp_path):
    with pytest.raises(UserFacingError, match="ground_truth.json"):
        run_demo(DemoConfig(corpus=str(tmp_path), output=str(tmp_path / "out")))


def test_demo_rejects_unknown_stages(tmp_path):
    with pytest.raises(UserFacingError, match="unknown stages"):
        run_demo(DemoConfig(corpus=str(DEMO_CORPUS), output=str(tmp_path / "out"), stages="curate,nope"))


@pytest.mark.slow
def test_demo_runs_every_stage_and_writes_the_report(tmp_path):
    if offline_model_path("asr") is None or offline_model_path("clip") is None:
        pytest.skip("needs the offline models (make models)")
    output = tmp_path / "demo"
    run_demo(DemoConfig(corpus=str(_two_video_corpus(tmp_path)), output=str(output), train_epochs=1))
    pairs = load_from_disk(str(output / "curated" / "pairs"))
    assert len(pairs) > 0 and all(pairs["caption"])
    assert set(load_dataset(str(output / "dataset"))) <= {"train", "validation"}
    assert (output / "model" / "model.safetensors").is_file() and (output / "model" / "README.md").is_file()
    results = json.loads((output / "results.json").read_text())
    assert results["curation_scores"]["histology_precision"] >= 0.9
    assert set(results["evaluation"]) == {"before training", "after training"}
    report = (output / "report.md").read_text()
    for stage in STAGES:
        assert f"| {stage.name} | done |" in report
    assert "![A sample of curated pairs" in report and (output / "pairs.png").is_file()
    assert "data:image/png;base64," in (output / "report.html").read_text()

"""Every task end to end on CPU through ``run_eval``: offline patches + a pairs table, reports, model-index."""

import json

import pytest
from _eval_fixtures import fixture_pairs_folder  # noqa: F401  (fixture)

from quilt_hf.cli import Command, parse_command_args
from quilt_hf.evaluation.cli import EvalConfig, run_eval

EVAL_COMMAND = Command("eval", "quilt_hf.evaluation.cli", "EvalConfig", "run_eval", "Evaluate models.")


@pytest.fixture(scope="module")
def eval_run(tiny_clip_dir, pairs_folder, tmp_path_factory):
    import shutil

    model_dir = tmp_path_factory.mktemp("model") / "tiny-quiltnet"
    shutil.copytree(tiny_clip_dir, model_dir)
    output = tmp_path_factory.mktemp("eval")
    config, _ = parse_command_args(
        EVAL_COMMAND,
        [
            "--model",
            str(model_dir),
            "--benchmarks",
            "quilt_offline_patches",
            str(pairs_folder),
            "--output",
            str(output),
            "--device",
            "cpu",
            "--seeds",
            "0",
            "1",
            "--fractions",
            "0.1",
            "1.0",
            "--batch_size",
            "32",
            "--model_card",
            "auto",
        ],
    )
    assert isinstance(config, EvalConfig)
    records = run_eval(config)
    return records, output, model_dir


def test_all_tasks_write_results(eval_run):
    records, output, _ = eval_run
    assert sorted((r["benchmark"], r["task"]) for r in records) == [
        ("demo_pairs", "retrieval"),
        ("quilt_offline_patches", "linear_probe"),
        ("quilt_offline_patches", "zero_shot"),
    ]
    files = sorted(p.name for p in (output / "results").glob("*.json"))
    assert len(files) == 3
    zero_shot = json.loads(next((output / "results").glob("*__zero_shot.json")).read_text())
    assert 0 <= zero_shot["metrics"]["acc1"] <= 1 and zero_shot["metrics"]["num_samples"] == 64
    retrieval = next(r for r in records if r["task"] == "retrieval")["metrics"]
    assert retrieval["num_images"] == 12 and retrieval["num_texts"] == 18  # 6 images carry two captions
    for k in (1, 5, 10):
        assert (
            0
            <= retrieval[f"image_retrieval_recall@{k}"]
            <= retrieval.get(f"image_retrieval_recall@{k + 1}", 1)
        )
    assert retrieval["text_retrieval_recall@10"] >= retrieval["text_retrieval_recall@1"]
    probe = next(r for r in records if r["task"] == "linear_probe")["metrics"]
    assert set(probe["fractions"]) == {"10%", "100%"} and len(probe["fractions"]["100%"]["runs"]) == 2
    # real histology classes from different sources: even a random tiny CLIP separates them linearly
    assert probe["acc1"] > 0.5


def test_report_files(eval_run):
    _, output, _ = eval_run
    table = (output / "results.md").read_text()
    assert "## Zero-shot classification" in table and "## Linear probe" in table and "## Retrieval" in table
    assert "quilt_offline_patches" in table and "demo_pairs" in table
    plots = sorted(p.name for p in (output / "plots").glob("*.png"))
    assert any(name.endswith("__zero_shot__confusion.png") for name in plots)
    assert any(name.endswith("__linear_probe__per_class_recall.png") for name in plots)
    assert "demo_pairs__recall_at_k.png" in plots
    for name in plots:
        assert (output / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_feature_cache_written(eval_run):
    _, output, _ = eval_run
    assert list((output / "feature_cache").rglob("*.safetensors"))


def test_model_index_validates(eval_run):
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

    _, _, model_dir = eval_run
    card = ModelCard.load(model_dir / "README.md")
    results = card.data.eval_results
    assert card.data.model_name == "tiny-quiltnet"
    kinds = {(r.task_type, r.dataset_name, r.metric_type, r.metric_config) for r in results}
    assert ("zero-shot-image-classification", "Quilt offline patches", "accuracy", None) in kinds
    assert ("image-classification", "Quilt offline patches", "accuracy", "train_fraction=100%") in kinds
    assert ("image-text-retrieval", "demo_pairs", "recall", "image-to-text@5") in kinds
    # the model-index round-trips through huggingface_hub's own parser (what the Hub renders)
    name, parsed = model_index_to_eval_results(eval_results_to_model_index("tiny-quiltnet", results))
    assert name == "tiny-quiltnet" and len(parsed) == len(results)
    assert "model-index:" in (model_dir / "README.md").read_text()


def test_model_index_merge_replaces_same_metric(eval_run, tmp_path):
    from huggingface_hub import ModelCard

    from quilt_hf.evaluation.report import update_model_card

    records, _, model_dir = eval_run
    before = len(ModelCard.load(model_dir / "README.md").data.eval_results)
    zero_shot = next(r for r in records if r["task"] == "zero_shot")
    changed = json.loads(json.dumps(zero_shot))
    changed["metrics"]["acc1"] = 0.987
    update_model_card(model_dir, [changed])
    results = ModelCard.load(model_dir / "README.md").data.eval_results
    assert len(results) == before
    top1 = [
        r for r in results if r.task_type == "zero-shot-image-classification" and r.metric_type == "accuracy"
    ]
    assert [r.metric_value for r in top1] == [98.7]

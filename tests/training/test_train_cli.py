"""``quilt train`` end to end on tiny models: data on disk and in Hub layout, saved folders that load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from quilt_hf.cli import Command, parse_command_args
from quilt_hf.training.train import run_train

TRAIN = Command("train", "quilt_hf.training.train", "TrainConfig", "run_train", "Fine-tune QuiltNet.")
FAST = ["--max_steps", "4", "--batch_size", "4", "--num_workers", "0", "--use_cpu", "--logging_steps", "2",
        "--learning_rate", "1e-3", "--save_total_limit", "1"]


def _image(color) -> Image.Image:
    return Image.fromarray(np.full((40, 40, 3), color, dtype=np.uint8))


@pytest.mark.slow
def test_quilt_train_on_a_saved_dataset_gives_a_folder_the_pipeline_loads(tiny_clip_dir, color_pairs, tmp_path):
    from transformers import CLIPModel, pipeline

    color_pairs.save_to_disk(tmp_path / "pairs")
    output = tmp_path / "run"
    config, _ = parse_command_args(
        TRAIN, ["--dataset", str(tmp_path / "pairs"), "--model", str(tiny_clip_dir), "--output", str(output),
                "--eval_fraction", "0.25", *FAST],
    )
    metrics = run_train(config)
    assert "eval_mean_recall@1" in metrics and "eval_loss" in metrics
    assert "eval_mean_recall@5" not in metrics  # 3 held-out pairs: recall@5 would rank every image (left out)

    assert (output / "model.safetensors").is_file() and (output / "README.md").is_file()
    card = (output / "README.md").read_text()
    assert "pipeline_tag: zero-shot-image-classification" in card and "model-index" in card
    assert "Not for diagnosis" in card and "| learning_rate | 0.001 |" in card
    assert list(output.glob("checkpoint-*"))

    model = CLIPModel.from_pretrained(output)
    assert isinstance(model, CLIPModel)
    classifier = pipeline("zero-shot-image-classification", model=str(output), device="cpu")
    scores = classifier(_image((220, 30, 30)), candidate_labels=["red tissue", "blue tissue"])
    assert {s["label"] for s in scores} == {"red tissue", "blue tissue"}
    assert sum(s["score"] for s in scores) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow
def test_dual_encoder_trains_from_a_hub_layout_folder(tiny_dual_encoder_dir, color_pairs, tmp_path):
    from transformers import (
        AutoImageProcessor,
        AutoTokenizer,
        VisionTextDualEncoderModel,
        pipeline,
    )

    hub_folder = tmp_path / "hub"
    (hub_folder / "data").mkdir(parents=True)
    color_pairs.to_parquet(str(hub_folder / "data" / "train-00000-of-00001.parquet"))
    color_pairs.select(range(4)).to_parquet(str(hub_folder / "data" / "test-00000-of-00001.parquet"))
    (hub_folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*\n"
        "  - split: test\n    path: data/test-*\n---\n"
    )
    output = tmp_path / "dual"
    before = VisionTextDualEncoderModel.from_pretrained(tiny_dual_encoder_dir).visual_projection.weight.clone()
    config, _ = parse_command_args(
        TRAIN, ["--dataset", str(hub_folder), "--model", str(tiny_dual_encoder_dir), "--output", str(output),
                "--image_augmentation", "histology", "--freeze_text_tower", *FAST],
    )
    metrics = run_train(config)
    assert metrics["eval_runtime"] > 0

    model = VisionTextDualEncoderModel.from_pretrained(output)
    assert not torch.equal(model.visual_projection.weight, before)
    # VisionTextDualEncoderModel is not in the pipeline's auto mapping: pass the loaded parts.
    classifier = pipeline(
        "zero-shot-image-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(output),
        image_processor=AutoImageProcessor.from_pretrained(output), device="cpu",
    )
    scores = classifier(_image((30, 40, 220)), candidate_labels=["red tissue", "blue tissue"])
    assert len(scores) == 2

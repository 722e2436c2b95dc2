"""End-to-end training on CPU with tiny models: learning, evaluation, checkpoints, exact resume, loading."""

from __future__ import annotations

import pytest
import torch

from quilt_hf.training.arguments import ContrastiveTrainingArguments
from quilt_hf.training.trainer import ContrastiveTrainer


def _args(output_dir, **overrides) -> ContrastiveTrainingArguments:
    options = {
        "output_dir": str(output_dir), "per_device_train_batch_size": 6, "per_device_eval_batch_size": 12,
        "max_steps": 24, "learning_rate": 3e-3, "weight_decay": 0.0, "warmup_steps": 0, "logging_steps": 4,
        "save_strategy": "no", "eval_strategy": "no", "use_cpu": True, "seed": 0, "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }
    return ContrastiveTrainingArguments(**{**options, **overrides})


def _clip(folder):
    from transformers import CLIPModel, CLIPProcessor

    return CLIPModel.from_pretrained(folder), CLIPProcessor.from_pretrained(folder)


@pytest.mark.slow
def test_training_changes_parameters_and_raises_recall(tiny_clip_dir, color_pairs, tmp_path):
    model, processor = _clip(tiny_clip_dir)
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    trainer = ContrastiveTrainer(
        model, _args(tmp_path), processing_class=processor, train_dataset=color_pairs, eval_dataset=color_pairs
    )
    start = trainer.evaluate()
    trainer.train()
    end = trainer.evaluate()

    changed = [name for name, param in model.named_parameters() if not torch.equal(param.detach(), before[name])]
    assert len(changed) == len(before), set(before) - set(changed)
    assert end["eval_mean_recall@5"] > start["eval_mean_recall@5"] + 0.3, (start, end)
    assert end["eval_mean_recall@1"] > start["eval_mean_recall@1"], (start, end)
    assert end["eval_loss"] < start["eval_loss"]
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert {"logit_scale", "image_to_text_accuracy", "text_to_image_accuracy"} <= set(logged[0])
    assert logged[-1]["loss"] < logged[0]["loss"]
    for key in ("eval_text_retrieval_recall@5", "eval_image_retrieval_recall@10"):
        assert 0.0 <= end[key] <= 1.0


def _losses(trainer) -> dict[int, float]:
    return {entry["step"]: entry["loss"] for entry in trainer.state.log_history if "loss" in entry}


@pytest.mark.slow
def test_resume_from_checkpoint_continues_the_same_loss_curve(tiny_clip_dir, color_pairs, tmp_path):
    args = _args(tmp_path, max_steps=6, logging_steps=1, save_strategy="steps", save_steps=3,
                 image_augmentation="histology", learning_rate=1e-3)
    model, processor = _clip(tiny_clip_dir)
    straight = ContrastiveTrainer(model, args, processing_class=processor, train_dataset=color_pairs)
    straight.train()
    checkpoint = tmp_path / "checkpoint-3"
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "README.md").is_file()
    assert (checkpoint / "processor_config.json").is_file() and (checkpoint / "tokenizer_config.json").is_file()

    model, processor = _clip(tiny_clip_dir)
    resumed = ContrastiveTrainer(model, args, processing_class=processor, train_dataset=color_pairs)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    first, second = _losses(straight), _losses(resumed)
    assert sorted(second) == [1, 2, 3, 4, 5, 6]  # steps 1-3 come from the checkpoint's trainer state
    for step in (4, 5, 6):
        assert second[step] == pytest.approx(first[step], rel=1e-5, abs=1e-6), (step, first, second)

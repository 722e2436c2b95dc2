"""``quilt train``: fine-tune a CLIP-style model on image-text pairs (the QuiltNet recipe).

    quilt train --dataset PATH|NAME --model NAME|PATH --output DIR [...]

For several GPUs or nodes, run the same command under ``accelerate launch -m quilt_hf.cli train ...``
(or ``torchrun``): the loss uses the global batch across processes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from quilt_hf.errors import UserFacingError

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Fine-tune a contrastive image-text model (CLIP, SigLIP or a dual encoder) on image-text pairs."""

    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Pairs to train on: a save_to_disk folder (or one on an object store: s3://bucket/out/pairs), a "
            "Hub-layout folder (quilt publish) or a Hub dataset "
            "name, with an image column and a text column."
        },
    )
    model: str | None = field(
        default=None,
        metadata={
            "help": "CLIP-like checkpoint (Hub name or folder) to start from; default openai/clip-vit-base-patch32, "
            "or the offline demo base when the Hub cannot be reached."
        },
    )
    vision_model: str | None = field(
        default=None, metadata={"help": "With --text_model: build a dual encoder from this vision encoder."}
    )
    text_model: str | None = field(
        default=None,
        metadata={"help": "With --vision_model: the text encoder of the dual encoder (e.g. a PubMedBERT)."},
    )
    output: str = field(default="outputs/quiltnet", metadata={"help": "Output folder (checkpoints, final model)."})
    image_column: str = field(default="image", metadata={"help": "Image column."})
    caption_column: str = field(
        default="caption", metadata={"help": "Text column to train on (caption, medical_text, roi_text, ...)."}
    )
    group_column: str = field(
        default="image_id", metadata={"help": "Column naming each pair's image (retrieval counts shared images)."}
    )
    eval_fraction: float = field(
        default=0.1,
        metadata={"help": "Share of videos held out when the data has no validation/test split (0: no evaluation)."},
    )
    split_by: str = field(default="video_id", metadata={"help": "Column whose groups are held out together."})
    max_train_pairs: int | None = field(default=None, metadata={"help": "Use at most this many training pairs."})
    epochs: float = field(default=3.0, metadata={"help": "Training epochs."})
    max_steps: int = field(default=-1, metadata={"help": "Stop after this many optimizer steps (overrides epochs)."})
    batch_size: int = field(default=64, metadata={"help": "Pairs per device per step (global batch: x devices)."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Steps to accumulate gradients over."})
    learning_rate: float = field(
        default=5e-5, metadata={"help": "Peak learning rate (QuiltNet reports 5e-4 at a global batch of 1024)."}
    )
    weight_decay: float = field(default=0.2, metadata={"help": "AdamW weight decay (QuiltNet: 0.2)."})
    warmup: float = field(default=0.05, metadata={"help": "Warm-up: a number of steps, or a fraction (< 1) of them."})
    lr_scheduler: str = field(default="cosine", metadata={"help": "Learning-rate schedule (cosine as open_clip)."})
    image_size: int | None = field(default=None, metadata={"help": "Image side in pixels; default: the model's."})
    image_augmentation: str = field(
        default="random_resized_crop", metadata={"help": "none | random_resized_crop | histology."}
    )
    max_text_length: int | None = field(default=None, metadata={"help": "Token limit; default: the text tower's."})
    freeze_vision_tower: bool = field(default=False, metadata={"help": "Freeze the image encoder."})
    freeze_text_tower: bool = field(default=False, metadata={"help": "Freeze the text encoder."})
    loss_type: str = field(default="clip", metadata={"help": "clip (InfoNCE) | sigmoid (SigLIP)."})
    precision: str = field(
        default="auto", metadata={"help": "auto (bf16 on GPUs that have it, else fp16 on GPU, fp32 on CPU) | bf16 | "
                                          "fp16 | fp32."}
    )
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for activation memory."})
    num_workers: int = field(default=2, metadata={"help": "Data-loader worker processes (image decoding)."})
    logging_steps: int = field(default=10, metadata={"help": "Log loss, logit scale and accuracy every N steps."})
    eval_steps: int | None = field(default=None, metadata={"help": "Evaluate every N steps; default: each epoch."})
    save_steps: int | None = field(default=None, metadata={"help": "Checkpoint every N steps; default: each epoch."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep at most this many checkpoints."})
    resume: str | None = field(
        default=None, metadata={"help": "Resume: a checkpoint folder, or 'latest' for the newest one in --output."}
    )
    seed: int = field(default=0, metadata={"help": "Random seed (model init, data order, augmentation)."})
    report_to: str = field(default="none", metadata={"help": "tensorboard, wandb, ... or none."})
    push_to_hub: bool = field(default=False, metadata={"help": "Push the final model and card to the Hub."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repository for --push_to_hub."})
    use_cpu: bool = field(default=False, metadata={"help": "Train on the CPU even when a GPU is present."})


def _precision(config: TrainConfig) -> dict[str, bool]:
    import torch

    choice = config.precision
    if choice == "auto":
        if config.use_cpu or not torch.cuda.is_available():
            choice = "fp32"
        else:
            choice = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if choice not in ("bf16", "fp16", "fp32"):
        raise UserFacingError(f"--precision must be auto, bf16, fp16 or fp32, not {config.precision!r}")
    return {"bf16": choice == "bf16", "fp16": choice == "fp16"}


def training_arguments(config: TrainConfig, *, has_eval: bool):
    """The ``ContrastiveTrainingArguments`` of a ``TrainConfig``."""
    from quilt_hf.training.arguments import ContrastiveTrainingArguments

    eval_strategy = "no" if not has_eval else ("steps" if config.eval_steps else "epoch")
    return ContrastiveTrainingArguments(
        output_dir=config.output,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup,
        lr_scheduler_type=config.lr_scheduler,
        logging_steps=config.logging_steps,
        eval_strategy=eval_strategy,
        eval_steps=config.eval_steps,
        save_strategy="steps" if config.save_steps else "epoch",
        save_steps=config.save_steps or 500,
        save_total_limit=config.save_total_limit,
        dataloader_num_workers=config.num_workers,
        **_checkpointing(config.gradient_checkpointing),
        seed=config.seed,
        report_to=config.report_to,
        push_to_hub=False,  # pushed once at the end, with the card
        hub_model_id=config.hub_model_id,
        use_cpu=config.use_cpu,
        image_column=config.image_column,
        caption_column=config.caption_column,
        group_column=config.group_column,
        image_size=config.image_size,
        image_augmentation=config.image_augmentation,
        max_text_length=config.max_text_length,
        freeze_vision_tower=config.freeze_vision_tower,
        freeze_text_tower=config.freeze_text_tower,
        loss_type=config.loss_type,
        **_precision(config),
    )


def _checkpointing(enabled: bool) -> dict[str, bool]:
    """Activation (gradient) checkpointing under the option name this transformers version uses."""
    import dataclasses

    from quilt_hf.training.arguments import ContrastiveTrainingArguments

    names = {f.name for f in dataclasses.fields(ContrastiveTrainingArguments)}
    if not enabled:
        return {}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": True}


def _resume_path(config: TrainConfig) -> str | None:
    if not config.resume:
        return None
    if config.resume != "latest":
        if not Path(config.resume).is_dir():
            raise UserFacingError(f"--resume {config.resume}: no such checkpoint folder")
        return config.resume
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(config.output) if Path(config.output).is_dir() else None
    if last is None:
        logger.info("no checkpoint in %s: starting from scratch", config.output)
    return last


def run_train(config: TrainConfig) -> dict[str, float]:
    """Train as ``config`` says; the final model, processor and card go to ``config.output``.

    Returns:
        `dict`: the final held-out metrics (``eval_loss``, ``eval_*_recall@k``), or the training summary when
        there is no evaluation split.
    """
    from quilt_hf.training.data import check_columns, load_pairs, train_eval_split
    from quilt_hf.training.modeling import freeze_towers, load_contrastive_model
    from quilt_hf.training.trainer import ContrastiveTrainer

    if not config.dataset:
        raise UserFacingError("give the pairs to train on: --dataset PATH|NAME")
    if config.push_to_hub:
        from quilt_hf.models import hub_is_offline

        if hub_is_offline():
            raise UserFacingError("--push_to_hub needs the Hub, but HF_HUB_OFFLINE is set")
    data = load_pairs(config.dataset)
    train, held_out = train_eval_split(data, eval_fraction=config.eval_fraction, group_column=config.split_by,
                                       seed=config.seed)
    check_columns(train, [config.image_column, config.caption_column])
    def keep(text):
        return bool(text and text.strip())
    train = train.filter(keep, input_columns=config.caption_column, desc="dropping pairs without text")
    if held_out is not None:
        held_out = held_out.filter(keep, input_columns=config.caption_column, desc="dropping pairs without text")
    if config.max_train_pairs is not None:
        train = train.select(range(min(config.max_train_pairs, len(train))))
    if len(train) == 0:
        raise UserFacingError(f"no training pairs with text in column {config.caption_column!r}")
    logger.info("%d training pairs, %s held out", len(train), len(held_out) if held_out is not None else "none")

    args = training_arguments(config, has_eval=held_out is not None and len(held_out) > 0)
    import transformers

    transformers.set_seed(config.seed)
    model, processor = load_contrastive_model(
        config.model, vision_model=config.vision_model, text_model=config.text_model
    )
    freeze_towers(model, vision=config.freeze_vision_tower, text=config.freeze_text_tower)
    base = config.model or (f"{config.vision_model} + {config.text_model}" if config.vision_model else None)
    trainer = ContrastiveTrainer(
        model,
        args,
        processing_class=processor,
        train_dataset=train,
        eval_dataset=held_out if args.eval_strategy != "no" else None,
        card_info={"base_model": base or getattr(model.config, "_name_or_path", None), "dataset_name": config.dataset},
    )
    if held_out is not None and len(held_out) and not config.resume:
        before = trainer.evaluate()
        logger.info("before training: %s", _summary(before))
    result = trainer.train(resume_from_checkpoint=_resume_path(config))
    metrics = trainer.evaluate() if args.eval_strategy != "no" else dict(result.metrics)
    if args.eval_strategy != "no":
        logger.info("after training: %s", _summary(metrics))
    trainer.save_model(config.output)
    trainer.save_state()
    logger.info("model, processor and card written to %s", config.output)
    if config.push_to_hub:
        url = trainer.push_to_hub(commit_message="QuiltNet training with quilt_hf")
        logger.info("pushed to %s", url)
    return metrics


def _summary(metrics: dict[str, float]) -> str:
    keys = ("eval_loss", "eval_mean_recall@1", "eval_mean_recall@5", "eval_mean_recall@10")
    return ", ".join(f"{key.removeprefix('eval_')} {metrics[key]:.3f}" for key in keys if key in metrics)

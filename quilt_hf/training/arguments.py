"""``ContrastiveTrainingArguments``: the ``TrainingArguments`` of contrastive image-text training."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from .loss import check_loss_options

AUGMENTATIONS = ("none", "random_resized_crop", "histology")


@dataclass
class ContrastiveTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the options of contrastive image-text training.

    The defaults follow QuiltNet's reported set-up where it applies (AdamW, betas (0.9, 0.98), weight decay
    0.2, open_clip's random-resized-crop augmentation) and keep the image and text columns through the
    Trainer's column pruning.
    """

    image_column: str = field(default="image", metadata={"help": "Column holding the image (datasets Image)."})
    caption_column: str = field(
        default="caption",
        metadata={"help": "Text column to train on: caption, medical_text, roi_text, corrected_text, ..."},
    )
    group_column: str | None = field(
        default="image_id",
        metadata={
            "help": "Column naming the image of each pair; rows that share it count as matches in retrieval "
            "recall (Quilt pairs are many-to-many). Ignored when the column is missing."
        },
    )
    image_size: int | None = field(
        default=None, metadata={"help": "Training image size in pixels; default: the model's image size."}
    )
    image_augmentation: str = field(
        default="random_resized_crop",
        metadata={
            "help": "none | random_resized_crop (open_clip's default, scale 0.9-1.0) | histology (crop plus random "
            "flips and 90-degree rotations: histology has no canonical orientation)."
        },
    )
    max_text_length: int | None = field(
        default=None, metadata={"help": "Truncate captions to this many tokens; default: the text tower's maximum."}
    )
    freeze_vision_tower: bool = field(
        default=False, metadata={"help": "Freeze the image encoder (its projection stays trainable)."}
    )
    freeze_text_tower: bool = field(
        default=False, metadata={"help": "Freeze the text encoder (its projection stays trainable)."}
    )
    loss_type: str = field(
        default="clip", metadata={"help": "clip (symmetric InfoNCE) | sigmoid (SigLIP's pairwise sigmoid loss)."}
    )
    local_loss: bool = field(
        default=True,
        metadata={"help": "Logits only for this process's rows against the global batch (memory linear in batch)."},
    )
    gather_with_grad: bool = field(
        default=True,
        metadata={
            "help": "Back-propagate through the features gathered from other processes. Turning it off needs "
            "--local_loss False (clip loss only): a local loss without it has gradients that match no large batch."
        },
    )
    sigmoid_logit_bias: float = field(
        default=-10.0,
        metadata={"help": "Fixed logit bias of the sigmoid loss for models without a learnable one (SigLIP's init)."},
    )
    # Overridden defaults (QuiltNet / open_clip training recipe).
    weight_decay: float = field(default=0.2, metadata={"help": "AdamW weight decay (not applied to gains/biases)."})
    adam_beta2: float = field(default=0.98, metadata={"help": "AdamW beta2 (CLIP uses 0.98)."})
    adam_epsilon: float = field(default=1e-6, metadata={"help": "AdamW epsilon (CLIP uses 1e-6)."})
    report_to: str | list[str] | None = field(
        default="none", metadata={"help": "Integrations to report to (tensorboard, wandb, ...); none by default."}
    )

    def __post_init__(self):
        if self.image_augmentation not in AUGMENTATIONS:
            raise ValueError(f"image_augmentation must be one of {AUGMENTATIONS}, got {self.image_augmentation!r}")
        check_loss_options(self.loss_type, self.local_loss, self.gather_with_grad)
        super().__post_init__()

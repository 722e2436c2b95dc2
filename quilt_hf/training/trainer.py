"""``ContrastiveTrainer``: the transformers ``Trainer`` for CLIP-style image-text models.

It overrides only what contrastive training changes: the loss (``ClipLoss`` on the model's normalised
embeddings, global negatives across processes), the columns kept for the collator, metric logging (loss,
logit scale, in-batch retrieval accuracy), weight decay exclusions, the evaluation collator (no
augmentation), and the model card written beside every saved model. Everything else (mixed precision,
gradient accumulation and checkpointing, ``accelerate launch``, checkpoints and exact resume) is the Trainer's.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from quilt_hf.training.arguments import ContrastiveTrainingArguments
from quilt_hf.training.data import GROUP_LABEL, ImageTextCollator, ImageTransform
from quilt_hf.training.loss import MAX_LOGIT_SCALE, ClipLoss
from quilt_hf.training.metrics import compute_retrieval_metrics
from quilt_hf.training.modeling import max_text_length

logger = logging.getLogger(__name__)


class ClampLogitScaleCallback(TrainerCallback):
    """Keep the learnable temperature in CLIP's range (logit scale at most 100) after each optimizer step."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is not None and hasattr(model, "logit_scale"):
            with torch.no_grad():
                model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)


class CollatorEpochCallback(TrainerCallback):
    """Tell the collator which epoch starts, so that each epoch draws new (but reproducible) augmentations."""

    def __init__(self, collator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = int((state.epoch or 0) + 1e-6)


class ContrastiveTrainer(Trainer):
    """A ``Trainer`` for contrastive image-text models (``CLIPModel``, ``SiglipModel``,
    ``VisionTextDualEncoderModel``).

    Args:
        model: the model; it must return ``image_embeds`` and ``text_embeds`` and have a ``logit_scale``.
        args (`ContrastiveTrainingArguments`): training options.
        processing_class: the model's processor (tokenizer + image processor); used to build the collators
            when ``data_collator`` is not given, and saved beside every checkpoint.
        data_collator (*optional*): the training collator; by default an :class:`ImageTextCollator` with the
            chosen augmentation (evaluation always uses the un-augmented transform).
        loss_fn (`ClipLoss`, *optional*): default: built from ``args``.
        card_info (`dict`, *optional*): ``build_model_card`` arguments (``base_model``, ``dataset_name``, ...)
            for the card written with every saved model.
        **kwargs: passed to ``Trainer`` (``train_dataset``, ``eval_dataset``, ``callbacks``, ...).
    """

    def __init__(
        self,
        model,
        args: ContrastiveTrainingArguments,
        processing_class=None,
        data_collator=None,
        loss_fn: ClipLoss | None = None,
        compute_metrics=compute_retrieval_metrics,
        card_info: dict[str, Any] | None = None,
        **kwargs,
    ):
        self.eval_data_collator = None
        if data_collator is None:
            if processing_class is None:
                raise ValueError("pass a processing_class (the model's processor) or a data_collator")
            data_collator = self._collator(model, args, processing_class, args.image_augmentation)
            self.eval_data_collator = self._collator(model, args, processing_class, "none")
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            processing_class=processing_class,
            compute_metrics=compute_metrics,
            **kwargs,
        )
        self.loss_fn = loss_fn or ClipLoss(args.loss_type, args.local_loss, args.gather_with_grad)
        self.card_info = dict(card_info or {})
        # The "label" is each row's image group (for retrieval recall); the loss needs no labels, so
        # compute_loss is also called in evaluation.
        self.label_names = [GROUP_LABEL]
        self.can_return_loss = True
        # The loss is ours, not the model's: let the Trainer scale it for gradient accumulation.
        self.model_accepts_loss_kwargs = False
        self._metrics: dict[str, dict[str, list[torch.Tensor]]] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self.add_callback(ClampLogitScaleCallback())
        if hasattr(self.data_collator, "epoch"):
            self.add_callback(CollatorEpochCallback(self.data_collator))

    @staticmethod
    def _collator(model, args: ContrastiveTrainingArguments, processor, augmentation: str) -> ImageTextCollator:
        tokenizer = processor.tokenizer
        return ImageTextCollator(
            tokenizer=tokenizer,
            transform=ImageTransform.from_processor(
                processor.image_processor, size=args.image_size, augmentation=augmentation
            ),
            image_column=args.image_column,
            text_column=args.caption_column,
            group_column=args.group_column,
            max_length=args.max_text_length or max_text_length(model, tokenizer),
            # SigLIP pools its text from the last position without an attention mask: pad as it was trained.
            padding="max_length" if getattr(model.config, "model_type", "").startswith("siglip") else True,
            seed=args.seed,
        )

    def _set_signature_columns_if_needed(self):
        # The collator decodes and tokenises raw rows: keep the image, text and group columns (and the
        # model inputs, for collators of pre-processed or streamed data).
        if self._signature_columns is None:
            columns = [self.args.image_column, self.args.caption_column, self.args.group_column]
            columns += ["pixel_values", "input_ids", "attention_mask", "token_type_ids", "position_ids", GROUP_LABEL]
            self._signature_columns = [column for column in columns if column]

    def get_train_dataloader(self):
        # The loss gathers equal-sized feature blocks from every process (and labels row i of rank r as column
        # r * batch + i): a short last batch on one process would break both. Drop it when distributed.
        if self.args.world_size <= 1 or self.args.dataloader_drop_last:
            return super().get_train_dataloader()
        logger.info("distributed training (%d processes): the last incomplete batch is dropped", self.args.world_size)
        self.args.dataloader_drop_last = True
        try:
            return super().get_train_dataloader()
        finally:
            self.args.dataloader_drop_last = False

    def get_eval_dataloader(self, eval_dataset=None):
        if self.eval_data_collator is None:
            return super().get_eval_dataloader(eval_dataset)
        train_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator

    def get_decay_parameter_names(self, model) -> list[str]:
        # As CLIP / open_clip: no decay on gains, biases, class embeddings and the temperature.
        return [
            name
            for name, param in model.named_parameters()
            if param.ndim >= 2 and "logit_scale" not in name and "logit_bias" not in name
        ]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if model.training else "eval"
        inputs = dict(inputs)
        inputs.pop(GROUP_LABEL, None)
        outputs = model(**inputs, return_dict=True)
        image_embeds, text_embeds = outputs.image_embeds, outputs.text_embeds  # L2-normalised by the model

        unwrapped = self.accelerator.unwrap_model(model)
        logit_scale = unwrapped.logit_scale.exp()
        logit_bias = getattr(unwrapped, "logit_bias", None)
        if logit_bias is None and self.loss_fn.loss_type == "sigmoid":
            logit_bias = self.args.sigmoid_logit_bias
        loss = self.loss_fn(image_embeds, text_embeds, logit_scale, logit_bias).loss

        with torch.no_grad():
            similarity = image_embeds.detach() @ text_embeds.detach().T
            targets = torch.arange(similarity.shape[0], device=similarity.device)
            self._metrics[mode]["image_to_text_accuracy"].append((similarity.argmax(1) == targets).float().mean())
            self._metrics[mode]["text_to_image_accuracy"].append((similarity.argmax(0) == targets).float().mean())
            self._metrics[mode]["logit_scale"].append(logit_scale.detach().float())
        if return_outputs:
            return loss, {"image_embeds": image_embeds, "text_embeds": text_embeds}
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        buffers = self._metrics[mode]
        if buffers:
            # One collective for all metrics: every process logs at the same steps.
            names = sorted(buffers)
            local = torch.stack([torch.stack(buffers[name]).mean() for name in names]).to(self.args.device)
            averaged = self.accelerator.reduce(local, reduction="mean").tolist()
            prefix = "eval_" if mode == "eval" else ""
            logs.update({f"{prefix}{name}": round(value, 4) for name, value in zip(names, averaged)})
            buffers.clear()
        super().log(logs, start_time)

    def _save(self, output_dir: str | None = None, state_dict=None):
        super()._save(output_dir, state_dict)
        self.create_model_card(output_dir=output_dir)

    def create_model_card(self, output_dir: str | None = None, **kwargs) -> None:
        """Write the QuiltNet model card (``README.md``) into ``output_dir`` (default: ``args.output_dir``)."""
        if not self.is_world_process_zero():
            return
        from quilt_hf.training.card import build_model_card

        args = self.args
        evals = [entry for entry in self.state.log_history if any(k.startswith("eval_") for k in entry)]
        info = {
            "model_name": args.hub_model_id or Path(args.output_dir).name,
            "architecture": type(self.accelerator.unwrap_model(self.model)).__name__,
            "num_train_pairs": len(self.train_dataset) if hasattr(self.train_dataset, "__len__") else None,
            "num_eval_pairs": len(self.eval_dataset) if hasattr(self.eval_dataset, "__len__") else None,
            "caption_column": args.caption_column,
            "loss_type": args.loss_type,
            "repo_id": args.hub_model_id,
            "results": evals[-1] if evals else None,
            "hyperparameters": {
                "learning_rate": args.learning_rate,
                "global_batch_size": args.per_device_train_batch_size
                * args.gradient_accumulation_steps
                * max(1, args.world_size),
                "optimizer": f"{getattr(args.optim, 'value', args.optim)} (betas {args.adam_beta1}, {args.adam_beta2}; eps {args.adam_epsilon})",
                "weight_decay": args.weight_decay,
                "lr_scheduler": getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type),
                "warmup_steps": args.warmup_steps,
                "steps": self.state.global_step,
                "epochs": round(self.state.epoch or 0, 2),
                "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
                "image_augmentation": args.image_augmentation,
                "frozen": ", ".join(
                    name for name, flag in (("vision", args.freeze_vision_tower), ("text", args.freeze_text_tower))
                    if flag
                ) or "none",
                "seed": args.seed,
            },
        }
        info.update(self.card_info)
        card = build_model_card(**info)
        folder = Path(output_dir or args.output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        card.save(folder / "README.md")

"""Configuration of ``CustomTextCLIPModel`` (no torch import: the Auto classes register it cheaply)."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import VisionTextDualEncoderConfig

TEXT_POOLERS = ("cls_pooler", "cls_last_hidden_state_pooler", "mean_pooler")
TEXT_PROJECTIONS = ("linear", "mlp", "identity")


@strict
class CustomTextCLIPConfig(VisionTextDualEncoderConfig):
    """Configuration of [`CustomTextCLIPModel`]: a ``VisionTextDualEncoderConfig`` plus how text is pooled.

    Args:
        vision_config (`dict` or `CLIPVisionConfig`): the image tower.
        text_config (`dict` or `PreTrainedConfig`): the text encoder (BERT, RoBERTa, ...).
        projection_dim (`int`): the joint embedding size.
        text_pooler (`str`): open_clip's pooler name: ``cls_pooler`` (the encoder's own pooler output),
            ``cls_last_hidden_state_pooler`` (the first token's last hidden state) or ``mean_pooler`` (mean of the
            last hidden states over the attention mask).
        text_projection_type (`str`): ``linear``, ``mlp`` (Linear, GELU, Linear, no biases, hidden size the
            mean of the two widths) or ``identity``.
    """

    model_type = "quilt_custom_text_clip"
    text_pooler: str = "cls_last_hidden_state_pooler"
    text_projection_type: str = "mlp"

    def validate_text_head(self):
        if self.text_pooler not in TEXT_POOLERS:
            raise ValueError(f"text_pooler={self.text_pooler!r}: expected one of {TEXT_POOLERS}")
        if self.text_projection_type not in TEXT_PROJECTIONS:
            raise ValueError(f"text_projection_type={self.text_projection_type!r}: expected one of {TEXT_PROJECTIONS}")


__all__ = ["CustomTextCLIPConfig", "TEXT_POOLERS", "TEXT_PROJECTIONS"]

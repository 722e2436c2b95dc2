"""A CLIP ViT image tower with any transformers text encoder, pooled and projected as open_clip does.

open_clip's ``CustomTextCLIP`` with a Hugging Face text tower (``hf_model_name``; QuiltNet-B-16-PMB is a
ViT-B/16 with PubMedBERT) pools the encoder's output in one of several ways and projects it linearly or with a
two-layer MLP. transformers' ``VisionTextDualEncoderModel`` reproduces exactly one combination (the encoder's
own pooler output and a linear projection); this class covers the others with the same layout and outputs
(``get_image_features``, ``get_text_features``, ``CLIPOutput`` from ``forward``), so the zero-shot pipeline and
every tool that takes a ``VisionTextDualEncoderModel`` take it too.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel, CLIPVisionConfig, CLIPVisionModel, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.clip.modeling_clip import CLIPOutput, image_text_contrastive_loss

from quilt_hf.modeling.configuration_custom_text_clip import CustomTextCLIPConfig


def _text_projection(kind: str, width: int, projection_dim: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(width, projection_dim, bias=False)
    if kind == "mlp":
        hidden = (width + projection_dim) // 2
        return nn.Sequential(
            nn.Linear(width, hidden, bias=False), nn.GELU(), nn.Linear(hidden, projection_dim, bias=False)
        )
    if width != projection_dim:
        raise ValueError(f"an identity text projection needs equal widths (text {width}, joint {projection_dim})")
    return nn.Identity()


class CustomTextCLIPModel(PreTrainedModel):
    """CLIP ViT + a transformers text encoder with open_clip's poolers and projections.

    Args:
        config (`CustomTextCLIPConfig`): the towers and the text head.
    """

    config_class = CustomTextCLIPConfig
    base_model_prefix = "custom_text_clip"
    input_modalities = ("image", "text")
    _supports_sdpa = True

    def __init__(self, config: CustomTextCLIPConfig):
        super().__init__(config)
        config.validate_text_head()
        if isinstance(config.vision_config, CLIPVisionConfig):
            self.vision_model = CLIPVisionModel(config.vision_config)
        else:
            self.vision_model = AutoModel.from_config(config.vision_config)
        # The encoder's own pooling layer exists only where it is used, as in open_clip.
        self.text_model = AutoModel.from_config(
            config.text_config, add_pooling_layer=config.text_pooler == "cls_pooler"
        )
        self.vision_model.config = config.vision_config
        self.text_model.config = config.text_config
        self.visual_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim, bias=False)
        self.text_projection = _text_projection(
            config.text_projection_type, config.text_config.hidden_size, config.projection_dim
        )
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self.post_init()

    def _pool_text(self, outputs, attention_mask: torch.Tensor) -> torch.Tensor:
        pooler = self.config.text_pooler
        if pooler == "cls_pooler":
            return outputs.pooler_output
        hidden = outputs.last_hidden_state
        if pooler == "cls_last_hidden_state_pooler":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1)

    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        """Projected text embeddings (not normalised) in ``pooler_output``.

        Args:
            input_ids (`torch.LongTensor` of shape `(batch, length)`): token ids.
            attention_mask (`torch.Tensor`, *optional*): 1 for real tokens; when omitted, every token that is not
                the padding id (open_clip's rule).
        """
        if attention_mask is None:
            attention_mask = (input_ids != self.config.text_config.pad_token_id).long()
        outputs = self.text_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            token_type_ids=token_type_ids,
            return_dict=True,
            **kwargs,
        )
        outputs.pooler_output = self.text_projection(self._pool_text(outputs, attention_mask))
        return outputs

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs) -> BaseModelOutputWithPooling:
        """Projected image embeddings (not normalised) in ``pooler_output``."""
        outputs = self.vision_model(pixel_values=pixel_values, return_dict=True, **kwargs)
        outputs.pooler_output = self.visual_projection(outputs.pooler_output)
        return outputs

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        return_loss: bool | None = None,
        token_type_ids: torch.LongTensor | None = None,
        **kwargs,
    ) -> CLIPOutput:
        """Image-text logits, as ``CLIPModel`` returns them (``logits_per_image``, ``logits_per_text``, ...)."""
        vision_outputs = self.get_image_features(pixel_values=pixel_values)
        text_outputs = self.get_text_features(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            token_type_ids=token_type_ids,
        )
        image_embeds = nn.functional.normalize(vision_outputs.pooler_output, dim=-1)
        text_embeds = nn.functional.normalize(text_outputs.pooler_output, dim=-1)
        logits_per_text = text_embeds @ image_embeds.t() * self.logit_scale.exp()
        logits_per_image = logits_per_text.t()
        loss = image_text_contrastive_loss(logits_per_text) if return_loss else None  # CLIPModel's own loss
        return CLIPOutput(
            loss=loss,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text_outputs,
            vision_model_output=vision_outputs,
        )


__all__ = ["CustomTextCLIPConfig", "CustomTextCLIPModel"]

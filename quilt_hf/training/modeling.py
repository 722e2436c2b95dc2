"""Building the model to train: any CLIP-like checkpoint, or a dual encoder from any vision and text encoder."""

from __future__ import annotations

import logging

from torch import nn

from quilt_hf.errors import UserFacingError

logger = logging.getLogger(__name__)

VISION_TOWERS = ("vision_model",)
TEXT_TOWERS = ("text_model",)


def load_contrastive_model(
    name_or_path: str | None = None,
    *,
    vision_model: str | None = None,
    text_model: str | None = None,
    dtype=None,
) -> tuple[nn.Module, object]:
    """Load a contrastive image-text model and its processor.

    Either ``name_or_path`` (a ``CLIPModel``, ``SiglipModel`` or ``VisionTextDualEncoderModel`` checkpoint: Hub
    name or folder; ``None`` picks the project's default CLIP through ``resolve_model``) or both
    ``vision_model`` and ``text_model`` (any vision encoder and any text encoder, joined into a new
    ``VisionTextDualEncoderModel`` with fresh projections, as for QuiltNet's PubMedBERT variant).

    Returns:
        `tuple`: ``(model, processor)``; the processor has ``.tokenizer`` and ``.image_processor``.
    """
    from transformers import AutoConfig, AutoModel, AutoProcessor

    if (vision_model is None) != (text_model is None):
        raise UserFacingError("a dual encoder needs both --vision_model and --text_model")
    if vision_model is not None:
        if name_or_path:
            raise UserFacingError("give either --model or --vision_model with --text_model, not both")
        return build_dual_encoder(vision_model, text_model)

    from quilt_hf.models import resolve_model

    name = resolve_model(name_or_path, "clip")
    config = AutoConfig.from_pretrained(name)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    if config.model_type == "clip":
        from transformers import CLIPModel as model_cls
    elif config.model_type == "vision-text-dual-encoder":
        from transformers import VisionTextDualEncoderModel as model_cls
    else:
        model_cls = AutoModel
    model = model_cls.from_pretrained(name, **kwargs)
    if not hasattr(model, "logit_scale"):
        raise UserFacingError(f"{name} ({type(model).__name__}) is not a contrastive image-text model (no logit_scale)")
    processor = AutoProcessor.from_pretrained(name)
    logger.info("loaded %s (%s, %.1fM parameters)", name, type(model).__name__, model.num_parameters() / 1e6)
    return model, processor


def build_dual_encoder(vision_model: str, text_model: str, *, projection_dim: int = 512):
    """A ``VisionTextDualEncoderModel`` from any vision encoder and any text encoder (names or folders).

    The projections and the temperature are new (CLIP's initial temperature 1/0.07); the towers keep
    their weights. The processor pairs the vision encoder's image processor with the text encoder's tokenizer.
    """
    from transformers import (
        AutoImageProcessor,
        AutoTokenizer,
        VisionTextDualEncoderModel,
        VisionTextDualEncoderProcessor,
    )

    from quilt_hf.models import resolve_model

    text_name = resolve_model(text_model, "text-encoder")
    model = VisionTextDualEncoderModel.from_vision_text_pretrained(
        vision_model, text_name, projection_dim=projection_dim
    )
    processor = VisionTextDualEncoderProcessor(
        image_processor=AutoImageProcessor.from_pretrained(vision_model),
        tokenizer=AutoTokenizer.from_pretrained(text_name),
    )
    return model, processor


def freeze_towers(model: nn.Module, *, vision: bool = False, text: bool = False) -> int:
    """Freeze the image and/or text encoder of ``model`` (projections and temperature stay trainable).

    Returns:
        `int`: how many parameters are still trainable.
    """
    for flag, names in ((vision, VISION_TOWERS), (text, TEXT_TOWERS)):
        if not flag:
            continue
        towers = [getattr(model, name) for name in names if hasattr(model, name)]
        if not towers:
            raise UserFacingError(f"{type(model).__name__} has none of {names} to freeze")
        for tower in towers:
            tower.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("%d trainable parameters", trainable)
    return trainable


def max_text_length(model: nn.Module, tokenizer) -> int:
    """The longest caption the text tower takes (77 for CLIP, 512 for BERT-like towers)."""
    config = getattr(model.config, "text_config", None) or model.config
    limits = [getattr(config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    limits = [int(v) for v in limits if isinstance(v, int) and 0 < v < 100_000]
    return min(limits) if limits else 77

"""open_clip's checkpoint format: what its configuration means, and its weight names against transformers'.

Pure functions on dictionaries and tensors (no model is built here):

- ``read_open_clip_config`` checks an ``open_clip_config.json`` against what converts *exactly* and returns a
  ``OpenClipSpec``, or raises ``NotConvertibleError`` listing every reason it does not;
- ``clip_vision_config`` / ``clip_text_config`` derive transformers configurations from it (never assumed:
  patch size, widths, layers, heads, context length, projection size and activation all come from the file);
- ``open_clip_to_hf`` / ``hf_to_open_clip`` rename and reshape the weights both ways (open_clip fuses q, k and
  v into ``in_proj_weight`` and stores projections transposed).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from quilt_hf.errors import UserFacingError

CLIP_VOCAB_SIZE = 49408
OPEN_CLIP_LAYER_NORM_EPS = 1e-5
INTERPOLATIONS = {"bicubic": 3, "bilinear": 2}  # open_clip name -> PIL resample code

# Options of open_clip's towers that change the computation, with the value under which conversion is exact.
_VISION_EXACT = {
    "attentional_pool": False,
    "no_ln_pre": False,
    "pos_embed_type": "learnable",
    "pool_type": "tok",
    "ls_init_value": None,
    "qk_norm": False,
    "scaled_cosine_attn": False,
    "scale_heads": False,
    "scale_attn_inner": False,
    "scale_attn": False,
    "scale_fc": False,
    "act_kwargs": None,
    "norm_kwargs": None,
}
_TEXT_EXACT = {
    "embed_cls": False,
    "no_causal_mask": False,
    "pool_type": "argmax",
    "proj_bias": False,
    "proj_type": "linear",
    "ls_init_value": None,
    "qk_norm": False,
    "scaled_cosine_attn": False,
    "scale_heads": False,
    "scale_attn_inner": False,
    "scale_attn": False,
    "scale_fc": False,
    "act_kwargs": None,
    "norm_kwargs": None,
    "hf_tokenizer_name": None,
    "tokenizer_mode": None,
}
HF_POOLERS = ("cls_pooler", "cls_last_hidden_state_pooler", "mean_pooler")
HF_PROJECTIONS = ("linear", "mlp", None)


class NotConvertibleError(UserFacingError):
    """The checkpoint uses something this converter cannot reproduce exactly; the message says what."""


@dataclasses.dataclass(frozen=True)
class OpenClipSpec:
    """An open_clip model configuration that converts exactly.

    Attributes:
        embed_dim (`int`): joint embedding size.
        quick_gelu (`bool`): QuickGELU (OpenAI's) rather than exact GELU in both towers.
        vision (`dict`): the ViT's ``image_size``, ``patch_size``, ``width``, ``layers``, ``heads``,
            ``mlp_ratio``.
        text (`dict`): open_clip's own text transformer (``context_length``, ``vocab_size``, ``width``,
            ``heads``, ``layers``, ``mlp_ratio``), or the HF text tower (``hf_model_name``, ``pooler``,
            ``proj``, ``context_length``, ``hf_tokenizer_name``).
        preprocess (`dict`): ``mean``, ``std``, ``interpolation``, ``resize_mode``.
    """

    embed_dim: int
    quick_gelu: bool
    vision: dict
    text: dict
    preprocess: dict

    @property
    def hf_text(self) -> bool:
        return "hf_model_name" in self.text


def _check_options(section: dict, exact: dict, where: str, reasons: list[str]) -> None:
    for key, exact_value in exact.items():
        value = section.get(key, exact_value)
        if value != exact_value and not (exact_value is None and value in ({}, "")):
            reasons.append(f"{where}.{key}={value!r} (only {exact_value!r} converts exactly)")


def read_open_clip_config(config: dict) -> OpenClipSpec:
    """Check an ``open_clip_config.json`` (its ``model_cfg`` and ``preprocess_cfg``) and summarise it.

    Args:
        config (`dict`): the parsed file.

    Returns:
        `OpenClipSpec`

    Raises:
        `NotConvertibleError`: listing every option that has no exact transformers counterpart.
    """
    if "model_cfg" not in config:
        raise NotConvertibleError("open_clip_config.json has no 'model_cfg': not an open_clip Hub-layout config")
    model_cfg = config["model_cfg"]
    vision_cfg = dict(model_cfg.get("vision_cfg", {}))
    text_cfg = dict(model_cfg.get("text_cfg", {}))
    reasons: list[str] = []
    if vision_cfg.get("timm_model_name"):
        reasons.append(
            f"the image tower is a timm model ({vision_cfg['timm_model_name']}); only open_clip's own ViT maps "
            "onto transformers' CLIPVisionModel exactly"
        )
    if isinstance(vision_cfg.get("layers", 12), (list, tuple)):
        reasons.append("the image tower is a ModifiedResNet (layers is a list); transformers has no such CLIP tower")
    if "multimodal_cfg" in model_cfg:
        reasons.append("a CoCa model (multimodal_cfg): its text decoder has no transformers counterpart here")
    if model_cfg.get("init_logit_bias") is not None:
        reasons.append("a sigmoid-loss model (init_logit_bias): use a SigLIP conversion, not CLIP")
    _check_options(vision_cfg, _VISION_EXACT, "vision_cfg", reasons)
    if vision_cfg.get("block_type") not in (None, "default"):
        reasons.append(f"vision_cfg.block_type={vision_cfg['block_type']!r}")
    image_size = vision_cfg.get("image_size", 224)
    if isinstance(image_size, (list, tuple)):
        if len(set(image_size)) != 1:
            reasons.append(f"non-square image_size {image_size}: CLIPVisionConfig takes one size")
        image_size = image_size[0]
    width = int(vision_cfg.get("width", 768))
    head_width = int(vision_cfg.get("head_width", 64))
    if width % head_width:
        reasons.append(f"vision width {width} is not a multiple of head_width {head_width}")
    vision = {
        "image_size": int(image_size),
        "patch_size": int(vision_cfg.get("patch_size", 16)),
        "width": width,
        "layers": int(vision_cfg.get("layers", 12)) if not isinstance(vision_cfg.get("layers"), list) else 0,
        "heads": width // head_width,
        "mlp_ratio": float(vision_cfg.get("mlp_ratio", 4.0)),
    }

    if text_cfg.get("hf_model_name"):
        pooler = text_cfg.get("hf_pooler_type", text_cfg.get("pooler_type", "mean_pooler"))
        proj = text_cfg.get("hf_proj_type", text_cfg.get("proj", "mlp"))
        if pooler not in HF_POOLERS:
            reasons.append(f"text_cfg.hf_pooler_type={pooler!r} (converts: {', '.join(HF_POOLERS)})")
        if proj not in HF_PROJECTIONS:
            reasons.append(f"text_cfg.hf_proj_type={proj!r} (converts: linear, mlp, none with equal widths)")
        if text_cfg.get("tokenizer_mode"):
            reasons.append(f"text_cfg.tokenizer_mode={text_cfg['tokenizer_mode']!r}")
        text = {
            "hf_model_name": text_cfg["hf_model_name"],
            "hf_tokenizer_name": text_cfg.get("hf_tokenizer_name") or text_cfg["hf_model_name"],
            "pooler": pooler,
            "proj": proj,
            "context_length": int(text_cfg.get("context_length", 77)),
        }
    else:
        _check_options(text_cfg, _TEXT_EXACT, "text_cfg", reasons)
        if text_cfg.get("block_type") not in (None, "default"):
            reasons.append(f"text_cfg.block_type={text_cfg['block_type']!r}")
        vocab_size = int(text_cfg.get("vocab_size", CLIP_VOCAB_SIZE))
        if vocab_size != CLIP_VOCAB_SIZE:
            reasons.append(
                f"text_cfg.vocab_size={vocab_size} with open_clip's default tokenizer (CLIP BPE has {CLIP_VOCAB_SIZE})"
            )
        text_width, heads = int(text_cfg.get("width", 512)), int(text_cfg.get("heads", 8))
        if text_width % heads:
            reasons.append(f"text width {text_width} is not a multiple of heads {heads}")
        text = {
            "context_length": int(text_cfg.get("context_length", 77)),
            "vocab_size": vocab_size,
            "width": text_width,
            "heads": heads,
            "layers": int(text_cfg.get("layers", 12)),
            "mlp_ratio": float(text_cfg.get("mlp_ratio", 4.0)),
        }

    preprocess_cfg = config.get("preprocess_cfg", {}) or {}
    interpolation = preprocess_cfg.get("interpolation", "bicubic")
    resize_mode = preprocess_cfg.get("resize_mode", "shortest")
    if interpolation not in INTERPOLATIONS:
        reasons.append(f"preprocess_cfg.interpolation={interpolation!r} (converts: {', '.join(INTERPOLATIONS)})")
    if resize_mode not in ("shortest", "squash"):
        reasons.append(f"preprocess_cfg.resize_mode={resize_mode!r}: CLIPImageProcessor has no resize-longest-and-pad")
    if reasons:
        raise NotConvertibleError("this open_clip model cannot be converted exactly:\n  - " + "\n  - ".join(reasons))
    preprocess = {
        "mean": [float(x) for x in preprocess_cfg.get("mean", OPENAI_CLIP_MEAN)],
        "std": [float(x) for x in preprocess_cfg.get("std", OPENAI_CLIP_STD)],
        "interpolation": interpolation,
        "resize_mode": resize_mode,
    }
    return OpenClipSpec(
        embed_dim=int(model_cfg.get("embed_dim", 512)),
        quick_gelu=bool(model_cfg.get("quick_gelu", False)),
        vision=vision,
        text=text,
        preprocess=preprocess,
    )


def clip_vision_config(spec: OpenClipSpec) -> dict[str, Any]:
    """``CLIPVisionConfig`` keyword arguments of the spec's ViT."""
    vision = spec.vision
    return {
        "hidden_size": vision["width"],
        "intermediate_size": int(vision["width"] * vision["mlp_ratio"]),
        "num_hidden_layers": vision["layers"],
        "num_attention_heads": vision["heads"],
        "image_size": vision["image_size"],
        "patch_size": vision["patch_size"],
        "num_channels": 3,
        "hidden_act": "quick_gelu" if spec.quick_gelu else "gelu",
        "layer_norm_eps": OPEN_CLIP_LAYER_NORM_EPS,
        "projection_dim": spec.embed_dim,
        "attention_dropout": 0.0,
    }


def clip_text_config(spec: OpenClipSpec, *, bos_token_id: int, eos_token_id: int, pad_token_id: int) -> dict:
    """``CLIPTextConfig`` keyword arguments of the spec's own text transformer.

    The pooled token is the first end-of-text token (``eos_token_id``): what open_clip's ``argmax`` pooling picks
    with the CLIP tokenizer, whose end-of-text id is the largest.
    """
    text = spec.text
    return {
        "vocab_size": text["vocab_size"],
        "hidden_size": text["width"],
        "intermediate_size": int(text["width"] * text["mlp_ratio"]),
        "num_hidden_layers": text["layers"],
        "num_attention_heads": text["heads"],
        "max_position_embeddings": text["context_length"],
        "hidden_act": "quick_gelu" if spec.quick_gelu else "gelu",
        "layer_norm_eps": OPEN_CLIP_LAYER_NORM_EPS,
        "projection_dim": spec.embed_dim,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
        "attention_dropout": 0.0,
    }


# ---------------------------------------------------------------------------------------------------------------
# Weights. Transformer blocks first (shared by both towers), then each tower's ends.

_BLOCK_RENAMES = {  # open_clip resblock suffix -> transformers encoder-layer suffix
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
}


def _blocks_to_hf(state: dict, src: str, dst: str, layers: int, out: dict) -> None:
    for i in range(layers):
        block, layer = f"{src}{i}.", f"{dst}{i}."
        for old, new in _BLOCK_RENAMES.items():
            out[layer + new] = state[block + old]
        for kind in ("weight", "bias"):
            q, k, v = state[f"{block}attn.in_proj_{kind}"].chunk(3, dim=0)
            out[f"{layer}self_attn.q_proj.{kind}"] = q
            out[f"{layer}self_attn.k_proj.{kind}"] = k
            out[f"{layer}self_attn.v_proj.{kind}"] = v


def _blocks_to_open_clip(state: dict, src: str, dst: str, layers: int, out: dict) -> None:
    for i in range(layers):
        layer, block = f"{src}{i}.", f"{dst}{i}."
        for old, new in _BLOCK_RENAMES.items():
            out[block + old] = state[layer + new]
        for kind in ("weight", "bias"):
            parts = [state[f"{layer}self_attn.{name}_proj.{kind}"] for name in ("q", "k", "v")]
            out[f"{block}attn.in_proj_{kind}"] = torch.cat(parts, dim=0)


def _vision_pairs(hf_prefix: str) -> list[tuple[str, str, bool]]:
    """(open_clip name, transformers name, transposed) for the ViT's non-block weights."""
    embeddings = f"{hf_prefix}embeddings."
    return [
        ("visual.class_embedding", f"{embeddings}class_embedding", False),
        ("visual.positional_embedding", f"{embeddings}position_embedding.weight", False),
        ("visual.conv1.weight", f"{embeddings}patch_embedding.weight", False),
        ("visual.ln_pre.weight", f"{hf_prefix}pre_layrnorm.weight", False),
        ("visual.ln_pre.bias", f"{hf_prefix}pre_layrnorm.bias", False),
        ("visual.ln_post.weight", f"{hf_prefix}post_layernorm.weight", False),
        ("visual.ln_post.bias", f"{hf_prefix}post_layernorm.bias", False),
        ("visual.proj", "visual_projection.weight", True),
    ]


_TEXT_PAIRS = [
    ("token_embedding.weight", "text_model.embeddings.token_embedding.weight", False),
    ("positional_embedding", "text_model.embeddings.position_embedding.weight", False),
    ("ln_final.weight", "text_model.final_layer_norm.weight", False),
    ("ln_final.bias", "text_model.final_layer_norm.bias", False),
    ("text_projection", "text_projection.weight", True),
]


def _hf_text_pairs(state_keys, proj: str | None) -> list[tuple[str, str, bool]]:
    pairs = []
    if proj == "linear":
        pairs.append(("text.proj.weight", "text_projection.weight", False))
    elif proj == "mlp":
        pairs += [("text.proj.0.weight", "text_projection.0.weight", False)]
        pairs += [("text.proj.2.weight", "text_projection.2.weight", False)]
    pairs += [(key, "text_model." + key[len("text.transformer.") :], False) for key in state_keys]
    return pairs


def vision_prefix(hf_keys) -> str:
    """Where the ViT's weights live among a transformers model's weight names: under ``vision_model.``, or under
    ``vision_model.vision_model.`` where a dual encoder's ``CLIPVisionModel`` nests its transformer (transformers 4).
    """
    nested = "vision_model.vision_model.embeddings.class_embedding"
    return "vision_model.vision_model." if nested in set(hf_keys) else "vision_model."


def open_clip_to_hf(state: dict[str, torch.Tensor], spec: OpenClipSpec, vision_prefix: str = "vision_model.") -> dict:
    """Rename and reshape an open_clip state dict into the transformers model's names.

    Args:
        state: open_clip's ``state_dict`` (``module.`` prefixes already removed).
        spec: its checked configuration.
        vision_prefix: where the target model keeps its ViT (``vision_prefix(model.state_dict())``).

    Returns:
        The transformers state dict. Every open_clip weight is used exactly once (else ``NotConvertibleError``).
    """
    prefix = vision_prefix
    out: dict[str, torch.Tensor] = {"logit_scale": state["logit_scale"].reshape(())}
    used = {"logit_scale"}
    _blocks_to_hf(state, "visual.transformer.resblocks.", f"{prefix}encoder.layers.", spec.vision["layers"], out)
    used |= {k for k in state if k.startswith("visual.transformer.resblocks.")}
    pairs = _vision_pairs(prefix)
    if spec.hf_text:
        pairs += _hf_text_pairs([k for k in state if k.startswith("text.transformer.")], spec.text["proj"])
    else:
        pairs += _TEXT_PAIRS
        _blocks_to_hf(state, "transformer.resblocks.", "text_model.encoder.layers.", spec.text["layers"], out)
        used |= {k for k in state if k.startswith("transformer.resblocks.")}
    for old, new, transposed in pairs:
        if old not in state:
            raise NotConvertibleError(f"the checkpoint has no {old!r}; it does not match its open_clip_config.json")
        out[new] = state[old].t() if transposed else state[old]
        used.add(old)
    unused = sorted(set(state) - used - {"attn_mask", "text.transformer.embeddings.position_ids"})
    if unused:
        raise NotConvertibleError(f"weights the mapping does not cover (so not exact): {unused[:8]}")
    return {k: v.contiguous() for k, v in out.items()}


def hf_to_open_clip(state: dict[str, torch.Tensor], spec: OpenClipSpec) -> dict:
    """The inverse of ``open_clip_to_hf``: transformers names back to open_clip's (``logit_scale`` as shape [])."""
    prefix = vision_prefix(state)
    out: dict[str, torch.Tensor] = {"logit_scale": state["logit_scale"].reshape(())}
    _blocks_to_open_clip(state, f"{prefix}encoder.layers.", "visual.transformer.resblocks.", spec.vision["layers"], out)
    pairs = _vision_pairs(prefix)
    if spec.hf_text:
        text_keys = ["text.transformer." + k[len("text_model.") :] for k in state if k.startswith("text_model.")]
        pairs += _hf_text_pairs(text_keys, spec.text["proj"])
    else:
        pairs += _TEXT_PAIRS
        _blocks_to_open_clip(state, "text_model.encoder.layers.", "transformer.resblocks.", spec.text["layers"], out)
    for old, new, transposed in pairs:
        out[old] = state[new].t() if transposed else state[new]
    skipped = {"text_model.embeddings.position_ids", "text_model.embeddings.token_type_ids"}
    return {k: v.contiguous() for k, v in out.items() if k.replace("text.transformer.", "text_model.") not in skipped}

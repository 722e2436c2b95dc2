"""``quilt convert``: open_clip checkpoints to transformers folders and back, outputs equal.

From open_clip (a Hub-layout folder or Hub repo: ``open_clip_config.json`` plus ``open_clip_model.safetensors``
or ``open_clip_pytorch_model.bin``):

- a ViT + open_clip's own text transformer (QuiltNet-B-32, QuiltNet-B-16, OpenAI-style CLIPs) -> ``CLIPModel``;
- a ViT + a transformers text encoder (``hf_model_name``; QuiltNet-B-16-PMB is ViT-B/16 + PubMedBERT) ->
  ``VisionTextDualEncoderModel`` when the encoder's own pooler and a linear projection are used (exactly what
  that class computes), else our ``CustomTextCLIPModel`` (registered with the Auto classes by ``import
  quilt_hf``);
- anything else fails with the reasons (a timm tower, attention pooling, ...).

The output loads with ``from_pretrained`` and carries a processor that reproduces open_clip's preprocessing
(mean, std, resize mode, interpolation, crop) and tokenizer, plus a model card naming the source.

To open_clip: a ``CLIPModel`` (or one of the dual encoders above) -> ``open_clip_config.json`` +
``open_clip_model.safetensors``, loadable with ``open_clip.create_model_and_transforms("local-dir:DIR")`` (or
``hf-hub:ORG/NAME`` once uploaded).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from quilt_hf.errors import UserFacingError

logger = logging.getLogger(__name__)

OPEN_CLIP_CONFIG = "open_clip_config.json"
WEIGHTS_PREFERENCE = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "sentencepiece.bpe.model",
    "spiece.model",
)
CUSTOM_TEXT_CLIP = "quilt_custom_text_clip"


@dataclass
class ConvertConfig:
    """Convert models between open_clip's checkpoint format and transformers, with outputs that match:
    --from open_clip (an open_clip folder or Hub repo -> CLIPModel or a dual encoder, with processor and card) or
    --to open_clip (a transformers CLIP folder -> open_clip_config.json + open_clip_model.safetensors)."""

    model: str = field(
        metadata={
            "help": "The model to convert: a folder, or (--from open_clip) a Hub repo such as "
            "wisdomik/QuiltNet-B-32 (hf-hub: prefix optional)."
        }
    )
    output: str = field(metadata={"help": "Folder to write the converted model to."})
    from_format: str | None = field(
        default=None,
        metadata={"aliases": ["--from"], "choices": ["open_clip"], "help": "Convert from this format to transformers."},
    )
    to_format: str | None = field(
        default=None,
        metadata={
            "aliases": ["--to"],
            "choices": ["open_clip"],
            "help": "Convert a transformers model to this format.",
        },
    )
    text_model: str | None = field(
        default=None,
        metadata={
            "help": "Folder holding the config (and tokenizer) of the open_clip model's hf_model_name "
            "text encoder, for use without the Hub (default: hf_model_name itself)."
        },
    )
    revision: str | None = field(default=None, metadata={"help": "Hub revision of --model (a Hub repo only)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace --output if it exists."})


def run_convert(config: ConvertConfig) -> int:
    """Run ``quilt convert``."""
    if (config.from_format is None) == (config.to_format is None):
        raise UserFacingError("give exactly one of --from open_clip or --to open_clip")
    if config.from_format == "open_clip":
        result = convert_from_open_clip(
            config.model,
            config.output,
            text_model=config.text_model,
            revision=config.revision,
            overwrite=config.overwrite,
        )
    else:
        result = convert_to_open_clip(config.model, config.output, overwrite=config.overwrite)
    logger.info("wrote %s", result)
    return 0


# ---------------------------------------------------------------------------------------------------------------
# Reading open_clip checkpoints


def resolve_open_clip_source(model: str, revision: str | None = None) -> Path:
    """A local folder holding an open_clip Hub-layout checkpoint: ``model`` itself, or a Hub repo downloaded.

    Args:
        model (`str`): a folder, ``ORG/NAME`` or ``hf-hub:ORG/NAME``.
        revision (`str`, *optional*): Hub revision.
    """
    path = Path(model.removeprefix("local-dir:")).expanduser()
    if path.is_dir():
        if not (path / OPEN_CLIP_CONFIG).is_file():
            raise UserFacingError(f"{path} has no {OPEN_CLIP_CONFIG}: not an open_clip Hub-layout folder")
        return path
    repo_id = model.removeprefix("hf-hub:")
    if model.startswith((".", "/", "~")) or repo_id.count("/") != 1:
        raise UserFacingError(f"{model}: no such folder, and not a Hub repo name (ORG/NAME)")
    from huggingface_hub import list_repo_files, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        try:
            files = set(list_repo_files(repo_id, revision=revision))
        except (HfHubHTTPError, LocalEntryNotFoundError, OSError):
            files = set()  # offline: take what the local cache has
        weights = next((name for name in WEIGHTS_PREFERENCE if name in files), None)
        patterns = [OPEN_CLIP_CONFIG, "README.md", *TOKENIZER_FILES]
        patterns += [weights] if weights else list(WEIGHTS_PREFERENCE)
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=patterns)
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as error:
        raise UserFacingError(
            f"could not download {repo_id} from the Hugging Face Hub ({error}); without network, download the "
            "repository elsewhere and pass its folder to --model"
        ) from error
    if not (Path(folder) / OPEN_CLIP_CONFIG).is_file():
        raise UserFacingError(f"{repo_id} has no {OPEN_CLIP_CONFIG}: not an open_clip model repository")
    return Path(folder)


def load_open_clip_state_dict(folder: Path) -> tuple[dict, str]:
    """open_clip's weights from a folder, loaded safely (safetensors first; ``.bin`` with ``weights_only``).

    Returns:
        The state dict (``module.`` prefixes and a ``state_dict`` wrapper removed) and the file name.
    """
    import torch

    for name in WEIGHTS_PREFERENCE:
        file = folder / name
        if not file.is_file():
            continue
        if name.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(str(file))
        else:
            try:
                state = torch.load(file, map_location="cpu", weights_only=True)
            except Exception as error:  # unpickling refused or a corrupt file
                raise UserFacingError(
                    f"{file} did not load as plain tensors (weights_only=True): {error}. Only checkpoints "
                    "holding tensors are read; convert it to safetensors where you trust it"
                ) from error
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise UserFacingError(f"{file} does not hold a state dict")
        if state and all(key.startswith("module.") for key in state):
            state = {key[len("module.") :]: value for key, value in state.items()}
        return state, name
    raise UserFacingError(f"{folder} has no weights ({' or '.join(WEIGHTS_PREFERENCE)})")


def _read_json(file: Path) -> dict:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise UserFacingError(f"{file}: not readable JSON ({error})") from error


# ---------------------------------------------------------------------------------------------------------------
# Processors


def image_processor_from_spec(spec):
    """A ``CLIPImageProcessor`` doing what open_clip's evaluation transform does.

    The PIL backend (``CLIPImageProcessorPil`` where transformers has it) is chosen on purpose: open_clip
    resizes PIL images with PIL, and the torchvision backend's tensor resize differs in the last bits.
    """
    import transformers

    from quilt_hf.convert.open_clip_format import INTERPOLATIONS

    CLIPImageProcessor = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor

    size = spec.vision["image_size"]
    common = {
        "resample": INTERPOLATIONS[spec.preprocess["interpolation"]],
        "image_mean": spec.preprocess["mean"],
        "image_std": spec.preprocess["std"],
        "do_convert_rgb": True,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
    }
    if spec.preprocess["resize_mode"] == "squash":
        return CLIPImageProcessor(size={"height": size, "width": size}, do_center_crop=False, **common)
    return CLIPImageProcessor(
        size={"shortest_edge": size}, do_center_crop=True, crop_size={"height": size, "width": size}, **common
    )


def _clip_tokenizer(folder: Path, work: Path, context_length: int):
    """OpenAI CLIP's BPE tokenizer, as open_clip's default ``SimpleTokenizer`` (built from its vocabulary)."""
    from quilt_hf.errors import MissingDependencyError
    from quilt_hf.offline import clip_tokenizer

    try:
        tokenizer = clip_tokenizer(work / "clip-bpe")
    except (MissingDependencyError, FileNotFoundError) as error:
        if not (folder / "tokenizer.json").is_file() and not (folder / "vocab.json").is_file():
            raise UserFacingError(
                f"the CLIP tokenizer's vocabulary is needed: pip install open_clip_torch --no-deps ({error})"
            ) from error
        from transformers import AutoTokenizer

        logger.info("open_clip_torch not installed: using the tokenizer files in %s", folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.model_max_length = context_length
    return tokenizer


def _hf_text_files(spec, folder: Path, text_model: str | None):
    """The HF text tower's config and tokenizer: tokenizer files beside the weights (open_clip's ``local-dir``
    rule) or in ``text_model``/``hf_tokenizer_name``; the config from ``text_model`` or ``hf_model_name``."""
    from transformers import AutoConfig, AutoTokenizer

    config_source = text_model or spec.text["hf_model_name"]
    try:
        text_config = AutoConfig.from_pretrained(config_source)
    except OSError as error:
        raise UserFacingError(
            f"the text encoder's configuration ({config_source}) is needed and could not be loaded: {error}. "
            "Pass --text_model FOLDER with its config.json when the Hub is unreachable"
        ) from error
    if any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        tokenizer_source = folder
    else:
        tokenizer_source = text_model or spec.text["hf_tokenizer_name"]
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    except OSError as error:
        raise UserFacingError(f"could not load the tokenizer {tokenizer_source}: {error}") from error
    tokenizer.model_max_length = spec.text["context_length"]
    return text_config, tokenizer


# ---------------------------------------------------------------------------------------------------------------
# open_clip -> transformers


def build_transformers_model(spec, state: dict, *, text_config=None, tokenizer=None):
    """The transformers model of an open_clip spec, holding the converted weights.

    Args:
        spec (`OpenClipSpec`): the checked configuration.
        state (`dict`): open_clip's state dict.
        text_config (`PreTrainedConfig`, *optional*): the HF text tower's configuration (HF text towers only).
        tokenizer (*optional*): its tokenizer (for the special token ids).
    """
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig

    from quilt_hf.convert.open_clip_format import (
        NotConvertibleError,
        clip_text_config,
        clip_vision_config,
        open_clip_to_hf,
        vision_prefix,
    )

    vision = clip_vision_config(spec)
    if not spec.hf_text:
        text = clip_text_config(
            spec,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        config = CLIPConfig(
            text_config=text,
            vision_config=vision,
            projection_dim=spec.embed_dim,
            logit_scale_init_value=float(state["logit_scale"]),
        )
        model = CLIPModel(config)
    else:
        if getattr(text_config, "is_encoder_decoder", False):
            raise NotConvertibleError(f"{spec.text['hf_model_name']} is an encoder-decoder; not covered")
        width = getattr(text_config, "hidden_size", None)
        if width is None:
            raise NotConvertibleError(f"{text_config.model_type} has no hidden_size; not covered")
        if spec.text["proj"] is None and width != spec.embed_dim:
            raise NotConvertibleError(f"no text projection but widths differ ({width} vs {spec.embed_dim})")
        if text_config.pad_token_id is None and tokenizer is not None:
            text_config.pad_token_id = tokenizer.pad_token_id
        text_config._name_or_path = spec.text["hf_model_name"]  # recorded for the way back to open_clip
        common = {
            "vision_config": CLIPVisionConfig(**vision).to_dict(),
            "text_config": text_config.to_dict(),
            "projection_dim": spec.embed_dim,
            "logit_scale_init_value": float(state["logit_scale"]),
        }
        if spec.text["pooler"] == "cls_pooler" and spec.text["proj"] == "linear":
            from transformers import VisionTextDualEncoderConfig, VisionTextDualEncoderModel

            model = VisionTextDualEncoderModel(VisionTextDualEncoderConfig(**common))
        else:
            from quilt_hf.modeling.configuration_custom_text_clip import CustomTextCLIPConfig
            from quilt_hf.modeling.modeling_custom_text_clip import CustomTextCLIPModel

            model = CustomTextCLIPModel(
                CustomTextCLIPConfig(
                    text_pooler=spec.text["pooler"], text_projection_type=spec.text["proj"] or "identity", **common
                )
            )
    expected = model.state_dict()
    converted = open_clip_to_hf(state, spec, vision_prefix(expected))
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    if missing or unexpected:
        raise NotConvertibleError(
            f"the converted weights do not fit {type(model).__name__}: missing {missing[:8]}, "
            f"unexpected {unexpected[:8]}"
        )
    for key, value in converted.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise NotConvertibleError(f"{key}: shape {tuple(value.shape)} vs {tuple(expected[key].shape)}")
    with torch.no_grad():
        model.load_state_dict({k: v.to(expected[k].dtype) for k, v in converted.items()}, strict=True)
    return model.eval()


def convert_from_open_clip(
    model: str,
    output: str | Path,
    *,
    text_model: str | None = None,
    revision: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert an open_clip checkpoint to a transformers folder (model, processor, tokenizer, card).

    Args:
        model (`str`): an open_clip Hub-layout folder or Hub repo (``ORG/NAME``, ``hf-hub:ORG/NAME``).
        output (`str` or `Path`): the folder to write.
        text_model (`str`, *optional*): folder with the ``hf_model_name`` text encoder's config and tokenizer.
        revision (`str`, *optional*): Hub revision.
        overwrite (`bool`): replace ``output`` if it exists.

    Returns:
        `Path`: the output folder.

    Raises:
        `NotConvertibleError`: the checkpoint cannot be converted exactly (the message lists why).
    """
    from quilt_hf.convert.open_clip_format import read_open_clip_config

    output = _prepare_output(Path(output), overwrite)
    source = resolve_open_clip_source(model, revision)
    spec = read_open_clip_config(_read_json(source / OPEN_CLIP_CONFIG))
    state, weights_name = load_open_clip_state_dict(source)
    with tempfile.TemporaryDirectory(prefix=".quilt-convert-", dir=output.parent) as work:
        work = Path(work)
        if spec.hf_text:
            text_config, tokenizer = _hf_text_files(spec, source, text_model)
        else:
            text_config, tokenizer = None, _clip_tokenizer(source, work, spec.text["context_length"])
        hf_model = build_transformers_model(spec, state, text_config=text_config, tokenizer=tokenizer)
        image_processor = image_processor_from_spec(spec)
        if hf_model.config.model_type == "clip":
            from transformers import CLIPProcessor

            processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
        else:
            from transformers import VisionTextDualEncoderProcessor

            processor = VisionTextDualEncoderProcessor(image_processor=image_processor, tokenizer=tokenizer)
        staging = work / "out"
        hf_model.save_pretrained(staging)
        processor.save_pretrained(staging)
        details = _spec_details(spec, text_model)
        usage = _transformers_usage(type(hf_model).__name__, output)
        card = _card(
            model,
            "open_clip",
            "transformers",
            type(hf_model).__name__,
            weights_name,
            details,
            usage,
            command=" ".join(["quilt convert --from open_clip --model", model, "--output", str(output)]),
        )
        card.save(staging / "README.md")
        _publish(staging, output)
    logger.info("converted %s (open_clip) -> %s (%s)", model, output, type(hf_model).__name__)
    return output


def _spec_details(spec, text_model: str | None) -> list[str]:
    vision = spec.vision
    lines = [
        f"Image tower: ViT, image {vision['image_size']}, patch {vision['patch_size']}, width {vision['width']}, "
        f"{vision['layers']} layers, {vision['heads']} heads; activation "
        f"{'QuickGELU' if spec.quick_gelu else 'GELU'}; joint embedding {spec.embed_dim}",
        f"Preprocessing: mean {spec.preprocess['mean']}, std {spec.preprocess['std']}, "
        f"{spec.preprocess['interpolation']} resize ({spec.preprocess['resize_mode']})",
    ]
    if spec.hf_text:
        lines.append(
            f"Text tower: `{spec.text['hf_model_name']}`{f' (config read from {text_model})' if text_model else ''}, "
            f"{spec.text['pooler']}, {spec.text['proj'] or 'no'} projection, {spec.text['context_length']} tokens"
        )
    else:
        text = spec.text
        lines.append(
            f"Text tower: open_clip's transformer, width {text['width']}, {text['layers']} layers, {text['heads']} "
            f"heads, {text['context_length']} tokens, CLIP BPE tokenizer"
        )
    return lines


def _transformers_usage(architecture: str, output: Path) -> str:
    importer = (
        "import quilt_hf  # registers CustomTextCLIPModel with the Auto classes\n"
        if (architecture == "CustomTextCLIPModel")
        else ""
    )
    return (
        "```python\n"
        f"{importer}from transformers import AutoImageProcessor, pipeline\n\n"
        f'classifier = pipeline("zero-shot-image-classification", model="{output.name}",\n'
        f'                      image_processor=AutoImageProcessor.from_pretrained("{output.name}", backend="pil"))\n'
        'classifier("patch.png", candidate_labels=["adenocarcinoma", "benign tissue"],\n'
        '           hypothesis_template="a histopathology image of {}.")\n'
        "```\n\n"
        '`backend="pil"` resizes with PIL as open_clip does (bit-exact pixels); transformers\' default torchvision '
        "backend, used where torchvision is installed, differs by one grey level on 0.1-1% of resized pixels.\n"
    )


# ---------------------------------------------------------------------------------------------------------------
# transformers -> open_clip


def spec_from_transformers(model, tokenizer, image_processor):
    """The ``OpenClipSpec`` (and open_clip ``model_cfg``) of a transformers dual encoder, checked for exactness."""
    from transformers import CLIPVisionConfig

    from quilt_hf.convert.open_clip_format import (
        CLIP_VOCAB_SIZE,
        INTERPOLATIONS,
        OPEN_CLIP_LAYER_NORM_EPS,
        NotConvertibleError,
        OpenClipSpec,
    )

    config = model.config
    model_type = config.model_type
    vision_config = config.vision_config
    reasons = []
    if not isinstance(vision_config, CLIPVisionConfig):
        reasons.append(f"the image tower is {type(vision_config).__name__}; open_clip's ViT is CLIP's")
        raise NotConvertibleError("cannot convert to open_clip:\n  - " + "\n  - ".join(reasons))
    acts = {vision_config.hidden_act}
    if model_type == "clip":
        acts.add(config.text_config.hidden_act)
    if not acts <= {"gelu", "quick_gelu"} or len(acts) != 1:
        reasons.append(f"activations {sorted(acts)}: open_clip uses one of gelu / quick_gelu in both towers")
    if abs(vision_config.layer_norm_eps - OPEN_CLIP_LAYER_NORM_EPS) > 1e-12:
        reasons.append(f"vision layer_norm_eps={vision_config.layer_norm_eps} (open_clip: 1e-5)")
    vision = {
        "image_size": vision_config.image_size,
        "patch_size": vision_config.patch_size,
        "width": vision_config.hidden_size,
        "layers": vision_config.num_hidden_layers,
        "heads": vision_config.num_attention_heads,
        "mlp_ratio": vision_config.intermediate_size / vision_config.hidden_size,
    }
    vision_cfg = {
        "image_size": vision["image_size"],
        "layers": vision["layers"],
        "width": vision["width"],
        "head_width": vision["width"] // vision["heads"],
        "mlp_ratio": vision["mlp_ratio"],
        "patch_size": vision["patch_size"],
    }
    context_length = int(tokenizer.model_max_length) if tokenizer.model_max_length < 100_000 else None
    if model_type == "clip":
        text_config = config.text_config
        if abs(text_config.layer_norm_eps - OPEN_CLIP_LAYER_NORM_EPS) > 1e-12:
            reasons.append(f"text layer_norm_eps={text_config.layer_norm_eps} (open_clip: 1e-5)")
        if (
            text_config.vocab_size != CLIP_VOCAB_SIZE
            or len(tokenizer) != CLIP_VOCAB_SIZE
            or (tokenizer.eos_token_id != CLIP_VOCAB_SIZE - 1)
        ):
            reasons.append(
                "open_clip's own text tower tokenizes with CLIP's BPE (49,408 ids, end-of-text the largest); this "
                f"model has vocab_size {text_config.vocab_size} and a {type(tokenizer).__name__} of {len(tokenizer)}"
            )
        text = {
            "context_length": text_config.max_position_embeddings,
            "vocab_size": text_config.vocab_size,
            "width": text_config.hidden_size,
            "heads": text_config.num_attention_heads,
            "layers": text_config.num_hidden_layers,
            "mlp_ratio": text_config.intermediate_size / text_config.hidden_size,
        }
        text_cfg = dict(text)
    elif model_type in ("vision-text-dual-encoder", CUSTOM_TEXT_CLIP):
        text_config = config.text_config
        name = getattr(text_config, "_name_or_path", "") or getattr(config, "open_clip_hf_model_name", "")
        if not name:
            reasons.append("the text encoder's Hub name is not recorded (text_config._name_or_path)")
        if model_type == CUSTOM_TEXT_CLIP:
            pooler = config.text_pooler
            proj = None if config.text_projection_type == "identity" else config.text_projection_type
        else:
            pooler, proj = "cls_pooler", "linear"
        text = {
            "hf_model_name": name,
            "hf_tokenizer_name": name,
            "pooler": pooler,
            "proj": proj,
            "context_length": context_length or text_config.max_position_embeddings,
        }
        text_cfg = {
            "hf_model_name": name,
            "hf_tokenizer_name": name,
            "hf_proj_type": proj,
            "hf_pooler_type": pooler,
            "context_length": text["context_length"],
        }
    else:
        raise NotConvertibleError(f"{type(model).__name__} ({model_type}): only CLIP-style dual encoders convert")

    processor = image_processor.to_dict() if hasattr(image_processor, "to_dict") else {}
    resample = {code: name for name, code in INTERPOLATIONS.items()}.get(int(processor.get("resample", 3)))
    size, crop = processor.get("size") or {}, processor.get("crop_size") or {}
    image_size = vision["image_size"]
    if (
        processor.get("do_center_crop")
        and size.get("shortest_edge") == image_size
        and (crop.get("height") == crop.get("width") == image_size)
    ):
        resize_mode = "shortest"
    elif not processor.get("do_center_crop") and size.get("height") == size.get("width") == image_size:
        resize_mode = "squash"
    else:
        resize_mode = None
        reasons.append(f"image processor size {size} / crop {crop} is not open_clip's resize for {image_size}")
    if resample is None:
        reasons.append(f"image processor resample {processor.get('resample')} (open_clip: bicubic or bilinear)")
    if (
        not processor.get("do_normalize", True)
        or abs(float(processor.get("rescale_factor", 1 / 255)) - 1 / 255) > 1e-12
    ):
        reasons.append("image processor does not rescale by 1/255 and normalise as open_clip does")
    if reasons:
        raise NotConvertibleError("cannot convert to open_clip exactly:\n  - " + "\n  - ".join(reasons))
    preprocess = {
        "mean": [float(x) for x in processor.get("image_mean")],
        "std": [float(x) for x in processor.get("image_std")],
        "interpolation": resample,
        "resize_mode": resize_mode,
    }
    spec = OpenClipSpec(
        embed_dim=config.projection_dim,
        quick_gelu=acts == {"quick_gelu"},
        vision=vision,
        text=text,
        preprocess=preprocess,
    )
    model_cfg = {"embed_dim": spec.embed_dim, "vision_cfg": vision_cfg, "text_cfg": text_cfg}
    if spec.quick_gelu:
        model_cfg["quick_gelu"] = True
    return spec, {"model_cfg": model_cfg, "preprocess_cfg": preprocess}


def convert_to_open_clip(model: str, output: str | Path, *, overwrite: bool = False) -> Path:
    """Convert a transformers ``CLIPModel`` (or CLIP-ViT dual encoder) folder to open_clip's Hub layout.

    Args:
        model (`str`): a transformers folder or Hub name (with its processor).
        output (`str` or `Path`): the folder to write (``open_clip_config.json``, ``open_clip_model.safetensors``,
            tokenizer files for an HF text tower, ``README.md``).
        overwrite (`bool`): replace ``output`` if it exists.

    Returns:
        `Path`: the output folder; ``open_clip.create_model_and_transforms(f"local-dir:{output}")`` loads it.
    """
    from safetensors.torch import save_file
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    from quilt_hf.convert.open_clip_format import hf_to_open_clip
    from quilt_hf.models import resolve_model

    output = _prepare_output(Path(output), overwrite)
    path = resolve_model(model, "clip")
    hf_model = AutoModel.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    image_processor = AutoImageProcessor.from_pretrained(path)
    spec, open_clip_config = spec_from_transformers(hf_model, tokenizer, image_processor)
    state = hf_to_open_clip({k: v.detach().cpu() for k, v in hf_model.state_dict().items()}, spec)
    with tempfile.TemporaryDirectory(prefix=".quilt-convert-", dir=output.parent) as work:
        staging = Path(work) / "out"
        staging.mkdir()
        save_file(state, str(staging / "open_clip_model.safetensors"), metadata={"format": "pt"})
        (staging / OPEN_CLIP_CONFIG).write_text(json.dumps(open_clip_config, indent=2) + "\n")
        if spec.hf_text:
            # open_clip's local-dir loader reads the text tower's tokenizer from the model folder.
            tokenizer.save_pretrained(staging)
        usage = (
            "```python\nimport open_clip\n\n"
            f'model, _, preprocess = open_clip.create_model_and_transforms("local-dir:{output.name}")\n'
            f'tokenizer = open_clip.get_tokenizer("local-dir:{output.name}")\n'
            '# after uploading the folder: open_clip.create_model_and_transforms("hf-hub:ORG/NAME")\n```\n'
        )
        card = _card(
            model,
            "transformers",
            "open_clip",
            type(hf_model).__name__,
            None,
            _spec_details(spec, None),
            usage,
            command=f"quilt convert --to open_clip --model {model} --output {output}",
            library="open_clip",
        )
        card.save(staging / "README.md")
        _publish(staging, output)
    logger.info("converted %s (%s) -> %s (open_clip)", model, type(hf_model).__name__, output)
    return output


# ---------------------------------------------------------------------------------------------------------------
# Output handling and the card


def _prepare_output(output: Path, overwrite: bool) -> Path:
    from quilt_hf.atomic import recover_dir

    output = output.expanduser().resolve()
    recover_dir(output)  # a conversion killed between the two renames of its swap: put the old output back
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise UserFacingError(f"{output} exists and is not empty; pass --overwrite to replace it")
    output.parent.mkdir(parents=True, exist_ok=True)
    return output


def _publish(staging: Path, output: Path) -> None:
    """Move the finished folder into place: the old one is kept aside until the new one is in (never a
    half-written output, never neither)."""
    from quilt_hf.atomic import swap_dir

    swap_dir(staging, output)


def _card(
    source,
    source_format,
    target_format,
    architecture,
    source_weights,
    details,
    usage,
    *,
    command,
    library="transformers",
):
    from huggingface_hub import ModelCard, ModelCardData

    from quilt_hf import __version__
    from quilt_hf.cards import template_path

    source_id = str(source).removeprefix("hf-hub:")
    base_model = source_id if source_id.count("/") == 1 and not Path(source_id).exists() else None
    card_data = ModelCardData(
        library_name=library,
        base_model=base_model,
        pipeline_tag="zero-shot-image-classification",
        tags=["clip", "quilt_hf", "converted", f"converted-from-{source_format.replace('_', '-')}", "histopathology"],
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path("converted_model_card.md")),
        model_name=f"{Path(source_id).name} ({target_format})",
        source=source_id,
        source_format=source_format,
        target_format=target_format,
        architecture=architecture,
        source_weights=source_weights,
        details=details,
        usage=usage,
        command=command,
        quilt_hf_version=__version__,
    )

"""Quilt's own released histology filter, run on transformers (no timm, no torchvision).

The QuiltNet-B-32 Hub repository (``wisdomik/QuiltNet-B-32``) ships the frame classifiers that built Quilt-1M;
``--histology quilt-ensemble:DIR`` loads them from a folder holding:

- ``cyto_histo.pth.tar`` and ``all_inclusive.pth.tar``: timm ``convnext_tiny.fb_in22k_ft_in1k_384`` with a
  2-class head, saved by timm's training script (``state_dict`` / ``state_dict_ema``, keys maybe prefixed
  ``module.``). Input: the frame resized to 384x384, ImageNet-normalised, its centre 300x300 cut and resized
  back to 384x384.
- ``dino_checkpoint.pth.tar``: a linear head (``state_dict`` with ``module.linear.weight/bias``) over the
  concatenated CLS tokens of the last 4 blocks (each through the final LayerNorm) of DINO ViT-S/16;
  the backbone is Facebook's released ``dino_deitsmall16_pretrain.pth`` (the authors' code downloads it from
  ``dl.fbaipublicfiles.com/dino``): put that file in the same folder. Input: 384x384, centre 224 cut and
  resized back to 384 (the position embeddings are interpolated as DINO does, once, at load).

A frame is histology when ANY of the three predicts class 1 (as in the authors' ``data/main.py``); the score
kept with the decision is the highest class-1 probability. The layouts were read from the authors' repository
(github.com/wisdomikezogwo/quilt1m, ``data/model_utils.py`` and ``data/main.py``); the ConvNeXt and ViT weights
are mapped onto transformers' ``ConvNextForImageClassification`` and ``ViTModel``, whose outputs equal timm's and
the authors' ViT on the same weights (``dataset_scripts/check_quilt_filter.py``, fixture in
``tests/fixtures/quilt_filter``). Checkpoints are read with ``torch.load(weights_only=True)``; the only
non-tensor class allowed is ``argparse.Namespace`` (timm stores its training arguments in the checkpoint).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

CONVNEXT_FILES = ("cyto_histo.pth.tar", "all_inclusive.pth.tar")
DINO_HEAD_FILE = "dino_checkpoint.pth.tar"
DINO_BACKBONE_FILE = "dino_deitsmall16_pretrain.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_checkpoint(path: str | Path) -> dict:
    """``torch.load(weights_only=True)`` of a timm or DINO checkpoint (``argparse.Namespace`` allowed)."""
    import argparse

    import torch

    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"{path}: cannot be read as a weights-only checkpoint ({type(error).__name__}: {error}). "
            "quilt_hf never unpickles arbitrary objects; re-save the state_dict alone with torch.save."
        ) from error


def state_dict_of(checkpoint: dict, prefer_ema: bool = True) -> dict:
    """The tensors of a checkpoint, picked as timm's ``load_checkpoint`` does, ``module.`` prefixes removed."""
    for key in (("state_dict_ema", "model_ema") if prefer_ema else ()) + ("state_dict", "model"):
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    return {(k[7:] if k.startswith("module.") else k): v for k, v in checkpoint.items() if hasattr(v, "shape")}


# -- ConvNeXt (timm) -> transformers ----------------------------------------------------------------------------
_CONVNEXT_RULES = [
    (r"^stem\.0\.", "convnext.embeddings.patch_embeddings."),
    (r"^stem\.1\.", "convnext.embeddings.layernorm."),
    (r"^stages\.(\d+)\.downsample\.(\d)\.", r"convnext.encoder.stages.\1.downsampling_layer.\2."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.conv_dw\.", r"convnext.encoder.stages.\1.layers.\2.dwconv."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.norm\.", r"convnext.encoder.stages.\1.layers.\2.layernorm."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc1\.", r"convnext.encoder.stages.\1.layers.\2.pwconv1."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.mlp\.fc2\.", r"convnext.encoder.stages.\1.layers.\2.pwconv2."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.gamma$", r"convnext.encoder.stages.\1.layers.\2.layer_scale_parameter"),
    (r"^head\.norm\.", "convnext.layernorm."),
    (r"^head\.fc\.", "classifier."),
]


def convnext_from_timm(state: dict):
    """A transformers ``ConvNextForImageClassification`` holding a timm ConvNeXt state dict (sizes read from it)."""
    import torch
    from transformers import ConvNextConfig, ConvNextForImageClassification

    depths = []
    for stage in range(4):
        blocks = {int(m.group(1)) for k in state if (m := re.match(rf"stages\.{stage}\.blocks\.(\d+)\.", k))}
        depths.append(len(blocks))
    if not all(depths) or "head.fc.weight" not in state:
        raise ValueError("not a timm ConvNeXt state dict (expected stages.0-3.blocks.* and head.fc.*)")
    hidden = [int(state[f"stages.{s}.blocks.0.conv_dw.weight"].shape[0]) for s in range(4)]
    config = ConvNextConfig(
        depths=depths, hidden_sizes=hidden, num_labels=int(state["head.fc.weight"].shape[0]),
        patch_size=int(state["stem.0.weight"].shape[-1]), layer_norm_eps=1e-6, image_size=384,
    )
    mapped = {}
    for key, value in state.items():
        new = key
        for pattern, repl in _CONVNEXT_RULES:
            new, hits = re.subn(pattern, repl, new)
            if hits:
                break
        else:
            if key.startswith("norm_pre."):  # timm's Identity pre-norm has no weights; anything else is unknown
                continue
            raise ValueError(f"unexpected ConvNeXt weight {key!r}")
        mapped[new] = value
    model = ConvNextForImageClassification(config)
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    if missing or unexpected:
        raise ValueError(f"ConvNeXt weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval().to(torch.float32)


# -- DINO ViT -> transformers -----------------------------------------------------------------------------------
def dino_position_embeddings(pos_embed, grid: int, patch_size: int):
    """DINO's ``interpolate_pos_encoding`` for a ``grid x grid`` patch input (bicubic, scale factor + 0.1)."""
    import torch
    import torch.nn.functional as F

    n = pos_embed.shape[1] - 1
    side = int(math.sqrt(n))
    if side == grid:
        return pos_embed
    dim = pos_embed.shape[-1]
    w0 = grid + 0.1  # DINO: w0 = w // patch_size, then + 0.1 against floating point error
    patches = F.interpolate(
        pos_embed[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2),
        scale_factor=(w0 / side, w0 / side),
        mode="bicubic",
    )
    if patches.shape[-1] != grid:
        raise ValueError(f"position embeddings interpolated to {patches.shape[-1]}, expected {grid}")
    patches = patches.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat((pos_embed[:, :1], patches), dim=1)


def vit_from_dino(state: dict, image_size: int = 384):
    """A transformers ``ViTModel`` holding a DINO ``VisionTransformer`` state dict, for ``image_size`` inputs."""
    import torch
    from transformers import ViTConfig, ViTModel

    if "pos_embed" not in state or "patch_embed.proj.weight" not in state:
        raise ValueError("not a DINO ViT state dict (expected pos_embed, patch_embed.proj.weight, blocks.*)")
    state = {k.replace("backbone.", ""): v for k, v in state.items()}
    dim = int(state["pos_embed"].shape[-1])
    patch = int(state["patch_embed.proj.weight"].shape[-1])
    depth = len({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
    config = ViTConfig(
        hidden_size=dim, num_hidden_layers=depth, num_attention_heads=max(1, dim // 64),
        intermediate_size=int(state["blocks.0.mlp.fc1.weight"].shape[0]), image_size=image_size, patch_size=patch,
        layer_norm_eps=1e-6, qkv_bias=True, hidden_act="gelu",
    )
    model = ViTModel(config, add_pooling_layer=False)
    target = model.state_dict()
    mapped = {
        "embeddings.cls_token": state["cls_token"],
        "embeddings.position_embeddings": dino_position_embeddings(state["pos_embed"], image_size // patch, patch),
        "embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
        "layernorm.weight": state["norm.weight"],
        "layernorm.bias": state["norm.bias"],
    }
    layer = "layers" if any(k.startswith("layers.0.") for k in target) else "encoder.layer"
    for i in range(depth):
        src = f"blocks.{i}."
        qkv_w, qkv_b = state[src + "attn.qkv.weight"].chunk(3), state[src + "attn.qkv.bias"].chunk(3)
        names = _vit_layer_names(target, f"{layer}.{i}.")
        for which, w, b in zip(("q", "k", "v"), qkv_w, qkv_b):
            mapped[names[which] + ".weight"], mapped[names[which] + ".bias"] = w, b
        for ours, theirs in (("o", "attn.proj"), ("ln1", "norm1"), ("ln2", "norm2"), ("fc1", "mlp.fc1"), ("fc2", "mlp.fc2")):
            mapped[names[ours] + ".weight"] = state[src + theirs + ".weight"]
            mapped[names[ours] + ".bias"] = state[src + theirs + ".bias"]
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    if missing or unexpected:
        raise ValueError(f"DINO ViT weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval().to(torch.float32)


def _vit_layer_names(target: dict, prefix: str) -> dict[str, str]:
    """Module names of one ViT layer in this transformers version (5.x: q_proj/mlp.fc1; 4.x: query/intermediate)."""
    if prefix + "attention.q_proj.weight" in target:
        return {
            "q": prefix + "attention.q_proj", "k": prefix + "attention.k_proj", "v": prefix + "attention.v_proj",
            "o": prefix + "attention.o_proj", "ln1": prefix + "layernorm_before", "ln2": prefix + "layernorm_after",
            "fc1": prefix + "mlp.fc1", "fc2": prefix + "mlp.fc2",
        }
    return {
        "q": prefix + "attention.attention.query", "k": prefix + "attention.attention.key",
        "v": prefix + "attention.attention.value", "o": prefix + "attention.output.dense",
        "ln1": prefix + "layernorm_before", "ln2": prefix + "layernorm_after",
        "fc1": prefix + "intermediate.dense", "fc2": prefix + "output.dense",
    }


# -- preprocessing ---------------------------------------------------------------------------------------------
def quilt_preprocess(images: Sequence[np.ndarray], input_size: int = 384, crop_size: int = 300):
    """The authors' transform: to [0, 1], resize to ``input_size`` square (bilinear, antialiased), ImageNet
    normalisation, then the centre ``crop_size`` square resized back to ``input_size``. Returns ``N x 3 x S x S``."""
    import torch
    import torch.nn.functional as F

    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    batch = []
    for image in images:
        x = torch.from_numpy(np.array(np.asarray(image, np.uint8)[..., :3])).permute(2, 0, 1)[None].float() / 255.0
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False, antialias=True)
        batch.append(x)
    x = (torch.cat(batch) - mean) / std
    if crop_size < input_size:
        start = input_size // 2 - crop_size // 2
        x = x[:, :, start : start + crop_size, start : start + crop_size]
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=False, antialias=True)
    return x


@dataclass
class QuiltEnsembleHistologyClassifier:
    """Quilt's released frame filter: two ConvNeXt-Tiny classifiers and a DINO ViT-S/16 linear probe, OR-ed.

    Args:
        directory (`str` or `Path`): folder with ``cyto_histo.pth.tar``, ``all_inclusive.pth.tar``,
            ``dino_checkpoint.pth.tar`` and ``dino_deitsmall16_pretrain.pth``.
        threshold (`float`): class-1 probability at or above which a member calls a frame histology
            (0.5 = the authors' argmax).
        device (`str`, *optional*): torch device; default CPU.
    """

    directory: str | Path
    threshold: float = 0.5
    device: str | None = None
    batch_size: int = 8
    name: str = ""
    _members: list = field(default_factory=list, repr=False)

    def __post_init__(self):
        self.name = self.name or f"quilt-ensemble:{self.directory}"

    def load(self) -> QuiltEnsembleHistologyClassifier:
        """Read and map the checkpoints once; raises :class:`~quilt_hf.errors.ModelLoadError` saying what is wrong."""
        if self._members:
            return self
        from quilt_hf.errors import ModelLoadError

        folder = Path(self.directory)
        needed = [*CONVNEXT_FILES, DINO_HEAD_FILE, DINO_BACKBONE_FILE]
        missing = [name for name in needed if not (folder / name).is_file()]
        if missing:
            raise ModelLoadError(
                "--histology", self.name, f"{folder} lacks {', '.join(missing)}",
                "the first three are in the Hub repository wisdomik/QuiltNet-B-32; the DINO backbone is "
                "https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
            )
        try:
            self._load(folder)
        except (ValueError, KeyError) as error:
            raise ModelLoadError("--histology", self.name, str(error), "give the files as released (see the module docs)") from error
        return self

    def __getstate__(self):  # travels to worker processes (Ray) without its loaded models: it loads there
        return {**self.__dict__, "_members": []}

    def _load(self, folder: Path) -> None:
        import torch

        device = torch.device(self.device or "cpu")
        members = []
        for name in CONVNEXT_FILES:
            model = convnext_from_timm(state_dict_of(load_checkpoint(folder / name))).to(device)
            members.append((name, "convnext", model, None))
        backbone = vit_from_dino(state_dict_of(load_checkpoint(folder / DINO_BACKBONE_FILE), prefer_ema=False)).to(device)
        head_state = state_dict_of(load_checkpoint(folder / DINO_HEAD_FILE), prefer_ema=False)
        head_state = {k.replace("backbone.", ""): v for k, v in head_state.items()}
        if "linear.weight" not in head_state:
            raise ValueError(f"{folder / DINO_HEAD_FILE}: no linear.weight (keys: {sorted(head_state)[:5]})")
        head = torch.nn.Linear(head_state["linear.weight"].shape[1], head_state["linear.weight"].shape[0])
        head.load_state_dict({"weight": head_state["linear.weight"], "bias": head_state["linear.bias"]})
        if head.in_features != 4 * backbone.config.hidden_size:
            raise ValueError(
                f"DINO head takes {head.in_features} features; the backbone gives 4 x {backbone.config.hidden_size}"
            )
        members.append((DINO_HEAD_FILE, "dino", backbone, head.eval().to(device)))
        self._device = device
        self._members = members

    def member_probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Class-1 (histology) probability of each member: ``N x 3`` (cyto_histo, all_inclusive, dino)."""
        import torch

        self.load()
        columns = []
        with torch.inference_mode():
            conv_input = quilt_preprocess(images, 384, 300).to(self._device)
            dino_input = quilt_preprocess(images, 384, 224).to(self._device)
            for _name, kind, model, head in self._members:
                outputs = []
                source = conv_input if kind == "convnext" else dino_input
                for start in range(0, len(images), self.batch_size):
                    x = source[start : start + self.batch_size]
                    if kind == "convnext":
                        logits = model(pixel_values=x).logits
                    else:
                        hidden = model(pixel_values=x, output_hidden_states=True).hidden_states[-4:]
                        features = torch.cat([model.layernorm(h)[:, 0] for h in hidden], dim=-1)
                        logits = head(features)
                    outputs.append(logits.float().softmax(-1)[:, 1])
                columns.append(torch.cat(outputs).cpu().numpy())
        return np.stack(columns, axis=1)

    def predict(self, images: Sequence[np.ndarray]) -> list[tuple[bool, float]]:
        if not len(images):
            return []
        scores = self.member_probabilities(images).max(axis=1)
        return [(bool(s >= self.threshold), float(s)) for s in scores]

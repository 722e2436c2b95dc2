"""Model adapters: one interface over every dual encoder the evaluation suite can score.

An adapter turns PIL images and strings into embeddings. It wraps

- transformers ``CLIPModel``, ``VisionTextDualEncoderModel`` and any model with ``get_image_features`` /
  ``get_text_features`` (loaded by Hub name or folder with ``AutoModel`` and ``AutoProcessor``);
- open_clip models (optional; ``open_clip:ViT-B-32/laion2b_s34b_b79k``, ``open_clip:hf-hub:org/name`` or
  ``open_clip:local-dir:/path/to/folder``).

``load_model(spec)`` picks the adapter from the spec. Each adapter has a ``fingerprint``: a short hash that
changes when the weights or preprocessing change, used as the feature cache key.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from quilt_hf.errors import UserFacingError, require

logger = logging.getLogger(__name__)

OPEN_CLIP_PREFIX = "open_clip:"


def _as_tensor(output) -> torch.Tensor:
    """Features from ``get_*_features``: a tensor, or (transformers 5) an output whose pooler holds them."""
    if isinstance(output, torch.Tensor):
        return output
    for attribute in ("pooler_output", "image_embeds", "text_embeds"):
        value = getattr(output, attribute, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot read features from {type(output).__name__}")


def _weights_fingerprint(model: torch.nn.Module) -> str:
    """A cheap content hash of a model's weights: shapes plus a few values and the sum of every tensor."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            flat = tensor.detach().reshape(-1)
            digest.update(name.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            if flat.numel() and flat.is_floating_point():
                digest.update(flat[:16].float().cpu().numpy().tobytes())
                digest.update(flat.float().sum().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


class DualEncoderAdapter:
    """The interface the tasks use. Subclasses implement the four methods below.

    Attributes:
        name (`str`): what the model was loaded from (for reports).
        device (`torch.device`): where inputs go.
    """

    name: str
    device: torch.device

    def preprocess_images(self, images: Sequence) -> torch.Tensor:
        """Pixel tensor of a batch of PIL images."""
        raise NotImplementedError

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Embeddings (not normalised) of preprocessed images."""
        raise NotImplementedError

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings (not normalised) of a batch of texts."""
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        """Changes when weights or preprocessing change: the feature cache key."""
        raise NotImplementedError

    @torch.inference_mode()
    def encode_images(self, images: Sequence) -> torch.Tensor:
        return self.image_features(self.preprocess_images(images))

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        chunks = [self.text_features(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        return torch.cat(chunks) if chunks else torch.empty(0)


class TransformersAdapter(DualEncoderAdapter):
    """Any transformers model with ``get_image_features`` and ``get_text_features``.

    Args:
        model (`PreTrainedModel`): ``CLIPModel``, ``VisionTextDualEncoderModel``, ``SiglipModel``, ...
        processor: a processor with an image processor and a tokenizer (``CLIPProcessor``), or None
            when ``image_processor`` and ``tokenizer`` are given.
        name (`str`): where it came from.
        device (`str` or `torch.device`, *optional*): defaults to the model's device.
        max_length (`int`, *optional*): text truncation length (default: the text model's positions).
    """

    def __init__(
        self,
        model,
        processor=None,
        *,
        image_processor=None,
        tokenizer=None,
        name: str = "",
        device: str | torch.device | None = None,
        max_length: int | None = None,
    ):
        for method in ("get_image_features", "get_text_features"):
            if not hasattr(model, method):
                raise UserFacingError(
                    f"{name or type(model).__name__} has no {method}(); the evaluation suite needs a dual encoder "
                    f"(CLIPModel, VisionTextDualEncoderModel, ...)"
                )
        self.model = model.eval()
        self.image_processor = image_processor or getattr(processor, "image_processor", None)
        self.tokenizer = tokenizer or getattr(processor, "tokenizer", None)
        if self.image_processor is None or self.tokenizer is None:
            raise UserFacingError(
                f"{name}: needs an image processor and a tokenizer (save a processor with it)"
            )
        self.name = name or getattr(model, "name_or_path", "") or type(model).__name__
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        if device is not None:
            self.model.to(self.device)
        self.max_length = max_length or self._text_positions()
        self._fingerprint: str | None = None

    def _text_positions(self) -> int:
        config = getattr(self.model.config, "text_config", None) or self.model.config
        positions = int(getattr(config, "max_position_embeddings", 77) or 77)
        # A tokenizer that declares a shorter context (an open_clip conversion: PubMedBERT truncated at 256)
        # truncates there, as the original does.
        declared = getattr(self.tokenizer, "model_max_length", None)
        return min(positions, int(declared)) if isinstance(declared, int) and declared > 0 else positions

    def preprocess_images(self, images: Sequence) -> torch.Tensor:
        images = [
            image.convert("RGB") if getattr(image, "mode", "RGB") != "RGB" else image for image in images
        ]
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"]

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        dtype = next(self.model.parameters()).dtype
        output = self.model.get_image_features(pixel_values=pixel_values.to(self.device, dtype))
        return _as_tensor(output).float()

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        inputs = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        inputs = {k: v.to(self.device) for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
        return _as_tensor(self.model.get_text_features(**inputs)).float()

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            digest = hashlib.sha256()
            digest.update(_weights_fingerprint(self.model).encode())
            digest.update(json.dumps(self.image_processor.to_dict(), sort_keys=True, default=str).encode())
            digest.update(type(self.tokenizer).__name__.encode())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint


class OpenClipAdapter(DualEncoderAdapter):
    """An open_clip model (``open_clip.create_model_and_transforms``) through the same interface.

    Args:
        model: the open_clip ``CLIP`` model.
        preprocess: its evaluation image transform (PIL -> tensor).
        tokenizer: ``open_clip.get_tokenizer(model_name)``.
        name (`str`): the spec it was loaded from.
    """

    def __init__(self, model, preprocess, tokenizer, *, name: str, device: str | torch.device | None = None):
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.name = name
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model.to(self.device)
        self._fingerprint: str | None = None

    def preprocess_images(self, images: Sequence) -> torch.Tensor:
        return torch.stack([self.preprocess(image.convert("RGB")) for image in images])

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixel_values.to(self.device)).float()

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(list(texts)).to(self.device)).float()

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            digest = hashlib.sha256(_weights_fingerprint(self.model).encode())
            digest.update(repr(self.preprocess).encode())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint


def _load_open_clip(spec: str, device: str | None) -> OpenClipAdapter:
    open_clip = require("open_clip", package="open_clip_torch", extra="open-clip", purpose="open_clip models")
    target = spec[len(OPEN_CLIP_PREFIX) :]
    if target.startswith(("hf-hub:", "local-dir:")):
        model, _, preprocess = open_clip.create_model_and_transforms(target)
        tokenizer = open_clip.get_tokenizer(target)
    else:
        arch, _, pretrained = target.partition("/")
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained or None)
        tokenizer = open_clip.get_tokenizer(arch)
    return OpenClipAdapter(model, preprocess, tokenizer, name=spec, device=device)


def _load_transformers(spec: str, device: str | None, dtype: torch.dtype | None) -> TransformersAdapter:
    from transformers import AutoImageProcessor, AutoModel, AutoProcessor, AutoTokenizer

    from quilt_hf.models import resolve_model

    path = resolve_model(spec, "clip")
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = AutoModel.from_pretrained(path, **kwargs)
    processor = None
    try:
        processor = AutoProcessor.from_pretrained(path)
    except (OSError, ValueError, TypeError) as error:
        logger.debug("no AutoProcessor for %s (%s); loading image processor and tokenizer apart", path, error)
    if processor is None or not hasattr(processor, "image_processor"):
        adapter = TransformersAdapter(
            model,
            image_processor=AutoImageProcessor.from_pretrained(path),
            tokenizer=AutoTokenizer.from_pretrained(path),
            name=spec,
            device=device,
        )
    else:
        adapter = TransformersAdapter(model, processor, name=spec, device=device)
    if Path(path).is_dir():
        # A folder's weights files identify it as well as the tensors do, and hashing them is cheaper.
        adapter._fingerprint = _folder_fingerprint(Path(path))
    return adapter


def _folder_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(folder.iterdir()):
        if file.is_file():
            stat = file.stat()
            digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def load_model(spec, *, device: str | None = None, dtype: torch.dtype | None = None) -> DualEncoderAdapter:
    """Load a model for evaluation.

    Args:
        spec: a Hub name or folder of a transformers dual encoder, ``open_clip:ARCH[/PRETRAINED]`` or
            ``open_clip:hf-hub:ORG/NAME`` / ``open_clip:local-dir:FOLDER``, or an already built adapter / transformers model (returned wrapped).
        device (`str`, *optional*): ``cpu``, ``cuda``, ...; default ``cuda`` when available.
        dtype (`torch.dtype`, *optional*): weights dtype for transformers models (for example bf16 on GPU).

    Returns:
        `DualEncoderAdapter`
    """
    if isinstance(spec, DualEncoderAdapter):
        return spec
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(spec, torch.nn.Module):
        raise UserFacingError("wrap an in-memory model yourself: TransformersAdapter(model, processor)")
    spec = str(spec)
    if spec.startswith(OPEN_CLIP_PREFIX):
        return _load_open_clip(spec, device)
    return _load_transformers(spec, device, dtype)

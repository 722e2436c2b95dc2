"""Feature extraction with a cache keyed by model and data, so a second task on the same data is free.

Image embeddings are computed once per (model fingerprint, dataset fingerprint, image column) and kept in
memory and, when a cache folder is given, on disk as safetensors (``<cache>/<model>/<data>.safetensors``).
Text embeddings (class prompts, captions) are cached the same way, keyed by the texts' hash.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


class FeatureCache:
    """Embeddings kept in memory and optionally on disk (safetensors, never pickle).

    Args:
        folder (`str` or `Path`, *optional*): where to persist; None keeps them in memory only.
    """

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder is not None else None
        self._memory: dict[tuple[str, str], torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    def _path(self, model_key: str, data_key: str) -> Path | None:
        return None if self.folder is None else self.folder / model_key / f"{data_key}.safetensors"

    def get(self, model_key: str, data_key: str) -> torch.Tensor | None:
        key = (model_key, data_key)
        if key in self._memory:
            self.hits += 1
            return self._memory[key]
        path = self._path(model_key, data_key)
        if path is not None and path.is_file():
            from safetensors.torch import load_file

            tensor = load_file(str(path))["features"]
            self._memory[key] = tensor
            self.hits += 1
            return tensor
        self.misses += 1
        return None

    def put(self, model_key: str, data_key: str, tensor: torch.Tensor) -> None:
        tensor = tensor.detach().cpu().contiguous()
        self._memory[(model_key, data_key)] = tensor
        path = self._path(model_key, data_key)
        if path is not None:
            from safetensors.torch import save_file

            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            save_file({"features": tensor}, str(tmp))
            tmp.replace(path)


#: The process-wide default cache (memory only) used when a task is given none.
DEFAULT_CACHE = FeatureCache()


def dataset_fingerprint(dataset, column: str) -> str:
    """A key for ``dataset[column]``: the datasets fingerprint (content + transforms) plus size and column."""
    base = getattr(dataset, "_fingerprint", None) or str(id(dataset))
    return hashlib.sha256(f"{base}:{len(dataset)}:{column}".encode()).hexdigest()[:16]


def texts_fingerprint(texts) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def image_features(
    model,
    dataset,
    *,
    column: str = "image",
    batch_size: int = 64,
    cache: FeatureCache | None = None,
    desc: str = "image features",
) -> torch.Tensor:
    """Embeddings (float32, not normalised, on CPU) of every image in ``dataset[column]``.

    Args:
        model (`DualEncoderAdapter`): the model.
        dataset (`datasets.Dataset`): rows with an ``Image`` column.
        column (`str`): the image column.
        batch_size (`int`): images per forward pass.
        cache (`FeatureCache`, *optional*): defaults to the process-wide in-memory cache.
        desc (`str`): progress bar label.
    """
    from tqdm.auto import tqdm

    cache = DEFAULT_CACHE if cache is None else cache
    data_key = "img-" + dataset_fingerprint(dataset, column)
    cached = cache.get(model.fingerprint, data_key)
    if cached is not None:
        logger.debug("%s: %d cached image features", desc, len(cached))
        return cached
    images_only = dataset.select_columns([column])
    chunks = []
    with torch.inference_mode():
        for start in tqdm(range(0, len(dataset), batch_size), desc=desc, unit="batch", leave=False):
            batch = images_only[start : start + batch_size][column]
            chunks.append(model.encode_images(batch).cpu())
    features = torch.cat(chunks) if chunks else torch.empty(0, 0)
    cache.put(model.fingerprint, data_key, features)
    return features


def text_features(model, texts, *, batch_size: int = 256, cache: FeatureCache | None = None) -> torch.Tensor:
    """Embeddings (float32, not normalised, on CPU) of ``texts``, cached by their content."""
    cache = DEFAULT_CACHE if cache is None else cache
    texts = list(texts)
    data_key = "txt-" + texts_fingerprint(texts)
    cached = cache.get(model.fingerprint, data_key)
    if cached is not None:
        return cached
    features = model.encode_texts(texts, batch_size=batch_size).cpu()
    cache.put(model.fingerprint, data_key, features)
    return features


def normalize(features: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(features.float(), dim=-1)

"""Optional near-duplicate search by image embeddings (``quilt publish --dedup_model``), on top of the fingerprint.

Each distinct image is embedded by the vision tower of a CLIP-like model (anything
:func:`quilt_hf.evaluation.adapters.load_model` loads: a transformers ``CLIPModel`` folder or Hub name such as the
QuiltNet checkpoint ``quilt train`` writes, a ``CustomTextCLIPModel``, or ``open_clip:...``), L2-normalised, and
two images whose embeddings have a cosine of at least ``--dedup_embedding_threshold`` are merged, through the
same search as the fingerprints (:func:`quilt_hf.publishing.dedup.near_duplicate_groups`: exact, or a faiss HNSW
graph at release scale). The groups are joined with the fingerprint's (:func:`~quilt_hf.publishing.dedup.combine_groups`).
The vectors are computed during the merge's one pass over the inputs (:class:`StreamingEmbeddings`).

Choosing the threshold: it depends on the model. Embed a few hundred of your images and copies of them made the
way duplicates arise in your sources (re-encoded, resized, cropped, recoloured), and take a threshold between
the lowest copy-to-original cosine and the highest cosine between distinct images; ``bench/bench_quilt1m.py
--dedup_model M`` prints both for a planted set. No threshold separates them when the highest distinct cosine is
above the lowest copy cosine: then the model does not help (see the README's measured figures for the offline
demo model). :data:`DEFAULT_EMBEDDING_THRESHOLD` (0.95) is a starting point for trained CLIP image embeddings,
not a measured optimum: no trained model was available here to measure one, and the offline demo model
separates nothing (its distinct images score up to 0.999).
"""

from __future__ import annotations

import io
import logging

import numpy as np

from quilt_hf.errors import ModelLoadError, UserFacingError

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDING_THRESHOLD = 0.95


class ImageEmbedder:
    """L2-normalised image embeddings from the vision tower of a CLIP-like model.

    Args:
        model (`str`): a folder or Hub name of a dual encoder, or ``open_clip:...`` (see
            :func:`quilt_hf.evaluation.adapters.load_model`).
        batch_size (`int`): images per forward pass.
        device (`str`, *optional*): ``cpu``, ``cuda``, ...; default ``cuda`` when available.
    """

    def __init__(self, model: str, batch_size: int = 32, device: str | None = None):
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self._adapter = None

    def load(self) -> ImageEmbedder:
        """Load the model once; raises :class:`~quilt_hf.errors.ModelLoadError` naming the option and the fix."""
        if self._adapter is None:
            from quilt_hf.evaluation.adapters import load_model

            try:
                self._adapter = load_model(self.model, device=self.device)
            except (UserFacingError, OSError, ValueError, KeyError) as error:
                raise ModelLoadError(
                    "--dedup_model", self.model, str(error).splitlines()[0] if str(error) else type(error).__name__,
                    "give a folder or Hub name of a CLIP-like model (e.g. the output of `quilt train`), or leave "
                    "--dedup_model out",
                ) from error
        return self

    def embed(self, images: list[bytes | None]) -> list[np.ndarray | None]:
        """The embedding of each encoded image (None for a missing or unreadable one), in batches."""
        from PIL import Image

        adapter = self.load()._adapter
        decoded: list = []
        for data in images:
            try:
                with Image.open(io.BytesIO(data)) as image:
                    decoded.append(image.convert("RGB"))
            except Exception:  # None, or bytes PIL cannot read (it raises several kinds)
                decoded.append(None)
        readable = [i for i, image in enumerate(decoded) if image is not None]
        result: list[np.ndarray | None] = [None] * len(images)
        if not readable:
            return result
        features = adapter.encode_images([decoded[i] for i in readable]).float().cpu().numpy()
        features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        for i, vector in zip(readable, features):
            result[i] = vector
        return result


class StreamingEmbeddings:
    """Embeds the distinct images of a one-pass reader as it meets them, a batch at a time: only one batch of
    encoded images is held, and 4 bytes per dimension per image are kept (the vectors the search needs).

    Args:
        embedder (`ImageEmbedder`): the model.
    """

    def __init__(self, embedder: ImageEmbedder):
        from tqdm.auto import tqdm

        self.embedder = embedder
        self._pending: list[bytes] = []
        self._vectors: list[np.ndarray | None] = []
        self._bar = tqdm(desc=f"Embedding images ({embedder.model})", unit=" images", mininterval=5)

    def add(self, data: bytes) -> None:
        """Queue one encoded image (its vector's index is the number of images added before it)."""
        self._pending.append(data)
        if len(self._pending) >= self.embedder.batch_size:
            self._flush()

    def finish(self) -> list[np.ndarray | None]:
        """Every added image's vector (None for an unreadable one), in the order added."""
        self._flush()
        self._bar.close()
        return self._vectors

    def _flush(self) -> None:
        if self._pending:
            self._vectors += [None if v is None else v.astype(np.float32) for v in self.embedder.embed(self._pending)]
            self._bar.update(len(self._pending))
            self._pending = []

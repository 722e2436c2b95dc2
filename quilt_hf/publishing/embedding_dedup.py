"""Optional near-duplicate search by image embeddings (``quilt publish --dedup_model``), on top of the fingerprint.

Each distinct image is embedded by the vision tower of a CLIP-like model (anything
:func:`quilt_hf.evaluation.adapters.load_model` loads: a transformers ``CLIPModel`` folder or Hub name such as the
QuiltNet checkpoint ``quilt train`` writes, a ``CustomTextCLIPModel``, or ``open_clip:...``), L2-normalised, and
two images whose embeddings have a cosine of at least ``--dedup_embedding_threshold`` are merged, through the
same search as the fingerprints (:func:`quilt_hf.publishing.dedup.near_duplicate_groups`: exact, or a faiss HNSW
graph at release scale). The groups are joined with the fingerprint's (:func:`~quilt_hf.publishing.dedup.combine_groups`).

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


def embedding_groups(
    table,
    first_rows: list[int],
    embedder: ImageEmbedder,
    threshold: float = DEFAULT_EMBEDDING_THRESHOLD,
    method: str = "auto",
) -> np.ndarray:
    """Near-duplicate groups of the distinct images of ``table`` by embedding similarity.

    Args:
        table (`pyarrow.Table`): the concatenated pairs table (an ``image`` column).
        first_rows (`list[int]`): for each distinct image, the row that holds it
            (:func:`quilt_hf.publishing.merge.image_keys`).
        embedder (`ImageEmbedder`): the model.
        threshold (`float`): cosine at or above which two images are merged.
        method (`str`): ``auto``, ``exact`` or ``ann`` (:func:`quilt_hf.publishing.similarity.similar_pairs`).

    Returns:
        `np.ndarray`: for each distinct image, the index of its group's first image.
    """
    import pyarrow as pa
    from tqdm.auto import tqdm

    from quilt_hf.publishing.dedup import near_duplicate_groups
    from quilt_hf.publishing.merge import _image_bytes

    vectors: list[np.ndarray | None] = []
    column = table.column("image")
    rows = np.asarray(first_rows, np.int64)
    with tqdm(total=len(rows), desc=f"Embedding images ({embedder.model})", unit=" images", mininterval=5) as bar:
        for start in range(0, len(rows), embedder.batch_size):
            cells = column.take(pa.array(rows[start : start + embedder.batch_size])).to_pylist()
            vectors += embedder.embed([_image_bytes(cell) for cell in cells])
            bar.update(len(cells))
    return near_duplicate_groups(vectors, threshold, method)

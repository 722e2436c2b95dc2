"""Exact and near-duplicate images across sources, and the same test against evaluation images (decontamination).

Exact duplicates share the SHA-1 of their bytes. Near duplicates are found with a perceptual fingerprint: the
image in grayscale, box-averaged to 16x16, minus its mean, scaled to unit length (256 numbers). Two images are
near duplicates when the cosine of their fingerprints is at least ``min_similarity`` (default
:data:`DEFAULT_MIN_SIMILARITY` = 0.85). Subtracting the mean and normalising cancels brightness and contrast
changes, grayscale ignores hue and saturation shifts, and 16x16 averaging ignores re-encoding, resizing and a crop
of a few pixels.

Measured on 300 histology-like 256 px images (tests/factories.py): duplicates made by JPEG re-encoding at q=70,
halving the size, or brightness x1.1 + saturation x0.85 + contrast x1.1 scored >= 0.997; a crop of 2-3 pixels per
side >= 0.93; the most similar pair of distinct images 0.26. A 64-bit DCT perceptual hash (``imagehash.phash``)
separated these worse on histology textures (distinct patches as close as 14 bits, colour-jittered copies as far
as 31 bits), so it is not used. Flat images (no texture: blank slides) have no fingerprint and are merged only
when their bytes are identical.

Search (:mod:`quilt_hf.publishing.similarity`): exact (blocks of fingerprints multiplied together) up to
50,000 distinct images, above that a faiss HNSW graph on the fingerprints' first 32 principal components (each
image's 10 nearest neighbours, kept when their full fingerprints are at or above the threshold: about
``n log n`` instead of ``n * n``; it may miss a pair, never adds one below the threshold; recall against the exact search is measured in ``bench/bench_quilt1m.py``). Pairs become groups
by connected components.

Optional embedding similarity (:mod:`quilt_hf.publishing.embedding_dedup`): images embedded by a CLIP-like
vision tower, pairs at or above a cosine threshold merged on top of the fingerprint's groups
(:func:`combine_groups`).
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterable

import numpy as np

logger = logging.getLogger(__name__)

FINGERPRINT_SIDE = 16
DEFAULT_MIN_SIMILARITY = 0.85
_MIN_STD = 1.0  # grey levels: below this an image is flat


def fingerprint(data: bytes) -> np.ndarray | None:
    """The perceptual fingerprint of encoded image bytes (unit-length float32 vector), or None for a flat or
    unreadable image."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("L", (FINGERPRINT_SIDE * 4, FINGERPRINT_SIDE * 4))  # JPEG: decode at a reduced scale
            gray = image.convert("L").resize((FINGERPRINT_SIDE, FINGERPRINT_SIDE), Image.Resampling.BOX)
    except Exception:  # PIL raises several kinds for a broken file
        return None
    vector = np.asarray(gray, np.float32).ravel()
    vector -= vector.mean()
    norm = float(np.linalg.norm(vector))
    if norm < _MIN_STD * np.sqrt(vector.size):
        return None
    return vector / norm


def content_hash(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


class UnionFind:
    def __init__(self, size: int):
        self.parent = np.arange(size)

    def find(self, item: int) -> int:
        parent = self.parent
        root = item
        while parent[root] != root:
            root = parent[root]
        while parent[item] != root:
            parent[item], item = root, parent[item]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the earliest item stays the representative


def near_duplicate_groups(
    fingerprints: list[np.ndarray | None],
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    method: str = "auto",
) -> np.ndarray:
    """Group images whose fingerprints are at least ``min_similarity`` apart in cosine (transitively).

    Args:
        fingerprints (`list`): one fingerprint per distinct image, None for an image without one (flat or
            unreadable: never a near duplicate).
        min_similarity (`float`): the cosine threshold.
        method (`str`): ``auto``, ``exact`` or ``ann`` (see :func:`quilt_hf.publishing.similarity.similar_pairs`).

    Returns:
        `np.ndarray`: for each image, the index of its group's first image (itself when it has no duplicate).
    """
    from quilt_hf.publishing.similarity import connected_groups, similar_pairs

    size = len(fingerprints)
    have = np.array([i for i, f in enumerate(fingerprints) if f is not None], dtype=np.int64)
    if len(have) < 2:
        return np.arange(size, dtype=np.int64)
    first, second = similar_pairs(np.stack([fingerprints[i] for i in have]), min_similarity, method)
    return connected_groups(size, have[first], have[second])


def combine_groups(*labelings: np.ndarray) -> np.ndarray:
    """Groups that join every given grouping of the same items (each as returned by
    :func:`near_duplicate_groups`: an item's group's first item): two items are in one group when any grouping
    puts them together, transitively."""
    from quilt_hf.publishing.similarity import connected_groups

    size = len(labelings[0])
    members = [np.nonzero(g != np.arange(size))[0] for g in labelings]
    first = np.concatenate(members + [np.zeros(0, np.int64)])
    second = np.concatenate([np.asarray(g)[m] for g, m in zip(labelings, members)] + [np.zeros(0, np.int64)])
    return connected_groups(size, first.astype(np.int64), second.astype(np.int64))


def matches_any(
    fingerprints: list[np.ndarray | None],
    references: Iterable[np.ndarray | None],
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    block: int = 4096,
) -> np.ndarray:
    """Which of ``fingerprints`` is a near duplicate of at least one of ``references`` (boolean mask)."""
    found = np.zeros(len(fingerprints), dtype=bool)
    refs = [r for r in references if r is not None]
    have = np.array([i for i, f in enumerate(fingerprints) if f is not None], dtype=np.int64)
    if not refs or not len(have):
        return found
    reference = np.stack(refs)
    for start in range(0, len(have), block):
        index = have[start : start + block]
        scores = np.stack([fingerprints[i] for i in index]) @ reference.T
        found[index[scores.max(axis=1) >= min_similarity]] = True
    return found

"""Pairs of unit vectors whose cosine is at least a threshold, and the groups they connect.

Two searches, one answer format (arrays ``first, second`` of row indices with ``first < second``):

- exact (:func:`exact_pairs`): blocks of the matrix multiplied together with numpy; quadratic in the number of
  vectors (about 10,000 take seconds, 650,000 would take hours);
- approximate (:func:`ann_pairs`): a faiss ``IndexIVFFlat`` with inner-product metric (k-means coarse lists,
  ``4 * sqrt(n)`` lists trained on at most 40 vectors per list, 10 iterations) and a ``range_search`` of every
  vector at the threshold, ``nprobe`` lists probed per query. The vectors in the lists are stored uncompressed,
  so every score it returns is the exact cosine: the index can miss a pair whose two vectors fall in lists that
  are not probed together, but it never reports a pair below the threshold. Cost grows as ``n * sqrt(n)``.

:func:`similar_pairs` picks: exact up to :data:`EXACT_SEARCH_MAX` vectors, the index above (exact, with a
logged warning, when faiss is not installed). Recall of the index against the exact search is measured by
``bench/bench_quilt1m.py`` (README, "Quilt-1M itself").
"""

from __future__ import annotations

import logging
import math

import numpy as np

logger = logging.getLogger(__name__)

#: At or below this many vectors ``similar_pairs(method="auto")`` searches exactly.
EXACT_SEARCH_MAX = 20_000
#: Coarse lists probed per query by the IVF index (recall against exact: see the bench).
DEFAULT_NPROBE = 32
SEARCH_METHODS = ("auto", "exact", "ann")


def _as_matrix(vectors: np.ndarray) -> np.ndarray:
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {matrix.shape}")
    return matrix


def exact_pairs(vectors: np.ndarray, min_similarity: float, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``(i, j)``, ``i < j``, with ``vectors[i] @ vectors[j] >= min_similarity`` (brute force)."""
    matrix = _as_matrix(vectors)
    firsts, seconds = [], []
    for start in range(0, len(matrix), block):
        scores = matrix[start : start + block] @ matrix[start:].T
        rows, cols = np.nonzero(scores >= min_similarity)
        upper = cols > rows  # the block's own diagonal and below are pairs seen already (or self-pairs)
        firsts.append(rows[upper] + start)
        seconds.append(cols[upper] + start)
    return _concat(firsts), _concat(seconds)


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def ann_pairs(
    vectors: np.ndarray,
    min_similarity: float,
    nprobe: int = DEFAULT_NPROBE,
    batch: int = 8192,
    desc: str = "Near-duplicate search (faiss IVF)",
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)``, ``i < j``, with cosine at least ``min_similarity``, found with a faiss IVF index.

    Args:
        vectors (`np.ndarray`): ``(n, d)`` unit-length rows.
        min_similarity (`float`): the cosine threshold.
        nprobe (`int`): coarse lists probed per query: more finds more pairs, slower.
        batch (`int`): queries per ``range_search`` call (bounds memory; one progress-bar step).
        desc (`str`): the progress bar's label.
    """
    import faiss
    from tqdm.auto import tqdm

    matrix = _as_matrix(vectors)
    size, dim = matrix.shape
    if size < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    lists = max(1, min(int(4 * math.sqrt(size)), size // 39))  # faiss wants >= 39 training vectors per list
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10
    index.cp.seed = 1234
    rng = np.random.default_rng(0)
    train = matrix if size <= 40 * lists else matrix[np.sort(rng.choice(size, 40 * lists, replace=False))]
    index.train(train)
    index.add(matrix)
    index.nprobe = min(nprobe, lists)
    # faiss keeps results strictly above the radius; the exact threshold is applied afterwards.
    radius = float(np.nextafter(np.float32(min_similarity), np.float32(-np.inf)))
    firsts, seconds = [], []
    with tqdm(total=size, desc=desc, unit=" vectors", mininterval=5) as bar:
        for start in range(0, size, batch):
            queries = matrix[start : start + batch]
            limits, scores, ids = index.range_search(queries, radius)
            query = np.repeat(np.arange(start, start + len(queries), dtype=np.int64), np.diff(limits).astype(np.int64))
            keep = (ids > query) & (scores >= min_similarity)
            firsts.append(query[keep])
            seconds.append(ids[keep].astype(np.int64))
            bar.update(len(queries))
    first, second = _concat(firsts), _concat(seconds)
    # A pair found from both ends is kept once (each query sees its own lists; the two may differ).
    lower = np.minimum(first, second)
    upper = np.maximum(first, second)
    unique = np.unique(lower * size + upper)
    return unique // size, unique % size


def similar_pairs(
    vectors: np.ndarray, min_similarity: float, method: str = "auto", nprobe: int = DEFAULT_NPROBE
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows of ``vectors`` (unit length) whose cosine is at least ``min_similarity``.

    Args:
        vectors (`np.ndarray`): ``(n, d)`` unit-length rows.
        min_similarity (`float`): the cosine threshold.
        method (`str`): ``exact``, ``ann`` (faiss IVF index) or ``auto`` (exact up to
            :data:`EXACT_SEARCH_MAX` vectors, the index above).
        nprobe (`int`): lists probed per query by the index.

    Returns:
        `tuple[np.ndarray, np.ndarray]`: ``first, second`` with ``first < second``.
    """
    if method not in SEARCH_METHODS:
        raise ValueError(f"method must be one of {SEARCH_METHODS}, not {method!r}")
    if method == "auto":
        method = "exact" if len(vectors) <= EXACT_SEARCH_MAX else "ann"
    if method == "ann":
        try:
            import faiss  # noqa: F401
        except ImportError:
            logger.warning(
                "faiss is not installed: near-duplicate search of %d images is exact and quadratic (slow at "
                "release scale); pip install faiss-cpu", len(vectors))
            method = "exact"
    if method == "exact":
        return exact_pairs(vectors, min_similarity)
    return ann_pairs(vectors, min_similarity, nprobe=nprobe)


def connected_groups(size: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Connected components of the graph on ``size`` nodes with edges ``first[k] - second[k]``.

    Returns:
        `np.ndarray`: for each node, the smallest node of its component (itself when it has no edge).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nodes = np.arange(size, dtype=np.int64)
    if size == 0 or not len(first):
        return nodes
    graph = coo_matrix((np.ones(len(first), np.int8), (first, second)), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    smallest = np.full(labels.max() + 1, size, dtype=np.int64)
    np.minimum.at(smallest, labels, nodes)
    return smallest[labels]

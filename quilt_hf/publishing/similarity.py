"""Pairs of unit vectors whose cosine is at least a threshold, and the groups they connect.

Two searches, one answer format (arrays ``first, second`` of row indices with ``first < second``):

- exact (:func:`exact_pairs`): blocks of the matrix multiplied together with numpy; quadratic in the number of
  vectors (50,000 take about 10 CPU-seconds, so the release's 650,000 about 30 CPU-minutes);
- approximate (:func:`ann_pairs`): the vectors projected on their first 32 principal components (faiss
  ``PCAMatrix``), a faiss ``IndexHNSWFlat`` graph over the projections (L2, degree 32, build breadth 40, search
  breadth 48), each vector's 10 nearest neighbours as candidates, and each candidate pair kept when its exact
  cosine (on the full vectors) is at or above the threshold. A projection never lengthens a distance, so a true
  pair stays as close in the projection as it was; and as every pair is checked on the full vectors, the search
  can miss a pair but never reports one below the threshold. Cost grows about as ``n log n``; the projection
  made the graph 1.7x cheaper than on the full 256 numbers at 200,000 fingerprints, with the same recall. (An IVF index with a range search was tried
  first: on fingerprints, which have no cluster structure, it needed to probe so many lists for 0.99 recall that
  it was no faster than the exact search at 50,000 and reached only 0.97 at 200,000.)

:func:`similar_pairs` picks: exact up to :data:`EXACT_SEARCH_MAX` vectors, the index above (exact, with a
logged warning, when faiss is not installed). Recall of the index against the exact search is measured by
``bench/bench_quilt1m.py`` (README, "Quilt-1M itself").
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

#: At or below this many vectors ``similar_pairs(method="auto")`` searches exactly.
EXACT_SEARCH_MAX = 50_000  # about where the graph starts to be faster (bench_quilt1m)
#: Nearest neighbours looked up per vector in the HNSW graph (recall against exact: see the bench).
DEFAULT_NEIGHBOURS = 10
#: Principal components the graph is built on (vectors with fewer dimensions are used whole).
PROJECTED_DIM = 32
#: HNSW graph degree and search breadths (faiss ``IndexHNSWFlat``).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 48
SEARCH_METHODS = ("auto", "exact", "ann")


def _as_matrix(vectors: np.ndarray) -> np.ndarray:
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {matrix.shape}")
    return matrix


def exact_pairs(
    vectors: np.ndarray, min_similarity: float, block: int = 2048, column_block: int = 32768
) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``(i, j)``, ``i < j``, with ``vectors[i] @ vectors[j] >= min_similarity`` (brute force, in tiles of
    ``block x column_block`` scores: about 270 MB at the defaults, whatever the number of vectors)."""
    matrix = _as_matrix(vectors)
    firsts, seconds = [], []
    for start in range(0, len(matrix), block):
        rows = matrix[start : start + block]
        for column in range(start, len(matrix), column_block):
            scores = rows @ matrix[column : column + column_block].T
            r, c = np.nonzero(scores >= min_similarity)
            r, c = r + start, c + column
            upper = c > r  # the diagonal tile's lower half and diagonal: pairs seen already, or self-pairs
            firsts.append(r[upper])
            seconds.append(c[upper])
    return _concat(firsts), _concat(seconds)


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


def ann_pairs(
    vectors: np.ndarray,
    min_similarity: float,
    neighbours: int = DEFAULT_NEIGHBOURS,
    batch: int = 8192,
    desc: str = "Near-duplicate search (faiss HNSW)",
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)``, ``i < j``, with cosine at least ``min_similarity``, found with a faiss HNSW graph.

    Each vector's ``neighbours`` nearest in the graph (built on the first :data:`PROJECTED_DIM` principal
    components) are candidates; a candidate pair is kept when its cosine on the full vectors is at or above the
    threshold. A group larger than ``neighbours`` is still joined through its members' own neighbours
    (connected components).

    Args:
        vectors (`np.ndarray`): ``(n, d)`` unit-length rows.
        min_similarity (`float`): the cosine threshold.
        neighbours (`int`): nearest neighbours looked up per vector.
        batch (`int`): vectors added / searched per call (one progress-bar step).
        desc (`str`): the progress bar's label.
    """
    import faiss
    from tqdm.auto import tqdm

    matrix = _as_matrix(vectors)
    size, dim = matrix.shape
    if size < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    points = matrix
    if dim > PROJECTED_DIM and size >= 4 * PROJECTED_DIM:
        pca = faiss.PCAMatrix(dim, PROJECTED_DIM)
        rng = np.random.default_rng(0)
        sample = matrix if size <= 20_000 else matrix[np.sort(rng.choice(size, 20_000, replace=False))]
        pca.train(sample)
        points = pca.apply(matrix)
    index = faiss.IndexHNSWFlat(points.shape[1], HNSW_M, faiss.METRIC_L2)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.hnsw.efSearch = max(HNSW_EF_SEARCH, neighbours)
    k = min(neighbours + 1, size)  # + the vector itself
    firsts, seconds = [], []
    with tqdm(total=2 * size, desc=desc, unit=" vectors", mininterval=5) as bar:
        for start in range(0, size, batch):
            index.add(points[start : start + batch])
            bar.update(min(batch, size - start))
        for start in range(0, size, batch):
            _, ids = index.search(points[start : start + batch], k)
            count = len(ids)
            query = np.repeat(np.arange(start, start + count, dtype=np.int64), k)
            ids = ids.ravel().astype(np.int64)
            candidate = (ids >= 0) & (ids != query)
            query, ids = query[candidate], ids[candidate]
            close = np.einsum("ij,ij->i", matrix[query], matrix[ids]) >= min_similarity  # exact cosine
            firsts.append(np.minimum(query[close], ids[close]))
            seconds.append(np.maximum(query[close], ids[close]))
            bar.update(count)
    first, second = _concat(firsts), _concat(seconds)
    unique = np.unique(first * size + second)  # a pair found from both ends is kept once
    return unique // size, unique % size


def similar_pairs(
    vectors: np.ndarray, min_similarity: float, method: str = "auto", neighbours: int = DEFAULT_NEIGHBOURS
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows of ``vectors`` (unit length) whose cosine is at least ``min_similarity``.

    Args:
        vectors (`np.ndarray`): ``(n, d)`` unit-length rows.
        min_similarity (`float`): the cosine threshold.
        method (`str`): ``exact``, ``ann`` (faiss HNSW graph) or ``auto`` (exact up to
            :data:`EXACT_SEARCH_MAX` vectors, the graph above).
        neighbours (`int`): nearest neighbours looked up per vector by the graph.

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
    return ann_pairs(vectors, min_similarity, neighbours=neighbours)


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

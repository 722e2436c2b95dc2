import logging
import sys

import numpy as np
import pytest

from quilt_hf.publishing import similarity
from quilt_hf.publishing.dedup import combine_groups, near_duplicate_groups
from quilt_hf.publishing.similarity import ann_pairs, connected_groups, exact_pairs, similar_pairs


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _planted_vectors(distinct: int = 6000, copies: int = 300, dim: int = 64, seed: int = 0):
    """Distinct random unit vectors (their largest pairwise cosine is far below 0.85) and noisy copies of some of
    them at cosine 0.87-0.99."""
    rng = np.random.default_rng(seed)
    base = _unit(rng.normal(size=(distinct, dim)))
    source = rng.choice(distinct, copies, replace=False)
    noise = _unit(rng.normal(size=(copies, dim)))
    copy = _unit(base[source] + rng.uniform(0.1, 0.5, (copies, 1)) * noise)
    return np.concatenate([base, copy]), source


def test_ann_finds_the_planted_pairs_the_exact_search_finds_and_nothing_below_the_threshold():
    vectors, source = _planted_vectors()
    exact = set(zip(*(a.tolist() for a in exact_pairs(vectors, 0.85))))
    assert len(exact) >= len(source)  # every planted copy is above the threshold
    first, second = ann_pairs(vectors, 0.85)
    found = set(zip(first.tolist(), second.tolist()))
    assert (first < second).all() and len(found) == len(first), "pairs are ordered and reported once"
    assert found <= exact, "the index scores exactly: it never reports a pair the exact search does not"
    assert len(found) / len(exact) >= 0.98


def test_auto_uses_the_index_above_the_exact_limit(monkeypatch):
    vectors, _ = _planted_vectors(distinct=800, copies=40)
    calls = []
    real = similarity.ann_pairs
    monkeypatch.setattr(similarity, "ann_pairs", lambda *a, **k: calls.append(1) or real(*a, **k))
    small = similar_pairs(vectors, 0.85, "auto")
    assert not calls
    monkeypatch.setattr(similarity, "EXACT_SEARCH_MAX", 100)
    large = similar_pairs(vectors, 0.85, "auto")
    assert calls and set(zip(*map(list, large))) <= set(zip(*map(list, small)))
    with pytest.raises(ValueError):
        similar_pairs(vectors, 0.85, "hnsw")


def test_without_faiss_the_search_is_exact_with_a_warning(monkeypatch, caplog):
    vectors, _ = _planted_vectors(distinct=300, copies=20)
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss raises ImportError
    with caplog.at_level(logging.WARNING, logger="quilt_hf.publishing.similarity"):
        first, second = similar_pairs(vectors, 0.85, "ann")
    assert "faiss is not installed" in caplog.text
    expected = exact_pairs(vectors, 0.85)
    assert np.array_equal(first, expected[0]) and np.array_equal(second, expected[1])


def test_groups_are_connected_components_labelled_by_their_first_member():
    groups = connected_groups(7, np.array([5, 1, 3]), np.array([6, 3, 6]))
    assert groups.tolist() == [0, 1, 2, 1, 4, 1, 1]
    assert combine_groups(np.array([0, 1, 1, 3, 4]), np.array([0, 1, 2, 3, 3])).tolist() == [0, 1, 1, 3, 3]


def test_near_duplicate_groups_agree_between_exact_and_index_search():
    vectors, source = _planted_vectors(distinct=3000, copies=150, dim=256, seed=1)
    fingerprints = list(vectors) + [None]  # a flat image: never grouped
    exact = near_duplicate_groups(fingerprints, method="exact")
    ann = near_duplicate_groups(fingerprints, method="ann")
    assert exact[-1] == len(fingerprints) - 1 and ann[-1] == len(fingerprints) - 1
    copies = np.arange(3000, 3150)
    assert (exact[copies] == source).all()
    assert (ann[copies] == source).mean() >= 0.98
    assert (ann[:3000] == np.arange(3000)).all(), "no distinct vectors merged"


def test_exact_search_in_small_tiles_finds_the_same_pairs():
    vectors, _ = _planted_vectors(distinct=500, copies=40)
    whole = exact_pairs(vectors, 0.85)
    tiled = exact_pairs(vectors, 0.85, block=64, column_block=100)
    assert set(zip(*map(list, whole))) == set(zip(*map(list, tiled))) and len(whole[0]) >= 40

"""Metric references: recall@k on a hand-built similarity matrix, classification metrics by hand."""

import numpy as np
import pytest

from quilt_hf.evaluation.metrics import classification_metrics, recall_at_k, topk_accuracy
from quilt_hf.evaluation.retrieval import group_captions


def test_recall_at_k_hand_built_matrix():
    # 3 images, 5 texts; texts 0,1 -> image 0, text 2 -> image 1, texts 3,4 -> image 2.
    owners = [0, 0, 1, 2, 2]
    sim = np.array(
        [
            #  t0    t1    t2    t3    t4
            [0.90, 0.10, 0.80, 0.00, 0.20],  # image 0: its best caption t0 is ranked 1st
            [0.50, 0.20, 0.30, 0.40, 0.95],  # image 1: its caption t2 (0.30) ranks 4th (behind .95 .5 .4)
            [0.10, 0.30, 0.20, 0.70, 0.60],  # image 2: best caption t3 (0.70) ranks 1st
        ]
    )
    metrics = recall_at_k(sim, owners, ks=(1, 2, 5))
    # text -> image: t0 -> img0 rank1 (0.9 top); t1 -> img0 0.10, beaten by 0.20, 0.30: rank 3;
    # t2 -> img1 0.30, beaten by 0.80: rank 2; t3 -> img2 0.70 top: rank 1; t4 -> img2 0.60, beaten by 0.95: rank 2.
    assert metrics["image_retrieval_recall@1"] == pytest.approx(2 / 5)
    assert metrics["image_retrieval_recall@2"] == pytest.approx(4 / 5)
    assert metrics["image_retrieval_recall@5"] == pytest.approx(1.0)
    # image -> text: img0 rank 1, img1 rank 4, img2 rank 1.
    assert metrics["text_retrieval_recall@1"] == pytest.approx(2 / 3)
    assert metrics["text_retrieval_recall@2"] == pytest.approx(2 / 3)
    assert metrics["text_retrieval_recall@5"] == pytest.approx(1.0)


def test_recall_ties_count_against_the_model():
    sim = np.zeros((2, 2))
    metrics = recall_at_k(sim, [0, 1], ks=(1,))
    assert metrics["image_retrieval_recall@1"] == 1.0  # no strictly better score: rank 1
    sim = np.array([[0.5, 0.9], [0.9, 0.5]])
    metrics = recall_at_k(sim, [0, 1], ks=(1, 2))
    assert metrics["image_retrieval_recall@1"] == 0.0
    assert metrics["text_retrieval_recall@2"] == 1.0


def test_group_captions_by_image_id():
    from datasets import Dataset

    data = Dataset.from_dict(
        {"image_id": ["a", "a", "b", "c", "b"], "caption": ["1", "2", "3", "4", "5"], "image": [None] * 5}
    )
    rows, captions, owners = group_captions(data, "image", "caption", "image_id")
    assert rows == [0, 2, 3]
    assert captions == ["1", "2", "3", "4", "5"]
    assert owners == [0, 0, 1, 2, 1]


def test_classification_metrics_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2])
    scores = np.array([[3, 1, 0], [0, 2, 1], [5, 0, 0], [0, 4, 1], [0, 1, 2], [0, 0, 1]], dtype=float)
    m = classification_metrics(scores, labels, ["a", "b", "c"])
    assert m["acc1"] == pytest.approx(4 / 6)
    assert m["per_class_recall"] == {"a": pytest.approx(2 / 3), "b": pytest.approx(1 / 2), "c": 1.0}
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert "acc5" not in m
    assert topk_accuracy(scores, labels, 2) == pytest.approx(5 / 6)


def test_retrieval_never_falls_back_to_the_training_split():
    import pytest

    from quilt_hf.errors import UserFacingError
    from quilt_hf.evaluation.cli import _retrieval_split

    assert _retrieval_split("test", ["train", "validation"]) == "validation"
    assert _retrieval_split("test", ["train"]) == "train"  # the only split there is
    assert _retrieval_split("validation", ["train", "validation", "test"]) == "validation"
    with pytest.raises(UserFacingError):
        _retrieval_split("test", ["train", "extra"])

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
    metrics = recall_at_k(sim, owners, ks=(1, 2, 3))
    # text -> image: t0 -> img0 rank1 (0.9 top); t1 -> img0 0.10, beaten by 0.20, 0.30: rank 3;
    # t2 -> img1 0.30, beaten by 0.80: rank 2; t3 -> img2 0.70 top: rank 1; t4 -> img2 0.60, beaten by 0.95: rank 2.
    assert metrics["image_retrieval_recall@1"] == pytest.approx(2 / 5)
    assert metrics["image_retrieval_recall@2"] == pytest.approx(4 / 5)
    assert metrics["image_retrieval_recall@3"] == pytest.approx(1.0)
    # image -> text: img0 rank 1, img1 rank 4, img2 rank 1.
    assert metrics["text_retrieval_recall@1"] == pytest.approx(2 / 3)
    assert metrics["text_retrieval_recall@2"] == pytest.approx(2 / 3)
    assert metrics["text_retrieval_recall@3"] == pytest.approx(2 / 3)  # image 1's caption is 4th


def test_recall_ties_count_against_the_model():
    # Two identical images with one caption each: every score ties, so neither right item is ranked first.
    sim = np.zeros((2, 2))
    metrics = recall_at_k(sim, [0, 1], ks=(1, 2))
    assert metrics["image_retrieval_recall@1"] == 0.0
    assert metrics["text_retrieval_recall@1"] == 0.0
    assert metrics["image_retrieval_recall@2"] == 1.0
    assert metrics["text_retrieval_recall@2"] == 1.0
    # One tie in a column: text 0's image (0.5) ties image 1 (0.5), text 1 is alone at the top.
    sim = np.array([[0.5, 0.1], [0.5, 0.9]])
    metrics = recall_at_k(sim, [0, 1], ks=(1,))
    assert metrics["image_retrieval_recall@1"] == 0.5
    # Image 0's best caption (0.5) ties no other text of row 0; image 1's (0.9) beats 0.5: both rank first.
    assert metrics["text_retrieval_recall@1"] == 1.0
    sim = np.array([[0.5, 0.9], [0.9, 0.5]])
    metrics = recall_at_k(sim, [0, 1], ks=(1, 2))
    assert metrics["image_retrieval_recall@1"] == 0.0
    assert metrics["text_retrieval_recall@2"] == 1.0


def test_recall_counts_images_without_caption_as_misses():
    # 3 images, image 2 has no caption; both captions are found first by their images.
    sim = np.array([[0.9, 0.1], [0.2, 0.8], [0.0, 0.0]])
    metrics = recall_at_k(sim, [0, 1], ks=(1, 2))
    assert metrics["text_retrieval_recall@1"] == pytest.approx(2 / 3)
    assert metrics["text_retrieval_recall@2"] == pytest.approx(2 / 3)  # still a miss when k = every text
    assert metrics["image_retrieval_recall@1"] == 1.0


def test_recall_refuses_k_larger_than_the_gallery():
    from quilt_hf.evaluation.metrics import usable_ks

    sim = np.eye(3)
    with pytest.raises(ValueError, match="gallery"):
        recall_at_k(sim, [0, 1, 2], ks=(1, 5))
    assert usable_ks((1, 5, 10), num_images=3, num_texts=6) == [1]
    assert usable_ks((1, 5, 10), num_images=30, num_texts=60) == [1, 5, 10]


def test_retrieval_recall_in_training_leaves_out_large_k():
    from quilt_hf.training.metrics import retrieval_recall

    embeds = np.eye(4)
    metrics = retrieval_recall(embeds, embeds, ks=(1, 5))
    assert metrics["mean_recall@1"] == 1.0
    assert "mean_recall@5" not in metrics


def test_topk_accuracy_and_confusion_share_the_tie_rule():
    # Row 0: true class 0 ties class 1 at the top -> wrong. Row 1: true class 1 ties class 0 -> wrong.
    # Row 2: true class 2 alone at the top -> right. Row 3: constant scores -> wrong.
    scores = np.array([[1.0, 1.0, 0.0], [2.0, 2.0, 0.0], [0.0, 0.0, 3.0], [0.5, 0.5, 0.5]])
    labels = np.array([0, 1, 2, 0])
    m = classification_metrics(scores, labels, ["a", "b", "c"])
    matrix = np.array(m["confusion_matrix"])
    assert m["acc1"] == pytest.approx(1 / 4)
    assert m["acc1"] == pytest.approx(np.trace(matrix) / len(labels))
    assert matrix.tolist() == [[0, 2, 0], [1, 0, 0], [0, 0, 1]]
    assert m["per_class_recall"] == {"a": 0.0, "b": 0.0, "c": 1.0}
    # Top-2: row 3 has two other classes at least as high -> still wrong; rows 0, 1 have one -> right.
    assert topk_accuracy(scores, labels, 2) == pytest.approx(3 / 4)
    assert topk_accuracy(scores, labels, 3) == 1.0


def test_group_captions_by_image_id():
    from datasets import Dataset

    data = Dataset.from_dict(
        {"image_id": ["a", "a", "b", "c", "b"], "caption": ["1", "2", "3", "4", "5"], "image": [None] * 5}
    )
    rows, captions, owners = group_captions(data, "image", "caption", "image_id")
    assert rows == [0, 2, 3]
    assert captions == ["1", "2", "3", "4", "5"]
    assert owners == [0, 0, 1, 2, 1]


def test_group_captions_keeps_images_with_blank_captions():
    from datasets import Dataset

    data = Dataset.from_dict({"caption": [["x", ""], [], ["  "], ["y"]], "image": [None] * 4})
    rows, captions, owners = group_captions(data, "image", "caption", None)
    assert rows == [0, 1, 2, 3]
    assert captions == ["x", "y"]
    assert owners == [0, 3]


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


def test_nan_scores_count_against_the_model():
    """A model whose outputs went NaN must not score perfectly (every comparison with NaN is False)."""
    import numpy as np

    from quilt_hf.evaluation.metrics import predictions_ties_against, recall_at_k, topk_accuracy

    nan_scores = np.full((4, 3), np.nan)
    labels = np.array([0, 1, 2, 0])
    assert topk_accuracy(nan_scores, labels, 1) == 0.0
    assert (predictions_ties_against(nan_scores, labels) != labels).all()
    recall = recall_at_k(np.full((3, 3), np.nan), [0, 1, 2], ks=(1,))
    assert recall == {"image_retrieval_recall@1": 0.0, "text_retrieval_recall@1": 0.0}
    finite = np.array([[2.0, 1.0, np.nan], [0.0, 3.0, 1.0]])  # a NaN competitor beats the true class
    assert topk_accuracy(finite, np.array([0, 1]), 1) == 0.5

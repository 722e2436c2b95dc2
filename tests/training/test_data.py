"""Pair loading and splitting, the on-the-fly image pipeline and the collator, retrieval recall."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from quilt_hf.errors import UserFacingError
from quilt_hf.training.data import (
    GROUP_LABEL,
    ImageTextCollator,
    ImageTransform,
    check_columns,
    load_pairs,
    train_eval_split,
)
from quilt_hf.training.metrics import retrieval_recall


def test_split_holds_out_whole_videos(color_pairs):
    train, held_out = train_eval_split(color_pairs, eval_fraction=0.25, group_column="video_id")
    assert len(train) + len(held_out) == len(color_pairs)
    assert set(train["video_id"]).isdisjoint(held_out["video_id"])
    assert len(set(held_out["video_id"])) == 1  # 25% of 4 videos
    again = train_eval_split(color_pairs, eval_fraction=0.25, group_column="video_id")[1]
    assert again["image_id"] == held_out["image_id"]


def test_split_prefers_existing_splits(color_pairs, tmp_path):
    from datasets import DatasetDict

    with_column = color_pairs.add_column(
        "split", ["validation" if i < 3 else "train" for i in range(len(color_pairs))]
    )
    train, held_out = train_eval_split(with_column, eval_fraction=0.5)
    assert (len(train), len(held_out)) == (9, 3)
    DatasetDict({"train": color_pairs, "validation": color_pairs.select(range(2))}).save_to_disk(tmp_path / "dd")
    train, held_out = train_eval_split(load_pairs(str(tmp_path / "dd")))
    assert (len(train), len(held_out)) == (12, 2)
    assert train_eval_split(color_pairs, eval_fraction=0)[1] is None


def test_training_never_evaluates_on_the_test_split(color_pairs, tmp_path, caplog):
    from datasets import DatasetDict

    test_rows = color_pairs.select(range(3))
    # A split column with train and test only: the test rows are left out, validation is carved from train.
    with_column = color_pairs.add_column("split", ["test" if i < 3 else "train" for i in range(len(color_pairs))])
    with caplog.at_level("WARNING"):
        train, held_out = train_eval_split(with_column, eval_fraction=0.34, group_column="video_id")
    assert "test split is not used during training" in caplog.text
    assert len(train) + len(held_out) == 9
    assert set(held_out["image_id"]).isdisjoint(test_rows["image_id"])
    assert set(train["image_id"]).isdisjoint(test_rows["image_id"])
    assert set(train["video_id"]).isdisjoint(held_out["video_id"])
    # A DatasetDict with train and test only: the same, and eval_fraction 0 means no evaluation at all.
    splits = DatasetDict({"train": color_pairs.select(range(3, 12)), "test": test_rows})
    train, held_out = train_eval_split(splits, eval_fraction=0.34, group_column="video_id")
    assert len(train) + len(held_out) == 9 and set(held_out["image_id"]).isdisjoint(test_rows["image_id"])
    assert train_eval_split(splits, eval_fraction=0)[1] is None


def test_missing_inputs_fail_with_what_to_do(color_pairs, tmp_path):
    with pytest.raises(UserFacingError, match="does not exist"):
        load_pairs(str(tmp_path / "nothing"))
    with pytest.raises(UserFacingError, match="--caption_column"):
        check_columns(color_pairs, ["image", "medical_text"])


def test_transform_sizes_normalises_and_augments_reproducibly():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    plain = ImageTransform(size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    out = plain(image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert -1.0 <= out.min() and out.max() <= 1.0
    augmenting = ImageTransform(size=32, augmentation="histology")
    first = augmenting(image, torch.Generator().manual_seed(1))
    assert torch.equal(first, augmenting(image, torch.Generator().manual_seed(1)))
    assert not all(torch.equal(first, augmenting(image, torch.Generator().manual_seed(s))) for s in range(2, 6))


def test_collator_batches_rows_and_reseeds_each_epoch(color_pairs, clip_tokenizer_dir):
    from transformers import CLIPTokenizer

    collator = ImageTextCollator(
        tokenizer=CLIPTokenizer.from_pretrained(clip_tokenizer_dir),
        transform=ImageTransform(size=32, augmentation="random_resized_crop"),
        max_length=77,
    )
    rows = [color_pairs[i] for i in range(4)]
    batch = collator(rows)
    assert batch["pixel_values"].shape == (4, 3, 32, 32)
    assert batch["input_ids"].shape[0] == 4 and batch["attention_mask"].shape == batch["input_ids"].shape
    assert batch[GROUP_LABEL].dtype == torch.long and len(set(batch[GROUP_LABEL].tolist())) == 4
    assert torch.equal(collator(rows)["pixel_values"], batch["pixel_values"])  # same epoch, same crops
    collator.epoch = 1
    assert not torch.equal(collator(rows)["pixel_values"], batch["pixel_values"])


def test_collator_pads_to_max_length_when_asked(color_pairs, clip_tokenizer_dir):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(clip_tokenizer_dir)
    rows = [color_pairs[i] for i in range(2)]
    transform = ImageTransform(size=32)
    longest = ImageTextCollator(tokenizer=tokenizer, transform=transform, max_length=77)(rows)
    fixed = ImageTextCollator(tokenizer=tokenizer, transform=transform, max_length=77, padding="max_length")(rows)
    assert longest["input_ids"].shape[1] < 77 and fixed["input_ids"].shape == (2, 77)


def test_retrieval_recall_counts_shared_images_as_matches():
    image = torch.eye(4)
    text = torch.eye(4)[[1, 0, 2, 3]]  # texts of rows 0 and 1 swapped
    assert retrieval_recall(image, text, ks=(1,))["mean_recall@1"] == pytest.approx(0.5)
    # rows 0 and 1 show the same image (and their captions say the same): without groups every score of theirs
    # ties, which counts against the model; with the groups they are one image with two captions.
    image = torch.eye(4)[[0, 0, 2, 3]]
    text = image.clone()
    assert retrieval_recall(image, text, ks=(1,))["mean_recall@1"] == pytest.approx(0.5)
    groups = torch.tensor([7, 7, 8, 9])
    recall = retrieval_recall(image, text, groups, ks=(1, 3, 5))
    assert recall["text_retrieval_recall@1"] == recall["image_retrieval_recall@1"] == 1.0
    assert recall["mean_recall@3"] == 1.0
    assert "mean_recall@5" not in recall  # 3 distinct images: k = 5 would rank everything

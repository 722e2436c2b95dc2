"""Reviewer flags: stored beside the dataset as JSON lines; `quilt publish --drop_flagged` drops and counts them."""

from __future__ import annotations

import json
import logging

import pytest

from quilt_hf.errors import UserFacingError
from quilt_hf.flags import add_flag, default_flags_path, drop_flagged, flagged_keys, load_flags, pair_key


def _pairs(n: int = 6):
    """A pairs table in the published schema, with distinct images (identical ones would be merged)."""
    import zlib

    from datasets import Dataset
    from factories import histology_like_image
    from PIL import Image

    from quilt_hf.schema import PAIR_FEATURES, empty_row

    rows = []
    for i in range(n):
        row = empty_row(PAIR_FEATURES)
        row.update(video_id=f"v{i % 3}", image_id=f"v{i % 3}_0_{i}", caption=f"caption {i}")
        row["image"] = Image.fromarray(histology_like_image(zlib.crc32(f"flags:{i}".encode()), (12, 10)))
        rows.append(row)
    return Dataset.from_list(rows, features=PAIR_FEATURES)


def test_flags_append_as_json_lines_and_read_back(tmp_path):
    path = tmp_path / "sub" / "d.flags.jsonl"
    add_flag(path, image_id="a", caption="x", reason="duplicate", note=" same as b ", reviewer="r")
    add_flag(path, image_id="b", caption="y", reason="offensive_phi")
    with open(path, "a") as handle:
        handle.write('{"pair_key": "torn')  # an interrupted write
    flags = load_flags(path)
    assert [f["reason"] for f in flags] == ["duplicate", "offensive_phi"]
    assert flags[0]["note"] == "same as b" and flags[0]["pair_key"] == pair_key("a", "x")
    assert json.loads(path.read_text().splitlines()[0])["image_id"] == "a"
    assert flagged_keys([path, tmp_path / "missing.jsonl"]) == {pair_key("a", "x"), pair_key("b", "y")}


def test_unknown_reason_is_refused(tmp_path):
    with pytest.raises(UserFacingError, match="unknown flag reason"):
        add_flag(tmp_path / "f.jsonl", image_id="a", caption="x", reason="ugly")
    assert not (tmp_path / "f.jsonl").exists()


def test_pair_key_depends_on_image_and_caption():
    assert pair_key("a", "x") != pair_key("a", "y") != pair_key("b", "y")
    assert default_flags_path("out/dataset/") == default_flags_path("out/dataset")
    assert str(default_flags_path("out/dataset")).endswith("dataset.flags.jsonl")


def test_drop_flagged_keeps_the_rest():
    pairs = _pairs()
    kept, dropped = drop_flagged(pairs, {pair_key("v1_0_1", "caption 1"), pair_key("v2_0_5", "caption 5")})
    assert dropped == 2 and kept["image_id"] == ["v0_0_0", "v2_0_2", "v0_0_3", "v1_0_4"]
    same, none = drop_flagged(pairs, set())
    assert none == 0 and len(same) == 6


def test_publish_drop_flagged_counts_and_leaves_flagged_pairs_out(tmp_path, caplog):
    from datasets import load_dataset

    from quilt_hf.publish import PublishConfig, run_publish

    source = tmp_path / "pairs"
    _pairs().save_to_disk(str(source))
    add_flag(default_flags_path(tmp_path / "dataset"), image_id="v1_0_4", caption="caption 4", reason="wrong_text")
    add_flag(default_flags_path(source), image_id="v0_0_0", caption="caption 0", reason="not_histology")
    with caplog.at_level(logging.INFO, logger="quilt_hf.publishing.publish"):
        folder = run_publish(PublishConfig(dataset=str(source), output=str(tmp_path / "dataset"), val_fraction=0.0,
                                           drop_flagged=True))
    published = load_dataset(str(folder), split="train")
    assert sorted(published["image_id"]) == ["v0_0_3", "v1_0_1", "v2_0_2", "v2_0_5"]
    assert "dropped 2 flagged pair(s)" in caplog.text
    assert load_flags(default_flags_path(source))  # the flags file is left in place

    # Without the option nothing is dropped.
    folder = run_publish(PublishConfig(dataset=str(source), output=str(tmp_path / "all"), val_fraction=0.0))
    assert len(load_dataset(str(folder), split="train")) == 6

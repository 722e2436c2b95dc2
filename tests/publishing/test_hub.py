import zlib

from datasets import Dataset, load_dataset
from factories import histology_like_image
from PIL import Image

from quilt_hf.publishing.hub import write_hub_folder
from quilt_hf.publishing.publish import PublishConfig, run_publish, split_by_video
from quilt_hf.schema import PAIR_FEATURES, empty_row


def _pairs(videos=("v1", "v2", "v3", "v4"), per_video=3) -> Dataset:
    rows = []
    for v in videos:
        for k in range(per_video):
            row = empty_row(PAIR_FEATURES)
            row.update(video_id=v, chunk_id=k, caption=f"{v} caption {k}", pathology=["Breast"], magnification=2)
            # Distinct images: identical ones would (rightly) be merged and tie their videos to one split.
            row["image"] = Image.fromarray(histology_like_image(zlib.crc32(f"{v}:{k}".encode()), (12, 10)))
            rows.append(row)
    return Dataset.from_list(rows, features=PAIR_FEATURES)


def test_hub_folder_round_trips_through_load_dataset(tmp_path):
    folder = write_hub_folder({"train": _pairs()}, tmp_path / "hub")
    assert (folder / "README.md").read_text().startswith("---")
    assert sorted(p.name for p in (folder / "data").iterdir()) == ["train-00000-of-00001.parquet"]
    loaded = load_dataset(str(folder), split="train")
    assert loaded.features == PAIR_FEATURES
    assert loaded[4]["caption"] == "v2 caption 1"
    assert loaded[4]["image"].size == (10, 12)  # images are embedded, not paths
    assert not list(tmp_path.glob(".hub.*")), "no staging folder left behind"


def test_split_by_video_never_shares_a_video_between_splits():
    splits = split_by_video(_pairs(videos=[f"video{i}" for i in range(20)]), val_fraction=0.2, test_fraction=0.1)
    seen = {}
    for name, part in splits.items():
        assert set(part["split"]) == {name}
        for video in set(part["video_id"]):
            assert seen.setdefault(video, name) == name
    assert sum(len(p) for p in splits.values()) == 60
    assert "validation" in splits


def test_publish_command_writes_loadable_splits(tmp_path):
    _pairs().save_to_disk(str(tmp_path / "pairs"))
    folder = run_publish(PublishConfig(dataset=str(tmp_path / "pairs"), output=str(tmp_path / "out")))
    dataset = load_dataset(str(folder))
    assert set(dataset) == {"train", "validation"}
    assert sum(len(part) for part in dataset.values()) == 12
    # Rows without subset/provenance (these test rows) take the input's name: "<run>" of "<run>/pairs".
    assert set(dataset["train"]["provenance"]) == set(dataset["train"]["subset"]) == {tmp_path.name}


def test_overwrite_never_replaces_a_folder_that_is_not_a_hub_dataset(tmp_path):
    import pytest

    from quilt_hf.errors import UserFacingError

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(UserFacingError, match="refusing"):
        write_hub_folder({"train": _pairs()}, precious, overwrite=True)
    assert (precious / "thesis.tex").read_text() == "years of work"
    folder = write_hub_folder({"train": _pairs()}, tmp_path / "hub")
    write_hub_folder({"train": _pairs(videos=("v9",))}, folder, overwrite=True)  # a Hub folder is replaced
    import pyarrow.parquet as pq

    # Read the shard itself: load_dataset's cache may key a same-second rewrite to the old files.
    assert set(pq.read_table(folder / "data" / "train-00000-of-00001.parquet")["video_id"].to_pylist()) == {"v9"}


def test_publish_refuses_an_empty_pairs_table(tmp_path):
    import pytest

    from quilt_hf.errors import UserFacingError

    _pairs().filter(lambda row: False).save_to_disk(str(tmp_path / "pairs"))
    with pytest.raises(UserFacingError, match="no pairs"):
        run_publish(PublishConfig(dataset=str(tmp_path / "pairs"), output=str(tmp_path / "out")))


def test_publish_embeds_images_that_a_pairs_table_holds_as_paths(tmp_path):
    rows = []
    for k in range(4):
        path = tmp_path / f"frame{k}.png"
        Image.fromarray(histology_like_image(k, (12, 10))).save(path)
        row = empty_row(PAIR_FEATURES)
        row.update(video_id=f"v{k}", caption=f"caption {k}", image=str(path))
        rows.append(row)
    Dataset.from_list(rows, features=PAIR_FEATURES).save_to_disk(str(tmp_path / "run" / "pairs"))
    for k in range(4):
        (tmp_path / f"frame{k}.png").unlink()  # the published folder must not need the originals
    folder = run_publish(PublishConfig(dataset=str(tmp_path / "run" / "pairs"), output=str(tmp_path / "out")))
    loaded = [r for split in load_dataset(str(folder)).values() for r in split]
    assert sorted(r["caption"] for r in loaded) == [f"caption {k}" for k in range(4)]
    assert all(r["image"].size == (10, 12) for r in loaded)


def test_shard_set_writer_bounds_its_buffers_and_keeps_every_row(tmp_path, monkeypatch):
    """Rows for many (part, split) pairs arrive interleaved: buffers stay under the cap, shards get -of-N names,
    and every row is written once."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Features, Value

    from quilt_hf.publishing.hub import ShardSetWriter

    features = Features({"caption": Value("string"), "n": Value("int64")})
    writer = ShardSetWriter(tmp_path / "data", features, max_shard_bytes=40_000)
    monkeypatch.setattr(ShardSetWriter, "MAX_BUFFERED_BYTES", 50_000)
    peak = 0
    for batch in range(20):
        for part in range(12):
            rows = range(batch * 1000 + part * 50, batch * 1000 + part * 50 + 50)
            table = pa.Table.from_pydict({"caption": [f"caption {i} " * 3 for i in rows], "n": list(rows)},
                                         schema=features.arrow_schema)
            writer.write(f"p{part % 6}", ("train", "test")[part % 2], table)
            peak = max(peak, sum(writer._buffered_bytes.values()))
    written = writer.close()
    assert peak <= 50_000
    assert sum(written.values()) == 20 * 12 * 50
    numbers = []
    for shard in sorted((tmp_path / "data").rglob("*.parquet")):
        assert "-of-" in shard.name
        numbers += pq.read_table(shard).column("n").to_pylist()
    assert sorted(numbers) == [b * 1000 + p * 50 + i for b in range(20) for p in range(12) for i in range(50)]
    assert not list((tmp_path / "data").rglob("*.partial"))
    assert len(list((tmp_path / "data" / "p0").glob("train-*.parquet"))) > 1  # shards rolled at max_shard_bytes


def test_shard_set_writer_abort_closes_its_open_shards(tmp_path, monkeypatch):
    """A failed publish aborts the writer: every open Parquet writer is closed (its file complete and its
    handle released) and nothing buffered is written."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Features, Value

    from quilt_hf.publishing.hub import ShardSetWriter

    features = Features({"caption": Value("string"), "n": Value("int64")})
    writer = ShardSetWriter(tmp_path / "data", features, max_shard_bytes=10_000_000)
    monkeypatch.setattr(ShardSetWriter, "MAX_BUFFERED_BYTES", 1)  # every write flushes to an open shard
    writer.write("p", "train", pa.Table.from_pydict({"caption": ["a", "b"], "n": [1, 2]}, schema=features.arrow_schema))
    assert writer._writers  # a shard is open
    writer.abort()
    assert writer._writers == {} and writer._buffers == {}
    (partial,) = (tmp_path / "data").rglob("*.partial")
    assert pq.read_table(partial).column("n").to_pylist() == [1, 2]  # closed: the footer is written

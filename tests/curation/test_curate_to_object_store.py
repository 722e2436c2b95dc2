"""`quilt curate --output s3://...` on a local S3 server (moto, real HTTP): the tables a folder output gives,
readable by `quilt train`'s loader, with either runner."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from _curation_helpers import FakeTranscriber
from s3_server import local_s3
from test_ray_runner import RAY, curate, write_lectures

from quilt_hf import atomic, object_store
from quilt_hf.curation.pipeline import SHARED_LEFTOVER_AGE_S
from quilt_hf.errors import UserFacingError
from quilt_hf.training.data import load_pairs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bucket():
    with local_s3() as url:
        yield url


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return write_lectures(tmp_path_factory.mktemp("videos"), 2)


@pytest.fixture(scope="module")
def local(videos, tmp_path_factory):
    """The folder output of the local runner: the reference."""
    output = tmp_path_factory.mktemp("local")
    stats = curate(videos, output, FakeTranscriber())
    pairs = load_pairs(str(output / "pairs"))
    assert load_pairs(f"file://{output / 'pairs'}").to_list() == pairs.to_list()  # a folder given as a URL
    return stats, pairs


def _same_tables(url: str, stats: dict, local) -> None:
    local_stats, local_pairs = local
    for key in ("videos", "videos_kept", "dropped", "chunks", "images", "pairs", "computed"):
        assert stats[key] == local_stats[key], key
    assert stats["pairs"] >= 4
    pairs = load_pairs(f"{url}/pairs")  # `quilt train --dataset s3://.../pairs` reads it the same way
    assert pairs.remove_columns(["image"]).to_list() == local_pairs.remove_columns(["image"]).to_list()
    assert all(np.array_equal(np.asarray(x["image"]), np.asarray(y["image"])) for x, y in zip(pairs, local_pairs))
    fs, root = object_store.filesystem(url)
    fs.invalidate_cache()
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)) == [object_store.POINTER, "sets"]
    current = object_store.filesystem(object_store.current_set(url))[1]
    assert json.loads(fs.cat_file(f"{current}/stats.json"))["pairs"] == local_stats["pairs"]
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(current, detail=False)) == [
        "chunks", object_store.COMMITTED, "pairs", "stats.json", "videos"]


def test_quilt_curate_to_s3_gives_the_folder_output_s_tables(bucket, videos, local, tmp_path):
    with pytest.raises(UserFacingError, match="--cache_dir"):
        curate(videos, f"{bucket}/curated", FakeTranscriber())
    with pytest.raises(UserFacingError, match="no table there"):
        load_pairs(f"{bucket}/curated/pairs")  # nothing committed yet
    stats = curate(videos, f"{bucket}/curated", FakeTranscriber(), cache_dir=str(tmp_path / "cache"))
    _same_tables(f"{bucket}/curated", stats, local)
    assert not list((tmp_path / "cache").glob(f"{atomic._STAGING}*")), "the local staging of the upload is removed"
    # `quilt publish --dataset s3://.../pairs` copies the current set's table down, then publishes it
    from quilt_hf.publishing.publish import PublishConfig, run_publish

    hub = run_publish(PublishConfig(dataset=[f"{bucket}/curated/pairs"], output=str(tmp_path / "publish" / "hub")))
    merge = json.loads((hub / "stats.json").read_text())["merge"]
    assert merge["rows_in"] == {"curated": stats["pairs"]}, merge  # the input is named after the output
    assert (hub / "data" / "quilt").is_dir()  # the rows keep their subset
    assert [p.name for p in (tmp_path / "publish").iterdir()] == ["hub"], "the download is removed"
    with pytest.raises(UserFacingError, match="exists; choose another output"):  # refused before any download
        run_publish(PublishConfig(dataset=[f"{bucket}/curated/pairs"], output=str(hub)))
    with pytest.raises(UserFacingError, match=r"is a `quilt curate` output: give its table, .*/curated/pairs"):
        run_publish(PublishConfig(dataset=[f"{bucket}/curated"], output=str(tmp_path / "publish" / "other")))
    with pytest.raises(UserFacingError, match="no table there"):
        run_publish(PublishConfig(dataset=[f"{bucket}/nothing/pairs"], output=str(tmp_path / "publish" / "other")))
    fs, root = object_store.filesystem(f"{bucket}/junk/pairs")
    fs.pipe_file(f"{root}/readme.txt", b"not a table")
    with pytest.raises(UserFacingError, match=r"junk/pairs \(copied to a temporary folder\): .*not a pairs table"):
        run_publish(PublishConfig(dataset=[f"{bucket}/junk/pairs"], output=str(tmp_path / "publish" / "other")))
    assert [p.name for p in (tmp_path / "publish").iterdir()] == ["hub"], "no download left after the refusals"
    # a rerun commits a new set from the cache (nothing computed again) and removes what a killed run left there
    # long ago, but not what another run sharing the cache may be writing now
    for leftover in (".tmp-ray-123-456/outputs", ".staging-123-abc/pairs", ".tmp-ray-789-999/outputs",
                     "asr/.tmp-old-entry", "asr/.tmp-live-entry"):
        (tmp_path / "cache" / leftover).mkdir(parents=True)
    hours_ago = time.time() - 2 * SHARED_LEFTOVER_AGE_S
    for old in (".tmp-ray-123-456", ".tmp-ray-123-456/outputs", ".staging-123-abc", ".staging-123-abc/pairs",
                "asr/.tmp-old-entry"):
        os.utime(tmp_path / "cache" / old, (hours_ago, hours_ago))
    first_set = object_store.current_set(f"{bucket}/curated")
    again = curate(videos, f"{bucket}/curated", FakeTranscriber(), cache_dir=str(tmp_path / "cache"))
    assert again["pairs"] == stats["pairs"] and not again["computed"].get("asr")
    assert object_store.current_set(f"{bucket}/curated") != first_set
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith((".tmp-", ".staging-"))] == [
        ".tmp-ray-789-999"]
    assert [p.name for p in (tmp_path / "cache" / "asr").glob(".tmp-*")] == [".tmp-live-entry"]


def test_the_ray_runner_writes_the_same_tables_to_s3(bucket, videos, local, tmp_path):
    ray = pytest.importorskip("ray", reason="the optional ray extra is not installed")
    try:
        stats = curate(videos, f"{bucket}/ray", FakeTranscriber(), cache_dir=str(tmp_path / "cache"), **RAY)
    finally:
        ray.shutdown()
    _same_tables(f"{bucket}/ray", stats, local)
    leftovers = [p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith((".tmp-", ".staging-"))]
    assert not leftovers, "the Ray shards (in the cache's folder) and the upload's staging are removed"

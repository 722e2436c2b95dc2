"""quilt_hf.object_store on a local S3 server (moto, real HTTP): a set replaced whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from s3_server import local_s3
from test_atomic import Crash, crash_at

from quilt_hf import atomic, object_store
from quilt_hf.errors import MissingDependencyError


@pytest.fixture(scope="module")
def bucket():
    with local_s3() as url:
        yield url


def write_set(url: str, version: int) -> None:
    object_store.commit_set(url, {
        "table": lambda path: (path.mkdir(), (path / "data.txt").write_text(f"rows v{version}"),
                               (path / "more.txt").write_text("x" * version)),
        "stats.json": lambda path: path.write_text(json.dumps({"version": version})),
    })


def read_set(url: str) -> tuple[str, int, list[str]]:
    object_store.read_set_ready(url)
    fs, root = object_store.filesystem(url)
    fs.invalidate_cache()
    return (fs.cat_file(f"{root}/table/data.txt").decode(), json.loads(fs.cat_file(f"{root}/stats.json"))["version"],
            sorted(p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)))


def test_a_set_is_written_and_replaced_on_the_store(bucket):
    url = f"{bucket}/replaced"
    write_set(url, 1)
    write_set(url, 2)
    assert read_set(url) == ("rows v2", 2, ["stats.json", "table"])  # no journal, no staging prefix left
    fs, root = object_store.filesystem(url)
    assert fs.cat_file(f"{root}/table/more.txt") == b"xx"


def test_a_set_crashed_while_uploading_keeps_the_old_set(bucket, monkeypatch):
    url = f"{bucket}/upload-crash"
    write_set(url, 1)
    crash_at(monkeypatch, "uploaded")
    with pytest.raises(Crash):
        write_set(url, 2)
    assert read_set(url) == ("rows v1", 1, ["stats.json", "table"])  # the staged upload is removed


def test_a_set_crashed_mid_copy_is_rolled_forward_by_a_reader(bucket, monkeypatch):
    url = f"{bucket}/swap-crash"
    write_set(url, 1)
    crash_at(monkeypatch, "swapped")  # the table is copied in, the stats are not
    with pytest.raises(Crash):
        write_set(url, 2)
    fs, root = object_store.filesystem(url)
    fs.invalidate_cache()
    assert fs.exists(f"{root}/{atomic.JOURNAL}")
    assert json.loads(fs.cat_file(f"{root}/stats.json"))["version"] == 1  # a mix, until someone rolls forward
    monkeypatch.setattr(atomic, "_on_step", lambda stage, path: None)
    assert read_set(url) == ("rows v2", 2, ["stats.json", "table"])  # the whole new set


def test_a_killed_writer_s_staging_is_removed_by_the_next_writer(bucket):
    url = f"{bucket}/leftover"
    fs, root = object_store.filesystem(url)
    fs.pipe_file(f"{root}/{atomic._STAGING}123-dead/table/data.txt", b"half")
    write_set(url, 3)
    assert read_set(url) == ("rows v3", 3, ["stats.json", "table"])


def test_a_protocol_whose_package_is_missing_names_the_install():
    pytest.importorskip("fsspec")
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="gcsfs"):
            object_store.filesystem("gs://bucket/out")
    else:
        pytest.skip("gcsfs is installed")


def test_urls_and_folders_are_told_apart():
    assert object_store.is_url("s3://bucket/out") and object_store.is_url("gs://b/x")
    assert not object_store.is_url("/data/out") and not object_store.is_url("file:///data/out")
    assert not object_store.is_url(Path("relative/out"))

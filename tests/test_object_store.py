"""quilt_hf.object_store on a local S3 server (moto, real HTTP): each commit a new whole set made current by one
pointer; readers never see a mix and never write; orphans and replaced sets go after their retention."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from s3_server import local_s3
from test_atomic import Crash, crash_at

from quilt_hf import atomic, object_store
from quilt_hf.errors import MissingDependencyError, UserFacingError


@pytest.fixture(scope="module")
def bucket():
    with local_s3() as url:
        yield url


def write_set(url: str, version: int) -> str:
    return object_store.commit_set(url, {
        "table": lambda path: (path.mkdir(), (path / "data.txt").write_text(f"rows v{version}"),
                               (path / "more.txt").write_text("x" * version)),
        "stats.json": lambda path: path.write_text(json.dumps({"version": version})),
    })


def read_set(url: str) -> tuple[str, int]:
    """What a reader sees: the entries resolved through the pointer (read-only)."""
    fs, _ = object_store.filesystem(url)
    fs.invalidate_cache()
    table = object_store.filesystem(object_store.resolve(f"{url}/table"))[1]
    stats = object_store.filesystem(object_store.resolve(f"{url}/stats.json"))[1]
    return fs.cat_file(f"{table}/data.txt").decode(), json.loads(fs.cat_file(stats))["version"]


def sets(url: str) -> list[str]:
    fs, root = object_store.filesystem(url)
    fs.invalidate_cache()
    return sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{root}/{object_store.SETS}", detail=False))


def test_each_commit_is_a_new_whole_set_made_current(bucket):
    url = f"{bucket}/replaced"
    first = write_set(url, 1)
    assert read_set(url) == ("rows v1", 1)
    second = write_set(url, 2)
    assert read_set(url) == ("rows v2", 2) and object_store.current_set(url) == second
    # the replaced set stays for readers that resolved it a moment ago (retention), marked as replaced
    fs, _ = object_store.filesystem(url)
    assert fs.cat_file(f"{object_store.filesystem(first)[1]}/table/data.txt") == b"rows v1"
    assert fs.exists(f"{object_store.filesystem(first)[1]}/{object_store.REPLACED}")
    assert sets(url) == sorted(s.rsplit("/", 1)[-1] for s in (first, second))


def test_a_set_crashed_while_uploading_keeps_the_old_set_current(bucket, monkeypatch):
    url = f"{bucket}/upload-crash"
    first = write_set(url, 1)
    crash_at(monkeypatch, "staged", after=2)  # the table is written locally, the stats not yet
    with pytest.raises(Crash):
        write_set(url, 2)
    crash_at(monkeypatch, "uploaded")  # everything uploaded, the pointer not yet switched
    with pytest.raises(Crash):
        write_set(url, 3)
    assert read_set(url) == ("rows v1", 1) and sets(url) == [first.rsplit("/", 1)[-1]]  # partial uploads removed


def test_a_killed_writer_s_orphan_goes_after_the_retention_and_a_live_upload_stays(bucket, monkeypatch):
    url = f"{bucket}/orphans"
    fs, root = object_store.filesystem(url)
    fs.pipe_file(f"{root}/sets/20200101T000000Z-1-dead/table/data.txt", b"half")  # a killed writer's upload
    write_set(url, 1)
    assert "20200101T000000Z-1-dead" in sets(url)  # written seconds ago: it may be another writer's, live
    monkeypatch.setattr(object_store, "RETENTION_S", 0.0)
    recent = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-2-stalled"  # began a moment ago, never current
    fs.pipe_file(f"{root}/sets/{recent}/table/data.txt", b"whole")
    current = write_set(url, 2)
    # the old orphan and the replaced set are gone; a set never marked replaced is kept a day (a stalled writer's)
    assert sets(url) == sorted([current.rsplit("/", 1)[-1], recent])


def test_a_reader_keeps_the_set_it_resolved_while_another_commit_lands(bucket):
    url = f"{bucket}/concurrent"
    write_set(url, 1)
    resolved = object_store.resolve(f"{url}/table")
    write_set(url, 2)  # lands while the reader is reading
    fs, path = object_store.filesystem(resolved)
    assert fs.cat_file(f"{path}/data.txt") == b"rows v1" and read_set(url) == ("rows v2", 2)


def test_resolve_leaves_urls_that_are_not_a_committed_set_s_entry(bucket):
    assert object_store.resolve(f"{bucket}/nothing-here/pairs") == f"{bucket}/nothing-here/pairs"
    assert object_store.resolve(bucket) == bucket
    assert object_store.current_set(f"{bucket}/nothing-here") is None


def test_a_missing_bucket_fails_before_any_work(bucket):
    with pytest.raises(UserFacingError, match="cannot write there.*bucket exists"):
        object_store.check_writable(f"{bucket}-missing/out")
    object_store.check_writable(f"{bucket}/out")
    fs, root = object_store.filesystem(f"{bucket}/out")
    assert not fs.exists(root)  # the probe object is removed


def test_a_protocol_whose_package_is_missing_names_the_install():
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="gcsfs"):
            object_store.filesystem("gs://bucket/out")
    else:
        pytest.skip("gcsfs is installed")


def test_a_url_with_an_empty_segment_fails_at_once():
    with pytest.raises(UserFacingError, match="empty segment"):
        object_store.filesystem("s3://bucket//out")
    object_store.filesystem("memory://bucket/out/")  # a trailing slash is fine
    object_store.filesystem("simplecache::memory://bucket/out")


def test_urls_and_folders_are_told_apart():
    assert object_store.is_url("s3://bucket/out") and object_store.is_url("gs://b/x")
    assert not object_store.is_url("/data/out") and not object_store.is_url("file:///data/out")
    assert not object_store.is_url(Path("relative/out"))
    assert object_store.local_path("file:///data/out") == "/data/out" and object_store.local_path("out") == "out"


def test_cleanup_never_takes_the_current_set_a_folder_placeholder_or_a_stranger(bucket, monkeypatch):
    url = f"{bucket}/placeholders"
    fs, root = object_store.filesystem(url)
    fs.pipe_file(f"{root}/sets/", b"")  # what a console's "Create folder" leaves
    fs.pipe_file(f"{root}/sets/notes/readme.txt", b"a user's file")
    current = write_set(url, 1)
    monkeypatch.setattr(object_store, "RETENTION_S", 0.0)
    assert object_store.remove_old_sets(url) == []
    assert read_set(url) == ("rows v1", 1) and object_store.current_set(url) == current
    assert fs.cat_file(f"{root}/sets/notes/readme.txt") == b"a user's file"


def test_a_writer_whose_set_was_removed_while_it_stalled_never_names_it(bucket, monkeypatch):
    url = f"{bucket}/stalled"
    write_set(url, 1)

    def another_run_cleans_up(stage, path):  # this writer stalled after its upload; another run removed its set
        if stage == "uploaded":
            fs, root = object_store.filesystem(url)
            fs.rm(f"{root}/{object_store.SETS}/{path.name}", recursive=True)

    monkeypatch.setattr(atomic, "_on_step", another_run_cleans_up)
    with pytest.raises(UserFacingError, match="removed before it became current"):
        write_set(url, 2)
    assert read_set(url) == ("rows v1", 1)  # the pointer still names the whole old set

"""quilt_hf.atomic: files, folders and sets replaced whole or not at all."""

from __future__ import annotations

import json

import pytest

from quilt_hf import atomic


class Crash(BaseException):
    """Stands for the process dying at a chosen stage."""


def crash_at(monkeypatch, wanted: str, after: int = 1):
    seen = []

    def hook(stage, path):
        if stage == wanted:
            seen.append(path)
            if len(seen) == after:
                raise Crash(stage)

    monkeypatch.setattr(atomic, "_on_step", hook)


def write_set(folder, version: int):
    atomic.commit_set(folder, {
        "table": lambda path: (path.mkdir(), (path / "data.txt").write_text(f"rows v{version}")),
        "stats.json": lambda path: path.write_text(json.dumps({"version": version})),
    })


def read_set(folder) -> tuple[str, int]:
    atomic.read_set_ready(folder)
    return (folder / "table" / "data.txt").read_text(), json.loads((folder / "stats.json").read_text())["version"]


def test_write_json_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "stats.json"
    atomic.write_json(target, {"a": 1})
    crash_at(monkeypatch, "written")
    with pytest.raises(Crash):
        atomic.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1} and not list(tmp_path.glob(".tmp-*"))


def test_a_set_crashed_while_staging_keeps_the_old_set(tmp_path, monkeypatch):
    write_set(tmp_path, 1)
    crash_at(monkeypatch, "staged", after=2)  # the table is staged, the stats not yet
    with pytest.raises(Crash):
        write_set(tmp_path, 2)
    assert read_set(tmp_path) == ("rows v1", 1)
    assert not list(tmp_path.glob(".staging-*"))  # an exception cleans up; a killed process: the next run does


def test_a_set_crashed_mid_swap_is_rolled_forward_to_the_new_set(tmp_path, monkeypatch):
    write_set(tmp_path, 1)
    crash_at(monkeypatch, "swapped")  # the table is swapped in, the stats are not
    with pytest.raises(Crash):
        write_set(tmp_path, 2)
    assert (tmp_path / atomic.JOURNAL).is_file()
    monkeypatch.setattr(atomic, "_on_step", lambda stage, path: None)
    assert read_set(tmp_path) == ("rows v2", 2)  # a reader finishes the swap: the whole new set
    assert not (tmp_path / atomic.JOURNAL).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.json", "table"]  # no .old-/.staging- left


def test_replace_dir_keeps_an_existing_content_addressed_entry(tmp_path):
    first = atomic.temporary_dir(tmp_path / "key")
    first.mkdir()
    (first / "x").write_text("1")
    atomic.replace_dir(first, tmp_path / "key", keep_existing=True)
    second = atomic.temporary_dir(tmp_path / "key")
    second.mkdir()
    (second / "x").write_text("2")
    atomic.replace_dir(second, tmp_path / "key", keep_existing=True)
    assert (tmp_path / "key" / "x").read_text() == "1" and not second.exists()


def test_age_based_cleanup_keeps_a_live_run_s_folder_and_takes_a_dead_one(tmp_path):
    import os
    import time

    hours_ago = time.time() - 7200
    dead = tmp_path / ".tmp-ray-1-1"
    (dead / "run-a" / "output").mkdir(parents=True)
    (dead / "run-a" / "output" / "shard.parquet").write_text("old")
    nested_live = tmp_path / ".tmp-ray-2-2"  # started long ago, a shard written now, deep in its tree
    (nested_live / "run-b" / "output").mkdir(parents=True)
    for folder in (dead, dead / "run-a", dead / "run-a" / "output", dead / "run-a" / "output" / "shard.parquet",
                   nested_live, nested_live / "run-b", nested_live / "run-b" / "output"):
        os.utime(folder, (hours_ago, hours_ago))
    (nested_live / "run-b" / "output" / "shard.parquet").write_text("new")
    with atomic.keep_alive(tmp_path / ".staging-3-3", every_s=0.05) as beating:  # an upload: nothing written
        (beating / "pairs").mkdir()
        os.utime(beating / "pairs", (hours_ago, hours_ago))
        time.sleep(0.2)
        os.utime(beating, (hours_ago, hours_ago))
        removed = atomic.clean_leftovers(tmp_path, (".tmp-ray-*", ".staging-*"), older_than_s=3600)
    assert removed == [dead]
    assert nested_live.exists() and beating.exists()
    os.utime(beating / atomic.ALIVE, (hours_ago, hours_ago))  # its heartbeat stopped long ago ...
    (beating / "pairs" / "shard").write_text("written now")  # ... but a shard is fresh: still alive
    assert atomic.clean_leftovers(tmp_path, (".staging-*",), older_than_s=3600) == []
    for path in (beating / "pairs" / "shard", beating / "pairs", beating):
        os.utime(path, (hours_ago, hours_ago))
    assert atomic.clean_leftovers(tmp_path, (".staging-*",), older_than_s=3600) == [beating]

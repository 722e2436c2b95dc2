"""Issue 9's curation items: models that cannot load fail the run, every input file is recorded, every per-video
step is bounded, the outputs are committed as one set, cache keys follow the weights, kill-and-resume at many
points, audio on the video's clock."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _curation_helpers import FakeTranscriber, frames_or_hang
from factories import Scene, histology_like_image, slide_like_image, tone, write_audio_only, write_video

from quilt_hf.curation import limits
from quilt_hf.curation.asr import load_audio
from quilt_hf.errors import ModelLoadError

HERE = Path(__file__).resolve().parent


def lecture(seed: int = 0) -> list[Scene]:
    return [
        Scene(slide_like_image(seed), 3),
        Scene(histology_like_image(seed + 1), 6),
        Scene(histology_like_image(seed + 2), 5),
    ]


def run(videos: Path, output: Path, transcriber=None, **overrides) -> dict:
    from quilt_hf.curation.cli import CurateConfig, run_curate

    config = CurateConfig(videos=str(videos), output=str(output), text_backend="none", **overrides)
    return run_curate(config, transcriber=transcriber or FakeTranscriber(), frames_fn=frames_or_hang,
                      load_audio=load_audio)


# -- item 2: a model that cannot load is the run's failure ---------------------------------------------------
def test_an_asr_folder_without_a_model_fails_the_run_with_the_fix(tmp_path, make_video):
    from quilt_hf.cli import main
    from quilt_hf.curation.cli import CurateConfig, run_curate

    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "lec.mp4", lecture(), audio=tone(14))
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    config = CurateConfig(videos=str(videos), output=str(tmp_path / "out"), asr_model=str(empty), text_backend="none")
    with pytest.raises(ModelLoadError) as error:
        run_curate(config, load_audio=load_audio)
    message = str(error.value)
    assert f"--asr_model {empty}" in message and "no config.json" in message and "make models" in message
    assert not (tmp_path / "out" / "pairs").exists()  # nothing written as if it had worked
    code = main(["curate", "--videos", str(videos), "--output", str(tmp_path / "out2"), "--asr_model", str(empty),
                 "--text_backend", "none"])
    assert code == 1


def test_a_histology_folder_without_a_model_fails_before_any_video(tmp_path):
    from quilt_hf.curation.cli import CurateConfig, run_curate
    from quilt_hf.curation.histology import build_histology_classifier

    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "lec.mp4", lecture(), audio=tone(14))
    empty = tmp_path / "no-classifier"
    empty.mkdir()
    config = CurateConfig(videos=str(videos), output=str(tmp_path / "out"), text_backend="none")
    with pytest.raises(ModelLoadError, match="--histology .*no config.json"):
        run_curate(config, transcriber=FakeTranscriber(), histology=build_histology_classifier(str(empty)),
                   load_audio=load_audio)
    assert not (tmp_path / "out" / "cache" / "frames").exists()  # failed before the per-video steps


def test_a_text_model_that_cannot_load_fails_the_run(tmp_path):
    from quilt_hf.curation.text import build_text_processor

    empty = tmp_path / "no-llm"
    empty.mkdir()
    processor = build_text_processor(backend="transformers", model=str(empty))
    with pytest.raises(ModelLoadError, match="--text_model .*no config.json"):
        processor.load()


# -- item 3: every file not taken is recorded with a reason ------------------------------------------------
def test_every_file_not_taken_is_recorded_with_a_reason(tmp_path):
    from datasets import load_from_disk

    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "lec.mp4", lecture(), audio=tone(14))
    write_audio_only(videos / "lec.m4a")  # same stem as the video: must not take its id
    write_audio_only(videos / "podcast.mp4")  # audio only whatever the extension
    (videos / "notes.txt").write_text("slides to follow\n")
    stats = run(videos, tmp_path / "out")
    assert stats["dropped_videos"] == {"lec.m4a": "audio_only", "notes.txt": "not_media", "podcast": "audio_only"}
    assert stats["videos"] == 4 and stats["videos_kept"] == 1 and stats["pairs"] >= 1
    table = load_from_disk(str(tmp_path / "out" / "videos"))
    recorded = {row["video_id"]: (Path(row["path"]).name, row["drop_reason"]) for row in table}
    assert recorded["lec.m4a"] == ("lec.m4a", "audio_only") and recorded["lec"] == ("lec.mp4", "")


# -- item 4: every per-video step is bounded -------------------------------------------------------------
class SlowTranscriber(FakeTranscriber):
    """Transcribes files whose audio is 14 s normally; longer ones take 'forever' (checking the limit)."""

    def transcribe(self, audio):
        if len(audio) > 20 * 16000:
            while True:
                limits.check()
                time.sleep(0.05)
        return super().transcribe(audio)


def test_asr_time_limit_drops_one_video_and_the_run_goes_on(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "a_short.mp4", lecture(), audio=tone(14))
    write_video(videos / "b_long.mp4", lecture(3) + lecture(6), audio=tone(28))
    stats = run(videos, tmp_path / "out", transcriber=SlowTranscriber(), asr_timeout=1.0)
    assert stats["dropped_videos"] == {"b_long": "asr_timeout"} and stats["videos_kept"] == 1


def test_whisper_generation_stops_at_the_time_limit(tiny_whisper_dir):
    from quilt_hf.curation.asr import WhisperTranscriber

    transcriber = WhisperTranscriber(str(tiny_whisper_dir), device="cpu", language="en")
    transcriber.load()
    with pytest.raises(limits.StepTimeout), limits.time_limit(1e-6, "speech recognition"):
        time.sleep(0.01)
        transcriber.transcribe(tone(40))
    assert transcriber.transcribe(tone(2)).language == "en"  # no limit outside the block


def test_align_and_rows_failures_drop_one_video_only(tmp_path, monkeypatch):
    import quilt_hf.curation.pipeline as pipeline

    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "a.mp4", lecture(), audio=tone(14))
    write_video(videos / "b.mp4", lecture(5), audio=tone(14))
    real_make_chunks = pipeline.make_chunks
    calls = []

    def make_chunks(intervals, segments, duration, options):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("bad interval data")
        return real_make_chunks(intervals, segments, duration, options)

    monkeypatch.setattr(pipeline, "make_chunks", make_chunks)
    stats = run(videos, tmp_path / "out")
    assert stats["dropped_videos"] == {"a": "align_error"} and stats["videos_kept"] == 1 and stats["pairs"] >= 1
    monkeypatch.setattr(pipeline, "make_chunks", real_make_chunks)
    real_rows = pipeline.Curation._expand_rows

    def expand_rows(self, row):
        if row["video_id"] == "b":
            raise KeyError("interval")
        return real_rows(self, row)

    monkeypatch.setattr(pipeline.Curation, "_expand_rows", expand_rows)
    stats = run(videos, tmp_path / "out2")
    assert stats["dropped_videos"] == {"b": "expand_error"} and stats["videos_kept"] == 1


# -- item 6: cache keys follow the weights --------------------------------------------------------------
class FolderTranscriber(FakeTranscriber):
    def __init__(self, folder: Path):
        self.model_name = str(folder)


def test_retraining_a_model_in_the_same_folder_invalidates_its_results(tmp_path):
    import os

    from quilt_hf.models import model_digest

    model = tmp_path / "asr-model"
    model.mkdir()
    weights = model / "model.safetensors"
    weights.write_bytes(b"A" * 1000)
    (model / "config.json").write_text("{}")
    first = model_digest(str(model))
    stamp = weights.stat()
    weights.write_bytes(b"B" * 1000)  # same name, same size: retrained
    os.utime(weights, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000))
    assert model_digest(str(model)) != first
    weights.write_bytes(b"A" * 1000)
    os.utime(weights, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 2_000_000))
    assert model_digest(str(model)) == first  # content, not time stamps

    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "lec.mp4", lecture(), audio=tone(14))
    out = tmp_path / "out"
    assert run(videos, out, transcriber=FolderTranscriber(model))["computed"]["asr"] == 1
    again = run(videos, out, transcriber=FolderTranscriber(model))
    assert again["cache_hits"]["asr"] == 1 and "asr" not in again["computed"]
    weights.write_bytes(b"C" * 1000)
    os.utime(weights, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 3_000_000))
    retrained = run(videos, out, transcriber=FolderTranscriber(model))
    assert retrained["computed"]["asr"] == 1 and "asr" not in retrained["cache_hits"]


# -- item 9b: the audio track's start offset ------------------------------------------------------------
def test_audio_that_starts_late_keeps_the_video_clock(tmp_path):
    from quilt_hf.curation.asr import iter_audio

    path = write_video(tmp_path / "late.mp4", [Scene(histology_like_image(1), 8)], audio=tone(3), audio_start=4.0)
    audio = load_audio(path)
    assert abs(len(audio) / 16000 - 7.0) < 0.1
    assert np.abs(audio[: int(3.9 * 16000)]).max() == 0.0  # silence until the narration starts
    assert np.abs(audio[int(4.1 * 16000) : int(4.5 * 16000)]).max() > 0.1  # the tone, at 4 s
    blocks = list(iter_audio(path, block_seconds=2.0))
    assert [len(b) for b in blocks[:-1]] == [32000] * (len(blocks) - 1)
    assert np.array_equal(np.concatenate(blocks), audio)


# -- items 5 and 7: one committed set, and kill-and-resume at many points --------------------------------
KILL_SCRIPT = """
import os, sys
sys.path[:0] = {paths!r}
import quilt_hf.atomic as atomic
import quilt_hf.curation.pipeline as pipeline
point, count = {point!r}, {count!r}
seen = []
def cache_write(step, key):
    if step == point:
        seen.append(step)
        if len(seen) == count:
            os._exit(9)
def atomic_step(stage, path):
    if point == "mid-write" and stage == "written" and "/cache/" in str(path):
        seen.append(stage)
        if len(seen) == count:
            os._exit(9)  # the file is half-written under its temporary name
    if point == "commit" and stage == stage_wanted(path):
        os._exit(9)
def stage_wanted(path):
    return {commit_stage!r}
pipeline._on_cache_write = cache_write
atomic._on_step = atomic_step
from test_robustness import run
from pathlib import Path
run(Path({videos!r}), Path({output!r}))
"""


def killed_run(videos: Path, output: Path, point: str, count: int = 1, commit_stage: str = "") -> int:
    script = KILL_SCRIPT.format(paths=[str(HERE), str(HERE.parent)], point=point, count=count,
                                commit_stage=commit_stage, videos=str(videos), output=str(output))
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300)
    return done.returncode


def pairs_of(output: Path) -> list[dict]:
    from datasets import load_from_disk

    return load_from_disk(str(output / "pairs")).remove_columns(["image"]).to_list()


@pytest.mark.slow
def test_kill_at_many_points_then_resume_gives_the_uninterrupted_pairs(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for k in range(2):
        write_video(videos / f"lec{k}.mp4", lecture(10 * k), audio=tone(14))
    fresh = run(videos, tmp_path / "fresh")
    expected = pairs_of(tmp_path / "fresh")
    assert len(expected) >= 2
    for point, count, reused in (
        ("mid-write", 3, "probe"),  # inside a cache write (frames' temporary file), before its rename
        ("asr", 1, "asr"),  # right after the first video's transcript is committed
        ("align", 2, "align"),  # after both videos are aligned
        ("text", 1, "text"),  # after the first video's text
    ):
        output = tmp_path / f"killed-{point}"
        assert killed_run(videos, output, point, count) == 9, point
        assert not (output / "pairs").exists()
        resumed = run(videos, output)
        assert pairs_of(output) == expected, point
        assert resumed["cache_hits"].get(reused, 0) >= 1, (point, resumed["cache_hits"])
        assert resumed["pairs"] == fresh["pairs"]
        assert not list((output / "cache").glob("*/.tmp-*")) and not list(output.glob(".*-*"))


@pytest.mark.slow
def test_a_crash_while_committing_leaves_the_old_set_or_the_new_one(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "lec0.mp4", lecture(), audio=tone(14))
    output = tmp_path / "out"
    run(videos, output)
    old_stats = json.loads((output / "stats.json").read_text())
    old_pairs = pairs_of(output)
    write_video(videos / "lec1.mp4", lecture(20), audio=tone(14))  # the next run has more pairs

    # killed while staging: the old set stays whole, the staging folder is cleaned by the next run
    assert killed_run(videos, output, "commit", commit_stage="staged") == 9
    assert pairs_of(output) == old_pairs and json.loads((output / "stats.json").read_text()) == old_stats
    assert list(output.glob(".staging-*"))
    # killed after the journal, midway through the swap: a reader rolls it forward to the whole new set
    assert killed_run(videos, output, "commit", commit_stage="swapped") == 9
    assert (output / ".commit.json").is_file()
    from quilt_hf.atomic import read_set_ready

    read_set_ready(output)
    stats = json.loads((output / "stats.json").read_text())
    assert stats["videos"] == 2 and len(pairs_of(output)) == stats["pairs"] > len(old_pairs)
    assert not list(output.glob(".*-*")) and not (output / ".commit.json").exists()


# -- item 10: ASR streamed by blocks --------------------------------------------------------------------
class BurstTranscriber:
    """A stand-in for Whisper's decoding: one segment per tone burst found in the audio it is given (a burst
    cut by the end of the audio gives a shorter segment, as a cut sentence would). Records each input's length."""

    def __init__(self):
        self.lengths: list[float] = []
        self.language = None

    def transcribe(self, audio, prompt: str = ""):
        from quilt_hf.curation.asr import Transcript

        self.lengths.append(len(audio) / 16000)
        loud = np.abs(audio).reshape(-1, 160).max(axis=1) > 0.05  # 10 ms frames
        segments, start = [], None
        for i, on in enumerate(np.append(loud, False)):
            if on and start is None:
                start = i
            elif not on and start is not None:
                segments.append({"start": start / 100, "end": i / 100, "text": f"burst of {i - start} frames"})
                start = None
        return Transcript("en", " ".join(s["text"] for s in segments), segments)


def test_transcribing_a_file_by_blocks_gives_the_whole_track_segments(tmp_path):
    from quilt_hf.curation.asr import WhisperTranscriber, load_audio

    rng = np.random.default_rng(0)
    audio = np.zeros(200 * 16000, np.float32)
    t = 1.0
    while t < 197:  # bursts ("sentences") of 1-6 s with 0.5-3 s pauses, some across block ends
        length = rng.uniform(1, 6)
        a, b = int(t * 16000), int(min(t + length, 199) * 16000)
        audio[a:b] = tone(200)[: b - a]
        t += length + rng.uniform(0.5, 3)
    path = write_video(tmp_path / "long.mp4", [Scene(histology_like_image(1), 200)], fps=1, audio=audio)
    whole = BurstTranscriber().transcribe(load_audio(path))
    streamed = BurstTranscriber()
    result = WhisperTranscriber.transcribe_file(streamed, path, block_seconds=60)
    assert len(streamed.lengths) >= 4 and max(streamed.lengths) <= 60 + 60  # a block and what it left open
    assert [s["text"] for s in result.segments] == [s["text"] for s in whole.segments]
    for a, b in zip(result.segments, whole.segments):
        assert abs(a["start"] - b["start"]) <= 0.011 and abs(a["end"] - b["end"]) <= 0.011


# -- item 8: a lecture whose middle is corrupt keeps its intact parts -----------------------------------
def corrupt_video_packets(path: Path, start: float, end: float, seed: int = 0) -> int:
    """Overwrite, in place, the bytes of every video packet shown between ``start`` and ``end`` seconds."""
    import av

    with av.open(str(path)) as container:
        spans = [(p.pos, p.size) for p in container.demux(video=0)
                 if p.pts is not None and p.pos is not None and start <= float(p.pts * p.time_base) < end]
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(seed)
    for pos, size in spans:
        data[pos : pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return len(spans)


def test_a_lecture_with_a_corrupt_middle_keeps_its_intact_parts(tmp_path):
    from datasets import load_from_disk

    videos = tmp_path / "videos"
    videos.mkdir()
    scenes = lecture() + lecture(20)  # 28 s: histology at 3-14 s and 17-28 s
    path = write_video(videos / "damaged.mp4", scenes, audio=tone(28))
    assert corrupt_video_packets(path, 10.0, 16.0) >= 50
    stats = run(videos, tmp_path / "out")
    assert stats["videos_kept"] == 1 and "damaged" not in stats["dropped_videos"]
    spans = stats["damaged_spans"]["damaged"]
    assert len(spans) >= 1 and all(9.0 <= a <= 11.0 and 15.0 <= b <= 22.0 for a, b in spans), spans
    table = load_from_disk(str(tmp_path / "out" / "videos"))
    assert table[0]["damaged_spans"] == [[pytest.approx(a, abs=1e-3), pytest.approx(b, abs=1e-3)] for a, b in spans]
    pairs = load_from_disk(str(tmp_path / "out" / "pairs")).remove_columns(["image"])
    starts = sorted(pairs["start"])
    assert any(s < 10 for s in starts) and any(s >= 16 for s in starts), starts  # both sides of the damage
    for row in pairs:  # no image comes from inside the damaged stretch
        assert not any(a < row["start"] < b for a, b in spans), (row["start"], spans)


class WorkerWatchingTranscriber(FakeTranscriber):
    """Records whether a decoding worker process is alive while ASR runs."""

    workers_alive: list[int] = []

    def transcribe(self, audio):
        import psutil

        children = psutil.Process().children(recursive=True)
        alive = [c for c in children if "quilt_hf.curation.runners" in " ".join(c.cmdline())]
        WorkerWatchingTranscriber.workers_alive.append(len(alive))
        return super().transcribe(audio)


def test_the_decoding_worker_is_gone_before_the_model_steps(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "lec.mp4", lecture(), audio=tone(14))
    WorkerWatchingTranscriber.workers_alive = []
    stats = run(videos, tmp_path / "out", transcriber=WorkerWatchingTranscriber())
    assert stats["computed"]["frames"] == 1 and WorkerWatchingTranscriber.workers_alive == [0]


def test_histology_cache_keys_follow_the_weights_of_file_and_folder_filters(tmp_path):
    """The learned filter (a weights file) and Quilt's ensemble (a folder) key on their weights' content too."""
    import shutil

    from quilt_hf.curation.histology_learned import DEFAULT_WEIGHTS, LearnedHistologyClassifier
    from quilt_hf.models import model_key

    weights = tmp_path / "mlp.json"
    shutil.copy(DEFAULT_WEIGHTS, weights)
    learned = LearnedHistologyClassifier(weights=weights)
    first = model_key(learned, "model", "weights_file", "directory")
    assert first.startswith("sha256:")
    assert model_key(LearnedHistologyClassifier(), "model", "weights_file", "directory") == first  # same content
    weights.write_text(weights.read_text().replace("0", "1", 1))  # retrained in place
    assert model_key(LearnedHistologyClassifier(weights=weights), "model", "weights_file", "directory") != first

    class Ensemble:  # the ensemble names its folder
        directory = tmp_path

    assert model_key(Ensemble(), "model", "weights_file", "directory").startswith("sha256:")

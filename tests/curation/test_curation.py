"""Curation steps on synthetic videos: sources, probe, frames, histology, align, the pipeline, bad inputs,
the isolated worker, and kill-and-resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _curation_helpers import FakeTranscriber, add, crash_worker, frames_or_hang, raise_error
from factories import Scene, histology_like_image, slide_like_image, tone, write_audio_only, write_video

from quilt_hf.curation.align import AlignOptions, derive_pair_chunk_time, make_chunks
from quilt_hf.curation.asr import load_audio
from quilt_hf.curation.frames import FrameOptions, extract_intervals, hamming, phash, sharpness
from quilt_hf.curation.histology import HeuristicHistologyClassifier, build_histology_classifier
from quilt_hf.curation.probe import probe_video
from quilt_hf.curation.runners import IsolatedWorker, WorkerCrashed, WorkerError, WorkerTimeout
from quilt_hf.curation.sources import load_videos

HERE = Path(__file__).resolve().parent


def lecture(seed: int = 0) -> list[Scene]:
    """Title slide 4 s, histology 6 s, a 2 s pan, histology 5 s, slide 3 s, histology 4 s (24 s)."""
    return [
        Scene(slide_like_image(seed), 4),
        Scene(histology_like_image(seed + 1), 6),
        Scene(histology_like_image(seed + 2), 2, drift=(6, 0)),
        Scene(histology_like_image(seed + 3), 5),
        Scene(slide_like_image(seed + 4), 3),
        Scene(histology_like_image(seed + 5), 4),
    ]


def write_zero_length(path: Path) -> None:
    """A Matroska file with a video track that holds no frame (and one second of audio)."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 128, 96, "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        audio.layout = "mono"
        samples = tone(1)
        for offset in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[offset : offset + 1024][None], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 16000, offset, Fraction(1, 16000)
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)


def write_bad_inputs(folder: Path) -> None:
    write_video(folder / "silent.mp4", [Scene(histology_like_image(9), 4)], audio=np.zeros(4 * 16000, np.float32))
    write_video(folder / "noaudio.mp4", [Scene(histology_like_image(9), 4)])
    write_zero_length(folder / "zerolength.mkv")
    (folder / "corrupt.mp4").write_bytes((folder / "good.mp4").read_bytes()[:3000])
    (folder / "notavideo.mp4").write_text("this is a text file, not a video\n")
    (folder / "empty.mp4").write_bytes(b"")
    write_audio_only(folder / "audioonly.mp4", 2.0)  # audio only, video extension


# -- sources and probe ------------------------------------------------------------------------------------
def test_sources_folder_and_manifests_give_the_same_table(make_video, tmp_path):
    path = make_video(lecture(), name="lec one.mp4", audio=tone(24))
    (tmp_path / "notes.txt").write_text("not a video: recorded, not silently skipped")
    from_folder = load_videos(tmp_path)
    assert from_folder["video_id"] == ["lec_one", "notes.txt"] and from_folder[0]["source"] == "local"
    from_folder = from_folder.select([0])
    assert len(from_folder[0]["sha256"]) == 64
    (tmp_path / "m.csv").write_text(f"path,title,channel,license\n{path.name},Skin 1,PathChan,CC-BY\n")
    (tmp_path / "m.jsonl").write_text(json.dumps({"path": str(path), "video_id": "v1", "title": "Skin 1"}) + "\n")
    csv_rows, jsonl_rows = load_videos(tmp_path / "m.csv"), load_videos(tmp_path / "m.jsonl")
    assert csv_rows.features == from_folder.features == jsonl_rows.features
    assert csv_rows[0]["channel"] == "PathChan" and csv_rows[0]["license"] == "CC-BY"
    assert jsonl_rows[0]["video_id"] == "v1" and jsonl_rows[0]["sha256"] == from_folder[0]["sha256"]


def test_probe_measures_and_names_each_bad_input(make_video, tmp_path):
    good = make_video(lecture(), name="good.mp4", audio=tone(24))
    result = probe_video(good)
    assert result["drop_reason"] == "" and result["has_audio"] and result["video_codec"] == "h264"
    assert abs(result["duration"] - 24) < 0.5 and result["fps"] == 10 and (result["width"], result["height"]) == (128, 96)
    write_bad_inputs(tmp_path)
    reasons = {name: probe_video(next(tmp_path.glob(f"{name}.m*")))["drop_reason"] for name in
               ("noaudio", "zerolength", "corrupt", "notavideo", "empty", "audioonly")}
    assert reasons == {"noaudio": "no_audio", "zerolength": "zero_length", "corrupt": reasons["corrupt"],
                       "notavideo": "unreadable", "empty": "empty_file", "audioonly": "audio_only"}
    assert reasons["corrupt"] in ("unreadable", "undecodable", "zero_length")
    assert probe_video(tmp_path / "missing.mp4")["drop_reason"] == "missing_file"


# -- frames -------------------------------------------------------------------------------------------------
def test_frames_static_intervals_medians_and_fallbacks(make_video):
    path = make_video(lecture(), audio=tone(24))
    intervals = list(extract_intervals(path, FrameOptions(batch_size=4), duration=24.0))
    spans = [(iv.start, iv.end, iv.is_median) for iv in intervals]
    # the static scenes are found exactly; the pan gives short fallback intervals
    for start, end in [(0, 4), (4, 10), (12, 17), (17, 20), (20, 24)]:
        assert (start, end, True) in spans
    assert all(not median for start, end, median in spans if 10 <= start < 12)
    assert [iv.index for iv in intervals] == list(range(len(intervals)))
    assert all(len(iv.phash) == 16 and iv.image.shape == (96, 128, 3) for iv in intervals)


def test_temporal_median_removes_a_moving_cursor(make_video):
    background = histology_like_image(3, size=(240, 320))
    scenes = []
    for k in range(6):
        frame = background.copy()
        frame[200:208, 10 + 15 * k : 18 + 15 * k] = 0  # a cursor at a new place every second
        scenes.append(Scene(frame, 1))
    path = make_video(scenes, audio=tone(6), size=(240, 320))
    intervals = list(extract_intervals(path, FrameOptions(), duration=6.0))
    assert len(intervals) == 1 and intervals[0].is_median
    error = np.abs(intervals[0].image.astype(int) - background.astype(int))[200:208, 10:110].mean()
    assert error < 12  # the cursor (0 vs ~200) is gone; only compression noise is left


def test_phash_dedup_and_blur_check():
    a, b = histology_like_image(1), histology_like_image(2)
    noisy = np.clip(a.astype(int) + np.random.default_rng(0).normal(0, 3, a.shape), 0, 255).astype(np.uint8)
    assert hamming(phash(a), phash(noisy)) <= 6 < hamming(phash(a), phash(b))
    flat = np.full_like(a, 200)
    assert sharpness(flat) < FrameOptions().blur_threshold < sharpness(a)


# -- histology ----------------------------------------------------------------------------------------------
def test_heuristic_histology_separates_stain_from_slides():
    classifier = HeuristicHistologyClassifier()
    decisions = classifier.predict([histology_like_image(i) for i in range(3)] + [slide_like_image(i) for i in range(3)])
    assert [flag for flag, _ in decisions] == [True] * 3 + [False] * 3
    assert all(0.0 <= score <= 1.0 for _, score in decisions)
    assert build_histology_classifier("heuristic").name == classifier.name


def test_zero_shot_histology_with_a_clip_like_model(tiny_clip_dir):
    classifier = build_histology_classifier(str(tiny_clip_dir))
    assert classifier.name.startswith("zero-shot:")
    decisions = classifier.predict([histology_like_image(0), slide_like_image(0)])
    assert len(decisions) == 2 and all(0.0 <= score <= 1.0 and flag == (score >= 0.5) for flag, score in decisions)


# -- align ----------------------------------------------------------------------------------------------------
def _iv(start, end, histology, median=True, phash_hex=None):
    return {"start": start, "end": end, "histology": histology, "is_median": median, "blurry": False,
            "phash": phash_hex or f"{int(start * 1000) * 2654435761 % (1 << 64):016x}"}


def test_pair_chunk_time_derivation():
    slow = [{"start": 0, "end": 10, "text": "one two three four five"}]  # 0.5 words/s
    fast = [{"start": 0, "end": 10, "text": " ".join(["w"] * 40)}]  # 4 words/s
    options = AlignOptions()
    assert derive_pair_chunk_time(slow, 10, 100, options) == 50.0  # 25 words at 0.5 w/s
    assert derive_pair_chunk_time(fast, 10, 100, options) == 10.0  # key frames every 10 s dominate
    assert derive_pair_chunk_time(fast, 100, 100, options) == 6.25  # 25 words at 4 w/s
    assert derive_pair_chunk_time(fast * 2, 100, 100, AlignOptions(target_words=10)) == options.min_chunk_time
    assert derive_pair_chunk_time(slow, 1, 1000, options) == options.max_chunk_time


def test_chunks_close_at_non_histology_and_at_the_budget():
    intervals = [_iv(0, 4, False), _iv(4, 10, True), _iv(10, 12, True, median=False), _iv(12, 30, True),
                 _iv(30, 33, False), _iv(33, 40, True)]
    segments = [{"start": float(t), "end": float(t + 1), "text": f"w{t}"} for t in range(40)]
    options = AlignOptions(target_words=10, min_chunk_time=5, max_chunk_time=10)  # 1 word/s -> 10 s budget
    records = make_chunks(intervals, segments, 40.0, options)
    chunks = {}
    for r in records:
        chunks.setdefault(r["chunk_id"], []).append(r)
    windows = [(c[0]["text_start"], c[0]["text_end"]) for c in chunks.values()]
    # closed at the key frame that would pass the budget (12 s), the 18 s image cut in two equal chunks,
    # closed by the slide at 30 s; the narration over the slide (30-33 s) goes nowhere
    assert windows == [(4, 12), (12, 21), (21, 30), (33, 40)]
    assert chunks[0][0]["noisy_text"].split() == [f"w{t}" for t in range(4, 12)]
    assert [r["interval"] for r in chunks[0]] == [1]
    # many-to-many: the 12-30 s image pairs with each of its two narration windows
    assert [r["interval"] for r in records].count(3) == 2
    # the pan's fallback key frame is not used where a median image exists
    assert all(r["is_median"] for r in records) and 2 not in [r["interval"] for r in records]
    assert {r["pair_chunk_time"] for r in records} == {10.0}


def test_fallback_frames_when_a_chunk_has_no_static_image():
    intervals = [_iv(0, 1, True, False, "0" * 16), _iv(1, 2, True, False, "0" * 15 + "1"),
                 _iv(2, 3, True, False, "f" * 16)]
    records = make_chunks(intervals, [{"start": 0, "end": 3, "text": "hello"}], 3.0)
    assert [r["interval"] for r in records] == [0, 2]  # first key frame, then the one that differs
    assert make_chunks(intervals, [], 3.0) == []  # no narration, no pairs


# -- isolated worker ------------------------------------------------------------------------------------------
def test_isolated_worker_timeout_crash_and_error():
    worker = IsolatedWorker()
    try:
        assert worker.call(add, 2, 3, timeout=30) == 5
        with pytest.raises(WorkerTimeout):
            worker.call(__import__("time").sleep, 30, timeout=1)
        with pytest.raises(WorkerCrashed):
            worker.call(crash_worker, timeout=30)
        with pytest.raises(WorkerError, match="ValueError: boom"):
            worker.call(raise_error, timeout=30)
        assert worker.call(add, 1, 1, timeout=30) == 2  # restarted after the hang and the crash
    finally:
        worker.close()


# -- the pipeline ------------------------------------------------------------------------------------------
def run(videos: Path, output: Path, **overrides):
    from quilt_hf.curation.cli import CurateConfig, run_curate

    config = CurateConfig(videos=str(videos), output=str(output), text_backend="none", **overrides)
    return run_curate(config, transcriber=FakeTranscriber(), frames_fn=frames_or_hang, load_audio=load_audio)


def test_pipeline_end_to_end_with_every_bad_input_kind(tmp_path):
    from datasets import load_from_disk

    from quilt_hf.schema import CHUNK_FEATURES, PAIR_FEATURES

    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "good.mp4", lecture(), audio=tone(24))
    write_bad_inputs(videos)
    write_video(videos / "hang.mp4", lecture(7), audio=tone(24))
    stats = run(videos, tmp_path / "out", frames_timeout=4.0)
    assert stats["dropped_videos"] == {
        "audioonly": "audio_only", "corrupt": stats["dropped_videos"]["corrupt"], "empty": "empty_file",
        "hang": "frames_timeout", "noaudio": "no_audio", "notavideo": "unreadable", "silent": "silent_audio",
        "zerolength": "zero_length",
    }
    assert stats["videos"] == 9 and stats["videos_kept"] == 1
    written = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert written["dropped"] == stats["dropped"] and set(written["timings_s"]) >= {"probe", "asr", "align"}
    pairs = load_from_disk(str(tmp_path / "out" / "pairs"))
    chunks = load_from_disk(str(tmp_path / "out" / "chunks"))
    assert pairs.features == PAIR_FEATURES and chunks.features == CHUNK_FEATURES
    # three histology stretches (4-17 s cut by the budget, 20-24 s): images from the static intervals only
    assert set(pairs["video_id"]) == {"good"} and len(pairs) >= 3
    for row in pairs:
        assert row["image"].size == (128, 96) and row["text_start"] < row["text_end"]
        assert row["end"] - row["start"] >= 3 and not (10 <= row["start"] < 12)
        assert row["noisy_text"] and row["caption"] == row["corrected_text"] == row["noisy_text"]
        assert row["start"] >= 4 and not (0 <= row["start"] < 4) and not (17 <= row["start"] < 20)
    assert len(set(pairs["image_id"])) == len(pairs)


def test_kill_and_resume_gives_the_pairs_of_an_uninterrupted_run(tmp_path):
    from datasets import load_from_disk

    videos = tmp_path / "videos"
    videos.mkdir()
    for k in range(3):
        write_video(videos / f"lec{k}.mp4", lecture(10 * k), audio=tone(24))
    script = f"""
import os, sys
sys.path[:0] = {[str(HERE), str(HERE.parent)]!r}
import quilt_hf.curation.pipeline as pipeline
writes = []
def crash(step, key):
    writes.append(step)
    if len(writes) == 7:  # mid-run: after the frames of some videos, before any ASR finishes everywhere
        os._exit(9)
pipeline._on_cache_write = crash
from test_curation import run
from pathlib import Path
run(Path({str(videos)!r}), Path({str(tmp_path / "resumed")!r}))
"""
    killed = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300)
    assert killed.returncode == 9, killed.stderr[-2000:]
    assert not (tmp_path / "resumed" / "pairs").exists()
    resumed = run(videos, tmp_path / "resumed")
    assert resumed["cache_hits"], "the restarted run reused what the killed run had committed"
    run(videos, tmp_path / "fresh")
    a = load_from_disk(str(tmp_path / "resumed" / "pairs")).remove_columns(["image"]).to_list()
    b = load_from_disk(str(tmp_path / "fresh" / "pairs")).remove_columns(["image"]).to_list()
    assert a == b and len(a) >= 9
    images_a = [np.asarray(r["image"]) for r in load_from_disk(str(tmp_path / "resumed" / "pairs"))]
    images_b = [np.asarray(r["image"]) for r in load_from_disk(str(tmp_path / "fresh" / "pairs"))]
    assert all(np.array_equal(x, y) for x, y in zip(images_a, images_b))


def test_text_stage_fills_the_pair_columns(tmp_path):
    from datasets import load_from_disk

    from quilt_hf.curation.text import build_text_processor

    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "lec.mp4", lecture(), audio=tone(24))
    processor = build_text_processor(backend="lexicon")
    from quilt_hf.curation.cli import CurateConfig, run_curate

    config = CurateConfig(videos=str(videos), output=str(tmp_path / "out"))
    stats = run_curate(config, transcriber=FakeTranscriber(), text_processor=processor, load_audio=load_audio)
    assert stats["models"]["text"] == processor.name
    assert stats["asr_decoding"] == {"num_beams": 1, "dtype": "auto"}
    pairs = load_from_disk(str(tmp_path / "out" / "pairs")).remove_columns(["image"])
    assert len(pairs) >= 3 and set(pairs["text_backend"]) == {processor.name}
    for row in pairs:
        assert row["corrected_text"] and row["caption"] and row["caption"] == row["medical_text"]
        assert row["magnification"] in (-1, 0, 1, 2)

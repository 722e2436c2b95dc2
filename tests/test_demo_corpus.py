"""The committed demo corpus: its ground truth agrees with its videos (and with itself)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from quilt_hf.schema import MAGNIFICATION_CLASSES, MAGNIFICATION_UNKNOWN, PATHOLOGY_LABELS

KINDS = {"title", "presenter", "diagram", "static", "pan", "zoom"}
HISTOLOGY_KINDS = {"static", "pan", "zoom"}


@pytest.fixture(scope="module")
def ground_truth(demo_corpus: Path) -> dict:
    return json.loads((demo_corpus / "ground_truth.json").read_text())


@pytest.fixture(scope="module")
def sources(demo_corpus: Path) -> dict:
    return json.loads((demo_corpus / "sources.json").read_text())


def _videos(ground_truth: dict) -> list[dict]:
    return ground_truth["videos"]


def test_format(ground_truth):
    assert ground_truth["version"] == 1
    videos = _videos(ground_truth)
    assert 6 <= len(videos) <= 8
    assert len({v["video_id"] for v in videos}) == len(videos)
    keys = {
        "video_id",
        "file",
        "duration",
        "fps",
        "width",
        "height",
        "title",
        "organ",
        "stain",
        "pathology",
        "magnification",
        "narration",
        "intervals",
    }
    interval_keys = {
        "interval_id",
        "start",
        "end",
        "kind",
        "histology",
        "source_image",
        "region",
        "text",
        "medical_text",
        "roi_text",
        "pathology",
        "magnification",
        "medical_terms",
    }
    for video in videos:
        assert set(video) == keys
        assert 30 <= video["duration"] <= 120
        assert video["magnification"] in MAGNIFICATION_CLASSES
        assert video["pathology"] and set(video["pathology"]) <= set(PATHOLOGY_LABELS)
        for sentence in video["narration"]:
            assert set(sentence) == {"start", "end", "text"} and sentence["text"].strip()
        for number, interval in enumerate(video["intervals"]):
            assert set(interval) == interval_keys
            assert interval["interval_id"] == number
            assert interval["kind"] in KINDS
            assert interval["histology"] == (interval["kind"] in HISTOLOGY_KINDS)
            assert set(interval["pathology"]) <= set(video["pathology"])
            assert interval["magnification"] in {MAGNIFICATION_UNKNOWN, *MAGNIFICATION_CLASSES}
            if not interval["histology"]:
                assert interval["source_image"] is None and interval["region"] is None
                assert interval["magnification"] == MAGNIFICATION_UNKNOWN


def test_corpus_variety(ground_truth, demo_corpus):
    videos = _videos(ground_truth)
    assert any((v["width"], v["height"]) == (1280, 720) for v in videos)
    assert len({(v["width"], v["height"]) for v in videos}) >= 3
    assert len({v["fps"] for v in videos}) >= 3
    assert len({label for v in videos for label in v["pathology"]}) >= 4
    total = sum((demo_corpus / v["file"]).stat().st_size for v in videos)
    assert total < 8.5 * 2**20


def test_intervals_tile_the_video_and_hold_the_narration(ground_truth):
    for video in _videos(ground_truth):
        intervals, duration = video["intervals"], video["duration"]
        assert intervals[0]["start"] == 0
        assert intervals[-1]["end"] == pytest.approx(duration, abs=1e-3)
        for a, b in itertools.pairwise(intervals):
            assert a["end"] == pytest.approx(b["start"], abs=1e-3)  # ordered, no overlap, no gap
        kinds = {i["kind"] for i in intervals}
        assert kinds & HISTOLOGY_KINDS and kinds - HISTOLOGY_KINDS, video["video_id"]
        for interval in intervals:
            assert interval["end"] > interval["start"]
            if interval["kind"] == "static":
                assert 3.0 <= interval["end"] - interval["start"] <= 15.0 + 1e-6
        narration = video["narration"]
        for a, b in itertools.pairwise(narration):
            assert a["end"] < b["start"]
        texts = []
        for sentence in narration:
            assert 0 <= sentence["start"] < sentence["end"] <= duration
            owners = [i for i in intervals if i["start"] <= sentence["start"] and sentence["end"] <= i["end"]]
            assert len(owners) == 1, sentence  # each sentence lies inside one interval
            texts.append((owners[0]["interval_id"], sentence["text"]))
        for interval in intervals:
            mine = [text for owner, text in texts if owner == interval["interval_id"]]
            assert interval["text"] == " ".join(mine)
            assert set(interval["roi_text"]) <= set(interval["medical_text"]) <= set(mine)
            for term in interval["medical_terms"]:
                assert term.lower() in " ".join(interval["medical_text"]).lower()
        static = [i for i in intervals if i["kind"] == "static"]
        assert all(i["medical_text"] and i["medical_terms"] and i["pathology"] for i in static)
        assert all(i["magnification"] != MAGNIFICATION_UNKNOWN for i in static)
        assert any(i["text"] for i in intervals if not i["histology"])  # narration over slides too


def test_regions_lie_in_their_source_images(ground_truth, sources):
    for video in _videos(ground_truth):
        for interval in video["intervals"]:
            if not interval["histology"]:
                continue
            source = sources[interval["source_image"]]
            x0, y0, x1, y1 = interval["region"]
            assert 0 <= x0 < x1 <= source["width"] and 0 <= y0 < y1 <= source["height"]


def test_videos_decode_and_match(ground_truth, demo_corpus):
    import av

    for video in _videos(ground_truth):
        path = demo_corpus / video["file"]
        assert path.is_file(), path
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert (stream.codec_context.width, stream.codec_context.height) == (
                video["width"],
                video["height"],
            )
            assert float(stream.average_rate) == pytest.approx(video["fps"], rel=1e-3)
            assert container.streams.audio and container.streams.audio[0].codec_context.name == "aac"
            frames = sum(1 for packet in container.demux(stream) if packet.size)
        assert frames / video["fps"] == pytest.approx(video["duration"], abs=1.5 / video["fps"])


def _decode_audio(path: Path) -> tuple[np.ndarray, int]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks = [frame.to_ndarray().mean(axis=0) for frame in container.decode(stream)]
        return np.concatenate(chunks), stream.codec_context.sample_rate


def test_narration_timing_matches_the_audio(ground_truth, demo_corpus):
    for video in _videos(ground_truth):
        audio, rate = _decode_audio(demo_corpus / video["file"])
        assert len(audio) / rate == pytest.approx(video["duration"], abs=0.2)
        speech = np.zeros(len(audio), bool)
        for sentence in video["narration"]:
            speech[int(sentence["start"] * rate) : int(sentence["end"] * rate)] = True
        loud = np.sqrt(np.mean(audio[speech] ** 2))
        # silence: well away (0.15 s) from any sentence
        half = int(0.15 * rate)
        count = np.concatenate([[0], np.cumsum(speech)])
        index = np.arange(len(audio))
        margin = count[np.minimum(index + half + 1, len(audio))] - count[np.maximum(index - half, 0)] > 0
        quiet = np.sqrt(np.mean(audio[~margin] ** 2))
        assert loud > 8 * quiet, video["video_id"]


def _frames_between(path: Path, start: float, end: float, size: tuple[int, int]) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        container.seek(int(start / stream.time_base), stream=stream)
        frames = []
        for frame in container.decode(stream):
            if frame.time > end:
                break
            if frame.time >= start:
                frames.append(frame.reformat(width=size[0], height=size[1], format="rgb24").to_ndarray())
        return frames


def test_static_intervals_are_static_and_histology_looks_like_tissue(ground_truth, demo_corpus):
    for video in _videos(ground_truth):
        intervals = video["intervals"]
        still = min(
            (i for i in intervals if i["kind"] == "static"), key=lambda i: len(i["roi_text"])
        )  # cursor: tiny
        frames = _frames_between(
            demo_corpus / video["file"], still["start"] + 0.3, still["end"] - 0.3, (160, 90)
        )
        assert len(frames) >= 2
        stack = np.stack(frames).astype(np.float32)
        assert np.abs(stack - stack[0]).mean(axis=(1, 2, 3)).max() < 2.0  # no motion in a static interval
        slide = next(i for i in intervals if i["kind"] in ("title", "diagram"))
        other = _frames_between(
            demo_corpus / video["file"], slide["start"] + 0.3, slide["start"] + 0.5, (160, 90)
        )
        assert np.abs(other[0].astype(np.float32) - stack[0]).mean() > 20  # a slide does not look like tissue

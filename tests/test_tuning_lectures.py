"""The committed second tuning set (lectures with talk around the medicine): its ground truth agrees with its
videos and its scripts, it holds every kind of talk it is there for, and it shares no lecture, voice or
sentence with the held-out lectures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TUNING = REPO / "benchmarks" / "tuning_lectures"
HELDOUT = REPO / "benchmarks" / "heldout_lectures"


@pytest.fixture(scope="module")
def videos() -> list[dict]:
    return json.loads((TUNING / "ground_truth.json").read_text())["videos"]


@pytest.fixture(scope="module")
def scripts():
    sys.path.insert(0, str(REPO / "dataset_scripts"))
    try:
        import tuning_scripts
    finally:
        sys.path.remove(str(REPO / "dataset_scripts"))
    return tuning_scripts


def test_ground_truth_follows_the_scripts(videos, scripts):
    assert [v["video_id"] for v in videos] == [lecture[0] for lecture in scripts.LECTURES]
    for video, (_, title, _, _, voice, speed, paragraphs) in zip(videos, scripts.LECTURES):
        assert (video["title"], video["voice"], video["words_per_minute"]) == (title, voice, speed)
        assert len(video["intervals"]) == len(paragraphs)
        for interval, (_, sentences) in zip(video["intervals"], paragraphs):
            tags = [s[0] if s[:2] in ("r:", "o:", "x:") else "m" for s in sentences]
            texts = [s[2:] if t != "m" else s for s, t in zip(sentences, tags)]
            assert interval["medical_text"] == [t for t, g in zip(texts, tags) if g in "mr"]
            assert interval["off_topic_text"] == [t for t, g in zip(texts, tags) if g == "x"]
            for term in interval["medical_terms"]:
                assert term.lower() in " ".join(interval["medical_text"]).lower()


def test_every_lecture_mixes_medicine_talk_and_chatter(videos):
    for video in videos:
        narration = video["narration"]
        assert sum(n["off_topic"] for n in narration) >= 2, video["video_id"]
        assert sum(n["lecture_talk"] for n in narration) >= 2, video["video_id"]
        assert sum(len(iv["medical_terms"]) for iv in video["intervals"]) >= 15, video["video_id"]


def test_nothing_shared_with_the_heldout_lectures(videos):
    heldout = json.loads((HELDOUT / "ground_truth.json").read_text())["videos"]
    heldout_sentences = {n["text"].lower() for v in heldout for n in v["narration"]}
    assert not heldout_sentences & {n["text"].lower() for v in videos for n in v["narration"]}
    assert not {v.get("voice") for v in heldout} & {v["voice"] for v in videos}


def test_intervals_tile_the_audio_and_hold_their_sentences(videos):
    import av

    for video in videos:
        intervals = video["intervals"]
        assert intervals[0]["start"] == 0 and intervals[-1]["end"] == video["duration"]
        assert all(a["end"] == b["start"] for a, b in zip(intervals, intervals[1:]))
        for sentence in video["narration"]:
            interval = intervals[sentence["interval_id"]]
            assert interval["start"] <= sentence["start"] < sentence["end"] <= interval["end"]
        with av.open(str(TUNING / video["file"])) as container:
            stream = container.streams.audio[0]
            audio = np.concatenate([f.to_ndarray().mean(axis=0) for f in container.decode(stream)])
            rate = stream.codec_context.sample_rate
        assert len(audio) / rate == pytest.approx(video["duration"], abs=0.2)
        speech = np.zeros(len(audio), bool)
        for sentence in video["narration"]:
            speech[int(sentence["start"] * rate) : int(sentence["end"] * rate)] = True
        assert np.sqrt(np.mean(audio[speech] ** 2)) > 5 * np.sqrt(np.mean(audio[~speech] ** 2)), video["video_id"]

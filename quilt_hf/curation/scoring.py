"""Curation quality against a ground truth in the demo corpus's format (``demo_corpus/ground_truth.json``).

- histology frame precision and recall over the key images of every kept video;
- pairing accuracy: the share of pairs whose image lies in the interval that most of the pair's narration
  describes;
- ASR word error rate of the cached transcripts against the narration.

``score_curation(output_dir, ground_truth)`` reads what ``quilt curate`` wrote (``stats.json``, ``pairs/`` and
the per-step ``cache/``), so it scores any finished run without rerunning anything.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from quilt_hf.metrics import word_errors


def load_ground_truth(path: str | Path) -> dict[str, dict]:
    """The ground truth's videos by ``video_id``."""
    return {v["video_id"]: v for v in json.loads(Path(path).read_text())["videos"]}


def _interval_at(video: dict, time: float) -> dict | None:
    for interval in video["intervals"]:
        if interval["start"] <= time < interval["end"]:
            return interval
    return None


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", "", text.lower()).strip()


def _precision_recall(counts: Counter) -> tuple[float, float, dict]:
    precision = counts["tp"] / max(1, counts["tp"] + counts["fp"])
    recall = counts["tp"] / max(1, counts["tp"] + counts["fn"])
    return precision, recall, dict(counts)


def _histology_cells(cache: Path, cache_keys: dict[str, dict], truth: dict[str, dict]):
    """Each scored key image: (its interval, the ground-truth interval holding its midpoint, its confusion cell
    ``tp``/``fp``/``tn``/``fn``), read from the run's frames and histology cache entries."""
    for video_id, keys in cache_keys.items():
        if not keys.get("frames_key") or not keys.get("histology_key") or video_id not in truth:
            continue
        intervals = json.loads((cache / "frames" / keys["frames_key"] / "intervals.json").read_text())["intervals"]
        decisions = json.loads((cache / "histology" / f"{keys['histology_key']}.json").read_text())
        for interval, (flag, _score) in zip(intervals, decisions):
            truth_interval = _interval_at(truth[video_id], (interval["start"] + interval["end"]) / 2)
            if truth_interval is not None:
                yield interval, truth_interval, ("t" if flag == truth_interval["histology"] else "f") + ("p" if flag else "n")


def histology_scores(cache: Path, cache_keys: dict[str, dict], truth: dict[str, dict]) -> dict:
    """Precision/recall of the histology decisions over all key images and over the static ones only."""
    counts, static_counts = Counter(), Counter()
    for interval, _truth_interval, cell in _histology_cells(cache, cache_keys, truth):
        counts[cell] += 1
        if interval["is_median"]:
            static_counts[cell] += 1
    return {"all": _precision_recall(counts), "static": _precision_recall(static_counts)}


def pairing_accuracy(pairs: Iterable[dict], truth: dict[str, dict]) -> tuple[float, int]:
    """Share of pairs whose image lies in the interval that most of the pair's narration describes."""
    correct = total = 0
    for pair in pairs:
        video = truth[pair["video_id"]]
        image_interval = _interval_at(video, (pair["start"] + pair["end"]) / 2)
        votes: Counter = Counter()
        for sentence in video["narration"]:
            middle = (sentence["start"] + sentence["end"]) / 2
            if not pair["text_start"] <= middle < pair["text_end"] + 1e-3:
                continue
            for interval in video["intervals"]:
                if _norm(sentence["text"]) and _norm(sentence["text"]) in _norm(interval["text"]):
                    votes[interval["interval_id"]] += len(sentence["text"].split())
                    break
        total += 1
        if votes and image_interval is not None and votes.most_common(1)[0][0] == image_interval["interval_id"]:
            correct += 1
    return correct / max(1, total), total


def asr_word_error_rate(cache: Path, cache_keys: dict[str, dict], truth: dict[str, dict]) -> tuple[float, int]:
    """Corpus WER of the cached transcripts against the ground-truth narration, and the reference word count."""
    errors = words = 0
    for video_id, keys in cache_keys.items():
        if "asr_key" not in keys or video_id not in truth:
            continue
        hypothesis = json.loads((cache / "asr" / f"{keys['asr_key']}.json").read_text())["text"]
        reference = " ".join(n["text"] for n in truth[video_id]["narration"])
        e, w = word_errors(reference, hypothesis)
        errors, words = errors + e, words + w
    return errors / max(1, words), words


def score_curation(output_dir: str | Path, ground_truth: str | Path) -> dict[str, float | int]:
    """All curation figures of a finished ``quilt curate`` run against ``ground_truth``."""
    from datasets import load_from_disk

    output_dir = Path(output_dir)
    truth = load_ground_truth(ground_truth)
    stats = json.loads((output_dir / "stats.json").read_text())
    cache = Path(stats.get("cache_dir") or output_dir / "cache")
    keys = stats["cache_keys"]
    pairs = load_from_disk(str(output_dir / "pairs")).remove_columns(["image"])
    histology = histology_scores(cache, keys, truth)
    accuracy, pair_count = pairing_accuracy(pairs, truth)
    wer, words = asr_word_error_rate(cache, keys, truth)
    precision, recall, counts = histology["all"]
    return {
        "histology_precision": precision,
        "histology_recall": recall,
        "histology_frames": sum(counts.values()),
        "pairing_accuracy": accuracy,
        "pairs": pair_count,
        "asr_wer": wer,
        "asr_reference_words": words,
    }


# ---------------------------------------------------------------------------- per hard case (held-out set)
def case_of(interval: dict) -> str:
    """The hard-case tag of a ground-truth interval: ``hard_case`` (held-out lectures), else its ``kind``."""
    return interval.get("hard_case") or interval["kind"]


def histology_scores_by_case(cache: Path, cache_keys: dict[str, dict], truth: dict[str, dict]) -> dict[str, Counter]:
    """Confusion counts (tp/fp/tn/fn) of the histology decisions on key images, per hard case of the
    ground-truth interval that holds each key image's midpoint."""
    by_case: dict[str, Counter] = {}
    for _interval, truth_interval, cell in _histology_cells(cache, cache_keys, truth):
        by_case.setdefault(case_of(truth_interval), Counter())[cell] += 1
    return by_case


def pair_image_times(cache: Path, cache_keys: dict[str, dict]) -> dict[tuple[str, int, int], tuple[float, float]]:
    """(video_id, chunk_id, k) -> (start, end) of the key-frame interval each pair's image was taken from."""
    times = {}
    for video_id, keys in cache_keys.items():
        if not keys.get("frames_key") or not keys.get("align_key"):
            continue
        intervals = json.loads((cache / "frames" / keys["frames_key"] / "intervals.json").read_text())["intervals"]
        chunks = json.loads((cache / "align" / f"{keys['align_key']}.json").read_text())
        for chunk in chunks:
            interval = intervals[chunk["interval"]]
            times[(video_id, chunk["chunk_id"], chunk["k"])] = (interval["start"], interval["end"])
    return times


def _described_interval(video: dict, sentence: dict) -> int | None:
    if "interval_id" in sentence:  # the held-out ground truth says which interval a sentence describes
        return sentence["interval_id"]
    for interval in video["intervals"]:
        if _norm(sentence["text"]) and _norm(sentence["text"]) in _norm(interval["text"]):
            return interval["interval_id"]
    return None


def pairing_by_case(
    pairs: Iterable[dict], truth: dict[str, dict], image_times: dict[tuple[str, int, int], tuple[float, float]] | None = None
) -> dict[str, Counter]:
    """Pairing per hard case of the image's ground-truth interval: ``correct`` when the interval that most of
    the pair's narration describes (by words) is the one the image comes from (or shows the very same field),
    ``off_topic`` when the pair's
    narration holds an off-topic sentence. The image's time is that of the key-frame interval it was taken
    from when ``image_times`` is given (from :func:`pair_image_times`), else the middle of the pair's chunk."""
    by_case: dict[str, Counter] = {}
    for pair in pairs:
        video = truth.get(pair["video_id"])
        if video is None:
            continue
        key = (pair["video_id"], pair["chunk_id"], int(pair["image_id"].rsplit("_", 1)[1]))
        start, end = (image_times or {}).get(key, (pair["start"], pair["end"]))
        image_interval = _interval_at(video, (start + end) / 2)
        votes: Counter = Counter()
        off_topic = False
        for sentence in video["narration"]:
            middle = (sentence["start"] + sentence["end"]) / 2
            if not pair["text_start"] <= middle < pair["text_end"] + 1e-3:
                continue
            off_topic |= bool(sentence.get("off_topic"))
            described = _described_interval(video, sentence)
            if described is not None:
                votes[described] += len(sentence["text"].split())
        case = case_of(image_interval) if image_interval is not None else "outside"
        counts = by_case.setdefault(case, Counter())
        counts["pairs"] += 1
        counts["off_topic"] += off_topic
        if votes and image_interval is not None and _same_field(video, votes.most_common(1)[0][0], image_interval):
            counts["correct"] += 1
    return by_case


def _same_field(video: dict, described: int, image_interval: dict) -> bool:
    """The described interval is the image's, or shows the very same field (same source image and region:
    the narrator went on talking over an unchanged view that the ground truth splits in two)."""
    if described == image_interval["interval_id"]:
        return True
    other = video["intervals"][described]
    return bool(
        other["histology"] and image_interval["histology"] and other["kind"] == image_interval["kind"] == "static"
        and other["source_image"] == image_interval["source_image"] and other["region"] == image_interval["region"]
    )

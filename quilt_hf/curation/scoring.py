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


def histology_scores(cache: Path, cache_keys: dict[str, dict], truth: dict[str, dict]) -> dict:
    """Precision/recall of the histology decisions over all key images and over the static ones only."""
    counts, static_counts = Counter(), Counter()
    for video_id, keys in cache_keys.items():
        if not keys.get("frames_key") or not keys.get("histology_key") or video_id not in truth:
            continue
        intervals = json.loads((cache / "frames" / keys["frames_key"] / "intervals.json").read_text())["intervals"]
        decisions = json.loads((cache / "histology" / f"{keys['histology_key']}.json").read_text())
        for interval, (flag, _score) in zip(intervals, decisions):
            truth_interval = _interval_at(truth[video_id], (interval["start"] + interval["end"]) / 2)
            if truth_interval is None:
                continue
            cell = ("t" if flag == truth_interval["histology"] else "f") + ("p" if flag else "n")
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

"""Curation quality on the demo corpus's ground truth: histology frame precision/recall and pairing
accuracy (goals: precision >= 0.95, recall >= 0.9, pairing accuracy >= 0.9).

By default the transcript is the ground-truth narration (an oracle ASR), so the figures measure frames,
histology and alignment alone; ``--asr real`` runs the Whisper transcriber (``quilt_hf.curation.asr``,
offline model) instead. Peer: a "no filter" baseline (every key frame called histology) is printed in the
same run for the precision.

Run: ``.venv/bin/python bench/bench_curation.py [--corpus demo_corpus] [--asr oracle|real] [--output DIR]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class OracleTranscript:
    def __init__(self, segments):
        self.language = "en"
        self.segments = segments
        self.text = " ".join(s["text"] for s in segments)


class OracleTranscriber:
    """Returns the ground-truth narration of the video being transcribed."""

    model_name = "oracle-narration"
    backend = "oracle"
    language = "en"

    def __init__(self, truth: dict):
        self.truth = truth
        self.video_id = None

    def transcribe(self, audio):
        narration = self.truth[self.video_id]["narration"]
        return OracleTranscript([{"start": n["start"], "end": n["end"], "text": n["text"]} for n in narration])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", default=str(REPO / "demo_corpus"))
    parser.add_argument("--asr", choices=["oracle", "real"], default="oracle")
    parser.add_argument("--output", default=None, help="output folder (default: a temporary one)")
    args = parser.parse_args()

    from datasets import load_from_disk

    from quilt_hf.curation import pipeline
    from quilt_hf.curation.cli import CurateConfig, run_curate
    from quilt_hf.curation.scoring import asr_word_error_rate, histology_scores, pairing_accuracy

    corpus = Path(args.corpus)
    truth = {v["video_id"]: v for v in json.loads((corpus / "ground_truth.json").read_text())["videos"]}
    output = Path(args.output or tempfile.mkdtemp(prefix="bench_curation_"))
    config = CurateConfig(videos=str(corpus), output=str(output), text_backend="none")
    transcriber = None
    if args.asr == "oracle":
        transcriber = OracleTranscriber(truth)
        original = pipeline.Curation.transcribe

        def transcribe(self, row):
            transcriber.video_id = row["video_id"]
            return original(self, row)

        pipeline.Curation.transcribe = transcribe
    from quilt_hf.curation.asr import load_audio

    stats = run_curate(config, transcriber=transcriber, load_audio=load_audio)
    pairs = load_from_disk(str(output / "pairs")).remove_columns(["image"])
    cache = output / "cache"
    scores = histology_scores(cache, stats["cache_keys"], truth)
    accuracy, total = pairing_accuracy(pairs, truth)
    precision, recall, counts = scores["all"]
    s_precision, s_recall, s_counts = scores["static"]
    everything = counts.get("tp", 0) + counts.get("fp", 0) + counts.get("fn", 0) + counts.get("tn", 0)
    baseline_precision = (counts.get("tp", 0) + counts.get("fn", 0)) / max(1, everything)
    print(f"demo corpus: {stats['videos']} videos, {stats['videos_kept']} kept, dropped {stats['dropped'] or 'none'}")
    print(f"ASR: {stats['models']['asr']}; histology: {stats['models']['histology']}; {stats['pairs']} pairs")
    print(f"histology frames (all key images):    precision {precision:.3f} (goal >= 0.95)  recall {recall:.3f} (goal >= 0.9)  {counts}")
    print(f"histology frames (static images only): precision {s_precision:.3f}  recall {s_recall:.3f}  {s_counts}")
    print(f"peer 'no filter' precision: {baseline_precision:.3f}  -> ratio {precision / max(1e-9, baseline_precision):.2f}x")
    print(f"pairing accuracy: {accuracy:.3f} over {total} pairs (goal >= 0.9)")
    if args.asr == "real":
        wer, words = asr_word_error_rate(cache, stats["cache_keys"], truth)
        print(f"ASR word error rate: {wer:.3f} over {words} words ({stats['models']['asr']})")
    print(f"timings (s): {stats['timings_s']}  total {stats['total_s']}")


if __name__ == "__main__":
    main()

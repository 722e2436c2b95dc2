"""Curation quality against exact ground truth, on the tuning set (demo corpus) or the held-out lectures.

Prints histology frame precision/recall over key images (goals on held out: >= 0.95 / >= 0.95), pairing
accuracy (pairs whose image comes from the interval that most of the pair's narration describes; goal >= 0.95),
the share of pairs whose narration holds off-topic chatter, ASR word error rate, and all of them per hard-case
kind (``hard_case`` of the held-out ground truth; the interval ``kind`` on the demo corpus).

ASR is real by default: the offline Whisper (``quilt_hf.curation.asr``, the model ``quilt curate`` resolves).
Transcripts, frames and decisions are kept in the pipeline's step cache under ``--output`` (default
``outputs/bench_curation/<corpus>-<asr>``), so a rerun only recomputes what changed. ``--asr oracle`` uses the
ground-truth narration instead (measures frames, histology and alignment alone).

Peers, in the same run: "no filter" (every key image called histology): its precision is the class prior, a
floor, not a rival. The zero-shot CLIP backend, the alternative a user would pick, cannot run offline: no
CLIP-like weights trained for images and text ship offline (``quiltnet-demo-base`` pairs pretrained towers with an
untrained projection); pass ``--histology zero-shot:MODEL`` to run it where weights exist.

Run: ``python bench/bench_curation.py [--corpus demo|heldout|FOLDER] [--asr real|oracle] [--histology SPEC]``;
``--smoke``: the shortest held-out lecture with oracle ASR (seconds).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPORA = {"demo": REPO / "demo_corpus", "heldout": REPO / "benchmarks" / "heldout_lectures"}
LABELS = {"demo": "tuning set (demo)", "heldout": "held out"}


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


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "  -  "


def case_table(histology: dict[str, Counter], pairing: dict[str, Counter]) -> list[str]:
    """One row per hard case: key images, how many are histology, precision/recall, pairs, pairing accuracy."""
    rows = [
        f"{'hard case':<18} {'key imgs':>8} {'histo':>6} {'called':>6} {'precision':>9} {'recall':>7} "
        f"{'pairs':>6} {'pairing':>8} {'off-topic':>9}"
    ]
    for case in sorted(set(histology) | set(pairing)):
        c, p = histology.get(case, Counter()), pairing.get(case, Counter())
        total = sum(c[k] for k in ("tp", "fp", "tn", "fn"))
        rows.append(
            f"{case:<18} {total:>8} {c['tp'] + c['fn']:>6} {c['tp'] + c['fp']:>6} "
            f"{_ratio(c['tp'], c['tp'] + c['fp']):>9} {_ratio(c['tp'], c['tp'] + c['fn']):>7} "
            f"{p['pairs']:>6} {_ratio(p['correct'], p['pairs']):>8} {p['off_topic']:>9}"
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=None, help="demo (default), heldout (default with --smoke), or a folder")
    parser.add_argument("--asr", choices=["real", "oracle"], default=None, help="default: real (oracle with --smoke)")
    parser.add_argument("--histology", default="learned", help="histology backend, as quilt curate --histology (default: its default)")
    parser.add_argument("--output", default=None, help="output folder with the step cache (kept for reruns)")
    parser.add_argument("--smoke", action="store_true", help="the shortest lecture of the corpus only (seconds)")
    args = parser.parse_args(argv)
    args.corpus = args.corpus or ("heldout" if args.smoke else "demo")
    asr = args.asr or ("oracle" if args.smoke else "real")

    from datasets import load_from_disk

    from quilt_hf.curation import pipeline
    from quilt_hf.curation.cli import CurateConfig, run_curate
    from quilt_hf.curation.scoring import (
        asr_word_error_rate,
        histology_scores,
        histology_scores_by_case,
        pair_image_times,
        pairing_by_case,
    )

    corpus = CORPORA.get(args.corpus, Path(args.corpus))
    label = LABELS.get(args.corpus, str(corpus))
    truth = {v["video_id"]: v for v in json.loads((corpus / "ground_truth.json").read_text())["videos"]}
    videos_dir = corpus
    scratch = None
    if args.smoke:  # the shortest lecture alone, in a folder of its own
        shortest = min(truth.values(), key=lambda v: v["duration"])
        truth = {shortest["video_id"]: shortest}
        scratch = Path(tempfile.mkdtemp(prefix="bench_curation_smoke_"))
        videos_dir = scratch / "videos"
        videos_dir.mkdir()
        (videos_dir / shortest["file"]).symlink_to(corpus / shortest["file"])
    name = f"{Path(args.corpus).name}-{asr}-{args.histology.replace('/', '_').replace(':', '_')}"
    output = Path(args.output) if args.output else (scratch or REPO / "outputs" / "bench_curation") / name
    config = CurateConfig(videos=str(videos_dir), output=str(output), text_backend="none", histology=args.histology)
    transcriber = None
    original = pipeline.Curation.transcribe
    if asr == "oracle":
        transcriber = OracleTranscriber(truth)

        def transcribe(self, row):
            transcriber.video_id = row["video_id"]
            return original(self, row)

        pipeline.Curation.transcribe = transcribe
    from quilt_hf.curation.asr import load_audio

    began = time.perf_counter()
    try:
        stats = run_curate(config, transcriber=transcriber, load_audio=load_audio)
    finally:
        pipeline.Curation.transcribe = original
    seconds = time.perf_counter() - began
    cache = Path(stats.get("cache_dir") or output / "cache")
    keys = stats["cache_keys"]
    pairs = load_from_disk(str(output / "pairs")).remove_columns(["image"])
    scores = histology_scores(cache, keys, truth)
    precision, recall, counts = scores["all"]
    s_precision, s_recall, s_counts = scores["static"]
    by_case = histology_scores_by_case(cache, keys, truth)
    pairing = pairing_by_case(pairs, truth, pair_image_times(cache, keys))
    n_pairs = sum(c["pairs"] for c in pairing.values())
    correct = sum(c["correct"] for c in pairing.values())
    off_topic = sum(c["off_topic"] for c in pairing.values())
    everything = sum(counts.get(k, 0) for k in ("tp", "fp", "tn", "fn"))
    prior = (counts.get("tp", 0) + counts.get("fn", 0)) / max(1, everything)
    duration = sum(v["duration"] for v in truth.values())

    print(f"== curation, {label}: {corpus.relative_to(REPO) if corpus.is_relative_to(REPO) else corpus}"
          f"{' (smoke: ' + next(iter(truth)) + ')' if args.smoke else ''}")
    print(f"{stats['videos']} videos ({duration:.0f} s), {stats['videos_kept']} kept, dropped {stats['dropped'] or 'none'}; "
          f"ASR: {stats['models']['asr']}; histology: {stats['models']['histology']}; {stats['pairs']} pairs")
    print(f"histology, all key images:    precision {precision:.3f} (goal >= 0.95)  recall {recall:.3f} "
          f"(goal >= 0.95)  {dict(sorted(counts.items()))}")
    print(f"histology, static images only: precision {s_precision:.3f}  recall {s_recall:.3f}  {dict(sorted(s_counts.items()))}")
    print(f"peer (floor) 'no filter', every key image called histology: precision {prior:.3f} recall 1.000 "
          f"-> precision ratio {precision / max(1e-9, prior):.2f}x")
    if args.histology == "heuristic":
        print("peer 'zero-shot CLIP' (--histology zero-shot:MODEL): not run, no CLIP weights trained for "
              "image-text matching are available offline")
    print(f"pairing accuracy: {correct / max(1, n_pairs):.3f} over {n_pairs} pairs (goal >= 0.95); "
          f"pairs whose narration holds off-topic chatter: {off_topic}")
    if asr == "real":
        wer, words = asr_word_error_rate(cache, keys, truth)
        print(f"ASR word error rate: {wer:.3f} over {words} reference words ({stats['models']['asr']})")
    else:
        print("ASR word error rate: not measured (oracle transcript)")
    print("per hard case (key images; pairs by the case of the image's interval):")
    for row in case_table(by_case, pairing):
        print("  " + row)
    print(f"time: {seconds:.1f} s for {duration:.0f} s of video (cache hits: {stats.get('cache_hits', {})}); "
          f"output {output}")
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Histology frame filters compared per hard case: precision, recall and ms/frame of each backend.

Frames are sampled from every ground-truth interval of a corpus (``--fps`` per second, 0.5 s away from the
interval's ends; an interval shorter than that gives its middle frame) and labelled with the interval's
``histology`` flag and its hard case (``hard_case`` in the held-out set, ``kind`` in the demo corpus). Every
backend classifies the same frames. Printed per backend: overall precision and recall (goal on the held-out
set: both >= 0.95), then per hard case the share of frames called histology (the recall for histology cases,
the false-positive rate for look-alikes), and ms per frame (one process, machine load noted by the caller).

Corpora: ``--corpus demo`` (``demo_corpus/``, the TUNING set: the learned filter's training frames come from it)
or ``--corpus heldout`` (``benchmarks/heldout_lectures/``, HELD OUT: nothing is trained or tuned on it), or a
folder with a ``ground_truth.json``.

Peer: ``heuristic`` (the stain-colour-and-texture rule, the filter a user had before). Any other ``--histology``
spec joins with ``--backends`` (e.g. ``zero-shot:<CLIP-like model>``). ``--quilt-ensemble DIR`` adds Quilt's
released ConvNeXt+DINO filter (the three files from wisdomik/QuiltNet-B-32 plus DINO's ViT-S/16 backbone).

Run: ``python bench/bench_histology.py [--corpus demo|heldout|DIR] [--backends heuristic,learned,...]
[--quilt-ensemble DIR] [--smoke]``. ``--smoke``: two demo videos at 0.2 fps, heuristic and learned only.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CORPORA = {"demo": REPO / "demo_corpus", "heldout": REPO / "benchmarks" / "heldout_lectures"}
LABELS = {"demo": "tuning set", "heldout": "held out"}


def sample_times(interval: dict, fps: float, margin: float = 0.5) -> list[float]:
    start, end = interval["start"] + margin, interval["end"] - margin
    if end <= start:
        return [(interval["start"] + interval["end"]) / 2]
    return list(np.arange(start, end, 1.0 / fps))


def labelled_frames(corpus: Path, fps: float, max_videos: int | None = None, size=(640, 360)):
    """``(frame, histology, case, video_id)`` for frames sampled inside every interval of the ground truth."""
    import decord
    from PIL import Image

    videos = json.loads((corpus / "ground_truth.json").read_text())["videos"][:max_videos]
    frames = []
    for video in videos:
        reader = decord.VideoReader(str(corpus / video["file"]), ctx=decord.cpu(0))
        rate = float(reader.get_avg_fps()) or 25.0
        wanted = []
        for interval in video["intervals"]:
            case = interval.get("hard_case") or interval["kind"]
            for t in sample_times(interval, fps):
                index = min(len(reader) - 1, int(round(t * rate)))
                wanted.append((index, bool(interval["histology"]), case))
        indices = sorted({w[0] for w in wanted})
        decoded = {}
        for offset in range(0, len(indices), 32):
            batch = indices[offset : offset + 32]
            for index, frame in zip(batch, reader.get_batch(batch).asnumpy()):
                image = Image.fromarray(frame)
                image.thumbnail(size)
                decoded[index] = np.asarray(image)
        frames += [(decoded[i], label, case, video["video_id"]) for i, label, case in wanted]
    return frames


def evaluate(classifier, frames, batch_size: int = 16) -> dict:
    decisions = []
    started = time.perf_counter()
    for offset in range(0, len(frames), batch_size):
        decisions += [flag for flag, _ in classifier.predict([f[0] for f in frames[offset : offset + batch_size]])]
    seconds = time.perf_counter() - started
    counts, per_case = Counter(), defaultdict(Counter)
    for flag, (_, label, case, _) in zip(decisions, frames):
        counts[("t" if flag == label else "f") + ("p" if flag else "n")] += 1
        per_case[(case, label)]["n"] += 1
        per_case[(case, label)]["called"] += int(flag)
    precision = counts["tp"] / max(1, counts["tp"] + counts["fp"])
    recall = counts["tp"] / max(1, counts["tp"] + counts["fn"])
    return {
        "precision": precision, "recall": recall, "counts": dict(counts),
        "per_case": {f"{case}|{'+' if label else '-'}": dict(c) for (case, label), c in per_case.items()},
        "ms_per_frame": 1000 * seconds / max(1, len(frames)),
    }


def default_backends() -> list[str]:
    """heuristic (the peer) and learned; zero-shot and image-classification models are added with --backends."""
    return ["heuristic", "learned"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="demo", help="demo (tuning set), heldout (held out), or a folder.")
    parser.add_argument("--backends", default=None, help="Comma-separated --histology specs (default: heuristic,learned).")
    parser.add_argument("--quilt-ensemble", default=None, help="A folder with Quilt's released filter files (adds quilt-ensemble:DIR).")
    parser.add_argument("--fps", type=float, default=1.0, help="Frames sampled per second inside each interval.")
    parser.add_argument("--json", default=None, help="Also write the figures here.")
    parser.add_argument("--smoke", action="store_true", help="Two demo videos at 0.2 fps, heuristic and learned: seconds.")
    args = parser.parse_args(argv)

    from quilt_hf.curation.histology import build_histology_classifier

    corpus = CORPORA.get(args.corpus, Path(args.corpus))
    label = LABELS.get(args.corpus, "other")
    if not (corpus / "ground_truth.json").is_file():
        parser.error(f"{corpus} has no ground_truth.json")
    if args.smoke:
        backends, fps, max_videos = ["heuristic", "learned"], 0.2, 2
    else:
        backends = args.backends.split(",") if args.backends else default_backends()
        fps, max_videos = args.fps, None
    if args.quilt_ensemble:
        backends.append(f"quilt-ensemble:{args.quilt_ensemble}")

    started = time.perf_counter()
    frames = labelled_frames(corpus, fps, max_videos)
    positives = sum(f[1] for f in frames)
    print(f"corpus {corpus.name} ({label}): {len(frames)} frames ({positives} histology) from "
          f"{len({f[3] for f in frames})} videos at {fps} fps, decoded in {time.perf_counter() - started:.0f} s")

    results = {}
    for spec in backends:
        classifier = build_histology_classifier(spec)
        if hasattr(classifier, "load"):
            classifier.load()
        results[spec] = evaluate(classifier, frames)
        r = results[spec]
        print(f"{spec:<40} precision {r['precision']:.3f}  recall {r['recall']:.3f}  {r['ms_per_frame']:.1f} ms/frame  {r['counts']}")

    cases = sorted({key for r in results.values() for key in r["per_case"]}, key=lambda k: (k.endswith("-"), k))
    names = [s if len(s) < 24 else s.split(":")[0] for s in backends]
    print(f"\nshare of frames called histology per hard case ({label}; '+' histology: recall, '-' look-alike: false-positive rate)")
    print(f"{'case':<24}{'n':>5}" + "".join(f"{n:>16}" for n in names))
    for key in cases:
        n = next(r["per_case"][key]["n"] for r in results.values() if key in r["per_case"])
        cells = "".join(
            f"{results[s]['per_case'][key]['called'] / results[s]['per_case'][key]['n']:>16.2f}" for s in backends
        )
        print(f"{key:<24}{n:>5}{cells}")
    peer = results.get("heuristic")
    if peer and "learned" in results:
        ours = results["learned"]
        print(f"\nlearned vs heuristic (peer): precision {ours['precision']:.3f} vs {peer['precision']:.3f}, "
              f"recall {ours['recall']:.3f} vs {peer['recall']:.3f}, speed {peer['ms_per_frame'] / max(ours['ms_per_frame'], 1e-9):.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"corpus": str(corpus), "label": label, "fps": fps, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

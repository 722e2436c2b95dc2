#!/usr/bin/env python
"""ASR stage speed and accuracy on the demo corpus narration, against named peers in the same run.

Peers, all on the same Whisper base weights and the same audio, ``--threads`` CPU threads:

- ``plain pipeline``: transformers' ``pipeline("automatic-speech-recognition")`` as a user would call it
  (float32, greedy, ``return_timestamps=True``, batch 1);
- ``ours transformers fp32`` / ``ours transformers int8``: ``WhisperTranscriber(backend="transformers")``;
- ``faster-whisper alone``: ``faster_whisper.WhisperModel`` on the CTranslate2 files of the offline package
  (greedy, timestamps, no VAD, float32), the same options our backend passes;
- ``ours faster-whisper``: ``WhisperTranscriber(backend="faster-whisper")``;
- beam search (not run by default; ``--peers ours-fp32 ours-beam fw-beam``): ``ours transformers beam N``
  (``WhisperTranscriber(num_beams=N)``, ``quilt curate --asr_beams N``) against ``faster-whisper beam N``
  (``beam_size=N``, faster-whisper's own default of 5), and against our greedy decoding (its cost).

Prints the real-time factor (seconds of audio per second of wall time), the word error rate against the
ground-truth narration, and the ratios the issue sets goals for: ours transformers / plain pipeline
(goal >= 2) and ours faster-whisper / faster-whisper alone (goal >= 0.9). Models are loaded and warmed up
before timing.

    python bench/bench_asr.py                       # the two shortest demo videos (~110 s of speech)
    python bench/bench_asr.py --videos demo07_skin_stain_quality --repeat 2
    python bench/bench_asr.py --peers ours-fp32 ours-beam fw-beam   # greedy vs beam search (5 beams)
    python bench/bench_asr.py --smoke   # 5 s of audio, a tiny random Whisper, two peers: checks that it runs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default=str(REPO / "demo_corpus"))
    parser.add_argument("--videos", nargs="*", help="video ids (default: the two shortest)")
    parser.add_argument("--model", default=None, help="transformers Whisper folder (default: offline whisper-base)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="measure every peer this many times")
    parser.add_argument("--beams", type=int, default=5, help="beam search width of the ours-beam and fw-beam peers")
    parser.add_argument("--peers", nargs="*", default=["plain", "ours-fp32", "ours-int8", "fw-alone", "ours-fw"])
    parser.add_argument("--smoke", action="store_true",
                        help="5 s of the shortest video, a tiny random Whisper (built here), plain vs ours-fp32 and ours-beam")
    args = parser.parse_args()
    smoke_dir = None
    if args.smoke:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _tiny_models import tiny_whisper

        smoke_dir = Path(tempfile.mkdtemp(prefix="bench_asr_smoke_"))
        args.model, args.peers, args.videos, args.repeat = str(tiny_whisper(smoke_dir)), ["plain", "ours-fp32", "ours-beam"], None, 1

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from quilt_hf.convert.offline_models import build_whisper_base_ct2
    from quilt_hf.curation.asr import WhisperTranscriber, load_audio
    from quilt_hf.metrics import wer
    from quilt_hf.models import resolve_model

    truth = json.loads((Path(args.corpus) / "ground_truth.json").read_text())["videos"]
    videos = [v for v in truth if not args.videos or v["video_id"] in args.videos]
    if not args.videos:
        videos = sorted(videos, key=lambda v: v["duration"])[:2]
    audios = [load_audio(Path(args.corpus) / v["file"]) for v in videos]
    if args.smoke:
        videos, audios = videos[:1], [audios[0][: 5 * 16000]]
    references = [" ".join(s["text"] for s in v["narration"]) for v in videos]
    seconds = sum(len(a) for a in audios) / 16000
    model = resolve_model(args.model, "asr")
    print(f"{len(videos)} videos, {seconds:.1f} s of audio, {args.threads} threads, model {model}")

    ct2_dir = Path(tempfile.mkdtemp(prefix="whisper-base-ct2-"))
    if {"fw-alone", "ours-fw", "fw-beam"} & set(args.peers):
        build_whisper_base_ct2(ct2_dir)  # the weights joined, the tokenizer with its restored merge

    def plain():
        from transformers import pipeline

        asr = pipeline("automatic-speech-recognition", model=model, dtype=torch.float32)
        return lambda audio: asr(audio.copy(), return_timestamps=True)["text"]

    def ours(backend: str, dtype: str, name: str, num_beams: int = 1):
        transcriber = WhisperTranscriber(name, backend=backend, dtype=dtype, num_beams=num_beams)
        transcriber._load()
        return lambda audio: transcriber.transcribe(audio).text

    def fw_alone(beam_size: int = 1):
        from faster_whisper import WhisperModel

        fw = WhisperModel(str(ct2_dir), device="cpu", compute_type="float32", cpu_threads=args.threads)

        def run(audio):
            segments, _ = fw.transcribe(audio, beam_size=beam_size, without_timestamps=False, vad_filter=False,
                                        condition_on_previous_text=False)
            return " ".join(s.text.strip() for s in segments)

        return run

    builders = {
        "plain": ("plain pipeline", plain),
        "ours-fp32": ("ours transformers fp32", lambda: ours("transformers", "float32", model)),
        "ours-int8": ("ours transformers int8", lambda: ours("transformers", "int8", model)),
        "fw-alone": ("faster-whisper alone", fw_alone),
        "ours-fw": ("ours faster-whisper", lambda: ours("faster-whisper", "float32", str(ct2_dir))),
        "ours-beam": (f"ours transformers beam {args.beams}", lambda: ours("transformers", "float32", model, args.beams)),
        "fw-beam": (f"faster-whisper beam {args.beams}", lambda: fw_alone(args.beams)),
    }
    warm = audios[0][: 16000 * 3]
    runners = {}
    for key in args.peers:
        _, build = builders[key]
        runners[key] = build()
        runners[key](warm)
    rtf: dict[str, list[float]] = {key: [] for key in runners}
    word_error: dict[str, float] = {}
    for round_ in range(args.repeat):
        for key, run in runners.items():
            start = time.perf_counter()
            texts = [run(audio) for audio in audios]
            rtf[key].append(seconds / (time.perf_counter() - start))
            word_error[key] = wer(references, texts)
            print(f"  round {round_ + 1} {builders[key][0]:<24} {rtf[key][-1]:6.2f}x real time  "
                  f"WER {word_error[key]:.3f}", flush=True)

    print("\nASR stage, real-time factor (higher is faster) and WER vs the ground-truth narration:")
    for key in runners:
        print(f"  {builders[key][0]:<24} {max(rtf[key]):6.2f}x real time  WER {word_error[key]:.3f}")
    for ours_key, peer, goal in (("ours-fp32", "plain", 2.0), ("ours-int8", "plain", 2.0), ("ours-fw", "fw-alone", 0.9),
                                 ("ours-beam", "fw-beam", None), ("ours-beam", "ours-fp32", None)):
        if ours_key in rtf and peer in rtf:
            ratios = [a / b for a, b in zip(rtf[ours_key], rtf[peer])]
            print(f"  ratio {builders[ours_key][0]} / {builders[peer][0]}: "
                  + ", ".join(f"{r:.2f}x" for r in ratios) + " per round"
                  + (f" (goal >= {goal}x)" if goal else " (speed, higher is faster)"))
    shutil.rmtree(ct2_dir, ignore_errors=True)
    if smoke_dir is not None:
        shutil.rmtree(smoke_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

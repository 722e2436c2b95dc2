#!/usr/bin/env python
"""Peak memory of the whole ``quilt curate`` command on one lecture looped to 5, 30 and 90 minutes.

One demo lecture (``demo02``, 640x360, 15 fps, AAC narration) is looped with a PyAV remux (no re-encoding)
into a temporary folder; ``quilt curate`` runs on each length in its own process, and the peak of the
process tree (the command and its decoding worker, RSS summed, sampled every 0.1 s with psutil) is
reported, with each process's own peak beside it (``main``: the command; ``worker``: the isolated decoding
worker, which runs only during the frame stage). Each length runs ``--repeats`` times (default 2): the
figures are the median and the largest of the runs, and the ratio is taken on the medians (and, as a bound,
largest long / smallest short). The RSS of a process depends on thread timing (glibc's per-thread heaps), so
one run of the same command can differ from the next by 10-30%: read the repeats, not one sample.

ASR runs the production path (``WhisperTranscriber.transcribe_file``: audio decoded and transcribed block by
block) with a tiny randomly initialised Whisper that has the real tokenizer and feature extractor (built
here, 4 MB of weights), so a 90-minute run finishes on a laptop CPU; ``--asr_model`` takes a real model
(whisper-base adds a fixed ~300 MB and hours of CPU). Peer: the same command on the 5-minute lecture; the
goal is every peak under 2 GB and the 90-minute one within 1.2x of the 5-minute one.

    python bench/bench_memory.py                      # 5, 30, 90 minutes
    python bench/bench_memory.py --minutes 5 30       # shorter
    python bench/bench_memory.py --repeats 3          # each length three times
    python bench/bench_memory.py --smoke              # 0.5 and 1 minute, once each, for tests (< 1 min)
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tiny_models import tiny_whisper  # noqa: E402 - bench/ helpers

LECTURE = REPO / "demo_corpus" / "demo02_skin_epidermis_high_power.mp4"


def loop_video(source: Path, target: Path, minutes: float) -> Path:
    """``source`` repeated (remuxed, not re-encoded) until it lasts ``minutes``; the last copy is cut."""
    import av

    with av.open(str(source)) as probe:  # one copy's span: first dts (B-frames, AAC priming) to last end
        packets = [(float(p.dts * p.time_base), float((p.pts + (p.duration or 0)) * p.time_base))
                   for p in probe.demux(*[s for s in probe.streams if s.type in ("video", "audio")])
                   if p.pts is not None and p.dts is not None]
        length = max(end for _, end in packets) - min(0.0, min(start for start, _ in packets))
    limit = minutes * 60.0
    with av.open(str(target), "w") as output:
        loops = 0
        streams = {}
        while loops * length < limit:
            with av.open(str(source)) as container:
                for stream in container.streams:
                    if stream.index not in streams and stream.type in ("video", "audio"):
                        streams[stream.index] = output.add_stream_from_template(stream)
                for packet in container.demux(*[s for s in container.streams if s.index in streams]):
                    if packet.pts is None or packet.dts is None:
                        continue
                    shift = math.ceil(loops * length / packet.time_base)
                    if (packet.pts + shift) * packet.time_base >= limit:
                        continue
                    packet.pts += shift
                    packet.dts += shift
                    packet.stream = streams[packet.stream.index]
                    output.mux(packet)
            loops += 1
    return target


def _label(member, root) -> str:
    """``main`` for the command itself, ``worker`` for the isolated decoding worker, else ``other``."""
    if member.pid == root.pid:
        return "main"
    try:
        return "worker" if "quilt_hf.curation.runners" in " ".join(member.cmdline()) else "other"
    except Exception:  # psutil.Error: the process ended between the listing and this read
        return "other"


def peak_of_command(argv: list[str], interval: float = 0.1) -> dict:
    """Run ``argv``; the peak RSS of its process tree (summed, sampled), of its largest process, and of each
    kind of process (``main``, ``worker``, ``other``), with the CPU seconds of the tree."""
    import psutil

    began = time.perf_counter()
    log = tempfile.TemporaryFile(mode="w+")  # not a pipe: progress bars must never fill it and block the run
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, text=True)
    root = psutil.Process(process.pid)
    peak = largest = 0
    by_kind: dict[str, int] = {"main": 0, "worker": 0}
    cpu: dict[int, float] = {}
    labels: dict[int, str] = {}
    while process.poll() is None:
        total = 0
        try:
            for member in [root, *root.children(recursive=True)]:
                try:
                    rss = member.memory_info().rss
                    times = member.cpu_times()
                except psutil.Error:
                    continue
                kind = labels.setdefault(member.pid, _label(member, root))
                cpu[member.pid] = times.user + times.system
                total += rss
                largest = max(largest, rss)
                by_kind[kind] = max(by_kind.get(kind, 0), rss)
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(interval)
    log.seek(0)
    stderr = log.read()
    log.close()
    if process.returncode != 0:
        raise SystemExit(f"quilt curate failed ({process.returncode}):\n{stderr[-3000:]}")
    return {"tree_peak_mb": peak / 2**20, "largest_process_mb": largest / 2**20, "seconds": time.perf_counter() - began,
            "cpu_seconds": sum(cpu.values()), **{f"{kind}_peak_mb": value / 2**20 for kind, value in by_kind.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, nargs="*", default=[5, 30, 90])
    parser.add_argument("--repeats", type=int, default=2, help="runs of each length (median and largest reported)")
    parser.add_argument("--asr_model", default=None, help="Whisper model (default: a tiny random one, built here)")
    parser.add_argument("--smoke", action="store_true", help="0.5 and 1 minute, once each (a quick check that it runs)")
    args = parser.parse_args()
    minutes = [0.5, 1.0] if args.smoke else sorted(args.minutes)
    repeats = 1 if args.smoke else max(1, args.repeats)
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        tmp = Path(tmp)
        model = args.asr_model or str(tiny_whisper(tmp / "tiny-whisper"))
        medians, largest, smallest = {}, {}, {}
        for length in minutes:
            videos = tmp / f"videos{length:g}"
            videos.mkdir()
            loop_video(LECTURE, videos / "lecture.mp4", length)
            runs = []
            for repeat in range(repeats):
                output = tmp / f"out{length:g}-{repeat}"  # a fresh output and cache each time: nothing reused
                argv = [sys.executable, "-c", "import sys; from quilt_hf.cli import main; sys.exit(main(sys.argv[1:]))",
                        "curate", "--videos", str(videos), "--output", str(output), "--asr_model", model,
                        "--language", "en", "--text_backend", "none", "--device", "cpu"]
                result = peak_of_command(argv)
                stats = json.loads((output / "stats.json").read_text())
                runs.append(result)
                print(f"{length:5g}-minute lecture, run {repeat + 1}: whole command peak {result['tree_peak_mb']:6.0f} MB "
                      f"(process tree; main process {result['main_peak_mb']:.0f} MB, decoding worker "
                      f"{result['worker_peak_mb']:.0f} MB), {result['seconds']:.0f} s wall, {result['cpu_seconds']:.0f} "
                      f"CPU-s, {stats['pairs']} pairs, dropped {stats['dropped'] or 'none'}", flush=True)
                shutil.rmtree(output, ignore_errors=True)
            peaks = [run["tree_peak_mb"] for run in runs]
            medians[length], largest[length], smallest[length] = statistics.median(peaks), max(peaks), min(peaks)
            print(f"{length:5g}-minute lecture: whole command peak median {medians[length]:6.0f} MB, largest "
                  f"{largest[length]:.0f} MB over {len(runs)} runs (main process median "
                  f"{statistics.median(r['main_peak_mb'] for r in runs):.0f} MB, worker median "
                  f"{statistics.median(r['worker_peak_mb'] for r in runs):.0f} MB)", flush=True)
        first, last = minutes[0], minutes[-1]
        print(f"peak {last:g} min / {first:g} min (peer: the same command on the {first:g}-minute lecture): "
              f"{medians[last] / medians[first]:.2f}x on medians, at most {largest[last] / smallest[first]:.2f}x "
              f"(largest {last:g}-min run / smallest {first:g}-min run); largest peak {max(largest.values()):.0f} MB"
              f"   (goal: < 2048 MB and <= 1.2x)   ASR model: {'tiny random Whisper' if not args.asr_model else model}")


if __name__ == "__main__":
    main()

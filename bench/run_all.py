"""Run the benchmarks that the default install (`make install` + `make models`) can run, one after another.

Each benchmark prints its own figures and its ratio against a named peer measured in the same run. Those that
need more than the default install are listed at the end with what they need (see bench/README.md).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

DEFAULT = [
    ("curation quality, tuning set (demo), real ASR, vs 'no filter'", ["bench_curation.py", "--corpus", "demo"]),
    ("curation quality, held out, real ASR, vs 'no filter'", ["bench_curation.py", "--corpus", "heldout"]),
    ("frame stage vs plain PyAV decode, memory 5 vs 30 min", ["bench_frames.py"]),
    ("text stage vs a difflib corrector (simulated ASR noise)", ["bench_text.py", "--simulate"]),
    ("evaluation overhead vs the bare forward", ["bench_eval.py"]),
    ("histology filters per hard case, tuning set (demo), vs the heuristic", ["bench_histology.py", "--corpus", "demo"]),
    ("histology filters per hard case, held out, vs the heuristic", ["bench_histology.py", "--corpus", "heldout"]),
    ("Quilt-1M import/publish at 1M rows vs pandas; dedup vs imagehash", ["bench_quilt1m.py"]),
    ("quilt app paging and search on 1M generated pairs vs datasets / substring scan / numpy", ["bench_app.py"]),
]
NEEDS_MORE = [
    ("bench_asr.py", "faster-whisper peers: pip install 'quilt_hf[faster-whisper]'"),
    ("bench_text.py (real ASR)", "minutes of Whisper transcription; add --asr faster-whisper with that extra"),
    ("bench_training.py", "open_clip in its own venv (torchvision): see the script's docstring"),
    ("bench_memory.py", "the whole quilt curate command on 5/30/90-minute lectures: about an hour of CPU (--minutes 5 30 90)"),
    ("bench_ray.py", "the ray extra; several minutes of whisper-base on CPU with --asr_model (see its docstring)"),
]


def main() -> int:
    failed = []
    for title, command in DEFAULT:
        print(f"\n=== {title}: {' '.join(command)}", flush=True)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, str(BENCH / command[0]), *command[1:]], check=False)
        print(f"=== {command[0]}: exit {result.returncode} in {time.perf_counter() - started:.0f} s", flush=True)
        if result.returncode:
            failed.append(command[0])
    print("\nNot run here (need more than the default install):")
    for name, need in NEEDS_MORE:
        print(f"  {name}: {need}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

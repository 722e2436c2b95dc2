#!/usr/bin/env python
"""Ray's overhead and the Ray driver's memory: ``quilt curate --runner ray`` against the local runner.

1. Overhead: ``quilt curate`` on the same videos (demo lectures cut to ``--minutes``) with the local runner
   (the peer: the default runner a user would otherwise run, datasets ``map`` in one process) and with
   ``--runner ray`` on a local Ray (``--ray_num_cpus`` logical CPUs); each run has its own fresh step cache, each
   in its own process. Like with like: both runs are pinned to the same ``--cores`` CPU cores (default 1, so
   Ray's overlap of stages cannot hide its overhead) and run Whisper on one thread (``OMP_NUM_THREADS=1``
   for the local run, ``--ray_actor_threads 1`` for Ray; ``--threads default``: each runner's own default).
   Printed: both walls, the ratio (goal under 1.15 on a run of several minutes), CPU-seconds of each run (the
   driver and every process it started, Ray's included), and Ray's fixed start (``ray.init`` in the driver)
   with the ratio without it. Where the time goes: CPU-seconds per kind of process (driver, Ray daemons, Ray
   Data's own actors, model actors, CPU task workers, decoding processes), each process sampled every 0.5 s
   while it lives (Ray ends workers and actors before the run ends: summing the processes still up at the end
   missed their CPU and read as idle time), the idle core-seconds (wall x cores - CPU), and from the Ray run's ``stats.json`` the wall seconds before the first and after the last
   step and the worker processes per step.
2. Driver memory: the Ray driver's peak RSS (``VmHWM`` of the driver process alone, not ``ru_maxrss``, which
   also holds the bench process's peak at the exec that started the driver; Ray's own daemons and workers are
   separate processes), and its peak by kind (anonymous, file-backed, shared), with the videos above, then with 10x as many videos (``--scales``; hard links of the
   same files, so their steps are mostly cache hits and the pairs table grows 10x). Goal: flat (~1.1x).

Per-stage throughput (hours of video per hour of step time: summed worker time under Ray) comes from each
run's ``stats.json`` and is printed too.

3. ``--beside_ray`` (only this): Whisper in a plain process (niceness 0, torch's threads) on the first lecture's
   first ``--minutes``, pinned to the same ``--cores`` as a local Ray: alone, beside an idle Ray, beside a Ray
   streaming a Ray Data pipeline (CPU tasks, then an actor) whose work is sleep, the same with every thread of
   Ray's processes in ``SCHED_IDLE``, and alone again; with the CPU-seconds Ray's processes used meanwhile. The
   smoke run does it too, on a few seconds of audio, beside the busy Ray only.
4. ``--in_actor`` (only this): Whisper loaded and warmed up in a constructor, as the runner's model actor does,
   then called 3 times on the first lecture's first ``--minutes``: in a plain process (the peer), in a Ray Data
   actor pool as Ray Data builds it by default (the call on a thread of its own), and in the runner's pool (the
   call on the constructor's thread), in that order (rerun it to see the machine's drift); median wall per call,
   CPU/wall and the calling thread. The smoke run does it too, one call on a few seconds of audio.

ASR is the production path with the offline whisper-base (``make models``; ``--asr_model`` names another, and
a tiny random Whisper, real tokenizer and feature extractor, is built when there is none); histology is the
heuristic classifier; no text stage.

    python bench/bench_ray.py                  # 3 lectures x 2 min (6 min of video), whisper-base, 1 core each
    python bench/bench_ray.py --videos 3 --minutes 5   # 15 min of video, about 2 min of wall time per runner
    python bench/bench_ray.py --videos 3 --minutes 5 --cores 2   # both cores, Ray's stages overlap
    python bench/bench_ray.py --videos 3 --minutes 5 --cores 2 --threads default   # as a user runs them
    python bench/bench_ray.py --beside_ray --minutes 5 --cores 2   # what Ray's own processes cost Whisper
    python bench/bench_ray.py --in_actor --minutes 1 --cores 2     # what the actor's calling thread costs Whisper
    python bench/bench_ray.py --smoke          # 1 lecture x 0.25 min, tiny random Whisper, all cores, no 10x run
                                               # (Ray start dominates; the tiny random Whisper hears no speech)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tiny_models import tiny_whisper  # noqa: E402 - bench/ helpers
from bench_memory import loop_video  # noqa: E402

LECTURES = sorted((REPO / "demo_corpus").glob("demo0*.mp4"))
# Every child script starts pinned to BENCH_RAY_CORES, before anything starts (Ray's daemons and workers inherit
# the affinity).
PINNED = """
import os
cores = [int(c) for c in os.environ.get("BENCH_RAY_CORES", "").split(",") if c]
if cores:
    os.sched_setaffinity(0, cores)
"""
DRIVER = PINNED + """
import resource, sys, time
import ray
init = ray.init
def timed_init(*args, **kwargs):
    began = time.perf_counter()
    try:
        return init(*args, **kwargs)
    finally:
        print("RAY_INIT_S", time.perf_counter() - began, file=sys.stderr)
ray.init = timed_init
import json, threading
try:
    import psutil  # CPU time of this process and every process it started (a dependency of accelerate)
except ImportError:
    psutil = None
seen = {}  # pid -> [role, CPU-s]: every process of the run, sampled while it lives (Ray ends its workers before
           # the run ends; summing the processes still up at the end missed their CPU)
def role(process):
    if process.pid == os.getpid():
        return "driver (quilt curate)"
    line = " ".join(process.cmdline()[:4])
    name = line.split()[0] if line else process.name()
    if "quilt_hf.curation.runners" in line:
        return "decoding processes"
    if "MapWorker" in name:
        return "Ray model actors"
    if any(k in name for k in ("_StatsActor", "_AutoscalingCoordinator", "ActorLocationTracker")):
        return "Ray Data's own actors"
    if name.startswith("ray::") and not any(k in name for k in ("Agent",)):
        return "Ray CPU task workers"
    return "Ray daemons (gcs, raylet, agents, log monitor)"
peaks = {}  # the driver's own resident memory by kind (kB), peak of each over the samples: anonymous (its heap),
           # file-backed (memory-mapped arrow tables and libraries: the kernel reclaims these) and shared (Ray's object
           # store); VmHWM counts all three together
def sample_memory():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                key = line.split(":")[0]
                if key in ("RssAnon", "RssFile", "RssShmem", "VmHWM"):
                    peaks[key] = max(peaks.get(key, 0), int(line.split()[1]))
    except OSError:  # not Linux
        pass
def sample():
    me = psutil.Process()
    for process in [me] + me.children(recursive=True):
        try:
            with process.oneshot():
                t = process.cpu_times()
                seen[process.pid] = [role(process), t.user + t.system]  # its own CPU: a reaped child is sampled too
        except psutil.Error:
            pass
stop = threading.Event()
def sampler():
    while not stop.wait(0.5):
        sample()
def memory_sampler():
    while not stop.wait(0.05):
        sample_memory()
threading.Thread(target=memory_sampler, daemon=True).start()
if psutil is not None:
    threading.Thread(target=sampler, daemon=True).start()
from quilt_hf.cli import main
code = main(sys.argv[1:])
sample_memory()
# VmHWM is this process's own peak; ru_maxrss also holds the bench process's peak at the exec that started this one
print("DRIVER_MAXRSS_KB", peaks.get("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
print("DRIVER_PEAK_KINDS_KB", json.dumps(peaks), file=sys.stderr)
if psutil is not None:
    stop.set()
    sample()
    roles = {}
    for name, cpu in seen.values():
        roles[name] = roles.get(name, 0.0) + cpu
    print("CPU_S", sum(roles.values()), file=sys.stderr)
    print("CPU_ROLES", json.dumps(roles), file=sys.stderr)
sys.exit(code)
"""


WHISPER = PINNED + """
import sys, time
from quilt_hf.curation.asr import WhisperTranscriber, load_audio
model, video, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
transcriber = WhisperTranscriber(model=model, language="en")
transcriber.load()
audio = load_audio(video)[: int(16000 * seconds)]
transcriber.transcribe(audio[:16000 * 5])  # warm-up
began = time.perf_counter()
transcriber.transcribe(audio)
print("WHISPER_S", time.perf_counter() - began)
"""
BESIDE_RAY = PINNED + """
import sys, time
os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"  # a Ray Data call after the shutdown must not start another Ray
import ray
ray.init(address="local", num_cpus=len(cores) or None, include_dashboard=False, log_to_driver=False)
print("UP", flush=True)
if sys.argv[1] == "busy":  # a streaming pipeline like curation's (CPU tasks, then an actor) whose work is sleep
    import ray.data

    class Actor:
        def __call__(self, batch):
            time.sleep(1.0)
            return batch

    def task(batch):
        time.sleep(0.25)
        return batch

    def run():
        while not stop.is_set():  # for as long as the measurement lasts
            data = ray.data.range(2000, override_num_blocks=2000).map_batches(task, batch_size=None, num_cpus=0.5)
            for _ in data.map_batches(Actor, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0.25,
                                      batch_size=None).iter_batches():
                if stop.is_set():
                    break

    import threading

    stop = threading.Event()
    threading.Thread(target=run, daemon=True).start()
sys.stdin.readline()
stop.set()
ray.shutdown()
os._exit(0)
"""

IN_ACTOR = PINNED + """
import resource, statistics, sys, threading, time
os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"
mode, model, video, seconds, calls = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])


class Whisper:  # like the runner's model actor: the model is loaded (and warmed up) in the constructor
    def __init__(self):
        import torch

        from quilt_hf.curation.asr import WhisperTranscriber, load_audio
        from quilt_hf.curation.ray_runner import cpu_actor_threads

        torch.set_num_threads(cpu_actor_threads(0, 1, len(cores) or os.cpu_count()))
        self.transcriber = WhisperTranscriber(model=model, language="en")
        self.transcriber.load()
        self.audio = load_audio(video)[: int(16000 * seconds)]
        self.transcriber.transcribe(self.audio[: 16000 * 5])

    def __call__(self, batch):
        walls, cpu = [], 0.0
        for _ in range(calls):
            before, began = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            self.transcriber.transcribe(self.audio)
            walls.append(time.perf_counter() - began)
            after = resource.getrusage(resource.RUSAGE_SELF)
            cpu += after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        batch["figures"] = [f"{statistics.median(walls)} {cpu / sum(walls)} {threading.current_thread().name}"]
        return batch


if mode == "plain":
    print("FIGURES", Whisper()({})["figures"][0])
else:
    import ray
    import ray.data

    from quilt_hf.curation.ray_runner import _model_pool

    ray.init(address="local", num_cpus=len(cores) or None, include_dashboard=False, log_to_driver=False)
    pool = _model_pool(ray.data, 1) if mode == "runner" else ray.data.ActorPoolStrategy(size=1)
    rows = ray.data.range(1).map_batches(Whisper, compute=pool, num_cpus=0.25, batch_size=None).take_all()
    print("FIGURES", rows[0]["figures"])
    ray.shutdown()
"""


def child_env(cores: list[int], one_thread: bool) -> dict[str, str]:
    """A child script's environment: pinned to ``cores`` (PINNED), torch on one thread with ``one_thread``, else
    on each runner's own default (torch: a thread per core; Ray: its actor's CPUs, at least one)."""
    env = dict(os.environ, BENCH_RAY_CORES=",".join(map(str, cores)))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if one_thread:
            env[name] = "1"
        else:
            env.pop(name, None)
    return env


def whisper_in_actor(model: str, video: Path, seconds: float, cores: list[int], calls: int = 3) -> dict:
    """Whisper on ``seconds`` of ``video``'s audio, ``calls`` times, loaded and warmed up in a constructor as
    the runner's model actor is: in a plain process (the peer, called on the main thread), in a Ray Data actor
    pool as Ray Data builds it by default (the call on a thread of its own), and in the runner's pool
    (``ray_runner._model_pool``: the call on the constructor's thread). Returns per mode the median wall per call,
    CPU-seconds per wall second during the calls (about the cores used: OpenMP workers that spin between
    parallel regions show as busy) and the calling thread."""
    env = child_env(cores, one_thread=False)
    figures = {}
    for mode in ("plain", "default", "runner"):
        try:
            done = subprocess.run([sys.executable, "-c", IN_ACTOR, mode, model, str(video), str(seconds), str(calls)],
                                  env=env, capture_output=True, text=True, check=False, timeout=600 + 10 * seconds * calls)
        except subprocess.TimeoutExpired as error:
            raise SystemExit(f"Whisper ({mode}) did not finish in {error.timeout:.0f} s") from error
        line = next((x for x in done.stdout.splitlines() if x.startswith("FIGURES")), None)
        if done.returncode != 0 or line is None:
            raise SystemExit(f"Whisper ({mode}) failed ({done.returncode}):\n{done.stderr[-3000:]}")
        wall, cpu, thread = line.split(None, 3)[1:]
        figures[mode] = {"wall": float(wall), "cpu_per_wall": float(cpu), "thread": thread}
    return figures


def whisper_beside_ray(model: str, video: Path, seconds: float, cores: list[int],
                       modes: tuple[str, ...] = ("idle", "busy", "busy, SCHED_IDLE")) -> dict:
    """Whisper in a plain process (niceness 0, torch's threads, one per core) on ``seconds`` of ``video``'s
    audio, on ``cores``: alone; then beside a local Ray per ``mode``: idle; running a streaming Ray Data pipeline
    whose tasks and actor only sleep ("busy"); the same with every thread of Ray's processes (driver included)
    in ``SCHED_IDLE`` (they run only on otherwise idle cores); then alone again. Returns the walls, the
    CPU-seconds Ray's processes used during each run beside them (every process sampled every 0.5 s while it
    lives) and, for SCHED_IDLE, how many of their threads were switched."""
    import threading

    import psutil

    env = child_env(cores, one_thread=False)

    def whisper() -> float:
        done = subprocess.run([sys.executable, "-c", WHISPER, model, str(video), str(seconds)], env=env,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"Whisper failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return float(next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("WHISPER_S")))

    def processes(holder: psutil.Process) -> list:
        try:
            return [holder] + holder.children(recursive=True)
        except psutil.Error:
            return []

    def cpu(process) -> float | None:
        try:
            times = process.cpu_times()
            return times.user + times.system
        except psutil.Error:
            return None

    def to_sched_idle(found: list) -> tuple[int, int]:
        switched = total = 0
        for process in found:
            try:
                threads = process.threads()
            except psutil.Error:
                continue
            for thread in threads:
                total += 1
                try:
                    os.sched_setscheduler(thread.id, os.SCHED_IDLE, os.sched_param(0))
                    switched += 1
                except OSError:  # the thread ended meanwhile
                    pass
        return switched, total

    def beside(mode: str) -> dict:
        log = tempfile.TemporaryFile(mode="w+")
        holder = subprocess.Popen([sys.executable, "-c", BESIDE_RAY, mode.split(",")[0]], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        seen: list = []
        try:
            if holder.stdout.readline().strip() != "UP":
                log.seek(0)
                raise SystemExit(f"the local Ray did not start:\n{log.read()[-3000:]}")
            time.sleep(5)  # Ray's start-up work (workers, agents) is over; the pipeline is running
            root = psutil.Process(holder.pid)
            figures = {}
            if "SCHED_IDLE" in mode:
                figures["switched"] = to_sched_idle(processes(root))
            start = {p.pid: cpu(p) or 0.0 for p in processes(root)}
            last = dict(start)
            stop = threading.Event()

            def sample():
                while not stop.wait(0.5):
                    for process in processes(root):
                        value = cpu(process)
                        if value is not None:
                            last[process.pid] = value

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            figures["wall"] = whisper()
            stop.set()
            sampler.join()
            seen = processes(root)
            figures["ray_cpu_s"] = sum(value - start.get(pid, 0.0) for pid, value in last.items())
            return figures
        finally:
            holder.stdin.close()  # the holder shuts its Ray down and exits
            try:
                holder.wait(timeout=120)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait()
            log.close()
            # Ray's agents may outlive their raylet for a minute or two: end what the holder's Ray left behind
            _, alive = psutil.wait_procs(seen, timeout=5)
            for process in alive:
                try:
                    process.kill()
                except psutil.Error:
                    pass

    figures = {"alone": {"wall": whisper()}}
    for mode in modes:
        figures[mode] = beside(mode)
    figures["alone again"] = {"wall": whisper()}
    return figures


def curate(videos: Path, output: Path, asr_model: str, extra: list[str], cache: Path | None = None,
           cores: list[int] | None = None, one_thread: bool = True) -> dict:
    """One ``quilt curate`` process (pinned to ``cores``; Whisper on one thread with ``one_thread``, else on the
    runner's default threads); returns its wall time,
    CPU-seconds, Ray's start, the driver's peak RSS and its stats.json."""
    argv = [sys.executable, "-c", DRIVER, "curate", "--videos", str(videos), "--output", str(output),
            "--asr_model", asr_model, "--text_backend", "none", "--histology", "heuristic",
            *(["--cache_dir", str(cache)] if cache else []), *extra]
    env = child_env(cores or [], one_thread)
    began = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"quilt curate failed ({done.returncode}):\n{done.stderr[-3000:]}")
    rss = [int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("DRIVER_MAXRSS_KB")]
    init = [float(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("RAY_INIT_S")]
    stats = json.loads((output / "stats.json").read_text())
    cpu = [float(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("CPU_S")]
    roles = [json.loads(line.split(None, 1)[1]) for line in done.stderr.splitlines() if line.startswith("CPU_ROLES")]
    kinds = [json.loads(line.split(None, 1)[1]) for line in done.stderr.splitlines()
             if line.startswith("DRIVER_PEAK_KINDS_KB")]
    return {"wall_s": wall, "cpu_s": cpu[-1] if cpu else float("nan"), "ray_init_s": sum(init), "stats": stats,
            "driver_peak_mb": rss[-1] / 1024 if rss else float("nan"), "cpu_roles": roles[-1] if roles else {},
            "driver_peak_kinds_mb": {k: v / 1024 for k, v in (kinds[-1] if kinds else {}).items()},
            "cores": len(cores or os.sched_getaffinity(0))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=3, help="Demo lectures to use (at most 7).")
    parser.add_argument("--minutes", type=float, default=2.0, help="Each lecture cut (or looped) to this length.")
    parser.add_argument("--cores", type=int, default=1, help="CPU cores both runs are pinned to (the same ones).")
    parser.add_argument("--ray_num_cpus", type=int, default=None, help="Logical CPUs of the local Ray (default: "
                                                                         "--cores, the cores it really has).")
    parser.add_argument("--threads", choices=["one", "default"], default="one",
                        help="Whisper's threads: one in both runs (like with like, the default), or each runner's "
                             "own default, as a user runs them (the local runner: torch's, one per core; Ray: "
                             "--ray_actor_threads 0, the node's CPUs shared among the Whisper actors)")
    parser.add_argument("--asr_model", default=None, help="Whisper folder (default: the offline whisper-base, "
                                                          "else a tiny random Whisper).")
    parser.add_argument("--scales", type=lambda text: sorted({int(x) for x in text.split(",")}), default=[10],
                        help="Comma-separated multiples of the videos for the driver-memory runs (hard links; "
                             "mostly cache hits), e.g. 10,100: a slope or a fixed step.")
    parser.add_argument("--smoke", action="store_true", help="1 lecture x 0.25 min, tiny random Whisper: checks the "
                                                             "script runs.")
    parser.add_argument("--beside_ray", action="store_true",
                        help="Only time Whisper (the first lecture's first --minutes, torch's threads) in a plain "
                             "process on the same --cores as a local Ray: alone, beside an idle Ray, beside a Ray "
                             "running a pipeline whose work is sleep (with and without SCHED_IDLE for Ray's "
                             "threads), alone again: what slows Whisper beside Ray's own processes.")
    parser.add_argument("--in_actor", action="store_true",
                        help="Only this: Whisper loaded in a constructor and called in a plain process, in a Ray "
                             "Data actor pool as Ray Data builds it by default, and in the runner's pool: wall per "
                             "call and CPU/wall (what the thread the actor is called on costs Whisper).")
    args = parser.parse_args(argv)
    if args.smoke:  # every core: the smoke run only checks the script, and Ray's start is faster on two
        args.videos, args.minutes, args.cores = 1, 0.25, len(os.sched_getaffinity(0))
    cores = sorted(os.sched_getaffinity(0))[: max(1, args.cores)]
    args.ray_num_cpus = args.ray_num_cpus or len(cores)
    with tempfile.TemporaryDirectory(prefix="bench_ray_") as tmp:
        tmp = Path(tmp)
        model = args.asr_model
        if model is None and not args.smoke:
            from quilt_hf.models import offline_model_path

            model = str(offline_model_path("asr") or "") or None
        model_label = model or "tiny random Whisper"
        model = model or str(tiny_whisper(tmp / "tiny-whisper"))
        videos = tmp / "videos"
        videos.mkdir()
        # the Whisper-only modes use the first lecture alone
        for lecture in LECTURES[: 1 if (args.in_actor or args.beside_ray) else args.videos]:
            loop_video(lecture, videos / lecture.name, args.minutes)
        if args.in_actor or args.smoke:
            first = videos / LECTURES[0].name
            found = whisper_in_actor(model, first, args.minutes * 60, cores, calls=1 if args.smoke else 3)
            print(f"bench_ray --in_actor: Whisper ({model_label}) on {args.minutes:g} min of {first.name}, loaded in a "
                  f"constructor, torch threads as the runner sets them, pinned to core(s) {cores}; median of "
                  f"{1 if args.smoke else 3} call(s):")
            labels = {"plain": "plain process (peer)", "default": "Ray Data actor, default pool",
                      "runner": "Ray Data actor, runner's pool"}
            for mode, run in found.items():
                print(f"  {labels[mode]:30s} {run['wall']:7.2f} s (ratio {run['wall'] / found['plain']['wall']:.2f}), "
                      f"CPU/wall {run['cpu_per_wall']:.2f}, called on {run['thread']}")
            if args.in_actor:
                return 0
        if args.beside_ray or args.smoke:
            first = videos / LECTURES[0].name
            # the smoke run checks one Ray beside Whisper; the measurement runs all three
            modes = ("busy",) if args.smoke else ("idle", "busy", "busy, SCHED_IDLE")
            beside = whisper_beside_ray(model, first, args.minutes * 60, cores, modes)
            print(f"bench_ray --beside_ray: Whisper ({model_label}) in a plain process at niceness 0 on torch's "
                  f"threads, {args.minutes:g} min of {first.name}, pinned to core(s) {cores} like the local Ray:")
            for label, run in beside.items():
                extra = ""
                if "ray_cpu_s" in run:
                    extra = f"; Ray's processes used {run['ray_cpu_s']:.1f} CPU-s"
                if "switched" in run:
                    extra += f"; {run['switched'][0]} of {run['switched'][1]} of their threads in SCHED_IDLE"
                name = label if label.startswith("alone") else f"{label} Ray"
                print(f"  {name:22s} {run['wall']:7.2f} s (ratio {run['wall'] / beside['alone']['wall']:.2f}{extra})")
            print("  (idle Ray: a local Ray started like the runner's, without its runtime_env, worker limit and step "
                  "niceness; busy Ray: it runs a streaming Ray Data pipeline of CPU tasks and an actor that only "
                  "sleep; SCHED_IDLE: every thread of Ray's processes, driver included, runs only on otherwise idle "
                  "cores)")
            if args.beside_ray:
                return 0
        ray_args = ["--runner", "ray", "--ray_num_cpus", str(args.ray_num_cpus), "--ray_task_cpus", "0.5"]
        one_thread = args.threads == "one"
        if one_thread:
            ray_args += ["--ray_actor_threads", "1"]
        local = curate(videos, tmp / "local", model, [], cores=cores, one_thread=one_thread)
        ray = curate(videos, tmp / "ray", model, ray_args, cores=cores, one_thread=one_thread)
        scaled = {}  # times as many videos -> that Ray run
        for scale in ([] if args.smoke else args.scales):  # the smoke run only checks the script: one Ray run
            many = tmp / f"many{scale}"
            many.mkdir()
            for copy in range(scale):
                for video in videos.iterdir():
                    os.link(video, many / f"c{copy}_{video.name}")
            scaled[scale] = curate(many, tmp / f"ray{scale}", model, ray_args, cache=tmp / "ray" / "cache")
    hours = local["stats"]["video_hours"]
    print(f"bench_ray: {args.videos} lecture(s) x {args.minutes:g} min ({hours * 60:.1f} min of video), "
          f"ASR {model_label} on {'1 thread' if one_thread else 'the default threads of each runner'}, "
          f"heuristic histology, both runs pinned to core(s) {cores}, local Ray with "
          f"{args.ray_num_cpus} logical CPUs (wall figures are noisy on a loaded machine)")
    same = (local["stats"]["pairs"], local["stats"]["videos_kept"]) == (ray["stats"]["pairs"], ray["stats"]["videos_kept"])
    print(f"  same pairs and kept videos: {same} ({local['stats']['pairs']} pairs)")
    print(f"  wall: local runner (peer) {local['wall_s']:.1f} s, Ray {ray['wall_s']:.1f} s, "
          f"ratio {ray['wall_s'] / local['wall_s']:.2f} (goal < 1.15 on a run of several minutes)")
    print(f"  CPU-seconds: local runner {local['cpu_s']:.1f}, Ray {ray['cpu_s']:.1f} "
          f"(ratio {ray['cpu_s'] / max(local['cpu_s'], 1e-9):.2f})")
    print(f"  Ray's fixed start (ray.init in the driver): {ray['ray_init_s']:.1f} s; Ray wall without it "
          f"{ray['wall_s'] - ray['ray_init_s']:.1f} s, ratio {(ray['wall_s'] - ray['ray_init_s']) / local['wall_s']:.2f}")
    print("  where the time goes (CPU-seconds per kind of process, every process sampled every 0.5 s while it "
          "lived, so one that lived under 0.5 s is missed; idle = wall x cores - CPU):")
    for label, run in (("local runner", local), ("Ray", ray)):
        idle = run["wall_s"] * run["cores"] - run["cpu_s"]
        parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in sorted(run["cpu_roles"].items(),
                                                                           key=lambda item: -item[1]))
        print(f"    {label}: {parts}; idle core-seconds {idle:.1f}")
    print(f"  Ray run: wall seconds before the first step (Ray start, workers, models) and after the last: "
          f"{json.dumps(ray['stats'].get('ray_timeline_s', {}))}; Ray worker processes per step (one per "
          f"video would mean Ray restarted its workers): {json.dumps(ray['stats'].get('ray_worker_processes', {}))}")
    print(f"  driver peak RSS: local runner {local['driver_peak_mb']:.0f} MB, Ray {ray['driver_peak_mb']:.0f} MB "
          f"with {args.videos} video(s)")
    def kinds(run: dict) -> str:
        found = run["driver_peak_kinds_mb"]
        return ", ".join(f"{label} {found[key]:.0f}" for key, label in
                         (("RssAnon", "anonymous"), ("RssFile", "file-backed"), ("RssShmem", "shared")) if key in found)

    with_more = "".join(f"; with {scale}x the videos: {kinds(run)}" for scale, run in scaled.items())
    print(f"  Ray driver's peak resident memory by kind, MB (sampled every 0.05 s): {kinds(ray) or 'not on Linux'}"
          f"{with_more} (anonymous is its own heap; file-backed pages of memory-mapped tables and libraries and "
          "Ray's shared object store are reclaimable or shared; the peak RSS above counts them all)")
    if not scaled:
        print("  Ray driver with more videos: skipped in --smoke")
    for scale, run in scaled.items():
        print(f"  Ray driver peak RSS with {scale * args.videos} videos ({run['stats']['pairs']} pairs): "
              f"{run['driver_peak_mb']:.0f} MB, ratio {run['driver_peak_mb'] / ray['driver_peak_mb']:.2f} "
              f"to {args.videos} video(s) ({ray['stats']['pairs']} pairs) (goal ~1, flat); that run (steps all "
              f"cache hits, not pinned): wall {run['wall_s']:.1f} s, {run['cpu_s']:.1f} CPU-s")
    print("  throughput, hours of video per hour of step time (local wall | Ray summed worker time):")
    for name in local["stats"]["throughput_video_h_per_h"]:
        ray_value = ray["stats"]["throughput_video_h_per_h"].get(name)
        print(f"    {name:28s} {local['stats']['throughput_video_h_per_h'][name]:10.1f} | "
              f"{'-' if ray_value is None else f'{ray_value:.1f}':>10}")
    if not same:
        print("  ERROR: the runners disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Ray Data runner on a local Ray (2 CPUs): same results as the local runner, a killed worker costs a retry,
a video that keeps killing its worker is a recorded drop, the driver never collects the table, and the local
runner never imports Ray."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _curation_helpers import (
    BatchingTranscriber,
    FakeTranscriber,
    KillingTranscriber,
    SlowTranscriber,
    ThreadsRecordingTranscriber,
    UnloadableTranscriber,
    frames_or_hang,
    frames_recording_niceness,
    frames_recording_pids,
)
from factories import tone, write_video
from test_curation import lecture

from quilt_hf.curation.asr import load_audio

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="the optional ray extra is not installed")
    yield ray
    ray.shutdown()


def write_lectures(folder: Path, count: int = 3) -> Path:
    """``count`` short synthetic lectures (v0.mp4, v1.mp4, ...) in ``folder``."""
    for k in range(count):
        write_video(folder / f"v{k}.mp4", lecture(5 * k), audio=tone(24))
    return folder


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return write_lectures(tmp_path_factory.mktemp("videos"))


def curate(videos: Path, output: Path, transcriber, frames_fn=frames_or_hang, **overrides) -> dict:
    from quilt_hf.curation.cli import CurateConfig, run_curate

    config = CurateConfig(videos=str(videos), output=str(output), **{"text_backend": "none", **overrides})
    return run_curate(config, transcriber=transcriber, frames_fn=frames_fn, load_audio=load_audio)


RAY = {"runner": "ray", "ray_num_cpus": 2, "ray_task_cpus": 0.5}


def _no_driver_collect(monkeypatch):
    """Any call that would bring a whole Ray dataset into the driver fails the test."""
    import ray.data

    def refuse(self, *args, **kwargs):
        raise AssertionError("the driver collected a Ray dataset")

    for name in ("take_all", "take", "take_batch", "to_pandas", "iter_rows", "iter_batches", "show"):
        monkeypatch.setattr(ray.data.Dataset, name, refuse)


def test_local_runner_never_imports_ray(videos, tmp_path):
    script = f"""
import sys
sys.path[:0] = {[str(HERE), str(HERE.parent)]!r}
from pathlib import Path
from _curation_helpers import FakeTranscriber
from test_ray_runner import curate
stats = curate(Path({str(videos)!r}), Path({str(tmp_path / "out")!r}), FakeTranscriber())
print("PAIRS", stats["pairs"], "RAY", "ray" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "RAY False" in done.stdout and "PAIRS 0" not in done.stdout


def test_ray_with_a_killed_worker_gives_the_local_results(local_ray, videos, tmp_path, monkeypatch):
    from datasets import load_from_disk

    local = curate(videos, tmp_path / "local", FakeTranscriber())
    _no_driver_collect(monkeypatch)
    # the ASR actor SIGKILLs itself the first time it reads v1 (mid-video): Ray restarts it and retries
    killer = KillingTranscriber(str(tmp_path), victim="v1")
    ray_stats = curate(videos, tmp_path / "ray", killer, runner="ray", ray_num_cpus=2, ray_task_cpus=0.5)
    assert (tmp_path / "killed-v1.mp4").exists(), "the worker was killed during the run"
    for key in ("videos", "videos_kept", "dropped", "chunks", "images", "pairs", "dropped_videos"):
        assert ray_stats[key] == local[key], key
    assert ray_stats["computed"] == local["computed"]
    # per-step timings from the workers, like the local runner's
    assert set(ray_stats["timings_s"]) >= {"probe", "frames (isolated decoding)", "histology", "asr", "align", "ray wall"}
    assert ray_stats["throughput_video_h_per_h"]["asr"] > 0
    a = load_from_disk(str(tmp_path / "local" / "pairs"))
    b = load_from_disk(str(tmp_path / "ray" / "pairs"))
    assert a.remove_columns(["image"]).to_list() == b.remove_columns(["image"]).to_list() and len(a) >= 6
    assert all(np.array_equal(np.asarray(x["image"]), np.asarray(y["image"])) for x, y in zip(a, b))
    videos_a = load_from_disk(str(tmp_path / "local" / "videos")).remove_columns(["path"]).to_list()
    videos_b = load_from_disk(str(tmp_path / "ray" / "videos")).remove_columns(["path"]).to_list()
    assert videos_a == videos_b
    written = json.loads((tmp_path / "ray" / "stats.json").read_text())
    assert written["pairs"] == local["pairs"]
    assert not list((tmp_path / "ray").glob(".tmp-*")), "the shards are removed once the outputs are committed"

    # a rerun skips what the cache holds: nothing is computed again
    again = curate(videos, tmp_path / "ray", FakeTranscriber(), runner="ray", ray_num_cpus=2, ray_task_cpus=0.5)
    assert again["pairs"] == local["pairs"] and not again["computed"].get("asr")
    assert again["cache_hits"]["asr"] == 3 and again["cache_hits"]["frames"] == 3


def test_the_lexicon_text_stage_runs_as_cpu_tasks_with_the_local_results(local_ray, videos, tmp_path):
    """The lexicon text stage loads no model: under Ray it runs as CPU tasks (an actor pool of one actor would
    serialise every video's text on a cluster) and gives the local runner's captions."""
    from datasets import load_from_disk

    from quilt_hf.curation.cli import CurateConfig, build_text_stage
    from quilt_hf.curation.histology import build_histology_classifier
    from quilt_hf.curation.pipeline import Curation

    config = CurateConfig(videos=str(videos), output=str(tmp_path / "x"), text_backend="lexicon")
    processor = build_text_stage(config)
    histology = build_histology_classifier(config.histology, config.histology_threshold, config.device)
    steps = Curation(tmp_path / "cache", FakeTranscriber(), histology, text_processor=processor).steps()[0]
    assert next(step for step in steps if step.name == "text").pool == ""
    processor.llm = object()  # any LLM backend: an actor pool that loads its model once
    steps = Curation(tmp_path / "cache", FakeTranscriber(), histology, text_processor=processor).steps()[0]
    assert next(step for step in steps if step.name == "text").pool == "text"
    processor.llm = None
    local = curate(videos, tmp_path / "local", FakeTranscriber(), text_backend="lexicon")
    ray_stats = curate(videos, tmp_path / "ray", FakeTranscriber(), text_backend="lexicon", **RAY)
    assert ray_stats["pairs"] == local["pairs"] and local["pairs"] > 0
    columns = ["video_id", "chunk_id", "caption", "corrected_text", "medical_text"]
    a = load_from_disk(str(tmp_path / "local" / "pairs")).select_columns(columns).to_list()
    b = load_from_disk(str(tmp_path / "ray" / "pairs")).select_columns(columns).to_list()
    assert a == b
    assert ray_stats["timings_s"]["text"] > 0


def test_the_demo_corpus_on_a_local_ray_gives_the_local_runner_s_tables(local_ray, tmp_path):
    """The demo corpus (7 lectures, 3 files that are not media) with the default text stage and histology
    classifier, a deterministic transcriber in place of Whisper: the same pairs, images, chunks, videos and stats
    counts on a local Ray of 2 CPUs as with the local runner."""
    from datasets import load_from_disk

    corpus = HERE.parents[1] / "demo_corpus"
    settings = {"text_backend": "lexicon", "histology": "heuristic"}
    local = curate(corpus, tmp_path / "local", FakeTranscriber(), **settings)
    ray_stats = curate(corpus, tmp_path / "ray", FakeTranscriber(), **settings, **RAY)
    for key in ("videos", "videos_kept", "dropped", "dropped_videos", "chunks", "chunks_with_pairs",
                "chunks_dropped", "images", "pairs", "computed"):
        assert ray_stats[key] == local[key], key
    assert local["videos_kept"] == 7 and local["pairs"] > 0
    for table in ("pairs", "chunks"):
        a = load_from_disk(str(tmp_path / "local" / table))
        b = load_from_disk(str(tmp_path / "ray" / table))
        assert a.remove_columns(["image"]).to_list() == b.remove_columns(["image"]).to_list(), table
        assert all(np.array_equal(np.asarray(x["image"]), np.asarray(y["image"])) for x, y in zip(a, b)), table
    videos_a = load_from_disk(str(tmp_path / "local" / "videos")).remove_columns(["path"]).to_list()
    videos_b = load_from_disk(str(tmp_path / "ray" / "videos")).remove_columns(["path"]).to_list()
    assert videos_a == videos_b


def test_a_video_that_keeps_killing_its_worker_is_a_recorded_drop(local_ray, videos, tmp_path):
    killer = KillingTranscriber(str(tmp_path), victim="v2", always=True)
    stats = curate(videos, tmp_path / "out", killer, runner="ray", ray_num_cpus=2, ray_task_cpus=0.5,
                   ray_max_retries=1)
    assert stats["dropped_videos"] == {"v2": "worker_lost"}
    assert stats["videos"] == 3 and stats["videos_kept"] == 2 and stats["pairs"] >= 4


def test_a_model_that_cannot_load_in_its_actor_fails_the_run_with_its_reason(local_ray, videos, tmp_path):
    from quilt_hf.errors import UserFacingError

    with pytest.raises(UserFacingError, match="asr.*missing-whisper"):
        curate(videos, tmp_path / "out", UnloadableTranscriber(), runner="ray", ray_num_cpus=2, ray_task_cpus=0.5)
    assert not (tmp_path / "out" / "pairs").exists()


def _same_results(a: dict, b: dict) -> None:
    for key in ("videos", "videos_kept", "dropped", "chunks", "images", "pairs", "dropped_videos", "computed"):
        assert a[key] == b[key], key


def test_transcribe_files_gives_each_file_the_transcript_it_gives_alone(tmp_path):
    """Whisper over the windows of several files together (one generate call per round of blocks) gives each
    file exactly the transcript of transcribe_file: multi-block files, a short-form file beside long ones."""
    import wave

    from quilt_hf.curation.asr import WhisperTranscriber
    from quilt_hf.offline import tiny_random_whisper

    model = tiny_random_whisper(tmp_path / "whisper", max_length=12, keep_generation_fields=True)  # few tokens: fast
    rng = np.random.default_rng(0)
    paths = []
    for k, seconds in enumerate([20, 70, 100]):
        t = np.arange(seconds * 16000) / 16000
        audio = 0.1 * np.sin(2 * np.pi * (200 + 50 * k) * t * (1 + 0.3 * np.sin(t))) + 0.05 * rng.standard_normal(len(t))
        paths.append(tmp_path / f"a{k}.wav")
        with wave.open(str(paths[-1]), "wb") as handle:  # 16-bit PCM mono
            handle.setnchannels(1), handle.setsampwidth(2), handle.setframerate(16000)
            handle.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    transcriber = WhisperTranscriber(model=str(model), batch_size=3, device="cpu")
    alone = [transcriber.transcribe_file(path, block_seconds=60) for path in paths]
    together = transcriber.transcribe_files(paths, block_seconds=60)
    assert all(len(t.segments) >= 2 for t in alone)
    assert [t.to_dict() for t in together] == [t.to_dict() for t in alone]


def test_the_asr_actor_transcribes_several_videos_per_call(local_ray, videos, tmp_path):
    local = curate(videos, tmp_path / "local", FakeTranscriber())
    (tmp_path / "calls").mkdir()
    stats = curate(videos, tmp_path / "ray", BatchingTranscriber(str(tmp_path / "calls")), ray_model_batch_size=3, **RAY)
    calls = [int(p.read_text()) for p in (tmp_path / "calls").iterdir()]
    assert calls == [3], calls  # the three videos in one transcribe_files call of the actor
    _same_results(stats, local)
    assert stats["computed"]["asr"] == 3


def test_a_video_that_kills_its_batch_is_given_up_alone(local_ray, videos, tmp_path):
    (tmp_path / "calls").mkdir()
    stats = curate(videos, tmp_path / "out", BatchingTranscriber(str(tmp_path / "calls"), victim="v2"),
                   ray_model_batch_size=3, ray_max_retries=1, **RAY)
    assert stats["dropped_videos"] == {"v2": "worker_lost"}
    assert stats["videos_kept"] == 2 and stats["pairs"] >= 4


def test_a_ray_worker_process_keeps_one_decoding_process(local_ray, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for k in range(4):
        write_video(folder / f"d{k}.mp4", lecture(3 * k), audio=tone(12))
    (tmp_path / "pids").mkdir()
    frames_fn = functools.partial(frames_recording_pids, str(tmp_path / "pids"))
    stats = curate(folder, tmp_path / "out", FakeTranscriber(), frames_fn=frames_fn, runner="ray", ray_num_cpus=2,
                   ray_task_cpus=1)
    assert stats["computed"]["frames"] == 4
    decoders: dict[str, set] = {}
    for marker in (tmp_path / "pids").iterdir():
        parent, child, _ = marker.name.split("-", 2)
        decoders.setdefault(parent, set()).add(child)
    assert len(decoders) < 4, "the Ray tasks ran in fewer processes than videos (else this test proves nothing)"
    assert all(len(children) == 1 for children in decoders.values()), decoders


def test_a_ray_runner_with_a_live_heartbeat_pickles_and_its_cleanup_stops_it(tmp_path):
    import pickle
    import threading

    from quilt_hf.curation.ray_runner import RayRunner

    runner = RayRunner(staging_dir=str(tmp_path / "staging"))
    runner._stage_dir("run")
    assert (tmp_path / "staging" / ".alive").is_file()
    assert pickle.loads(pickle.dumps(runner))._heartbeat is None and runner._heartbeat is not None
    runner.cleanup()
    assert not (tmp_path / "staging").exists()
    assert not [t for t in threading.enumerate() if t.name.startswith("keep-alive")]


def test_whisper_threads_and_step_niceness_follow_the_options():
    from quilt_hf.curation.ray_runner import RayOptions, RayRunner, cpu_actor_threads
    from quilt_hf.curation.runners import Step

    assert cpu_actor_threads(0, 1, 8) == 8 and cpu_actor_threads(0, 3, 8) == 2 and cpu_actor_threads(0, 4, 2) == 1
    assert cpu_actor_threads(3, 1, 8) == 3  # --ray_actor_threads
    asr, histology = Step("asr", len, pool="asr"), Step("histology", len, pool="histology")
    assert RayRunner(RayOptions(asr_actors=2))._actor_threads(asr) == (0, 2)
    assert RayRunner(RayOptions())._actor_threads(histology) is None  # another pool keeps Ray's one thread
    assert RayRunner(RayOptions(actor_threads=2))._actor_threads(histology) == (2, 1)
    assert RayRunner(RayOptions(asr_gpus=1, actor_threads=2))._actor_threads(asr) is None  # a GPU actor
    assert RayRunner(RayOptions())._task_niceness() == 10
    assert RayRunner(RayOptions(asr_gpus=1))._task_niceness() == 0  # GPU Whisper: the CPU steps are not niced


def test_model_pools_ask_for_the_actor_s_own_thread_with_what_the_installed_ray_data_accepts():
    """The two options came in different Ray releases: each is asked for while this Ray Data accepts it."""
    from types import SimpleNamespace

    from quilt_hf.curation.ray_runner import _model_pool

    def data_module(accepted: set[str]):
        def strategy(*, size, **options):
            if set(options) - accepted:
                raise TypeError(f"unexpected keyword {sorted(set(options) - accepted)}")
            return {"size": size, **options}

        return SimpleNamespace(ActorPoolStrategy=strategy)

    both = {"max_concurrent_calls_per_actor", "enable_true_multi_threading"}
    assert _model_pool(data_module(both), 2) == {"size": 2, "max_concurrent_calls_per_actor": 1,
                                                 "enable_true_multi_threading": True}
    assert _model_pool(data_module({"enable_true_multi_threading"}), 2) == {"size": 2,
                                                                           "enable_true_multi_threading": True}
    assert _model_pool(data_module(set()), 3) == {"size": 3}


def test_whisper_on_cpu_gets_the_cores_and_the_cpu_steps_yield_to_it(local_ray, videos, tmp_path):
    """Ray starts an actor with OMP_NUM_THREADS = its reserved CPUs (1 for 0.25): Whisper on CPU used one core
    of two where the local runner used both. Its actor now sets torch's threads to the node's CPUs (shared
    among the Whisper actors), and the CPU steps' workers run nicer than the actor (Ray starts its workers
    at niceness 15; the steps go --ray_task_niceness above, at most 19). Whisper is called on the thread that
    loaded it."""
    import os

    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two cores the process may use (Linux)")
    local_ray.shutdown()  # fresh workers: the earlier tests' (default niceness) are already at 19
    for requested, niceness, expected in ((1, 2, 1), (0, 10, 2)):  # the second run reuses the first's workers
        threads, nice = tmp_path / f"threads{requested}", tmp_path / f"nice{requested}"
        threads.mkdir(), nice.mkdir()
        frames_fn = functools.partial(frames_recording_niceness, str(nice))
        stats = curate(videos, tmp_path / f"out{requested}", ThreadsRecordingTranscriber(str(threads)),
                       frames_fn=frames_fn, ray_actor_threads=requested, ray_task_niceness=niceness, **RAY)
        assert stats["computed"]["asr"] == 3
        actor = {tuple(int(x) for x in marker.name.split("-")[:2]) for marker in threads.iterdir()}
        assert {t for t, _ in actor} == {expected}
        # called on the thread that loaded the model: one OpenMP team in the actor (see ray_runner._model_pool)
        assert {marker.name.split("-")[3] for marker in threads.iterdir()} == {"same"}
        (actor_nice,) = {n for _, n in actor}
        if actor_nice + 2 * niceness > 19 and niceness == 2:
            pytest.skip(f"the actor already runs at niceness {actor_nice}: a second increment could not show")
        # once per worker process (with 2 above Ray's 15, a second increment would show as 19, not 17); the
        # second run's workers, niced by 2 in the first, go the rest of the way
        assert {int(marker.name.split("-")[0]) for marker in nice.iterdir()} == {min(19, actor_nice + niceness)}


def test_stats_show_the_worker_processes_of_each_step_and_the_idle_ends(local_ray, videos, tmp_path):
    stats = curate(videos, tmp_path / "ray", SlowTranscriber(0.5), **RAY)
    processes = stats["ray_worker_processes"]
    assert processes["asr"] == 1, processes  # one actor
    assert 1 <= processes["align"] <= 3 and set(processes) >= {"probe", "frames (isolated decoding)", "rows"}
    timeline = stats["ray_timeline_s"]
    assert set(timeline) == {"before the first step (Ray start, workers, models)", "after the last step (shards written)"}
    assert all(0 <= seconds < stats["total_s"] for seconds in timeline.values()), timeline


def test_only_a_histology_classifier_with_a_model_gets_an_actor_pool(tmp_path):
    """The heuristic classifier has no model to load once: an actor pool cost a process (Python, Ray and the
    pipeline imported again) and a hand-off per video; it runs in the CPU task after decoding."""
    from quilt_hf.curation.histology import HeuristicHistologyClassifier, TransformersHistologyClassifier
    from quilt_hf.curation.pipeline import Curation

    def pools(histology) -> dict:
        steps, _ = Curation(tmp_path / "cache", FakeTranscriber(), histology).steps()
        return {step.name: step.pool for step in steps}

    assert pools(HeuristicHistologyClassifier())["histology"] == ""
    assert pools(TransformersHistologyClassifier(model="some/model"))["histology"] == "histology"
    assert pools(HeuristicHistologyClassifier())["asr"] == "asr"


def test_the_local_ray_keeps_its_cpu_task_workers_between_bursts():
    """With fractional task CPUs a node runs more task workers than it has CPUs; Ray's default limit (its CPU
    count) killed every worker past it after a second idle, so each burst of tasks (e.g. the videos
    Whisper releases) started new Python processes (~1.5 CPU-s each, plus a new decoding process). The
    local Ray the runner starts keeps one worker per task slot and actor."""
    pytest.importorskip("ray", reason="the optional ray extra is not installed")
    script = """
import os, time
from quilt_hf.curation.ray_runner import RayOptions, RayRunner
ray = RayRunner(RayOptions(num_cpus=2, task_cpus=0.5))._init()
@ray.remote(num_cpus=0.5)
def pid(seconds):
    time.sleep(seconds)
    return os.getpid()
ray.get([pid.remote(2.0) for _ in range(4)])  # four workers started (slow to start on a loaded machine)
bursts = []
for burst in range(3):
    bursts.append(sorted(set(ray.get([pid.remote(0.5) for _ in range(4)]))))
    time.sleep(1.6)  # idle past Ray's 1 s threshold
print("BURSTS", bursts)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    bursts = json.loads(done.stdout.split("BURSTS", 1)[1])
    # every burst on the same four processes; before, two of them were killed after each burst: the next
    # burst ran on new processes or two tasks at a time
    assert bursts == [bursts[0]] * 3 and len(bursts[0]) == 4, bursts


def test_the_driver_counts_at_most_a_thousand_worker_processes_per_step(tmp_path):
    """The driver's memory stays flat however many videos (and, with restarts, worker processes) a run has."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from quilt_hf.curation import ray_runner
    from quilt_hf.curation.ray_runner import METRICS, PROCESSES_COUNTED, RayRunner

    rows = [json.dumps({"seconds": {"align": 0.1}, "cache_hits": {}, "computed": {}, "spans": {"align": [k, k + 1]},
                        "processes": {"align": f"node:{k}"}}) for k in range(1500)]
    pq.write_table(pa.table({METRICS: rows}), tmp_path / "shard.parquet")
    runner = RayRunner()
    for (value,) in ray_runner._shard_columns([str(tmp_path / "shard.parquet")], [METRICS]):
        runner._add_metrics(value)
    assert PROCESSES_COUNTED == 1000 and runner.summary()["ray_worker_processes"] == {"align": 1000}
    assert runner.steps_span == [0, 1500] and runner.timings["align"] == pytest.approx(150.0)


def test_the_driver_assembles_the_shards_one_file_at_a_time(tmp_path, monkeypatch):
    """The result table is the shards' rows in shard order, cast to the step's features (nested lists of structs
    and images included), memory-mapped, in batches of many shards; the driver opens one shard at a time (a scan
    over every shard at once grew its memory with the videos)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Features, Image, List, Value

    from quilt_hf.curation import ray_runner

    edit = {"original": Value("string"), "replacement": Value("string"), "char_start": Value("int32")}
    features = Features({"video_id": Value("string"), "chunk_id": Value("int32"), "caption": Value("string"),
                         "text_edits": List(edit), "image": Image()})
    schema = pa.schema([("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                        ("caption", pa.string()), ("chunk_id", pa.int64()), ("video_id", pa.string()),
                        ("text_edits", pa.list_(pa.struct([("replacement", pa.string()), ("char_start", pa.int64()),
                                                           ("original", pa.string())]))),
                        ("extra", pa.string())])

    def row(k: int, j: int) -> dict:
        return {"image": {"bytes": None, "path": f"/cache/{k}-{j}.jpg"}, "caption": f"c{k}-{j}", "chunk_id": j,
                "video_id": f"v{k:03d}", "extra": "dropped",
                "text_edits": [{"replacement": "koilocytes", "char_start": j, "original": "koilo sites"}] * (j % 2)}

    shards = []
    for k in range(40):
        path = tmp_path / f"part-{k:03d}.parquet"
        pq.write_table(pa.Table.from_pylist([row(k, j) for j in range(k % 3)], schema=schema), path)
        shards.append(str(path))
    opened: list[int] = []
    closed = [0]
    real = pq.ParquetFile

    class CountingParquetFile(real):
        def __init__(self, *args, **kwargs):
            opened.append(1)
            assert len(opened) - closed[0] == 1, "two shards open at once"
            super().__init__(*args, **kwargs)

        def close(self, *args, **kwargs):
            closed[0] += 1
            return super().close(*args, **kwargs)

    monkeypatch.setattr(pq, "ParquetFile", CountingParquetFile)
    monkeypatch.setattr(ray_runner, "ASSEMBLED_BATCH_ROWS", 10)
    kept = [s for s in shards if ray_runner._shard_rows(s) > 0]
    assert list(ray_runner._shard_columns(kept, ["video_id", "chunk_id"])) == [
        (f"v{k:03d}", j) for k in range(40) for j in range(k % 3)]
    table = ray_runner._assemble(kept, features, tmp_path / "assembled.arrow")
    assert table.features == features and table.cache_files  # memory-mapped, not held in memory
    expected = [{name: value for name, value in row(k, j).items() if name != "extra"}
                for k in range(40) for j in range(k % 3)]
    assert table.with_format("arrow")[:].to_pylist() == [
        {**r, "text_edits": [{"original": e["original"], "replacement": e["replacement"], "char_start": e["char_start"]}
                             for e in r["text_edits"]]} for r in expected]
    assert len(opened) == 40 + 2 * len(kept) and closed[0] == len(opened)
    with pa.memory_map(str(tmp_path / "assembled.arrow")) as source:
        batches = pa.ipc.open_stream(source).read_all().to_batches()
    assert len(kept) == 26 and len(batches) == 4  # 39 rows in batches of 10 or more rows, not one per shard


def test_the_local_ray_keeps_a_worker_process_per_task_slot_and_actor():
    from quilt_hf.curation.ray_runner import RAY_DATA_ACTORS, RayOptions, RayRunner

    runner = RayRunner(RayOptions(num_cpus=4, task_cpus=0.5, asr_actors=2, histology_actors=1, text_actors=1))
    assert runner.worker_processes() == 8 + 4 + RAY_DATA_ACTORS
    assert RayRunner(RayOptions(task_cpus=1)).worker_processes(cpus=64) == 64 + 3 + RAY_DATA_ACTORS


def test_a_call_interrupted_midway_never_leaves_its_answer_to_the_next_call():
    """A Ray worker process keeps one decoding process for all its tasks. A task interrupted during its call
    (Ray's default, non-forced ``ray.cancel`` raises KeyboardInterrupt in it) left its answer in the pipe,
    and the process's next task read it as its own: another video's frames (then histology_error) or a pipe
    out of step (frames_error). An interrupted call now ends the decoding process."""
    import signal
    import time

    from _curation_helpers import add

    from quilt_hf.curation.runners import IsolatedWorker

    class Cancelled(BaseException):
        pass

    def cancel(signum, frame):
        raise Cancelled

    worker = IsolatedWorker()
    previous = signal.signal(signal.SIGALRM, cancel)
    try:
        assert worker.call(add, 1, 1, timeout=30) == 2  # started
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(Cancelled):
            worker.call(time.sleep, 1.0, timeout=30)  # interrupted while waiting for the answer (None)
        time.sleep(1.2)  # the interrupted call's answer is written by now
        assert worker.call(add, 2, 3, timeout=30) == 5  # not None, the interrupted call's answer
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        worker.close()


def test_the_tables_are_written_a_few_megabytes_of_images_at_a_time(tmp_path):
    """The driver embeds the pair images while it writes the tables: in row groups of a few MB (datasets'
    default, 100 MB, made the driver's peak grow with the number of videos)."""
    import pyarrow as pa
    from datasets import Dataset, Features, Image, Value
    from PIL import Image as PILImage

    from quilt_hf.curation.pipeline import _dataset_writer

    rng = np.random.default_rng(0)
    paths = []
    for k in range(24):  # ~0.5 MB of incompressible PNG each: ~12 MB in all
        paths.append(str(tmp_path / f"{k}.png"))
        PILImage.fromarray(rng.integers(0, 255, (400, 400, 3), dtype=np.uint8)).save(paths[-1])
    table = Dataset.from_dict({"image": [{"path": p, "bytes": None} for p in paths], "k": list(range(24))},
                              features=Features({"image": Image(), "k": Value("int32")}))
    _dataset_writer(table)(tmp_path / "out")
    (arrow,) = (tmp_path / "out").glob("*.arrow")
    batches = list(pa.ipc.open_stream(pa.memory_map(str(arrow))))
    assert len(batches) >= 2 and max(b.nbytes for b in batches) < 10 * 2**20
    assert sum(b.num_rows for b in batches) == 24


def test_quilt_curate_on_a_two_node_ray_cluster_spreads_the_videos(videos, tiny_whisper_dir, tmp_path):
    """A real multi-raylet cluster on this machine (ray.cluster_utils.Cluster: a head and a second node, one
    CPU each), driven by `quilt curate --runner ray --ray_address ADDRESS`: both nodes do work, and the results
    are the local runner's."""
    pytest.importorskip("ray", reason="the optional ray extra is not installed")
    common = ["--videos", str(videos), "--asr_model", str(tiny_whisper_dir), "--text_backend", "none"]
    script = """
import sys
from ray.cluster_utils import Cluster
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 100 * 2**20})
cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
cluster.wait_for_nodes()
from quilt_hf.cli import main
code = main(sys.argv[1:] + ["--ray_address", cluster.address])
import ray
ray.shutdown()
cluster.shutdown()
sys.exit(code)
"""
    argv = ["curate", *common, "--output", str(tmp_path / "ray"), "--runner", "ray", "--ray_task_cpus", "0.25"]
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    from quilt_hf.cli import main

    assert main(["curate", *common, "--output", str(tmp_path / "local")]) == 0
    ray_stats = json.loads((tmp_path / "ray" / "stats.json").read_text())
    local = json.loads((tmp_path / "local" / "stats.json").read_text())
    _same_results(ray_stats, local)
    assert len(ray_stats["ray_nodes"]) == 2, ray_stats["ray_nodes"]  # work ran on both nodes
    assert all(count > 0 for count in ray_stats["ray_nodes"].values())


def test_a_local_ray_of_one_cpu_finishes(tiny_whisper_dir, tmp_path):
    """Every Ray stage asks for --ray_task_cpus, reading the input parts too: with one CPU and the model actors'
    share reserved, ray.data.range's read (a whole CPU) waited forever (this run hung before)."""
    pytest.importorskip("ray", reason="the optional ray extra is not installed")
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "one.mp4", lecture(0), audio=tone(8))
    argv = [sys.executable, "-m", "quilt_hf.cli", "curate", "--videos", str(videos), "--output", str(tmp_path / "out"),
            "--asr_model", str(tiny_whisper_dir), "--text_backend", "none", "--runner", "ray", "--ray_num_cpus", "1",
            "--ray_task_cpus", "0.5"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["videos"] == 1


def test_a_worker_is_niced_up_to_the_setting_once_and_never_back(monkeypatch, caplog):
    """Ray reuses worker processes across runs on the same Ray: a worker niced by 2 goes the rest of the way
    to 10 (and its decoding process, started at the old priority, is ended); a smaller setting cannot undo it."""
    from quilt_hf.curation import ray_runner, runners

    calls, ended = [], []
    monkeypatch.setattr(ray_runner, "_NICED_BY", 0)
    monkeypatch.setattr(ray_runner.os, "nice", lambda n: calls.append(n) or 0)
    monkeypatch.setattr(runners, "end_process_worker", lambda: ended.append(True))
    for niceness in (2, 2, 10, 10, 2, 0):
        ray_runner._lower_priority(niceness)
    assert calls == [2, 8] and len(ended) == 2
    assert "cannot be raised back" in caplog.text

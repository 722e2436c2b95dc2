"""The Ray Data runner: the pipeline's steps on a Ray cluster (or a local Ray), with per-stage resources.

- CPU steps (probe, audio check, decoding, alignment, rows) run as Ray tasks with ``task_cpus`` each.
- Model steps (ASR, histology, the LLM text stage) run in actor pools (``map_batches`` with a callable class,
  ``concurrency``, ``num_gpus``); each actor loads its model once, in its constructor, through the model
  holder's ``load()``; the driver never loads a model.
- Execution streams: the videos table goes to the workers as parquet files (one block per
  ``videos_per_block`` videos), every step runs block by block, and the workers write their output as parquet
  shards (``write_parquet``). The driver assembles the result from the shards one file at a time into an arrow
  file on disk (memory-mapped), never through ``take_all()`` or a list of rows in its memory.
- Faults: a killed worker costs its video a retry (Ray restarts actors and retries tasks); a ledger of
  attempts per (step, video) in the staging folder gives a video up after ``max_retries`` retries and records
  it as dropped (``worker_lost``). A block that fails with an exception is dropped too
  (``DataContext.max_errored_blocks``) and its videos recorded the same way, unless every video was lost.
- Per-step timings: each step records its own seconds per video in a metrics column that travels with the
  row; the driver sums them (worker-seconds per step, as ``timings_s`` of the local runner) and adds the
  run's wall time under ``"ray wall"``. Cache hits and computed counts travel the same way, and the Ray
  node each step ran on (``stats.json``'s ``ray_nodes``: node id -> (video, step) runs).
- Model actors take ``model_batch_size`` videos per call; a step with ``batch_fn`` (Whisper) processes
  them together. CPU tasks share one decoding worker process per Ray worker process.

Needs ``pip install 'quilt_hf[ray]'``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quilt_hf import atomic
from quilt_hf.curation.runners import Step
from quilt_hf.errors import UserFacingError, require

if TYPE_CHECKING:
    from datasets import Dataset, Features

logger = logging.getLogger(__name__)

METRICS = "_ray_metrics"  # a JSON column each step adds its seconds and counters to (dropped from outputs)
LOST = "worker_lost"
MODEL_LOAD_MARK = "<<quilt model load failed>>"
RAY_DATA_ACTORS = 3  # Ray Data's own actors on the head node (stats, autoscaling coordinator, actor locations)
PROCESSES_COUNTED = 1000  # distinct worker processes counted per step in stats.json (at most)


@dataclass
class RayOptions:
    """Resources and concurrency of the Ray stages (``quilt curate --runner ray``)."""

    address: str | None = field(default=None, metadata={"help": "Ray cluster address (e.g. ray://head:10001 or auto); "
                                                                "default: start a local Ray on this machine."})
    num_cpus: int | None = field(default=None, metadata={"help": "CPUs of the local Ray (no address); default: all."})
    object_store_mb: int | None = field(default=None, metadata={"help": "Object store size of the local Ray, in MiB."})
    task_cpus: float = field(default=1.0, metadata={"help": "CPUs per task of the CPU steps (probe, decoding, align)."})
    actor_cpus: float = field(default=0.25, metadata={"help": "CPUs reserved by each model actor (raise it when the "
                                                               "model runs on CPU and the cluster has cores to spare)."})
    asr_actors: int = field(default=1, metadata={"help": "Whisper actors (each loads the model once)."})
    asr_gpus: float = field(default=0.0, metadata={"help": "GPUs per Whisper actor (e.g. 1, or 0.5 to share one)."})
    histology_actors: int = field(default=1, metadata={"help": "Histology-classifier actors."})
    histology_gpus: float = field(default=0.0, metadata={"help": "GPUs per histology actor."})
    text_actors: int = field(default=1, metadata={"help": "Text-stage (LLM) actors."})
    text_gpus: float = field(default=0.0, metadata={"help": "GPUs per text-stage actor."})
    actor_threads: int = field(default=0, metadata={"help": "Torch threads of each model actor on CPU (0: Whisper "
                                                           "actors share their node's CPUs, counted over the whole "
                                                           "run; other actors keep Ray's one)."})
    task_niceness: int = field(default=10, metadata={"help": "Niceness added to the CPU-step workers when Whisper runs "
                                                            "on CPU (Ray starts workers at 15; capped at 19); 0: off. "
                                                            "Turn it off where the CPU steps are the bottleneck or the "
                                                            "nodes run other work."})
    model_batch_size: int = field(default=1, metadata={"help": "Videos per call of a model actor (the Whisper actor "
                                                               "transcribes them together)."})
    videos_per_block: int = field(default=1, metadata={"help": "Videos per Ray block (the unit of retry)."})
    max_retries: int = field(default=3, metadata={"help": "Retries of a block whose worker died; then its videos "
                                                          "are dropped as worker_lost."})


def _metrics(value: str | None) -> dict:
    return json.loads(value) if value else {"seconds": {}, "cache_hits": {}, "computed": {}}


def _snapshot(step: Step) -> dict[str, Counter]:
    return {name: Counter(counter) for name, counter in (step.counters() if step.counters else {}).items()}


@dataclass
class _Ledger:
    """Attempts per (step, video) in a folder every worker can reach: a video whose worker died
    ``max_attempts`` times in a step is given up there and recorded as ``worker_lost`` (Ray itself retries
    dead workers without limit)."""

    folder: str
    max_attempts: int
    id_column: str
    drop_column: str

    def _path(self, step: Step, row: dict) -> Path:
        slug = "".join(c if c.isalnum() else "_" for c in step.name)
        return Path(self.folder) / f"{slug}--{row[self.id_column]}"

    def begin(self, step: Step, row: dict) -> bool:
        """Count this attempt; False when the video has used up its attempts."""
        path = self._path(step, row)
        attempts = int(path.read_text() or 0) if path.is_file() else 0
        if attempts >= self.max_attempts:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(str(attempts + 1))
        return True

    def end(self, step: Step, row: dict) -> None:
        self._path(step, row).unlink(missing_ok=True)
        self._path(step, row).with_suffix(".batch").unlink(missing_ok=True)

    def suspect(self, step: Step, row: dict) -> bool:
        """Whether an earlier attempt at this video in this step never ended (its worker died), alone or in
        a batch with other videos."""
        path = self._path(step, row)
        return path.is_file() or path.with_suffix(".batch").is_file()

    def mark_batch(self, step: Step, row: dict) -> None:
        """Note that the video is in a batch of several videos (a death there is not counted against it, but
        makes it run alone next time, so the video that kills its worker is the one given up)."""
        path = self._path(step, row).with_suffix(".batch")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def _apply_map(step: Step, table, ledger: _Ledger):
    """Run a map step over the rows of an arrow table; returns the table with the updated columns.

    With ``step.batch_fn`` the rows go through it together (e.g. Whisper over several videos at once), except
    the rows an earlier, dead attempt left suspect: those run alone, after the batch, so a video that kills
    its worker is found and given up alone, and the others of its batch are not counted against."""
    import pyarrow as pa

    rows = table.to_pylist()
    out: list[dict | None] = [None] * len(rows)
    suspects = [i for i, row in enumerate(rows) if ledger.suspect(step, row)]
    fresh = [i for i in range(len(rows)) if i not in suspects]
    groups = [fresh] if step.batch_fn is not None and len(fresh) > 1 else [[i] for i in fresh]
    for group in groups + [[i] for i in suspects]:
        if len(group) > 1:
            for i in group:
                ledger.mark_batch(step, rows[i])
        else:
            row = rows[group[0]]
            if not ledger.begin(step, row):
                logger.error("%s: its worker died %d times in step %s; dropped as %s", row[ledger.id_column],
                             ledger.max_attempts, step.name, LOST)
                out[group[0]] = {**row, ledger.drop_column: LOST}
                continue
        inputs = [{k: v for k, v in rows[i].items() if k != METRICS} for i in group]
        before = _snapshot(step)
        began, started_at = time.perf_counter(), time.time()
        updates = step.batch_fn(inputs) if len(group) > 1 else [step.fn(inputs[0])]
        seconds = (time.perf_counter() - began) / len(group)  # a batch's time, shared by its videos
        span = [started_at, time.time()]  # wall-clock span of the call (the driver keeps the first and last)
        node = _node_id()
        for n, (i, update) in enumerate(zip(group, updates)):
            metrics = _metrics(rows[i].get(METRICS))
            metrics["seconds"][step.name] = metrics["seconds"].get(step.name, 0.0) + seconds
            metrics.setdefault("nodes", {})[step.name] = node
            metrics.setdefault("spans", {})[step.name] = span
            metrics.setdefault("processes", {})[step.name] = f"{node}:{os.getpid()}"
            if n == 0:  # the counters' increase of the whole group (the driver only sums them)
                for name, counter in _snapshot(step).items():
                    delta = counter - before.get(name, Counter())
                    for key, count in delta.items():
                        metrics[name][key] = metrics[name].get(key, 0) + count
            ledger.end(step, rows[i])
            out[i] = {**rows[i], **update, METRICS: json.dumps(metrics)}
    return pa.Table.from_pylist(out, schema=table.schema)


def _node_id() -> str:
    """The Ray node this worker runs on ("" outside Ray)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() or ""
    except Exception:  # not in a Ray worker (unit use of the stages)
        return ""


# The assembled table's record batches are flushed at this many rows or bytes: one batch per shard kept each
# batch's metadata in the driver for as long as the table lived (~28 KB per batch of the pairs' schema).
ASSEMBLED_BATCH_ROWS = 1000
ASSEMBLED_BATCH_BYTES = 8 * 2**20


def _shard_columns(shards: Sequence[str], columns: list[str]) -> Iterator[tuple]:
    """The rows of some columns of the shards, as tuples, shard by shard (one file open at a time, read on this
    thread). A pyarrow dataset over every shard at once scans with readahead on arrow's thread pool: the Ray
    driver's resident memory grew by 25 MB reading one column of 300 one-row shards (bench_ray --scales 100)."""
    import pyarrow.parquet as pq

    for path in shards:
        with pq.ParquetFile(path) as shard:
            for batch in shard.iter_batches(columns=columns, use_threads=False):
                yield from zip(*(batch.column(name).to_pylist() for name in columns))


def _shard_rows(path: str) -> int:
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as shard:
        return shard.metadata.num_rows


def _assemble(shards: Sequence[str], features: Features, path: Path) -> Dataset:
    """The shards' rows as one memory-mapped ``datasets.Dataset``: each shard is read in turn, cast to
    ``features`` and appended to an arrow file at ``path``; a record batch is written once the rows read reach
    ``ASSEMBLED_BATCH_ROWS`` or ``ASSEMBLED_BATCH_BYTES``, so the driver holds about that much (plus one read
    batch of a shard) at a time. (``Dataset.from_parquet`` over every shard grew the Ray driver's resident memory
    by 7-15 MB with 300 one-video shards, bench_ray --scales 100; a batch per shard kept ~5-28 KB per shard in the
    driver while the table lived.)"""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset, DatasetInfo
    from datasets.table import table_cast

    schema, names = features.arrow_schema, list(features)
    pending: list = []
    rows = size = 0  # running totals of ``pending`` (Table.nbytes per append cost seconds over thousands of shards)

    def flush(writer) -> None:
        nonlocal rows, size
        if pending:
            writer.write_table(pa.concat_tables(pending).combine_chunks())
            pending.clear()
            rows = size = 0

    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for shard in shards:
            with pq.ParquetFile(shard) as parquet:
                for batch in parquet.iter_batches(columns=names, use_threads=False):
                    table = table_cast(pa.Table.from_batches([batch]).select(names), schema)
                    pending.append(table)
                    rows, size = rows + table.num_rows, size + table.get_total_buffer_size()
                    if rows >= ASSEMBLED_BATCH_ROWS or size >= ASSEMBLED_BATCH_BYTES:
                        flush(writer)
        flush(writer)
    return Dataset.from_file(str(path), info=DatasetInfo(features=features))


def _read_part(path: str):
    import pyarrow.parquet as pq

    return [pq.read_table(path)]


def _parts_datasource(paths: list[str]):
    """The input parts as a Ray Data datasource: one read task, and one block, per parquet part (a block is
    the unit of retry; ``read_parquet`` would pack small files into one block). Read with ``task_cpus``, not
    ``ray.data.range``'s fixed 1 CPU, which never fits beside the model actors on a node of one CPU."""
    import functools
    import inspect

    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    takes_schema = "schema" in inspect.signature(BlockMetadata).parameters  # older Ray

    class PartsDatasource(Datasource):
        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, **kwargs) -> list:
            tasks = []
            for path in paths:
                metadata = BlockMetadata(num_rows=None, size_bytes=None, input_files=[path], exec_stats=None,
                                         **({"schema": None} if takes_schema else {}))
                tasks.append(ReadTask(functools.partial(_read_part, path), metadata))
            return tasks

    return PartsDatasource()


_NICED_BY = 0  # how much this Ray worker process has already lowered its priority (it is reused across runs)


def _lower_priority(niceness: int) -> None:
    """Lower this worker process's CPU priority to ``niceness`` above where it started (its decoding process
    inherits it); a process niced before by less (an earlier run on the same Ray) goes the rest of the way.
    Ray starts its workers, actors included, at niceness 15 (its ``worker_niceness``): 10 more gives 19."""
    global _NICED_BY
    if niceness < _NICED_BY:
        logger.warning("this Ray worker was niced by %d in an earlier run on the same Ray; a priority cannot be "
                       "raised back without privilege, so it stays there (asked: %d)", _NICED_BY, niceness)
    if niceness > _NICED_BY and hasattr(os, "nice"):
        try:
            os.nice(niceness - _NICED_BY)
        except OSError:  # not allowed here: the run goes on at this priority
            pass
        else:
            from quilt_hf.curation.runners import end_process_worker

            end_process_worker()  # a decoding process started before keeps its old priority: the next call starts one
        _NICED_BY = niceness


class _CpuStage:
    """A CPU step as a Ray task function (the step travels with the task; no model inside).

    ``step.after`` is not called per task: the decoding worker process it would close is shared by the
    tasks of the Ray worker process (``runners.process_worker``) and ends with it. With ``niceness`` the
    task's process runs at a lower priority than the model actors, so Whisper on CPU, the bottleneck, gets the
    cores first (measured: Ray's wall went 1.23x -> 1.14x the local runner's on 2 cores; that a decoding process
    stalls Whisper's threads is the presumed cause, not measured)."""

    def __init__(self, step: Step, ledger: _Ledger, niceness: int = 0):
        self.step, self.ledger, self.niceness = step, ledger, niceness

    def __call__(self, table):
        _lower_priority(self.niceness)
        return _apply_map(self.step, table, self.ledger)


def _node_cpus() -> int:
    """The CPUs of the Ray node this process runs on (its logical CPUs, at most the cores it may use)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        import ray

        if not ray.is_initialized():  # get_runtime_context() would start a Ray
            return cores
        node = ray.get_runtime_context().get_node_id()
        logical = next((n["Resources"].get("CPU") for n in ray.nodes() if n.get("NodeID") == node), None)
    except Exception:  # not in a Ray worker
        logical = None
    return max(1, min(cores, int(logical))) if logical else cores


def cpu_actor_threads(requested: int, pool_actors: int, node_cpus: int) -> int:
    """Torch threads of a Whisper actor on CPU: ``requested``, or (0) the node's CPUs shared among the Whisper
    actors (their count over the whole run: on a cluster that spreads them over nodes, set ``requested``).
    Ray starts an actor with ``OMP_NUM_THREADS`` set to its reserved CPUs, one for the default 0.25: Whisper
    on CPU then used one core of two where the local runner used both (1.30x the local runner's wall,
    measured)."""
    if requested > 0:
        return requested
    return max(1, node_cpus // max(1, pool_actors))


class _ModelStage:
    """A model step as an actor: the model is loaded once, when the actor starts. ``threads``: None keeps
    Ray's thread setting; (requested, Whisper actors) sets torch's threads (:func:`cpu_actor_threads`)."""

    def __init__(self, step: Step, ledger: _Ledger, threads: tuple[int, int] | None = None):
        self.step, self.ledger = step, ledger
        if threads is not None:
            import torch

            torch.set_num_threads(cpu_actor_threads(threads[0], threads[1], _node_cpus()))
        if step.setup is not None:
            try:
                step.setup()
            except Exception as error:  # the driver finds the marker and fails the run with this message
                raise RuntimeError(f"{MODEL_LOAD_MARK}{step.name}: {error}{MODEL_LOAD_MARK}") from error

    def __call__(self, table):
        return _apply_map(self.step, table, self.ledger)


class _Filter:
    def __init__(self, step: Step):
        self.step = step

    def __call__(self, table):
        keep = [bool(self.step.fn({k: v for k, v in row.items() if k != METRICS})) for row in table.to_pylist()]
        import pyarrow as pa

        return table.filter(pa.array(keep, type=pa.bool_()))


class _Expand:
    def __init__(self, step: Step):
        self.step = step

    def __call__(self, table):
        import pyarrow as pa

        schema = self.step.features.arrow_schema
        rows = [new for row in table.to_pylist() for new in self.step.fn(row)]
        return pa.Table.from_pylist([{name: r[name] for name in schema.names} for r in rows], schema=schema)


def _model_pool(data_module, actors: int):
    """An actor pool whose actors run one call at a time on the thread that built them. By default Ray Data
    calls an actor's UDF on a thread of its own, not the constructor's: torch then runs a second OpenMP team
    in the process (the model's load and warm-up made the first), and with more OpenMP threads than CPUs
    libgomp stops spinning between parallel regions. Whisper base on 2 CPU cores: CPU/wall 1.25 instead of
    1.9, and each call 1-5% slower, within the bench's noise (``bench/bench_ray.py --in_actor``, README)."""
    # The two options came in different Ray releases; an actor's max_concurrency is 1 by default anyway.
    for options in ({"max_concurrent_calls_per_actor": 1, "enable_true_multi_threading": True},
                    {"enable_true_multi_threading": True}):
        try:
            return data_module.ActorPoolStrategy(size=actors, **options)
        except TypeError:
            continue
    logger.warning("this Ray Data has no enable_true_multi_threading: model actors are called on a thread of their "
                   "own (Whisper on CPU runs a little slower); a newer Ray Data avoids it")
    return data_module.ActorPoolStrategy(size=actors)


@dataclass
class RayRunner:
    """Runs the pipeline's steps on Ray Data; returns a ``datasets.Dataset`` assembled from parquet shards.

    Args:
        options: :class:`RayOptions` (stage resources, concurrency, retries, cluster address).
        staging_dir: where input and output shards go; must be reachable by every worker (a shared
            filesystem on a cluster). Set by the pipeline to a ``.tmp-ray-*`` folder of the output folder.
        id_column, drop_column: the rows' identity and drop-reason columns (videos lost by the workers are
            recorded there).
    """

    options: RayOptions = field(default_factory=RayOptions)
    staging_dir: str | None = None
    id_column: str = "video_id"
    drop_column: str = "drop_reason"
    timings: dict[str, float] = field(default_factory=dict)
    worker_counters: dict[str, Counter] = field(default_factory=lambda: {"cache_hits": Counter(), "computed": Counter()})
    nodes: Counter = field(default_factory=Counter)  # Ray node id -> (video, step) runs done there
    # step -> the Ray worker processes ("node:pid") that ran it (a new process per video means Ray restarted
    # its workers: see worker_processes)
    processes: dict[str, set[str]] = field(default_factory=dict)
    steps_span: list[float] = field(default_factory=lambda: [math.inf, -math.inf])  # first step began, last ended
    timeline: dict[str, float] = field(default_factory=dict)  # wall seconds before the first / after the last step
    loads_models_in_workers = True  # the pipeline skips loading models in the driver
    _heartbeat: contextlib.ExitStack | None = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:  # the heartbeat (a thread) stays with the process that started it
        return {**self.__dict__, "_heartbeat": None}

    def _init(self):
        ray = require("ray", package="ray[data]", extra="ray", purpose="the Ray Data runner")
        if not ray.is_initialized():
            if self.options.address is None:
                # workers import the steps (and anything they reference) from the driver's import path
                path = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
                # Ray's usage statistics probe the cloud metadata address and report home: off unless the user asks
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                ray.init(  # address="local": a new Ray here, never a cluster another process started
                    address="local", num_cpus=self.options.num_cpus, include_dashboard=False, log_to_driver=False,
                    object_store_memory=self.options.object_store_mb * 2**20 if self.options.object_store_mb else None,
                    runtime_env={"env_vars": {"PYTHONPATH": path}},
                    _system_config={"num_workers_soft_limit": self.worker_processes()},
                )
            else:
                try:
                    ray.init(address=self.options.address, log_to_driver=False)
                except (ConnectionError, ValueError, RuntimeError) as error:
                    raise UserFacingError(f"cannot connect to the Ray cluster at {self.options.address} ({error}); "
                                          "start it with `ray start --head` or check --ray_address") from error
        context = ray.data.DataContext.get_current()
        context.max_errored_blocks = -1  # a block that keeps failing is dropped; its videos are recorded below
        return ray

    def worker_processes(self, cpus: int | None = None) -> int:
        """How many Ray worker processes a node of ``cpus`` CPUs (default: the local Ray's) keeps for this run:
        one per CPU-task slot (``cpus / task_cpus``), one per model actor, and Ray Data's own actors.

        Ray kills an idle worker after 1 s once a node has more than ``num_workers_soft_limit`` workers
        (default: its CPU count). With fractional ``task_cpus`` (more task workers than CPUs) or model actors
        on the node, CPU tasks that waited more than a second for their input (the normal case behind
        Whisper) ran in new processes: ~1.5 CPU-s of Python and pipeline imports, a new decoding process and
        a ~2 s wait each (measured on a local Ray of 1 and 2 CPUs). A local Ray is started with this limit; on a
        cluster, start each node with ``RAY_num_workers_soft_limit`` set to it (README)."""
        o = self.options
        cpus = cpus or o.num_cpus or os.cpu_count() or 1
        slots = math.ceil(cpus / o.task_cpus) if o.task_cpus > 0 else cpus
        return max(cpus, slots + o.asr_actors + o.histology_actors + o.text_actors + RAY_DATA_ACTORS)

    def _stage_dir(self, name: str) -> Path:
        if self.staging_dir is None:
            import tempfile

            self.staging_dir = tempfile.mkdtemp(prefix="quilt-ray-")
        if self._heartbeat is None:  # another run sharing the folder (the step cache) must not take it as a leftover
            self._heartbeat = contextlib.ExitStack()
            self._heartbeat.enter_context(atomic.keep_alive(self.staging_dir))
        folder = Path(self.staging_dir) / f"{name}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        return folder

    def _write_input(self, dataset, folder: Path) -> int:
        """The table as parquet files of ``videos_per_block`` rows each (streamed slice by slice)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrow = dataset.with_format("arrow")
        size = max(1, self.options.videos_per_block)
        files = 0
        for offset in range(0, len(dataset), size):
            table = arrow[offset : offset + size]
            if METRICS not in table.column_names:
                table = table.append_column(METRICS, pa.array([""] * table.num_rows, type=pa.string()))
            pq.write_table(table, folder / f"part-{files:06d}.parquet")
            files += 1
        return files

    def _pool_resources(self, pool: str) -> tuple[int, float]:
        """(actors, GPUs per actor) of a model pool ("asr", "histology" or "text")."""
        o = self.options
        return {"asr": (o.asr_actors, o.asr_gpus), "histology": (o.histology_actors, o.histology_gpus),
                "text": (o.text_actors, o.text_gpus)}[pool]

    def _pool(self, step: Step) -> dict[str, Any]:
        o = self.options
        actors, gpus = self._pool_resources(step.pool)
        import ray.data

        return {"compute": _model_pool(ray.data, max(1, actors)), "num_gpus": gpus or None,
                "num_cpus": o.actor_cpus, "batch_size": max(1, o.model_batch_size)}

    def _actor_threads(self, step: Step) -> tuple[int, int] | None:
        """How ``step``'s actors set their torch threads: None keeps Ray's setting (a GPU actor; a CPU actor of
        another pool than Whisper's unless ``--ray_actor_threads`` is given: they run beside Whisper, the
        bottleneck, and were not measured with more threads), else (requested threads, Whisper actors),
        resolved in each actor against its own node's CPUs."""
        actors, gpus = self._pool_resources(step.pool)
        if gpus > 0 or (step.pool != "asr" and self.options.actor_threads <= 0):
            return None
        return self.options.actor_threads, max(1, actors)

    def _task_niceness(self) -> int:
        """The CPU steps' niceness increment: only when Whisper runs on CPU (where it was measured to help);
        with GPU Whisper the CPU steps are more likely the bottleneck."""
        return self.options.task_niceness if self._pool_resources("asr")[1] <= 0 else 0

    def run(self, dataset, steps: Sequence[Step]):
        started_at = time.time()
        ray = self._init()
        from datasets import Dataset

        began = time.perf_counter()
        folder = self._stage_dir("run")
        inputs = folder / "input"
        inputs.mkdir()
        blocks = self._write_input(dataset, inputs)
        features = dataset.features
        expanded = False
        if blocks == 0:
            return dataset
        parts = [str(inputs / f"part-{i:06d}.parquet") for i in range(blocks)]
        data = ray.data.read_datasource(_parts_datasource(parts), override_num_blocks=blocks,
                                        num_cpus=self.options.task_cpus)
        ledger = _Ledger(str(folder / "attempts"), self.options.max_retries + 1, self.id_column, self.drop_column)
        retries = {"max_retries": -1}  # dead workers: retried here, given up per video by the ledger
        for step in steps:
            common = {"batch_format": "pyarrow", "zero_copy_batch": False}
            if step.kind == "map" and step.pool:
                data = data.map_batches(_ModelStage, fn_constructor_args=(step, ledger, self._actor_threads(step)),
                                        max_restarts=-1, max_task_retries=-1, **self._pool(step), **common)
            elif step.kind == "map":
                data = data.map_batches(_CpuStage(step, ledger, self._task_niceness()), batch_size=1,
                                        num_cpus=self.options.task_cpus, **retries, **common)
            elif step.kind == "filter":
                data = data.map_batches(_Filter(step), batch_size=1, num_cpus=self.options.task_cpus, **retries, **common)
            else:
                data = data.map_batches(_Expand(step), batch_size=1, num_cpus=self.options.task_cpus, **retries, **common)
                features = step.features
                expanded = True
        outputs = folder / "output"
        try:
            # the workers write, with task_cpus like every stage (a whole CPU may not fit beside the actors
            # on a small node); execution streams block by block
            data.write_parquet(str(outputs), ray_remote_args={"num_cpus": self.options.task_cpus})
        except Exception as error:
            text = str(error)
            if MODEL_LOAD_MARK in text:  # a model actor could not load its model: the run's failure
                reason = text.split(MODEL_LOAD_MARK)[1]
                raise UserFacingError(f"a model could not be loaded in its Ray actor ({reason})") from error
            raise
        shards = sorted(str(p) for p in outputs.glob("*.parquet")) if outputs.is_dir() else []
        if not expanded:
            done: set[str] = set()
            for video_id, metrics in _shard_columns(shards, [self.id_column, METRICS]):  # one pass over the shards
                done.add(video_id)
                self._add_metrics(metrics)
            shards += self._record_lost(dataset, done, folder, shards)
            if self.steps_span[0] <= self.steps_span[1]:
                self.timeline["before the first step (Ray start, workers, models)"] = self.steps_span[0] - started_at
                self.timeline["after the last step (shards written)"] = time.time() - self.steps_span[1]
        wall = time.perf_counter() - began
        self.timings["ray wall"] = self.timings.get("ray wall", 0.0) + wall
        if expanded:  # the filter and expansion run in the same tasks: their wall time goes to the expansion
            self.timings[steps[-1].name] = self.timings.get(steps[-1].name, 0.0) + wall
        shards = [s for s in shards if _shard_rows(s) > 0]
        if not shards:
            return Dataset.from_dict({name: [] for name in features}, features=features)
        return _assemble(shards, features, folder / "assembled.arrow")

    def summary(self) -> dict:
        """What ``stats.json`` shows of the Ray run besides the timings: the Ray worker processes that ran each
        step (up to ``PROCESSES_COUNTED``) and the wall seconds before the first and after the last per-video
        step."""
        return {"ray_worker_processes": {name: len(found) for name, found in sorted(self.processes.items())},
                "ray_timeline_s": {name: round(value, 3) for name, value in self.timeline.items()}}

    def _record_lost(self, dataset, done: set[str], folder: Path, shards: list[str]) -> list[str]:
        """Videos missing from the output (``done``: the ids in ``shards``; their block failed past its retries)
        come back as dropped rows, in a shard of their own (returned)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        ids = dataset[self.id_column]
        lost = [i for i, value in enumerate(ids) if value not in done]
        if not lost:
            return []
        if len(lost) == len(ids):
            raise RuntimeError(f"every one of the {len(ids)} rows was lost by the Ray workers; see the Ray logs "
                               "(/tmp/ray/session_latest/logs) for the cause")
        logger.error("%d videos were lost by Ray workers past %d retries; recorded as %s: %s", len(lost),
                     self.options.max_retries, LOST, ", ".join(ids[i] for i in lost[:20]))
        table = dataset.with_format("arrow").select(lost)[:]
        table = table.set_column(table.column_names.index(self.drop_column), self.drop_column,
                                 pa.array([LOST] * table.num_rows, type=pa.string()))
        if METRICS not in table.column_names:
            table = table.append_column(METRICS, pa.array([""] * table.num_rows, type=pa.string()))
        path = folder / "lost.parquet"
        if shards:  # the same schema as the workers' shards
            schema = pq.read_schema(shards[0])
            table = table.select(schema.names).cast(schema)
        pq.write_table(table, path)
        return [str(path)]

    def _add_metrics(self, value: str | None) -> None:
        """Add one row's metrics (the JSON a step wrote in ``METRICS``) to the run's."""
        metrics = _metrics(value)
        for name, seconds in metrics["seconds"].items():
            self.timings[name] = self.timings.get(name, 0.0) + seconds
        for counter in ("cache_hits", "computed"):
            self.worker_counters[counter].update(metrics[counter])
        self.nodes.update(node for node in metrics.get("nodes", {}).values() if node)
        for name, process in metrics.get("processes", {}).items():
            found = self.processes.setdefault(name, set())
            if len(found) < PROCESSES_COUNTED:  # the driver's memory stays flat in the number of videos
                found.add(process)
        for began, ended in metrics.get("spans", {}).values():
            self.steps_span = [min(self.steps_span[0], began), max(self.steps_span[1], ended)]

    def cleanup(self) -> None:
        """Remove the staging folder (input/output shards and their arrow copies)."""
        if self._heartbeat is not None:
            self._heartbeat.close()
            self._heartbeat = None
        if self.staging_dir is not None:
            shutil.rmtree(self.staging_dir, ignore_errors=True)

"""``quilt rebuild``: Quilt-1M's video images, rebuilt from the user's own video downloads and the release's
reconstruction files, under the release's ``image_path`` names.

Inputs (:mod:`quilt_hf.publishing.release`): ``quilt_recon.csv`` gives per video the key-frame times, the
histology prediction of each key frame and the stable (static) time windows of each chunk;
``quilt_data.csv`` gives per image its video, chunk and ``image_path``, with the video's ``pair_chunk_time``,
``fps``, ``height`` and ``width``.

Per video (each in an isolated worker process with a timeout, like ``quilt curate``; a finished video leaves
``videos/<video_id>.json`` and is skipped when the command runs again):

1. every stable window of a chunk: the frames inside it (sampled at ``--sample_fps`` with our decoder,
   :func:`quilt_hf.curation.frames.iter_frame_batches`), those whose SSIM on a random 64x64 crop
   (:func:`~quilt_hf.curation.frames.ssim`) to the next sampled frame exceeds 0.98 are kept, and a window lasting
   3 s or more gives their per-pixel temporal median (:func:`~quilt_hf.curation.frames.temporal_median`);
2. each such image goes through the histology filter (``--histology``, default ``learned``, the default of
   ``quilt curate``; any spec of :func:`quilt_hf.curation.histology.build_histology_classifier`, e.g.
   ``quilt-ensemble:DIR`` for the authors' own ensemble, or ``none``): a rejected image is a recorded per-frame
   drop (``frame_drops`` in the video's record, ``frames_not_histology`` in the report);
3. a chunk without any accepted image falls back to its key frames (histology key frames, runs split where the
   gap exceeds ``pair_chunk_time``), skipping a key frame that is SSIM > 0.98 to the one kept before it; the key
   frames are not filtered again (the release's ``predictions``, made by the authors' ensemble, chose them);
4. the chunk's images take the chunk's ``image_path`` names in order; a name left without an image is recorded.

The filter runs by default because the authors' script runs its ensemble on these images: the release's
``predictions`` cover only the key frames, not the medians of the stable windows. A video missing from
``--videos`` or shorter than its recon times is a recorded drop. Our own static-interval detection
(:func:`~quilt_hf.curation.frames.extract_intervals`) runs on the same video; recon windows it does not find
(less than half of the window covered by one of our static intervals) are reported per video and in total.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from quilt_hf import atomic
from quilt_hf.errors import UserFacingError
from quilt_hf.models import model_key
from quilt_hf.publishing.release import DATA_COLUMNS, RECON_COLUMNS, CellError, parse_literal

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi")
SSIM_THRESHOLD = 0.98
MIN_MEDIAN_SECONDS = 3.0
CROP = 64
MAX_WINDOW_FRAMES = 32  # frames kept per window (thinned evenly): memory stays bounded on long windows
LENGTH_TOLERANCE = 1.0  # seconds a video may fall short of its last recon time


@dataclass
class RebuildConfig:
    """Rebuild the video part of Quilt-1M from your own downloads of its YouTube videos and the release's
    quilt_recon.csv / quilt_data.csv; images are written under the release's image_path names."""

    recon: str = field(metadata={"help": "The release's quilt_recon.csv (video_id, key_frame_times, predictions, stable_times)."})
    data: str = field(metadata={"help": "The release's quilt_data.csv (video_id, ..., chunk_id, image_path, ...)."})
    videos: str = field(metadata={"help": "Folder with the downloaded videos, named <video_id>.<ext> (searched recursively)."})
    output: str = field(metadata={"help": "Folder for images/<image_path>, videos/<video_id>.json and report.json."})
    sample_fps: float = field(default=2.0, metadata={"help": "Frames per second sampled inside stable windows."})
    compare: bool = field(default=True, metadata={"help": "Also run our static-interval detection and report disagreements."})
    timeout: float = field(default=1800.0, metadata={"help": "Seconds one video may take before it is dropped."})
    isolate: bool = field(default=True, metadata={"help": "Run each video in a worker process (a crash or hang drops only that video)."})
    seed: int = field(default=0, metadata={"help": "Random crop positions."})
    histology: str = field(default="learned", metadata={
        "help": "Histology filter on the rebuilt images (the authors' script keeps those its ensemble accepts): "
                "none, heuristic, learned (default, as `quilt curate`), quilt-ensemble:DIR (the authors' "
                "ensemble, see quilt_hf/curation/histology_quilt.py) or any --histology spec of `quilt curate`. "
                "A rejected image is a recorded per-frame drop; its chunk falls back to its key frames."})


# --------------------------------------------------------------------------------------------------- recon parsing


def windows_of(stable_entry) -> list[tuple[float, float]]:
    """Every ``(start, end)`` pair inside a ``stable_times`` entry, whatever its nesting (the release nests
    them as ``stable_times[chunk][chunk][0]``: a list of one-key dicts holding tuples of lists)."""
    found: list[tuple[float, float]] = []

    def walk(value) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            if len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
                if float(value[1]) > float(value[0]):
                    found.append((float(value[0]), float(value[1])))
            else:
                for item in value:
                    walk(item)

    walk(stable_entry)
    return found


def chunk_windows(stable_times, chunks: int) -> list[list[tuple[float, float]]]:
    """The stable windows of each of ``chunks`` chunks."""
    result = []
    for chunk in range(chunks):
        entry = stable_times[chunk] if isinstance(stable_times, (list, tuple)) and chunk < len(stable_times) else None
        if isinstance(entry, dict):  # {chunk: (...)}: the release's shape
            entry = entry.get(chunk, entry.get(str(chunk), entry))
        result.append(windows_of(entry) if entry is not None else [])
    return result


def key_frame_chunks(times: list[float], predictions: list, pair_chunk_time: float) -> list[list[float]]:
    """Histology key frames grouped into chunks: runs of positive predictions, split where two consecutive
    key frames are more than ``pair_chunk_time`` apart."""
    chunks: list[list[float]] = []
    current: list[float] = []
    for t, positive in zip(times, predictions):
        if positive and current and pair_chunk_time > 0 and t - current[-1] > pair_chunk_time:
            chunks.append(current)
            current = []
        if positive:
            current.append(float(t))
        elif current:
            chunks.append(current)
            current = []
    if current:
        chunks.append(current)
    return chunks


# --------------------------------------------------------------------------------------------------- per video


_CLASSIFIERS: dict = {}


def histology_filter(spec: str | None):
    """The loaded histology classifier of ``spec`` (None for ``none``), built once per process."""
    if not spec or spec == "none":
        return None
    if spec not in _CLASSIFIERS:
        from quilt_hf.curation.histology import build_histology_classifier

        classifier = build_histology_classifier(spec)
        classifier.load()
        _CLASSIFIERS[spec] = classifier
    return _CLASSIFIERS[spec]


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _gray(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ _LUMA


def _crop_ssim(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> float:
    """SSIM of the same random 64x64 crop of two frames (grayscale), as the release's recipe."""
    from quilt_hf.curation.frames import ssim

    height, width = a.shape[:2]
    size = min(CROP, height, width)
    y, x = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
    crop_a = _gray(a[y : y + size, x : x + size])
    crop_b = _gray(b[y : y + size, x : x + size])
    return float(ssim(crop_a, crop_b))


def rebuild_video(video_path: str, recon: dict, names: dict[int, list[str]], pair_chunk_time: float,
                  images_dir: str, sample_fps: float = 2.0, compare: bool = True, seed: int = 0,
                  histology: str | None = None) -> dict:
    """Rebuild one video's images (the unit of work a worker runs). Returns its record (also the JSON file).

    Args:
        video_path (`str`): the downloaded video.
        recon (`dict`): its parsed ``quilt_recon.csv`` row (``key_frame_times``, ``predictions``, ``stable_times``).
        names (`dict[int, list[str]]`): ``chunk_id`` -> the chunk's ``image_path`` names, in release order.
        pair_chunk_time (`float`): the video's ``pair_chunk_time`` (``quilt_data.csv``).
        images_dir (`str`): where the images go.
        histology (`str`, *optional*): the histology filter's spec (:func:`histology_filter`); None or
            ``none``: every stable-window image is kept.
    """
    from PIL import Image

    from quilt_hf.curation.frames import FrameOptions, extract_intervals, iter_frame_batches, temporal_median
    from quilt_hf.curation.probe import probe_video

    rng = np.random.default_rng(seed)
    classifier = histology_filter(histology)
    record: dict = {"video": video_path, "drop_reason": "", "images": 0, "names_without_image": [],
                    "histology": histology or "none", "frame_drops": []}
    probe = probe_video(video_path, decode_check=True)
    if probe["drop_reason"] not in ("", "no_audio", "too_short"):
        return {**record, "drop_reason": f"video_{probe['drop_reason']}"}
    chunks = (max(names) + 1) if names else 0
    windows = chunk_windows(recon["stable_times"], chunks)
    keys = key_frame_chunks(recon["key_frame_times"], recon["predictions"], pair_chunk_time)
    needed = max([e for ws in windows for _, e in ws] + [t for ks in keys for t in ks] + [0.0])
    if probe["duration"] + LENGTH_TOLERANCE < needed:
        return {**record, "drop_reason": "video_shorter_than_recon", "duration": probe["duration"], "needed": needed}
    flat = [(chunk, w) for chunk, ws in enumerate(windows) for w in ws]
    collected: dict[int, list[np.ndarray]] = defaultdict(list)
    strides: dict[int, int] = defaultdict(lambda: 1)
    seen_in: dict[int, int] = defaultdict(int)
    key_times = sorted({t for ks in keys for t in ks})
    key_frames: dict[float, tuple[float, np.ndarray]] = {}
    for times, frames in iter_frame_batches(video_path, sample_fps):
        for t, frame in zip(times.tolist(), frames):
            for index, (_, (start, end)) in enumerate(flat):
                if start <= t < end:
                    if seen_in[index] % strides[index] == 0:
                        collected[index].append(np.array(frame))
                        if len(collected[index]) > MAX_WINDOW_FRAMES:
                            collected[index] = collected[index][::2]
                            strides[index] *= 2
                    seen_in[index] += 1
            for k in key_times:
                if abs(t - k) <= 1.0 / sample_fps and (k not in key_frames or abs(t - k) < abs(key_frames[k][0] - k)):
                    key_frames[k] = (t, np.array(frame))
    images_per_chunk: dict[int, list[np.ndarray]] = defaultdict(list)
    for index, (chunk, (start, end)) in enumerate(flat):
        frames = collected.get(index, [])
        if end - start < MIN_MEDIAN_SECONDS or not frames:
            continue
        stable = [frames[i] for i in range(len(frames) - 1) if _crop_ssim(frames[i], frames[i + 1], rng) > SSIM_THRESHOLD]
        if not stable:
            continue
        image = temporal_median(stable)
        if classifier is not None:
            is_histology, score = classifier.predict([image])[0]
            if not is_histology:
                record["frame_drops"].append({"chunk": chunk, "window": [start, end], "reason": "not_histology",
                                              "score": round(float(score), 4)})
                continue
        images_per_chunk[chunk].append(image)
    fallbacks = 0
    for chunk in range(chunks):
        if images_per_chunk[chunk] or chunk >= len(keys):
            continue
        previous = None
        for t in keys[chunk]:
            if t not in key_frames:
                continue
            frame = key_frames[t][1]
            if previous is None or _crop_ssim(previous, frame, rng) <= SSIM_THRESHOLD:
                images_per_chunk[chunk].append(frame)
                previous = frame
                fallbacks += 1
    out = Path(images_dir)
    for chunk, chunk_names in names.items():
        images = images_per_chunk.get(chunk, [])
        for position, name in enumerate(chunk_names):
            if position >= len(images):
                record["names_without_image"].append(name)
                (out / name).unlink(missing_ok=True)  # an earlier run with another filter may have written it
                continue
            encoded = io.BytesIO()
            Image.fromarray(images[position]).save(encoded, format="JPEG", quality=95)
            atomic.write_bytes(out / name, encoded.getvalue())
            record["images"] += 1
    record["key_frame_fallbacks"] = fallbacks
    record["recon_windows"] = len(flat)
    if compare:
        ours = [(i.start, i.end) for i in extract_intervals(video_path, FrameOptions(sample_fps=sample_fps),
                                                              probe["duration"]) if i.is_median]
        unmatched = [
            [start, end] for _, (start, end) in flat
            if not any(min(end, e) - max(start, s) >= 0.5 * (end - start) for s, e in ours)
        ]
        record["our_static_intervals"] = len(ours)
        record["recon_windows_we_do_not_find"] = unmatched
        record["our_intervals_not_in_recon"] = [
            [s, e] for s, e in ours if not any(min(e, end) - max(s, start) > 0 for _, (start, end) in flat)
        ]
    return record


# ------------------------------------------------------------------------------------------------------- command


def _read_csv(path: Path, columns: tuple[str, ...], what: str) -> list[dict]:
    if not path.is_file():
        raise UserFacingError(f"--{what} {path}: no such file")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise UserFacingError(f"--{what} {path}: missing columns {missing}; expected {list(columns)}")
        return list(reader)


def is_safe_name(name: str, *, nested: bool) -> bool:
    """True for a relative name that stays inside the folder it is joined to (no absolute path, drive or
    ``..``); ``nested`` allows sub-folders (``a/b.jpg``)."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return bool(parts) and not name.startswith(("/", "\\")) and ".." not in parts and ":" not in name \
        and (nested or len(parts) == 1)


def find_videos(folder: Path) -> dict[str, Path]:
    """Video files under ``folder`` by id: the file name without its extension (``<video_id>.mp4``)."""
    if not folder.is_dir():
        raise UserFacingError(f"--videos {folder}: no such folder")
    return {p.stem: p for p in sorted(folder.rglob("*")) if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()}


def run_rebuild(config: RebuildConfig) -> dict:
    """Run ``quilt rebuild``; returns the report (also ``<output>/report.json``)."""
    from tqdm.auto import tqdm

    from quilt_hf.curation.runners import IsolatedWorker, WorkerCrashed, WorkerError, WorkerTimeout

    histology = config.histology or "none"
    classifier = histology_filter(histology)  # a broken model fails the run here, before any video
    # The filter's identity for resuming: its spec and a digest of its weights (retrained in place: redone).
    digest = model_key(classifier, "model", "weights_file", "directory") if classifier is not None else ""
    identity = f"{histology}@{digest}" if digest else histology
    if config.isolate:
        _CLASSIFIERS.pop(histology, None)  # the worker loads its own; this process no longer needs it
    recon_rows = _read_csv(Path(config.recon), RECON_COLUMNS, "recon")
    data_rows = _read_csv(Path(config.data), DATA_COLUMNS, "data")
    videos = find_videos(Path(config.videos))
    output = Path(config.output)
    images_dir, records_dir = output / "images", output / "videos"
    images_dir.mkdir(parents=True, exist_ok=True)
    records_dir.mkdir(parents=True, exist_ok=True)
    names: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    chunk_time: dict[str, float] = {}
    skipped = {"unsafe_names": 0, "bad_data_rows": 0}
    for row in data_rows:
        if not (is_safe_name(row["video_id"], nested=False) and is_safe_name(row["image_path"], nested=True)):
            skipped["unsafe_names"] += 1  # an absolute path or `..` would write outside --output
            logger.warning("quilt_data.csv: unsafe video_id/image_path %r, %r; skipped", row["video_id"],
                           row["image_path"])
            continue
        try:
            names[row["video_id"]][int(float(row["chunk_id"]))].append(row["image_path"])
            chunk_time.setdefault(row["video_id"], float(row["pair_chunk_time"] or 0))
        except ValueError:
            skipped["bad_data_rows"] += 1
            logger.warning("quilt_data.csv: row for %s has a bad chunk_id/pair_chunk_time; skipped", row["video_id"])
    worker = IsolatedWorker() if config.isolate else None
    started = time.perf_counter()
    try:
        for row in tqdm(recon_rows, desc="Rebuilding videos", unit=" videos"):
            video_id = row["video_id"]
            if not is_safe_name(video_id, nested=False):
                skipped["unsafe_names"] += 1
                logger.warning("quilt_recon.csv: unsafe video_id %r; skipped", video_id)
                continue
            record_path = records_dir / f"{video_id}.json"
            if record_path.is_file() and _done_with(record_path, identity):
                continue  # done in an earlier run with the same filter
            record: dict
            try:
                recon = {k: parse_literal(row[k]) for k in ("key_frame_times", "predictions", "stable_times")}
            except CellError as error:
                record = {"drop_reason": "bad_recon_row", "error": str(error)}
            else:
                if video_id not in videos:
                    record = {"drop_reason": "missing_video"}
                elif video_id not in names:
                    record = {"drop_reason": "no_rows_in_data_csv"}
                else:
                    args = (str(videos[video_id]), recon, dict(names[video_id]), chunk_time.get(video_id, 0.0),
                            str(images_dir), config.sample_fps, config.compare, config.seed, histology)
                    try:
                        if worker is not None:
                            record = worker.call(rebuild_video, *args, timeout=config.timeout)
                        else:
                            record = rebuild_video(*args)
                    except WorkerTimeout:
                        record = {"drop_reason": "timeout"}
                    except (WorkerCrashed, WorkerError) as error:
                        record = {"drop_reason": "worker_failed", "error": str(error)[-500:]}
            record["video_id"] = video_id
            record["histology"] = histology
            record["histology_identity"] = identity
            atomic.write_json(record_path, record, indent=1)
    finally:
        if worker is not None:
            worker.close()
    report = summarize(records_dir, len(recon_rows), time.perf_counter() - started)
    report.update(skipped)
    atomic.write_json(output / "report.json", report, indent=2)
    logger.info("rebuild: %d images from %d videos; dropped %s; %d stable-window images not histology; recon "
                "windows our detection does not find: %d of %d",
                report["images"], report["videos_done"], report["drops"] or "none", report["frames_not_histology"],
                report["recon_windows_we_do_not_find"], report["recon_windows"])
    return report


def _done_with(record_path: Path, identity: str) -> bool:
    """Whether a video's record was written by a run with the same histology filter: its spec and weights
    (records of runs before the filter existed count as ``none``; before weights were recorded, as the spec)."""
    try:
        record = json.loads(record_path.read_text())
        return record.get("histology_identity", record.get("histology", "none")) == identity
    except (OSError, ValueError):
        return False


def summarize(records_dir: Path, videos: int, seconds: float) -> dict:
    drops: dict[str, int] = defaultdict(int)
    totals = {"images": 0, "names_without_image": 0, "recon_windows": 0, "recon_windows_we_do_not_find": 0,
              "our_intervals_not_in_recon": 0, "videos_done": 0, "frames_not_histology": 0}
    for path in sorted(records_dir.glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("drop_reason"):
            drops[record["drop_reason"]] += 1
            continue
        totals["videos_done"] += 1
        totals["images"] += record.get("images", 0)
        totals["names_without_image"] += len(record.get("names_without_image", []))
        totals["frames_not_histology"] += sum(d.get("reason") == "not_histology" for d in record.get("frame_drops", []))
        totals["recon_windows"] += record.get("recon_windows", 0)
        totals["recon_windows_we_do_not_find"] += len(record.get("recon_windows_we_do_not_find", []))
        totals["our_intervals_not_in_recon"] += len(record.get("our_intervals_not_in_recon", []))
    return {"videos_in_recon": videos, **totals, "drops": dict(drops), "seconds": round(seconds, 2)}

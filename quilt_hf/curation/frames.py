"""Frames: stable intervals, their temporal-median images, and fallback key frames, streamed from a video.

As Quilt (QUILT.md, stage 6): frames are sampled at ``sample_fps`` with decord, in batches, never one
seek per frame (by default decord reads forward and skips the frames between samples; ``get_batch`` per
batch of indices is the alternative). Consecutive samples whose SSIM on
random 64x64 crops stays at or above 0.98 of the interval's first frame (and whose crops keep their mean
colour: SSIM on grey levels misses a change of stain) form one stable interval; a new
interval starts at every scene change (its first frame is a key frame). An interval of ``min_static_seconds``
(3 s) or more yields the per-pixel temporal median of its frames (cursor and compression noise vanish);
shorter ones (pans, zooms, transitions) yield their key frame as a fallback candidate. Every image gets a
perceptual hash (for near-duplicate removal) and a sharpness score (variance of the Laplacian; blur check).

Memory is flat in the video's length: frames arrive in batches, only the open interval's frames are kept
(at most ``max_median_frames``, thinned by doubling the stride), and each closed interval is yielded at once.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

FRAMES_VERSION = "1"


@dataclass
class FrameOptions:
    """Options of the frame stage (all part of its cache key)."""

    sample_fps: float = 1.0  # frames sampled per second of video
    ssim_threshold: float = 0.98  # as Quilt: SSIM on random crops at or above this = same stable interval
    max_colour_shift: float = 3.0  # and the crops' mean colour moves at most this much (0-255): a restain
    crop_size: int = 64
    num_crops: int = 3  # the median SSIM of these crops decides (robust to a cursor in one crop)
    min_static_seconds: float = 3.0  # stable intervals this long give a temporal-median image
    max_median_frames: int = 9  # frames kept per interval for its median (thinned evenly, memory stays flat)
    batch_size: int = 16  # frames decoded per batch
    reader: str = "pyav"  # pyav (forward, in this thread: bounded), sequential (decord next/skip) or get_batch
    blur_threshold: float = 15.0  # variance of the Laplacian below this = blurry
    seed: int = 0  # crop positions
    image_format: str = "jpeg"  # jpeg (quality 95, as Quilt's released images) or png (lossless, slower)

    def cache_key(self) -> dict:
        return {"version": FRAMES_VERSION, **asdict(self)}


@dataclass
class Interval:
    """One stable interval of a video and its image."""

    index: int
    start: float
    end: float
    is_median: bool
    num_frames: int
    image: np.ndarray  # H x W x 3 uint8
    phash: str = ""
    sharpness: float = 0.0
    colour: tuple[float, float, float] = (0.0, 0.0, 0.0)  # mean RGB of the image


def iter_frame_batches(
    path: str | Path, sample_fps: float = 1.0, batch_size: int = 16, reader: str = "pyav", num_threads: int = 0,
    damage: list[list[float]] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(times, frames)`` batches of frames sampled at ``sample_fps`` (``frames``: an
    ``N x H x W x 3`` uint8 array or a list of ``H x W x 3`` arrays).

    Memory holds one batch (``batch_size`` RGB frames) at a time, whatever the video's length.

    Args:
        reader (`str`): ``"pyav"`` (default) decodes forward with PyAV in the calling thread and keeps every
            ``round(fps / sample_fps)``-th frame: the same frames as decord's sequential reader, pixel for pixel,
            and nothing is decoded before it is asked for. decord's readers decode ahead in a background thread
            without bound while the caller is busy (decord issues #157, #208, #304): with a slow consumer (a
            loaded machine) a lecture's whole decoded video piled up in memory (4.3 GB for 90 minutes).
            ``"sequential"`` reads with decord without ever seeking: ``next()`` for a
            sampled frame, ``skip_frames`` for the frames between (decoded, as H.264 needs, but never
            converted to RGB or copied); ``"get_batch"`` asks decord for each batch of indices at once
            (``VideoReader.get_batch``), which seeks inside decord and measured 2-3x slower on 720p
            lectures (see ``bench/bench_frames.py``).
        damage (`list`, *optional*): receives ``[start, end]`` (seconds) of each stretch that could not be
            decoded. When decord stops on damaged data, decoding goes on with PyAV from the next sample,
            skipping the packets FFmpeg rejects (:func:`_tolerant_frame_batches`): a lecture with a corrupt
            middle keeps its intact parts.
    """
    damage = damage if damage is not None else []
    if reader == "pyav":
        yield from _pyav_frame_batches(path, sample_fps, batch_size, damage)
        return
    import decord

    try:
        reader_ = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=num_threads)
    except decord.DECORDError as error:
        logger.warning("%s: decord cannot read it (%s); decoding with PyAV, around damaged data", Path(path).name, error)
        yield from _tolerant_frame_batches(path, sample_fps, batch_size, 0.0, damage)
        return
    fps = float(reader_.get_avg_fps()) or 25.0
    total = len(reader_)
    step = max(1, round(fps / sample_fps))
    indices = list(range(0, total, step))
    if reader == "get_batch":
        for offset in range(0, len(indices), batch_size):
            batch = indices[offset : offset + batch_size]
            yield np.asarray(batch, dtype=np.float64) / fps, reader_.get_batch(batch).asnumpy()
        return
    if reader != "sequential":
        raise ValueError(f"reader={reader!r}: expected 'pyav', 'sequential' or 'get_batch'")
    times: list[float] = []
    frames: list[np.ndarray] = []
    for position, index in enumerate(indices):
        try:
            frame = reader_.next().asnumpy()
        except StopIteration:  # the container over-reported its frame count
            break
        except decord.DECORDError as error:  # damaged data: go on with the tolerant decoder from here
            logger.warning("%s: decoding failed at %.1f s (%s); decoding around the damage with PyAV",
                           Path(path).name, index / fps, str(error).splitlines()[-1][:200])
            del reader_
            if frames:
                yield np.asarray(times), frames
            yield from _tolerant_frame_batches(path, sample_fps, batch_size, index / fps, damage,
                                               period=step / fps, last_good=times[-1] if times else None)
            return
        times.append(index / fps)
        frames.append(frame)
        if len(frames) == batch_size:
            yield np.asarray(times), frames  # a list: stacking would copy every frame once more
            times, frames = [], []
        if position + 1 < len(indices):
            try:
                reader_.skip_frames(step - 1)
            except StopIteration:
                break
            except decord.DECORDError as error:
                logger.warning("%s: decoding failed after %.1f s (%s); decoding around the damage with PyAV",
                               Path(path).name, index / fps, str(error).splitlines()[-1][:200])
                del reader_
                if frames:
                    yield np.asarray(times), frames
                yield from _tolerant_frame_batches(path, sample_fps, batch_size, (index + step) / fps, damage,
                                                   period=step / fps, last_good=index / fps)
                return
    if frames:
        yield np.asarray(times), frames


def _pyav_frame_batches(
    path: str | Path, sample_fps: float, batch_size: int, damage: list[list[float]]
) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """Every ``round(fps / sample_fps)``-th decoded frame (decord's sampling: index / average fps as its time),
    decoded with PyAV in the calling thread; a packet FFmpeg rejects hands over to :func:`_tolerant_frame_batches`
    from the next sample on, which records the damaged stretch."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # FFmpeg's frame/slice threads; they decode only what is demuxed here
        fps = float(stream.average_rate or stream.guessed_rate or 25.0)
        step = max(1, round(fps / sample_fps))
        times: list[float] = []
        frames: list[np.ndarray] = []
        index = 0
        last_good: float | None = None
        for packet in container.demux(stream):  # its last packet is empty: decoding it flushes the decoder
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as error:
                logger.warning("%s: decoding failed at %.1f s (%s); decoding around the damage",
                               Path(path).name, index / fps, str(error)[:200])
                if frames:
                    yield np.asarray(times), frames
                start = -(-index // step) * step  # the next sample's index
                yield from _tolerant_frame_batches(path, sample_fps, batch_size, start / fps, damage,
                                                   period=step / fps, last_good=last_good)
                return
            for frame in decoded:
                if index % step == 0:
                    last_good = index / fps
                    times.append(last_good)
                    frames.append(frame.to_ndarray(format="rgb24"))
                    if len(frames) == batch_size:
                        yield np.asarray(times), frames
                        times, frames = [], []
                index += 1
    if frames:
        yield np.asarray(times), frames


def _tolerant_frame_batches(
    path: str | Path, sample_fps: float, batch_size: int, start: float, damage: list[list[float]],
    period: float | None = None, last_good: float | None = None,
) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """Frames sampled every ``period`` seconds from ``start`` on, decoded with PyAV packet by packet: a packet
    FFmpeg rejects is skipped, and the stretch between the last good frame before it and the first good frame
    after it is appended to ``damage`` as ``[start, end]``. Samples that fall inside a damaged stretch are
    left out (never replaced by a neighbouring frame)."""
    import av

    period = period or 1.0 / sample_fps
    times: list[float] = []
    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        # single-threaded on purpose: with frame threads, which packet FFmpeg rejects (and so the damaged span)
        # depends on thread timing; around damage, determinism matters more than speed
        origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        if start > 0:
            container.seek(int((start + origin) / stream.time_base), stream=stream, backward=True, any_frame=False)
        wanted = start
        bad_since: float | None = last_good if start > 0 else None  # decord already failed after last_good
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except av.error.FFmpegError:
                if bad_since is None:
                    bad_since = last_good if last_good is not None else wanted
                continue
            for frame in decoded:
                if frame.time is None:
                    continue
                t = float(frame.time) - origin
                if t < wanted - period / 2:
                    continue  # before the next sample (frames after a seek, or between samples)
                if bad_since is not None:
                    damage.append([round(max(0.0, bad_since), 3), round(t, 3)])
                    bad_since = None
                while t >= wanted + period / 2:  # samples lost in the damage (or a gap) are skipped
                    wanted += period
                last_good = t
                times.append(round(wanted, 6))
                frames.append(frame.to_ndarray(format="rgb24"))
                wanted += period
                if len(frames) == batch_size:
                    yield np.asarray(times), frames
                    times, frames = [], []
    if bad_since is not None:  # damaged to the end
        damage.append([round(max(0.0, bad_since), 3), -1.0])
    if frames:
        yield np.asarray(times), frames


def temporal_median(frames: list[np.ndarray]) -> np.ndarray:
    """Per-pixel median of a few uint8 frames (upper median for an even count).

    An odd-even transposition sort with elementwise ``minimum``/``maximum`` on whole frames: for the
    <= 9 frames kept per interval it is about 10x faster than ``np.median`` on 720p frames.
    """
    values = [np.asarray(f) for f in frames]
    n = len(values)
    for round_ in range(n):
        for i in range(round_ % 2, n - 1, 2):
            low, high = np.minimum(values[i], values[i + 1]), np.maximum(values[i], values[i + 1])
            values[i], values[i + 1] = low, high
    return values[n // 2].copy()


def prefetch(iterator: Iterator, depth: int = 1) -> Iterator:
    """Run ``iterator`` in a background thread, ``depth`` items ahead (decord decodes without the GIL,
    so decoding the next batch overlaps with the analysis of this one; memory: ``depth + 1`` batches)."""
    import queue
    import threading

    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        items.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put((True, done))
        except BaseException as error:  # handed to the consumer, raised there
            items.put((False, error))

    thread = threading.Thread(target=produce, name="decord-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = items.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()


def _gray(frame: np.ndarray) -> np.ndarray:
    return frame[..., 0] * 0.299 + frame[..., 1] * 0.587 + frame[..., 2] * 0.114


def ssim(a: np.ndarray, b: np.ndarray, window: int = 7) -> float | np.ndarray:
    """Mean structural similarity of grayscale images (0-255), uniform window as scikit-image.

    ``a`` and ``b`` are ``H x W`` (one score) or ``N x H x W`` stacks (one score per image, computed in
    one pass).
    """
    from scipy.ndimage import uniform_filter

    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    single = a.ndim == 2
    if single:
        a, b = a[None], b[None]
    size = (1, window, window)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = uniform_filter(a, size), uniform_filter(b, size)
    n = window * window
    cov = n / (n - 1)
    var_a = cov * (uniform_filter(a * a, size) - mu_a * mu_a)
    var_b = cov * (uniform_filter(b * b, size) - mu_b * mu_b)
    cov_ab = cov * (uniform_filter(a * b, size) - mu_a * mu_b)
    s = ((2 * mu_a * mu_b + c1) * (2 * cov_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    pad = window // 2
    scores = s[:, pad:-pad, pad:-pad].mean(axis=(1, 2)).astype(np.float64)
    return float(scores[0]) if single else scores


def phash(image: np.ndarray, hash_size: int = 8) -> str:
    """64-bit perceptual hash (DCT of a 32x32 grayscale thumbnail) as 16 hex digits."""
    from PIL import Image
    from scipy.fft import dctn

    thumb = np.asarray(Image.fromarray(image).convert("L").resize((32, 32), Image.Resampling.BOX), np.float64)
    low = dctn(thumb, norm="ortho")[:hash_size, :hash_size]
    bits = (low > np.median(low[1:, 1:] if hash_size > 1 else low)).flatten()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):0{hash_size * hash_size // 4}x}"


def hamming(hash_a: str, hash_b: str) -> int:
    """Bits that differ between two hex perceptual hashes."""
    return (int(hash_a, 16) ^ int(hash_b, 16)).bit_count()


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian of the grayscale image (downscaled to 256 px): low means blurry."""
    from PIL import Image
    from scipy.ndimage import laplace

    gray = Image.fromarray(image).convert("L")
    gray.thumbnail((256, 256))
    return float(laplace(np.asarray(gray, np.float64)).var())


def _own(frame: np.ndarray) -> np.ndarray:
    """The frame as its own array (a view would keep its whole decoded batch alive)."""
    return frame if frame.base is None else frame.copy()


class _OpenInterval:
    def __init__(self, time: float, frame: np.ndarray, crops: np.ndarray, max_frames: int):
        self.start = self.last = time
        self.key_frame = frame
        self.reference = crops
        self.kept: list[np.ndarray] = [frame]
        self.count = 1
        self.stride = 1
        self.max_frames = max_frames

    def add(self, time: float, frame: np.ndarray) -> None:
        self.last = time
        if self.count % self.stride == 0:
            self.kept.append(_own(frame))
            if len(self.kept) > self.max_frames:
                self.kept = self.kept[::2]
                self.stride *= 2
        self.count += 1


def extract_intervals(
    path: str | Path, options: FrameOptions | None = None, duration: float | None = None,
    damage: list[list[float]] | None = None,
) -> Iterator[Interval]:
    """Stream the stable intervals of a video with their images (see the module docstring).

    Args:
        path (`str` or `Path`): the video file.
        options (`FrameOptions`, *optional*): sampling and similarity settings.
        duration (`float`, *optional*): the video's duration (the last interval's end); defaults to the
            last sample's time plus one sampling period.
        damage (`list`, *optional*): receives the ``[start, end]`` stretches that could not be decoded
            (an interval never spans one: the damage closes it).
    """
    options = options or FrameOptions()
    rng = np.random.default_rng(options.seed)
    positions: list[tuple[int, int]] | None = None
    size = options.crop_size
    period = 1.0 / options.sample_fps
    current: _OpenInterval | None = None
    index = 0

    def crops_of(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rgb = [frame[y : y + size, x : x + size].astype(np.float32) for y, x in positions]
        return np.stack([_gray(c) for c in rgb]), np.stack([c.reshape(-1, 3).mean(0) for c in rgb])

    def close(interval: _OpenInterval, end: float) -> Interval:
        nonlocal index
        is_median = (end - interval.start) >= options.min_static_seconds - 1e-6 and interval.count >= 2
        if is_median:
            image = temporal_median(interval.kept)
        else:
            image = interval.key_frame
        result = Interval(index, float(interval.start), float(end), bool(is_median), interval.count, image)
        result.phash, result.sharpness = phash(image), sharpness(image)
        result.colour = tuple(round(float(c), 3) for c in image[::4, ::4].mean(axis=(0, 1), dtype=np.float64))
        index += 1
        return result

    damage = damage if damage is not None else []
    batches = iter_frame_batches(path, options.sample_fps, options.batch_size, options.reader, damage=damage)
    for times, frames in prefetch(batches, depth=1):
        if positions is None:
            height, width = frames[0].shape[:2]
            size = min(size, height, width)
            positions = [
                (int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1)))
                for _ in range(options.num_crops)
            ]
        for time, frame in zip(times.tolist(), frames):
            crops = crops_of(frame)
            if current is not None and any(current.last <= start < time for start, _ in damage):
                yield close(current, current.last + period)  # the damage ends the interval
                current = None
            if current is not None:
                score = float(np.median(ssim(current.reference[0], crops[0])))
                colour_shift = float(np.median(np.abs(current.reference[1] - crops[1]).max(axis=1)))
                if score >= options.ssim_threshold and colour_shift <= options.max_colour_shift:
                    current.add(time, frame)
                    continue
                yield close(current, time)
            current = _OpenInterval(time, _own(frame), crops, options.max_median_frames)
        del frames
    if current is not None:
        end = current.last + period
        if duration:
            end = max(min(float(duration), end), current.last)
        yield close(current, end)


def _merge_spans(spans: list[list[float]]) -> list[list[float]]:
    """Sorted ``[start, end]`` spans with the overlapping and touching ones merged."""
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def extract_to_folder(path: str | Path, folder: str | Path, options: FrameOptions | None = None, duration: float | None = None) -> dict:
    """Run :func:`extract_intervals` and write each image (JPEG or PNG) plus ``intervals.json`` into ``folder``.

    This is the unit of work the pipeline runs in an isolated worker process with a timeout.
    Returns the summary written to ``intervals.json``.
    """
    from PIL import Image

    options = options or FrameOptions()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    damage: list[list[float]] = []
    for interval in extract_intervals(path, options, duration, damage):
        if options.image_format == "png":
            name = f"{interval.index:05d}.png"
            Image.fromarray(interval.image).save(folder / name, compress_level=1)
        else:
            name = f"{interval.index:05d}.jpg"
            Image.fromarray(interval.image).save(folder / name, quality=95)
        records.append(
            {
                "index": interval.index,
                "start": interval.start,
                "end": interval.end,
                "is_median": interval.is_median,
                "num_frames": interval.num_frames,
                "phash": interval.phash,
                "sharpness": interval.sharpness,
                "colour": list(interval.colour),
                "blurry": interval.sharpness < options.blur_threshold,
                "height": int(interval.image.shape[0]),
                "width": int(interval.image.shape[1]),
                "image": name,
            }
        )
    damaged = _merge_spans([[start, float(duration or 0.0) if end < 0 else end] for start, end in damage])
    if damaged:  # a frame decoded between two damaged packets is no trustworthy image
        inside = [r for r in records if any(a < r["start"] < b for a, b in damaged)]
        for record in inside:
            (folder / record["image"]).unlink(missing_ok=True)
        records = [r for r in records if r not in inside]
        for position, record in enumerate(records):
            record["index"] = position
    summary = {"intervals": records, "options": options.cache_key(), "damaged": damaged}
    with open(folder / "intervals.json", "w") as handle:
        json.dump(summary, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return summary

"""Alignment: histology chunks of a video and their transcript windows, as many-to-many pair candidates.

**Chunks** (QUILT.md, stage 5). The video's stable intervals (from :mod:`~quilt_hf.curation.frames`) are
walked in time order. A chunk opens at the first histology interval and grows over consecutive histology
intervals; it closes at the start of a non-histology interval, or at the next key frame once it would
last more than ``pair_chunk_time`` seconds (so chunks hold whole intervals). One image shown for longer
than the budget is cut into equal chunks of about ``pair_chunk_time``, each paired with its own part of the
narration: the pairing is many-to-many, as in Quilt. Chunks whose window holds no narration are dropped.

**Transcript window** (stage 7). A chunk opened at ``open`` and closed at ``close`` reads the narration in
``[max(prev_close, min(open, close - pair_chunk_time)), close]``, where ``prev_close`` is the latest earlier
close: the previous chunk's close or the end of a non-histology stretch, so no sentence is used by two chunks
and the narration over a title or presenter shot is not given to the next slide. The window always covers the
chunk itself (an image shown a little longer than ``pair_chunk_time`` is not cut, and the narration that opens
it belongs to it), and reaches back before it up to ``pair_chunk_time``. A transcript segment
belongs to the window holding its midpoint.

**pair_chunk_time**, derived per video. Quilt's values vary per video (e.g. 11 s, 48.7 s) and the
derivation was not published. Ours balances two needs:

- enough narration for a caption: ``t_words = target_words / speaking_rate`` (words per second of
  speech in the video's transcript), the time the narrator takes to say ``target_words`` (25) words;
- the time an image stays on screen: ``t_frames = duration / number_of_key_frames`` (the inverse of
  the key-frame rate), so that a window does not reach back across several images.

``pair_chunk_time = clip(max(t_words, t_frames), min_chunk_time, max_chunk_time)`` (defaults 5 and 60 s).
A fast speaker with quickly changing images gets short windows; a slow speaker over a long static slide
gets longer ones, never beyond a minute.

**Images of a chunk**. The temporal-median images of the histology intervals that overlap the chunk (at
least ``min_overlap`` seconds), minus blurry ones and near-duplicates (perceptual hash within
``dedup_distance`` bits of an image already kept in the chunk). If none is left, the fallback of Quilt:
the chunk's first key frame, plus later key frames that differ enough from the last kept one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from quilt_hf.curation.frames import hamming

ALIGN_VERSION = "2"


@dataclass
class AlignOptions:
    """Options of the alignment step (part of its cache key)."""

    target_words: int = 25
    min_chunk_time: float = 5.0
    max_chunk_time: float = 60.0
    default_words_per_second: float = 2.5  # when the transcript is empty
    min_overlap: float = 1.0
    dedup_distance: int = 6
    max_colour_shift: float = 3.0  # look-alike neighbours merge only when their mean colours are this close
    drop_blurry: bool = True

    def cache_key(self) -> dict:
        return {"version": ALIGN_VERSION, **asdict(self)}


def speaking_rate(segments: Sequence[dict], default: float = 2.5) -> float:
    """Words per second of speech (segment durations summed), ``default`` when there is no speech."""
    words = sum(len(s["text"].split()) for s in segments)
    speech = sum(max(0.0, float(s["end"]) - float(s["start"])) for s in segments)
    return words / speech if words and speech > 0 else default


def derive_pair_chunk_time(segments: Sequence[dict], num_key_frames: int, duration: float, options: AlignOptions | None = None) -> float:
    """The per-video time budget of a chunk (see the module docstring for the derivation)."""
    options = options or AlignOptions()
    t_words = options.target_words / speaking_rate(segments, options.default_words_per_second)
    t_frames = duration / max(1, num_key_frames)
    return float(min(max(t_words, t_frames, options.min_chunk_time), options.max_chunk_time))


def _window_text(segments: Sequence[dict], start: float, end: float) -> str:
    texts = []
    for segment in segments:
        middle = (float(segment["start"]) + float(segment["end"])) / 2
        if start <= middle < end or (middle == end and end == start):
            texts.append(segment["text"].strip())
    return " ".join(t for t in texts if t)


def _colour_distance(a: dict, b: dict) -> float:
    if "colour" not in a or "colour" not in b:
        return 0.0
    return max(abs(float(x) - float(y)) for x, y in zip(a["colour"], b["colour"]))


def merge_similar(intervals: Sequence[dict], distance: int, max_colour_shift: float = 3.0) -> list[dict]:
    """Merge consecutive intervals that show the same image (perceptual hashes within ``distance`` bits,
    mean colours within ``max_colour_shift`` (a restained field has the same hash) and the same histology
    decision): a cursor or a brief flicker splits a static interval in the frame stage.
    The merged interval keeps the image of its best member (a temporal median first, then the longest) in
    ``image_index``."""
    merged: list[dict] = []
    for index, interval in enumerate(intervals):
        length = float(interval["end"]) - float(interval["start"])
        if (
            merged
            and bool(merged[-1]["histology"]) == bool(interval["histology"])
            and hamming(merged[-1]["phash"], interval["phash"]) <= distance
            and _colour_distance(merged[-1], interval) <= max_colour_shift
        ):
            last = merged[-1]
            last["end"] = interval["end"]
            if (bool(interval["is_median"]), length) > (bool(last["is_median"]), last["_length"]):
                last.update(image_index=index, phash=interval["phash"], is_median=interval["is_median"],
                            colour=interval.get("colour", last.get("colour")),
                            blurry=interval.get("blurry", False), _length=length)
            continue
        merged.append({**interval, "image_index": index, "_length": length})
    return merged


def make_chunks(intervals: Sequence[dict], segments: Sequence[dict], duration: float, options: AlignOptions | None = None) -> list[dict]:
    """Chunks of one video with their images and transcript windows.

    Args:
        intervals (`Sequence[dict]`): the video's stable intervals in time order, each with ``start``,
            ``end``, ``is_median``, ``histology`` (bool), ``phash``, ``blurry``.
        segments (`Sequence[dict]`): transcript segments (``start``, ``end``, ``text``).
        duration (`float`): the video's duration.
        options (`AlignOptions`, *optional*).

    Returns:
        `list[dict]`: one record per (chunk, image): ``chunk_id, k, interval`` (index of the image's
        interval in ``intervals``), ``start, end`` (the image's interval, merged with its look-alike
        neighbours), ``text_start, text_end, noisy_text, is_median, pair_chunk_time``.
    """
    options = options or AlignOptions()
    intervals = merge_similar(intervals, options.dedup_distance, options.max_colour_shift)
    budget = derive_pair_chunk_time(segments, len(intervals), duration, options)
    chunks: list[tuple[float, float, float]] = []  # (open, close, window start)
    prev_close = 0.0
    open_time: float | None = None

    def close_chunk(close: float) -> None:
        nonlocal open_time, prev_close
        chunks.append((open_time, close, max(prev_close, min(open_time, close - budget))))
        prev_close = close
        open_time = None

    for interval in intervals:
        start, end = float(interval["start"]), float(interval["end"])
        if not interval["histology"]:
            if open_time is not None:
                close_chunk(start)
            prev_close = max(prev_close, end)
            continue
        if open_time is not None and end - open_time > budget + 1e-6:
            close_chunk(start)  # the budget is reached: close at this key frame
        if open_time is None:
            open_time = start
        if end - open_time > budget + 1e-6:  # one image longer than the budget: equal pieces
            pieces = max(1, round((end - open_time) / budget))
            length = (end - open_time) / pieces
            for _ in range(pieces - 1):
                close_chunk(open_time + length)
                open_time = prev_close
    if open_time is not None:
        close_chunk(max(float(intervals[-1]["end"]), open_time))

    records = []
    chunk_id = -1
    for opened, closed, window_start in chunks:
        text = _window_text(segments, window_start, closed)
        if not text:  # no narration: nothing to pair this chunk with
            continue
        chunk_id += 1
        members = [
            (i, iv) for i, iv in enumerate(intervals)
            if iv["histology"] and min(float(iv["end"]), closed) - max(float(iv["start"]), opened)
            >= min(options.min_overlap, float(iv["end"]) - float(iv["start"])) - 1e-6
            and min(float(iv["end"]), closed) > max(float(iv["start"]), opened)
        ]
        chosen: list[int] = []
        medians = [(i, iv) for i, iv in members if iv["is_median"] and not (options.drop_blurry and iv.get("blurry"))]
        for i, iv in medians:
            if all(hamming(iv["phash"], intervals[j]["phash"]) > options.dedup_distance for j in chosen):
                chosen.append(i)
        if not chosen:  # Quilt's fallback: first key frame, then key frames unlike the last kept one
            for i, iv in members:
                if options.drop_blurry and iv.get("blurry"):
                    continue
                if not chosen or hamming(iv["phash"], intervals[chosen[-1]]["phash"]) > options.dedup_distance:
                    chosen.append(i)
        for k, i in enumerate(chosen):
            records.append(
                {
                    "chunk_id": chunk_id,
                    "k": k,
                    "interval": intervals[i]["image_index"],
                    "start": float(intervals[i]["start"]),
                    "end": float(intervals[i]["end"]),
                    "text_start": float(window_start),
                    "text_end": float(closed),
                    "noisy_text": text,
                    "is_median": bool(intervals[i]["is_median"]),
                    "pair_chunk_time": budget,
                }
            )
    return records

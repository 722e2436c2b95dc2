"""A chunk's transcript window holds all the narration spoken while its images are on screen."""

from __future__ import annotations

from quilt_hf.curation.align import AlignOptions, make_chunks


def _iv(start: float, end: float, histology: bool, phash: str) -> dict:
    return {"start": start, "end": end, "histology": histology, "is_median": True, "blurry": False, "phash": phash}


def test_window_covers_an_image_shown_a_little_longer_than_the_budget():
    # one image from 4 s to 16.5 s: longer than the 10 s budget but not cut (12.5 / 10 rounds to one piece)
    intervals = [_iv(0, 4, False, "0" * 16), _iv(4, 16.5, True, "f" * 16), _iv(16.5, 20, False, "0" * 16)]
    segments = [{"start": float(t), "end": float(t + 1), "text": f"w{t}"} for t in range(20)]
    options = AlignOptions(target_words=10, min_chunk_time=5, max_chunk_time=10)  # 1 word/s -> 10 s budget
    records = make_chunks(intervals, segments, 20.0, options)
    assert [(r["text_start"], r["text_end"]) for r in records] == [(4, 16.5)]
    # the narration that opens the image (4-6.5 s) is its caption too, and nothing from the slides around it
    assert records[0]["noisy_text"].split() == [f"w{t}" for t in range(4, 16)]


def test_window_never_reaches_into_the_previous_chunk():
    intervals = [_iv(0, 6, True, "f" * 16), _iv(6, 19, True, "0" * 16)]
    segments = [{"start": float(t), "end": float(t + 1), "text": f"w{t}"} for t in range(19)]
    options = AlignOptions(target_words=10, min_chunk_time=5, max_chunk_time=10)
    records = make_chunks(intervals, segments, 19.0, options)
    windows = [(r["text_start"], r["text_end"]) for r in records]
    assert windows == [(0, 6), (6, 19)]
    words = [w for r in records for w in r["noisy_text"].split()]
    assert len(words) == len(set(words)) == 19  # every sentence used once

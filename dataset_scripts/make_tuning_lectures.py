#!/usr/bin/env python
"""Build the second tuning set: narrated lectures with the talk around the medicine that the demo lacks.

``benchmarks/tuning_lectures/`` is a tuning set for the text stage (``bench/bench_text.py --corpus tuning2``):
the demo corpus has almost no chatter, so the caption policy had nothing to be tuned on. These lectures mix
medical narration with lecture talk and off-topic chatter (greetings, housekeeping, sign-offs, viewer and slide
navigation, audience questions, technical trouble, anecdotes, channel talk), in espeak-ng voices and organs that
neither the demo nor the held-out lectures use. The picture is a plain slide naming the paragraph (no tissue):
this set measures text, not frames. Rules may be fitted here; figures that matter stay on the held-out lectures.

``ground_truth.json`` has the held-out lectures' text fields: ``narration`` (``off_topic`` for chatter),
``intervals`` with ``text``, ``medical_text``, ``roi_text``, ``off_topic_text`` and ``medical_terms``.

Generator-only dependencies: ``pip install av numpy pillow`` and ``apt-get install espeak-ng``. Run::

    python dataset_scripts/make_tuning_lectures.py
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_demo_corpus import SAMPLE_RATE, centered_text, encode_lecture, find_terms, font, synthesize  # noqa: E402
from tuning_scripts import LECTURES, TERMS  # noqa: E402

logger = logging.getLogger("make_tuning_lectures")

SEED = 20261129
FPS, WIDTH, HEIGHT, CRF = 5, 640, 360, 36


def tag_of(sentence: str) -> tuple[str, str]:
    if sentence[:2] in ("r:", "o:", "x:"):
        return sentence[0], sentence[2:]
    return "m", sentence


def plan(paragraphs: list, voice: str, speed: int, cache: Path, rng: np.random.Generator) -> list[dict]:
    """One interval per paragraph: its sentences placed one after another, a short hold after the last."""
    intervals, t = [], 0.0
    for title, sentences in paragraphs:
        start = t
        t += float(rng.uniform(0.4, 0.9))
        placed = []
        for sentence in sentences:
            tag, text = tag_of(sentence)
            audio = synthesize(text, cache, voice, speed)
            placed.append({"start": t, "end": t + len(audio) / SAMPLE_RATE, "tag": tag, "text": text, "audio": audio})
            t = placed[-1]["end"] + float(rng.uniform(0.3, 0.7))
        end = round((t + float(rng.uniform(0.5, 1.5))) * FPS) / FPS
        intervals.append({"title": title, "start": start, "end": end, "sentences": placed})
        t = end
    return intervals


def slide(title: str, lecture_title: str) -> Image.Image:
    image = Image.new("RGB", (WIDTH, HEIGHT), (238, 240, 244))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, WIDTH, 48), fill=(40, 70, 120))
    centered_text(draw, (WIDTH / 2, 24), lecture_title, font(20, bold=True), (255, 255, 255), WIDTH - 40)
    centered_text(draw, (WIDTH / 2, HEIGHT / 2 + 20), title, font(40, bold=True), (30, 30, 30), WIDTH - 60)
    return image


def write_lecture(path: Path, title: str, intervals: list[dict], rng: np.random.Generator) -> float:
    import av

    duration = intervals[-1]["end"]
    audio = rng.normal(0, 0.003, round(duration * SAMPLE_RATE)).astype(np.float32)  # faint room tone
    for interval in intervals:
        for sentence in interval["sentences"]:
            i = round(sentence["start"] * SAMPLE_RATE)
            clip = sentence["audio"] * 0.9
            audio[i : i + len(clip)] += clip[: len(audio) - i]

    def frames():
        for interval in intervals:
            image = av.VideoFrame.from_image(slide(interval["title"], title))
            for _ in range(round(interval["start"] * FPS), round(interval["end"] * FPS)):
                yield image

    encode_lecture(path, frames(), audio, FPS, (WIDTH, HEIGHT),
                   {"preset": "medium", "crf": str(CRF), "x264-params": f"keyint={FPS * 20}"})
    return duration


def ground_truth(video_id: str, title: str, organ: str, stain: str, voice: str, speed: int, intervals: list[dict],
                 file: str) -> dict:
    narration, out = [], []
    for i, interval in enumerate(intervals):
        sentences = interval["sentences"]
        for s in sentences:
            narration.append({"start": round(s["start"], 3), "end": round(s["end"], 3), "text": s["text"],
                              "interval_id": i, "off_topic": s["tag"] == "x", "lecture_talk": s["tag"] == "o"})
        medical = [s["text"] for s in sentences if s["tag"] in ("m", "r")]
        out.append({
            "interval_id": i,
            "start": round(interval["start"], 4),
            "end": round(interval["end"], 4),
            "kind": "slide",
            "histology": False,
            "slide_title": interval["title"],
            "text": " ".join(s["text"] for s in sentences),
            "medical_text": medical,
            "roi_text": [s["text"] for s in sentences if s["tag"] == "r"],
            "off_topic_text": [s["text"] for s in sentences if s["tag"] == "x"],
            "medical_terms": find_terms(" ".join(medical), TERMS),
        })
    return {"video_id": video_id, "file": file, "duration": round(intervals[-1]["end"], 4), "fps": FPS,
            "width": WIDTH, "height": HEIGHT, "title": title, "organ": organ, "stain": stain,
            "voice": voice, "words_per_minute": speed, "narration": narration, "intervals": out}


def write_readme(out: Path, videos: list[dict]) -> None:
    rows = []
    for v in videos:
        kinds = [n for n in v["narration"]]
        rows.append(
            f"| `{v['video_id']}` | {v['duration']:.1f} | `{v['voice']}`, {v['words_per_minute']} | "
            f"{sum(1 for n in kinds if not n['off_topic'] and not n['lecture_talk'])} | "
            f"{sum(n['lecture_talk'] for n in kinds)} | {sum(n['off_topic'] for n in kinds)} | "
            f"{sum(len(iv['medical_terms']) for iv in v['intervals'])} |"
        )
    total = sum(v["duration"] for v in videos)
    (out / "README.md").write_text(
        "# Tuning lectures: the text stage's second tuning set\n\n"
        f"{len(videos)} narrated lectures ({total:.0f} s in all) mixing medical narration with lecture talk and "
        "off-topic chatter, built by `dataset_scripts/make_tuning_lectures.py` (scripts in "
        "`dataset_scripts/tuning_scripts.py`; deterministic). A **tuning** set for the caption policy and the "
        "corrector (`python bench/bench_text.py --corpus tuning2`): rules may be fitted here, figures that matter "
        "are reported on `benchmarks/heldout_lectures/`. The picture is a plain slide per paragraph (no tissue).\n\n"
        "Labels (`narration[].off_topic`, `narration[].lecture_talk`, `intervals[].medical_text`): chatter, lecture "
        "talk without medical content, and medical sentences; as in the demo's ground truth, a sentence that names "
        "the specimen, the organ or the stain being shown is medical. `medical_terms` are the terms of the scripts' "
        "term list found in the medical sentences. Voices are espeak-ng variants neither the demo nor the held-out "
        "lectures use; one of them (`en-us+Andy`, 175 wpm) is hard for Whisper base on purpose.\n\n"
        "| video_id | length (s) | voice, wpm | medical sentences | lecture talk | off-topic | medical terms |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "benchmarks" / "tuning_lectures")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng not found on PATH: apt-get install espeak-ng")
    cache = Path(tempfile.gettempdir()) / "tuning_tts"
    cache.mkdir(exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    videos = []
    for index, (video_id, title, organ, stain, voice, speed, paragraphs) in enumerate(LECTURES):
        rng = np.random.default_rng(SEED + index)
        intervals = plan(paragraphs, voice, speed, cache, rng)
        file = f"{video_id}.mp4"
        duration = write_lecture(args.out / file, title, intervals, rng)
        videos.append(ground_truth(video_id, title, organ, stain, voice, speed, intervals, file))
        logger.info("%s: %.1fs, %d intervals, %.0f KB", video_id, duration, len(intervals),
                    (args.out / file).stat().st_size / 1024)
    (args.out / "ground_truth.json").write_text(json.dumps({"version": 1, "videos": videos}, indent=1) + "\n")
    write_readme(args.out, videos)


if __name__ == "__main__":
    main()

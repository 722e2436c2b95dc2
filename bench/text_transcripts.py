"""Whisper transcripts of a benchmark corpus for ``bench_text.py``, plain or prompted, cached on disk.

Each video's transcript is cached under ``.cache/quilt_hf/bench/text/`` by the video file's content hash, the
model, the dtype and the prompt, and written as soon as it is done, so an interrupted run resumes where it
stopped (the machine is shared and CPU transcription is slow).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "quilt_hf" / "bench" / "text"


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _key(parts: list) -> str:
    """A cache file's key: the JSON of what made it, hashed."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def _tokenizer_hash(model_dir: Path) -> str:
    path = model_dir / "tokenizer.json"
    return _file_hash(path) if path.is_file() else ""


def _cached_segments(path: Path) -> list[dict] | None:
    """The segments of a cached pass, or None when it is not cached."""
    return json.loads(path.read_text())["segments"] if path.is_file() else None


def _write_cached(path: Path, record: dict) -> None:
    """Write a pass's record (its ``segments`` and what made them) whole or not at all."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)


def cached_transcripts(
    corpus: Path,
    videos: list[dict],
    model_dir: Path,
    prompts: dict[str, str] | None = None,
    dtype: str = "auto",
    cached_only: bool = False,
    num_beams: int = 1,
) -> dict[str, list[dict]]:
    """``{video_id: segments}``; ``prompts`` maps a video id to its Whisper prompt (None: no prompt).
    ``cached_only``: leave out the videos not transcribed yet instead of transcribing them. ``num_beams``:
    Whisper's beam search width (1: greedy, whose cache keys predate the option)."""
    from quilt_hf.curation.asr import WhisperTranscriber, load_audio

    CACHE.mkdir(parents=True, exist_ok=True)
    transcriber = None
    out = {}
    for video in videos:
        prompt = (prompts or {}).get(video["video_id"]) or ""
        # A prompt is tokenized: a transcript made with another tokenizer is not this one's (the offline
        # tokenizer lacked a BPE merge before). A plain pass never tokenizes text: its key stays.
        parts = [_file_hash(corpus / video["file"]), model_dir.name, dtype, prompt]
        if prompt:
            parts.append(_tokenizer_hash(model_dir))
        if num_beams > 1:
            parts.append(f"beams={num_beams}")
        key = _key(parts)
        path = CACHE / f"{video['video_id']}-{key}.json"
        cached = _cached_segments(path)
        if cached is not None or cached_only:
            if cached is not None:
                out[video["video_id"]] = cached
            continue
        if transcriber is None:
            if not (model_dir / "config.json").is_file():
                raise SystemExit(f"no Whisper model at {model_dir}: run `make models` or pass --transcripts")
            transcriber = WhisperTranscriber(model=str(model_dir), language="en", dtype=dtype, num_beams=num_beams)
        t0 = time.perf_counter()
        result = transcriber.transcribe(load_audio(corpus / video["file"]), prompt=prompt or None)
        segments = [{"start": s["start"], "end": s["end"], "text": s["text"].strip()} for s in result.segments]
        _write_cached(path, {"video": video["file"], "prompt": prompt, "segments": segments})
        out[video["video_id"]] = segments
        label = ("prompted" if prompt else "plain") + (f", {num_beams} beams" if num_beams > 1 else "")
        print(f"  transcribed {video['video_id']} ({label}) in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return out


if __name__ == "__main__":  # warm the plain cache: python bench/text_transcripts.py CORPUS_DIR
    corpus = Path(sys.argv[1])
    truth = json.loads((corpus / "ground_truth.json").read_text())
    cached_transcripts(corpus, truth["videos"], REPO / ".cache" / "quilt_hf" / "models" / "whisper-base")


def rescored_transcripts(
    corpus: Path,
    videos: list[dict],
    transcripts: dict[str, list[dict]],
    model_dir: Path,
    cached_only: bool = False,
    cache: Path = CACHE,
    margin: float | None = None,
    edits: dict[str, list[dict]] | None = None,
    unsure_prob: float | None = None,
) -> dict[str, list[dict]]:
    """``transcripts`` after acoustic rescoring (``quilt_hf.curation.asr_rescore``, default options but
    ``margin`` and ``unsure_prob`` when given), cached by the transcript's text, the model, its tokenizer, the options and the
    lexicon. ``edits``, when given, receives each video's rescoring edits (segment index into its transcript
    in ``transcripts``, original, replacement, gain)."""
    from quilt_hf.curation.asr import WhisperTranscriber, load_audio
    from quilt_hf.curation.asr_rescore import AcousticTermRescorer, RescoreOptions, WhisperSegmentScorer
    from quilt_hf.curation.text import load_lexicon

    lexicon, options = load_lexicon(), RescoreOptions()
    if margin is not None:
        options.margin = margin
    if unsure_prob is not None:
        options.unsure_prob = unsure_prob
    rescorer = None
    out = {}
    tokenizer = _tokenizer_hash(model_dir)
    cache.mkdir(parents=True, exist_ok=True)
    for video in videos:
        segments = transcripts.get(video["video_id"])
        if segments is None:
            continue
        key = _key([_file_hash(corpus / video["file"]), model_dir.name, tokenizer, segments,
                    options.cache_key(), lexicon.name])
        path = cache / f"{video['video_id']}-rescored-{key}.json"
        record = json.loads(path.read_text()) if path.is_file() else None
        if record is not None or cached_only:
            if record is not None:
                out[video["video_id"]] = record["segments"]
                if edits is not None:
                    edits[video["video_id"]] = record.get("rescore", {}).get("edits", [])
            continue
        if rescorer is None:
            model, processor = WhisperTranscriber(model=str(model_dir), language="en")._load()
            rescorer = AcousticTermRescorer(WhisperSegmentScorer(model, processor, "en"), lexicon, options)
        t0 = time.perf_counter()
        result, report = rescorer.rescore(load_audio(corpus / video["file"]), segments)
        _write_cached(path, {"video": video["file"], "segments": result, "rescore": report.to_dict()})
        out[video["video_id"]] = result
        if edits is not None:
            edits[video["video_id"]] = report.to_dict()["edits"]
        print(f"  rescored {video['video_id']} in {time.perf_counter() - t0:.1f}s ({len(report.edits)} edits)",
              file=sys.stderr)
    return out

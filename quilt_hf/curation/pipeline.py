"""The curation pipeline: videos table -> probe -> audio check -> frames -> histology -> ASR -> align -> text
-> chunk and pair tables, as ``datasets`` map/filter steps over the videos table.

Each step works on one video at a time and never raises: a failure becomes the video's ``drop_reason``
(counted in ``stats.json``) and later steps skip that video. Decoding runs in an isolated worker process
with a time limit (a corrupt or hanging file is killed, not waited on).

Every step's result is cached per video under ``cache_dir/<step>/<key>``, where the key hashes the video's
content (sha256), the step's version, its options, a digest of its model's weights (``models.model_digest``:
retraining a model in the same folder invalidates its results), and the keys of the steps it reads.
Entries are written to a temporary name and renamed (:mod:`quilt_hf.atomic`), so a run killed at any moment
leaves only complete entries; restarting it recomputes the rest and gives exactly the pairs of an
uninterrupted run. The run's outputs (three tables and ``stats.json``) are committed as one set.

Models are loaded once, before any video (``Curation.load_models``): a model that cannot load is the run's
failure (:class:`~quilt_hf.errors.ModelLoadError`), never a drop reason of every video. ASR and the text
stage run under a per-video time limit (:mod:`.limits`) like decoding.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quilt_hf import atomic, object_store
from quilt_hf.curation import limits
from quilt_hf.curation.align import AlignOptions, make_chunks
from quilt_hf.curation.frames import FrameOptions, extract_to_folder
from quilt_hf.curation.probe import PROBE_VERSION, probe_video
from quilt_hf.curation.runners import (
    IsolatedWorker,
    LocalRunner,
    Step,
    WorkerCrashed,
    WorkerError,
    WorkerTimeout,
)
from quilt_hf.errors import UserFacingError
from quilt_hf.models import model_key
from quilt_hf.schema import CHUNK_FEATURES, PAIR_FEATURES, VIDEO_FEATURES

logger = logging.getLogger(__name__)

PIPELINE_VERSION = "1"
KEY_COLUMNS = ("frames_key", "histology_key", "asr_key", "align_key", "text_key", "rows_key")


def _on_cache_write(step: str, key: str) -> None:
    """Hook called after each committed cache entry (tests use it to kill a run at a chosen point)."""


@dataclass
class PipelineOptions:
    """Everything that shapes the pipeline's results (the parts of it each step uses enter its cache key)."""

    frames: FrameOptions = field(default_factory=FrameOptions)
    align: AlignOptions = field(default_factory=AlignOptions)
    min_duration: float = 1.0
    silence_dbfs: float = -55.0  # audio whose RMS is below this is "silent_audio"
    frames_timeout: float = 0.0  # seconds per video for decoding; 0 = 60 s + 2 x the video's duration
    asr_timeout: float = 0.0  # seconds per video for speech recognition; 0 = 300 s + 10 x the duration
    text_timeout: float = 0.0  # seconds per video for the text stage; 0 = 300 s + 10 x the duration
    histology_batch_size: int = 16
    split: str = ""  # value of the pairs' split column ("" = decided at publishing)
    # Whisper prompt from the lexicon terms of the video's topic (asr_prompt.py): "none", "title" (one pass,
    # topic from title and channel) or "guarded" (a plain pass too; prompted segments that echo the prompt or
    # insert a term the plain pass has nothing like are replaced by the plain text) or "first_pass" (guarded,
    # with the plain pass's terms and near-misses choosing the prompt terms too)
    asr_prompt: str = "none"
    asr_prompt_tokens: int = 120
    # Acoustic rescoring (asr_rescore.py): Whisper scores the lexicon's candidates for the words it was unsure of
    # on the segment's audio and keeps those it finds more probable than what it wrote (transformers backend)
    asr_rescore: bool = False


class StepCache:
    """Per-video, per-step results on disk, each committed atomically (write to a temporary name, rename)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @staticmethod
    def key(*parts: Any) -> str:
        blob = json.dumps(parts, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:24]

    def path(self, step: str, key: str) -> Path:
        return self.root / step / key

    def read_json(self, step: str, key: str) -> Any | None:
        path = self.path(step, key).with_suffix(".json")
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def write_json(self, step: str, key: str, value: Any) -> None:
        atomic.write_json(self.path(step, key).with_suffix(".json"), value)
        _on_cache_write(step, key)

    def tmp_dir(self, step: str, key: str) -> Path:
        return atomic.temporary_dir(self.path(step, key))

    def commit_dir(self, tmp: Path, step: str, key: str) -> Path:
        # content-addressed: when another run committed the same key first, its (identical) folder stays
        final = atomic.replace_dir(tmp, self.path(step, key), keep_existing=True)
        _on_cache_write(step, key)
        return final

    def clean_tmp(self, older_than_s: float | None = None) -> None:
        """Remove what a killed run left half-written (only what is untouched for ``older_than_s`` seconds, when
        given: a cache other live runs share)."""
        if self.root.is_dir():
            for folder in self.root.iterdir():
                if folder.is_dir():
                    atomic.clean_leftovers(folder, older_than_s=older_than_s)


def _audio_silent(audio: np.ndarray, dbfs: float) -> bool:
    if audio.size == 0:
        return True
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return rms <= 10 ** (dbfs / 20)


class Curation:
    """The steps of one curation run and what they share (cache, models, worker, counters).

    Args:
        cache_dir: where per-video step results live.
        transcriber: an object with ``transcribe(audio) -> Transcript`` and ``model_name`` (e.g.
            :class:`quilt_hf.curation.asr.WhisperTranscriber`); or a zero-argument factory returning one
            (called on first use, so cached runs never load the model).
        histology: a classifier with ``name`` and ``predict(images)`` (see :mod:`.histology`).
        text_processor: an object with ``name`` and ``process_batch(texts)``, or None for no text stage.
        options: :class:`PipelineOptions`.
        load_audio: the audio reader (``path -> float32 16 kHz mono``), default ``asr.load_audio``.
        frames_fn: the decoding function run in the isolated worker (default ``frames.extract_to_folder``).
        asr_name, asr_language: the ASR model's name and language for the cache key (default: read from
            the transcriber, or from the factory's keyword arguments).
    """

    def __init__(
        self,
        cache_dir: str | Path,
        transcriber: Any,
        histology: Any,
        text_processor: Any | None = None,
        options: PipelineOptions | None = None,
        load_audio: Callable[[str], np.ndarray] | None = None,
        frames_fn: Callable | None = None,
        asr_name: str | None = None,
        asr_language: str | None = None,
    ):
        self.cache = StepCache(cache_dir)
        self._transcriber = transcriber
        settings = dict(getattr(transcriber, "keywords", None) or {})  # a functools.partial factory
        self.asr_name = asr_name or getattr(transcriber, "model_name", "") or settings.get("model") or "unknown-asr"
        self.asr_backend = getattr(transcriber, "backend", "") or settings.get("backend") or ""
        self.asr_dtype = getattr(transcriber, "dtype", "") or settings.get("dtype") or ""
        self.asr_num_beams = int(getattr(transcriber, "num_beams", 0) or settings.get("num_beams") or 1)
        if asr_language is None:
            asr_language = getattr(transcriber, "language", None) or settings.get("language")
        self.asr_language = asr_language
        self.histology = histology
        self.text = text_processor
        self.options = options or PipelineOptions()
        self._load_audio = load_audio
        self.frames_fn = frames_fn or extract_to_folder
        self.worker = IsolatedWorker()
        self.cache_hits: Counter = Counter()
        self.computed: Counter = Counter()
        self._asr_digest: str | None = None
        self._histology_digest: str | None = None
        self._rescorer = None  # the acoustic rescorer (--asr_rescore), built on first use
        self._prefetched: dict[tuple[str, str], Any] = {}  # (path, prompt) -> transcript, from transcribe_batch

    # -- shared helpers -------------------------------------------------------------------------------
    @property
    def transcriber(self):
        if callable(self._transcriber) and not hasattr(self._transcriber, "transcribe"):
            self._transcriber = self._transcriber()
        return self._transcriber

    def load_models(self, which: tuple[str, ...] = ("asr", "histology", "text")) -> None:
        """Load the ASR, histology and text models now, once per process, before any video is processed.

        Each holder's ``load()`` (when it has one) raises :class:`~quilt_hf.errors.ModelLoadError` naming the
        model and the fix; that is the run's failure, not a drop reason of each video.

        Args:
            which: the models to load (a Ray actor loads only the model of its step).
        """
        holders = {"asr": lambda: self.transcriber, "histology": lambda: self.histology, "text": lambda: self.text}
        for name in which:
            load = getattr(holders[name](), "load", None)
            if callable(load):
                load()

    def counters(self) -> dict[str, Counter]:
        """The cache-hit and computed counters (the Ray runner sums them across its workers)."""
        return {"cache_hits": self.cache_hits, "computed": self.computed}

    @property
    def asr_digest(self) -> str:
        """A digest of the ASR model's weights (or its Hub commit) for the ASR cache key."""
        if self._asr_digest is None:
            holder = self._transcriber if hasattr(self._transcriber, "transcribe") else None
            self._asr_digest = model_key(holder, "model_name") if holder is not None else ""
            if not self._asr_digest and self.asr_name != "unknown-asr":
                from quilt_hf.models import model_digest

                self._asr_digest = model_digest(self.asr_name)
        return self._asr_digest

    @property
    def histology_digest(self) -> str:
        """A digest of the histology model's weights ("" for a classifier without weights)."""
        if self._histology_digest is None:
            self._histology_digest = model_key(self.histology, "model", "weights_file", "directory")
        return self._histology_digest

    def _time_limit(self, seconds: float, row: dict) -> float:
        return seconds or 300.0 + 10.0 * float(row["duration"])

    def _transcribe(self, path: str, prompt: str = ""):
        """The video's transcript: streamed block by block when the transcriber reads files itself and the
        default audio reader is in use (memory flat in the lecture's length), else from the whole track.
        ``prompt``: the Whisper prompt (``--asr_prompt``), given only when there is one."""
        from quilt_hf.curation.asr import load_audio

        prefetched = self._prefetched.pop((path, prompt), None)  # computed with other videos (transcribe_batch)
        if prefetched is not None:
            return prefetched
        transcriber = self.transcriber
        extra = {"prompt": prompt} if prompt else {}
        if hasattr(transcriber, "transcribe_file") and self._load_audio in (None, load_audio):
            return transcriber.transcribe_file(path, **extra)
        return transcriber.transcribe(self.load_audio(path), **extra)

    def load_audio(self, path: str) -> np.ndarray:
        if self._load_audio is None:
            from quilt_hf.curation.asr import load_audio

            self._load_audio = load_audio
        return self._load_audio(path)

    def _silent(self, path: str) -> bool:
        """Whether the audio's RMS is at or below ``silence_dbfs`` (streamed with the default reader)."""
        from quilt_hf.curation.asr import iter_audio, load_audio

        if self._load_audio is not load_audio:
            return _audio_silent(self.load_audio(path), self.options.silence_dbfs)
        total, count = 0.0, 0
        for block in iter_audio(path):
            total += float(np.sum(np.square(block, dtype=np.float64)))
            count += len(block)
        return count == 0 or (total / count) ** 0.5 <= 10 ** (self.options.silence_dbfs / 20)

    @staticmethod
    def _skip(row: dict) -> bool:
        return bool(row["drop_reason"])

    # -- steps over the videos table (row -> updated columns) ----------------------------------------
    def probe(self, row: dict) -> dict:
        if self._skip(row):
            return {}
        key = self.cache.key("probe", PROBE_VERSION, row["sha256"], self.options.min_duration)
        result = self.cache.read_json("probe", key)
        if result is None:
            result = probe_video(row["path"], min_duration=self.options.min_duration)
            self.cache.write_json("probe", key, result)
        else:
            self.cache_hits["probe"] += 1
        return result

    def audio_check(self, row: dict) -> dict:
        if self._skip(row):
            return {}
        key = self.cache.key("audio", row["sha256"], self.options.silence_dbfs)
        reason = self.cache.read_json("audio", key)
        if reason is None:
            if self._load_audio is None:  # a missing ASR module is the run's problem, not this video's
                from quilt_hf.curation.asr import load_audio

                self._load_audio = load_audio
            try:
                reason = "silent_audio" if self._silent(row["path"]) else ""
            except Exception as error:  # any decoding failure of the audio track (not cached: may be transient)
                logger.warning("%s: audio cannot be decoded (%s)", row["video_id"], error)
                return {"drop_reason": "audio_undecodable"}
            self.cache.write_json("audio", key, reason)
        return {"drop_reason": reason}

    def frames(self, row: dict) -> dict:
        if self._skip(row):
            return {}
        options = self.options.frames
        key = self.cache.key("frames", row["sha256"], options.cache_key(), getattr(self.frames_fn, "__name__", ""))
        final = self.cache.path("frames", key)
        if (final / "intervals.json").is_file():
            self.cache_hits["frames"] += 1
            summary = json.loads((final / "intervals.json").read_text())
        else:
            timeout = self.options.frames_timeout or 60.0 + 2.0 * float(row["duration"])
            tmp = self.cache.tmp_dir("frames", key)
            try:
                summary = self.worker.call(self.frames_fn, row["path"], str(tmp), options, float(row["duration"]), timeout=timeout)
            except WorkerTimeout:
                logger.warning("%s: frame extraction did not finish in %.0f s; dropped", row["video_id"], timeout)
                shutil.rmtree(tmp, ignore_errors=True)
                return {"drop_reason": "frames_timeout"}
            except (WorkerCrashed, WorkerError) as error:
                logger.warning("%s: frame extraction failed (%s); dropped", row["video_id"], error)
                shutil.rmtree(tmp, ignore_errors=True)
                return {"drop_reason": "frames_error"}
            if not summary["intervals"]:
                shutil.rmtree(tmp, ignore_errors=True)
                return {"drop_reason": "no_frames"}
            try:
                self.cache.commit_dir(tmp, "frames", key)
            except OSError as error:  # e.g. disk full, permissions: this video's frames are not kept
                logger.warning("%s: frames could not be stored in the cache (%s); dropped", row["video_id"], error)
                shutil.rmtree(tmp, ignore_errors=True)
                return {"drop_reason": "cache_error"}
            self.computed["frames"] += 1
        damaged = summary.get("damaged", [])
        if damaged:
            logger.warning("%s: damaged video data skipped at %s s; the intact parts are kept", row["video_id"],
                           ", ".join(f"{a:.1f}-{b:.1f}" for a, b in damaged))
        return {"frames_key": key, "damaged_spans": damaged}

    def _intervals(self, frames_key: str) -> list[dict]:
        return json.loads((self.cache.path("frames", frames_key) / "intervals.json").read_text())["intervals"]

    def classify(self, row: dict) -> dict:
        if self._skip(row):
            return {}
        prompts = [getattr(self.histology, a, None) for a in ("positive", "negative")]  # zero-shot classifiers
        key = self.cache.key(
            "histology", row["frames_key"], self.histology.name, getattr(self.histology, "threshold", None),
            *([list(map(list, prompts))] if any(prompts) else []),
            *([self.histology_digest] if self.histology_digest else []),
        )
        decisions = self.cache.read_json("histology", key)
        if decisions is None:
            from PIL import Image

            try:
                intervals = self._intervals(row["frames_key"])
                folder = self.cache.path("frames", row["frames_key"])
                decisions = []
                size = self.options.histology_batch_size
                for offset in range(0, len(intervals), size):
                    images = []
                    for interval in intervals[offset : offset + size]:
                        with Image.open(folder / interval["image"]) as image:
                            images.append(np.asarray(image.convert("RGB")))
                    decisions += [[bool(flag), float(score)] for flag, score in self.histology.predict(images)]
            except Exception as error:  # a model failure on one video must not stop the run
                logger.warning("%s: histology classifier failed (%s); dropped", row["video_id"], error)
                return {"drop_reason": "histology_error"}
            self.cache.write_json("histology", key, decisions)
            self.computed["histology"] += 1
        else:
            self.cache_hits["histology"] += 1
        if not any(flag for flag, _ in decisions):
            return {"drop_reason": "no_histology", "histology_key": key}
        return {"histology_key": key}

    def _transcript(self, row: dict, prompt: str = "") -> tuple[str, dict]:
        """(cache key, transcript) of one ASR pass; the transcript is ``{"drop_reason": ...}`` on failure."""
        key = self._asr_key(row, prompt)
        transcript = self.cache.read_json("asr", key)
        if transcript is None:
            seconds = self._time_limit(self.options.asr_timeout, row)
            try:
                with limits.time_limit(seconds, "speech recognition"):
                    result = self._transcribe(row["path"], prompt)
                    limits.check()
            except limits.StepTimeout:
                logger.warning("%s: speech recognition did not finish in %.0f s; dropped", row["video_id"], seconds)
                return key, {"drop_reason": "asr_timeout"}
            except Exception as error:  # ASR failures are per video
                logger.warning("%s: speech recognition failed (%s); dropped", row["video_id"], error)
                return key, {"drop_reason": "asr_error"}
            transcript = {
                "language": result.language or "",
                "text": result.text,
                "segments": [{"start": float(s["start"]), "end": float(s["end"]), "text": s["text"]} for s in result.segments],
            }
            self.cache.write_json("asr", key, transcript)
            self.computed["asr"] += 1
        else:
            self.cache_hits["asr"] += 1
        return key, transcript

    def _asr_key(self, row: dict, prompt: str = "") -> str:
        return self.cache.key("asr", row["sha256"], self.asr_name, self.asr_backend, self.asr_language,
                              *self._asr_decoding(), self.asr_digest, *([prompt] if prompt else []))

    def _asr_decoding(self) -> list[str]:
        """The decoding settings that change a transcript; "auto" dtype and greedy decoding give none, so the
        caches made before these settings existed stay valid."""
        dtype = [] if self.asr_dtype in ("", "auto") else [self.asr_dtype]
        return dtype + ([f"beams={self.asr_num_beams}"] if self.asr_num_beams > 1 else [])

    def _prompt_selection(self, row: dict, first_pass: str = ""):
        """The Whisper prompt's terms for this video: its title and channel (and a first pass's text) give
        the topic (:func:`quilt_hf.curation.asr_prompt.select_prompt_terms`)."""
        from quilt_hf.curation.asr_prompt import select_prompt_terms
        from quilt_hf.curation.text import load_lexicon

        topic = f"{row.get('title') or ''}. {row.get('channel') or ''}"
        return select_prompt_terms(load_lexicon(), topic, first_pass, max_tokens=self.options.asr_prompt_tokens)

    def _asr_prompts(self, row: dict) -> list[str]:
        """The prompts of the ASR passes :meth:`transcribe` makes for this video ("" = the plain pass)."""
        if self.options.asr_prompt == "none":
            return [""]
        selection = self._prompt_selection(row)
        if not selection.prompt:
            return [""]
        return [selection.prompt, ""] if self.options.asr_prompt == "guarded" else [selection.prompt]

    def transcribe_batch(self, rows: list[dict]) -> list[dict]:
        """:meth:`transcribe` of several videos at once (a Ray ASR actor's call with several videos).

        The transcripts missing from the cache are computed together with the transcriber's
        ``transcribe_files`` (the 30 s windows of several videos in one ``generate`` call, ``batch_size`` at
        a time; each transcript is the one its video gives alone), then every row goes through
        :meth:`transcribe` as alone, which uses them (cache keys, counters and drop reasons as alone). A
        batch that fails, or runs past the sum of its videos' time limits, is redone one video at a time, so
        a bad video ends with its own drop reason and the others are unaffected.

        Args:
            rows (`list[dict]`): rows of the videos table.

        Returns:
            `list[dict]`: the updated columns of each row, in order.
        """
        from quilt_hf.curation.asr import load_audio

        todo: dict[tuple[str, str], float] = {}  # (path, prompt) -> the video's time limit
        if self._load_audio in (None, load_audio) and self.options.asr_prompt in ("none", "title", "guarded"):
            for row in rows:
                if self._skip(row):
                    continue
                for prompt in self._asr_prompts(row):
                    if self.cache.read_json("asr", self._asr_key(row, prompt)) is None:
                        todo[(row["path"], prompt)] = self._time_limit(self.options.asr_timeout, row)
        try:
            transcriber = self.transcriber if len(todo) > 1 else None
            if transcriber is not None and hasattr(transcriber, "transcribe_files"):
                try:
                    with limits.time_limit(sum(todo.values()), "speech recognition of a batch of videos"):
                        results = transcriber.transcribe_files([path for path, _ in todo],
                                                               prompts=[prompt for _, prompt in todo])
                        limits.check()
                    self._prefetched.update(zip(todo, results))
                except Exception as error:  # e.g. one undecodable audio track: each video alone says which
                    logger.warning("speech recognition of %d videos together failed (%s); one video at a time",
                                   len(todo), error)
            return [self.transcribe(row) for row in rows]
        finally:
            self._prefetched.clear()

    def _prompted_transcript(self, row: dict) -> tuple[str, dict]:
        from quilt_hf.curation.asr_prompt import guard_fingerprint, guard_prompted
        from quilt_hf.curation.text import load_lexicon
        from quilt_hf.curation.text.processor import rules_fingerprint

        lexicon = load_lexicon()
        first_pass, plain_key, plain = "", "", None
        if self.options.asr_prompt == "first_pass":  # the plain pass first: its terms and near-misses
            plain_key, plain = self._transcript(row)
            if "drop_reason" in plain:
                return plain_key, plain
            first_pass = plain["text"]
        selection = self._prompt_selection(row, first_pass)
        if not selection.prompt:  # nothing in the metadata (or the first pass) names a topic: the plain pass
            return (plain_key, plain) if plain is not None else self._transcript(row)
        key, prompted = self._transcript(row, selection.prompt)
        if "drop_reason" in prompted or self.options.asr_prompt == "title":
            return key, prompted
        if plain is None:
            plain_key, plain = self._transcript(row)
        if "drop_reason" in plain:
            return plain_key, plain
        # v2: the guard reverts repetition loops; v3: and prompt terms spelled a little off. The guard's own source
        # and the text stage's rules (its extractor and corrector) are in the key too.
        guarded_key = self.cache.key("asr-guarded-v3", key, plain_key, lexicon.name, rules_fingerprint(),
                                     guard_fingerprint())
        transcript = self.cache.read_json("asr", guarded_key)
        if transcript is None:
            segments, report = guard_prompted(prompted["segments"], plain["segments"], selection, lexicon)
            transcript = {**prompted, "segments": segments, "text": " ".join(s["text"] for s in segments),
                          "prompt": selection.prompt, "guard": {"reverted_echo": report.reverted_echo,
                          "reverted_inserted_term": report.reverted_inserted_term, "reverted_loop": report.reverted_loop,
                          "inserted_terms": report.inserted_terms}}
            self.cache.write_json("asr", guarded_key, transcript)
        return guarded_key, transcript

    def _rescored_transcript(self, row: dict, key: str, transcript: dict) -> tuple[str, dict]:
        """The transcript after acoustic rescoring of its unsure words (cached by the transcript's key). The
        lexicon is English: a transcript in another language is kept as it is. A rescoring that fails or runs
        out of time keeps the transcript as recognised (logged): recognition succeeded, the video is not lost."""
        from quilt_hf.curation.asr_rescore import (
            AcousticTermRescorer,
            RescoreOptions,
            WhisperSegmentScorer,
            language_code,
        )
        from quilt_hf.curation.text import load_lexicon

        if self.asr_backend not in ("", "transformers") or not hasattr(self.transcriber, "_load"):
            raise UserFacingError("asr_rescore needs the transformers Whisper backend (--asr_backend transformers)")
        if language_code(transcript.get("language") or "en") != "en":
            return key, transcript
        lexicon = load_lexicon()
        options = RescoreOptions()
        rescored_key = self.cache.key("asr-rescored", key, lexicon.name, options.cache_key())
        cached = self.cache.read_json("asr", rescored_key)
        if cached is not None:
            return rescored_key, cached
        seconds = self._time_limit(self.options.asr_timeout, row)
        try:
            with limits.time_limit(seconds, "acoustic rescoring"):
                from quilt_hf.curation.asr import load_audio

                if self._rescorer is None:  # once per run: its token table and the corrector's pools are reused
                    model, processor = self.transcriber._load()
                    self._rescorer = AcousticTermRescorer(WhisperSegmentScorer(model, processor, "en"), lexicon, options)
                audio = (self._load_audio or load_audio)(row["path"])
                segments, report = self._rescorer.rescore(audio, transcript["segments"])
                limits.check()
        except limits.StepTimeout:
            logger.warning("%s: acoustic rescoring did not finish in %.0f s; the transcript is kept as recognised",
                           row["video_id"], seconds)
            return key, transcript
        except Exception as error:  # per video; the recognised transcript stays
            logger.warning("%s: acoustic rescoring failed (%s); the transcript is kept as recognised",
                           row["video_id"], error)
            return key, transcript
        result = {**transcript, "segments": segments, "text": " ".join(s["text"] for s in segments),
                  "rescore": report.to_dict()}
        self.cache.write_json("asr", rescored_key, result)
        self.computed["asr"] += 1
        return rescored_key, result

    def transcribe(self, row: dict) -> dict:
        if self._skip(row):
            return {}
        if self.options.asr_prompt not in ("none", "title", "guarded", "first_pass"):
            raise UserFacingError(
                f"asr_prompt must be none, title, guarded or first_pass, not {self.options.asr_prompt!r}"
            )
        key, transcript = self._transcript(row) if self.options.asr_prompt == "none" else self._prompted_transcript(row)
        if "drop_reason" in transcript:  # asr_error or asr_timeout
            return {"drop_reason": transcript["drop_reason"]}
        if self.options.asr_rescore and transcript["text"].strip():
            key, transcript = self._rescored_transcript(row, key, transcript)
        if not transcript["text"].strip():
            return {"drop_reason": "no_speech", "asr_key": key}
        return {"asr_key": key}

    def align(self, row: dict) -> dict:
        if self._skip(row):
            return {}
        key = self.cache.key("align", row["frames_key"], row["histology_key"], row["asr_key"], self.options.align.cache_key(), float(row["duration"]))
        chunks = self.cache.read_json("align", key)
        if chunks is None:
            try:
                intervals = self._intervals(row["frames_key"])
                decisions = self.cache.read_json("histology", row["histology_key"])
                for interval, (flag, score) in zip(intervals, decisions):
                    interval["histology"], interval["histology_score"] = flag, score
                segments = self.cache.read_json("asr", row["asr_key"])["segments"]
                chunks = make_chunks(intervals, segments, float(row["duration"]), self.options.align)
                self.cache.write_json("align", key, chunks)
            except Exception as error:  # one video's bad data (or cache) must not stop the run
                logger.warning("%s: alignment failed (%s); dropped", row["video_id"], error)
                return {"drop_reason": "align_error"}
            self.computed["align"] += 1
        else:
            self.cache_hits["align"] += 1
        if not chunks:
            return {"drop_reason": "no_chunks", "align_key": key}
        return {"align_key": key}

    def text_stage(self, row: dict) -> dict:
        if self._skip(row):
            return {}
        name = self.text.name if self.text is not None else "none"
        key = self.cache.key("text", row["align_key"], name)
        results = self.cache.read_json("text", key)
        if results is None:
            seconds = self._time_limit(self.options.text_timeout, row)
            try:
                chunks = self.cache.read_json("align", row["align_key"])
                texts: dict[int, str] = {}
                for chunk in chunks:
                    texts.setdefault(chunk["chunk_id"], chunk["noisy_text"])
                ids = sorted(texts)
                if self.text is None:
                    outputs = [{"corrected_text": texts[i]} for i in ids]
                else:
                    with limits.time_limit(seconds, "text stage"):
                        # One video per call: rows share the video's sub-pathology and carried magnification.
                        outputs = self.text.process_batch([texts[i] for i in ids], groups=[row["video_id"]] * len(ids))
                        limits.check()
                results = {str(i): out for i, out in zip(ids, outputs)}
                self.cache.write_json("text", key, results)
            except limits.StepTimeout:
                logger.warning("%s: text stage did not finish in %.0f s; dropped", row["video_id"], seconds)
                return {"drop_reason": "text_timeout"}
            except Exception as error:
                logger.warning("%s: text stage failed (%s); dropped", row["video_id"], error)
                return {"drop_reason": "text_error"}
            self.computed["text"] += 1
        else:
            self.cache_hits["text"] += 1
        return {"text_key": key}

    def keep(self, row: dict) -> bool:
        return not row["drop_reason"]

    def rows_stage(self, row: dict) -> dict:
        """Build the video's chunk/pair rows (guarded like every step: a failure drops this video only) and
        cache them for :meth:`expand`."""
        if self._skip(row):
            return {}
        key = self.cache.key("rows", row["text_key"], row["align_key"], row["histology_key"], row["frames_key"],
                             self.options.split, self.asr_name, self.histology.name, PIPELINE_VERSION,
                             self.text.name if self.text is not None else "none", row["source"], float(row["fps"]),
                             str(self.cache.root.resolve()))  # rows hold image paths inside the cache
        if self.cache.read_json("rows", key) is None:
            try:
                self.cache.write_json("rows", key, self._expand_rows(row))
            except Exception as error:
                logger.warning("%s: chunk and pair rows could not be built (%s); dropped", row["video_id"], error)
                return {"drop_reason": "expand_error"}
        return {"rows_key": key}

    def expand(self, row: dict) -> list[dict]:
        """One row per (chunk, image): the columns of both the chunk and the pair tables."""
        return self.cache.read_json("rows", row["rows_key"])

    def _expand_rows(self, row: dict) -> list[dict]:
        intervals = self._intervals(row["frames_key"])
        decisions = self.cache.read_json("histology", row["histology_key"])
        chunks = self.cache.read_json("align", row["align_key"])
        texts = self.cache.read_json("text", row["text_key"])
        folder = self.cache.path("frames", row["frames_key"])
        rows = []
        for chunk in chunks:
            interval = intervals[chunk["interval"]]
            text = texts[str(chunk["chunk_id"])]
            corrected = text.get("corrected_text") or chunk["noisy_text"]
            medical = text.get("medical_text", "") or ""
            # Caption policy: a pair's caption is the window's medical text only. A window without medical
            # content (greetings, logistics, sign-offs) gives no pair; its chunk keeps the reason. With no
            # text stage (--text_backend none) nothing is extracted and the caption is the transcript.
            if self.text is None:
                caption, chunk_drop = corrected, ""
            else:
                caption = medical.strip()
                chunk_drop = "" if caption else "no_medical_text"
            image_id = f"{row['video_id']}_{chunk['chunk_id']}_{chunk['k']}"
            rows.append(
                {
                    "video_id": row["video_id"],
                    "chunk_id": chunk["chunk_id"],
                    "image_id": image_id,
                    "image": {"path": str(folder / interval["image"]), "bytes": None},
                    "image_path": f"{image_id}{Path(interval['image']).suffix}",
                    "caption": caption,
                    "drop_reason": chunk_drop,
                    "noisy_text": chunk["noisy_text"],
                    "corrected_text": corrected,
                    "text_edits": text.get("text_edits", []) or [],
                    "medical_text": medical,
                    "roi_text": text.get("roi_text", "") or "",
                    "med_umls_ids": text.get("med_umls_ids", []) or [],
                    "entities": text.get("entities", []) or [],
                    "pathology": text.get("pathology", []) or [],
                    "magnification": int(text.get("magnification", -1) if text.get("magnification") is not None else -1),
                    "height": interval["height"],
                    "width": interval["width"],
                    "start": chunk["start"],
                    "end": chunk["end"],
                    "text_start": chunk["text_start"],
                    "text_end": chunk["text_end"],
                    "video_duration": float(row["duration"]),
                    "pair_chunk_time": chunk["pair_chunk_time"],
                    "fps": float(row["fps"]),
                    "subset": "quilt",
                    "split": self.options.split,
                    "source": row["source"],
                    "asr_model": self.asr_name,
                    "text_backend": self.text.name if self.text is not None else "none",
                    "histology_model": self.histology.name,
                    "pipeline_version": PIPELINE_VERSION,
                    "histology_score": float(decisions[chunk["interval"]][1]),
                    "is_median": bool(chunk["is_median"]),
                    "phash": interval["phash"],
                }
            )
        return rows

    def steps(self) -> tuple[list[Step], list[Step]]:
        """The pipeline as runner steps over the videos table (fingerprints tie datasets' cache to ours)."""
        version = self.cache.key(PIPELINE_VERSION, asdict(self.options), self.asr_name, self.histology.name,
                                 self.text.name if self.text is not None else "none", self.asr_digest,
                                 self.histology_digest, *self._asr_decoding())
        row_features = dict(PAIR_FEATURES)
        row_features.update({"histology_score": CHUNK_FEATURES["histology_score"], "is_median": CHUNK_FEATURES["is_median"], "phash": CHUNK_FEATURES["phash"], "drop_reason": CHUNK_FEATURES["drop_reason"]})
        from datasets import Features

        per_video = [
            Step("probe", self.probe, fingerprint=f"probe-{version}"),
            Step("audio check", self.audio_check, fingerprint=f"audio-{version}"),
            # the decoding worker's memory is freed before the models' steps (whole-run peak)
            Step("frames (isolated decoding)", self.frames, fingerprint=f"frames-{version}", after=self.worker.close),
            # a model-free classifier (the heuristic) needs no actor pool: under Ray it runs in the frames task
            Step("histology", self.classify, fingerprint=f"histology-{version}",
                 pool="" if getattr(self.histology, "model_free", False) else "histology",
                 setup=functools.partial(self.load_models, ("histology",))),
            Step("asr", self.transcribe, fingerprint=f"asr-{version}", pool="asr",
                 setup=functools.partial(self.load_models, ("asr",)), batch_fn=self.transcribe_batch),
            Step("align", self.align, fingerprint=f"align-{version}"),
            # the lexicon text stage loads no model: under Ray it runs as CPU tasks; an LLM backend gets an actor pool
            Step("text", self.text_stage, fingerprint=f"text-{version}",
                 pool="text" if getattr(self.text, "llm", None) is not None else "",
                 setup=functools.partial(self.load_models, ("text",))),
            Step("rows", self.rows_stage, fingerprint=f"rows-{version}"),
        ]
        for step in per_video:
            step.counters = self.counters
        return per_video, [
            Step("keep usable videos", self.keep, kind="filter", fingerprint=f"keep-{version}"),
            Step("chunks and pairs", self.expand, kind="flat_map", fingerprint=f"expand-{version}", features=Features(row_features)),
        ]

    def close(self) -> None:
        self.worker.close()


SHARED_LEFTOVER_AGE_S = atomic.LEFTOVER_AGE_S  # a working folder in a shared cache untouched this long: a leftover
WRITER_ROW_GROUP = "4MB"  # image bytes a table's writer holds at a time (datasets' default: 100MB)


def _dataset_writer(dataset) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        # The pair images (paths into the cache) are embedded while the table is written, one row group at a
        # time; datasets sizes row groups at 100 MB of images, so the writer's memory grew with the table up to
        # that (about 3x the images held). Row groups of WRITER_ROW_GROUP keep it flat in the number of videos.
        import datasets
        import pyarrow as pa

        saved, datasets.config.MAX_ROW_GROUP_SIZE = datasets.config.MAX_ROW_GROUP_SIZE, WRITER_ROW_GROUP
        try:
            dataset.save_to_disk(str(path), **({"num_shards": 1} if len(dataset) == 0 else {}))  # 0 rows: one shard
        finally:
            datasets.config.MAX_ROW_GROUP_SIZE = saved
            # the allocator keeps what the written batches freed; hand it back before the next table
            pa.default_memory_pool().release_unused()

    return write


def _count_chunks(pairs) -> int:
    """Distinct (video, chunk) pairs, read in batches (the driver never lists the whole pairs table)."""
    seen: set = set()
    for batch in pairs.select_columns(["video_id", "chunk_id"]).iter(batch_size=65536):
        seen.update(zip(batch["video_id"], batch["chunk_id"]))
    return len(seen)


def _chunk_drop_reasons(chunks) -> dict[str, int]:
    """Chunks that give no pair, counted by reason, read in batches."""
    reasons: dict = {}
    for batch in chunks.select_columns(["video_id", "chunk_id", "drop_reason"]).iter(batch_size=65536):
        for video, chunk, reason in zip(batch["video_id"], batch["chunk_id"], batch["drop_reason"]):
            if reason:
                reasons[(video, chunk)] = reason
    return dict(sorted(Counter(reasons.values()).items()))


@contextlib.contextmanager
def _arrow_on_the_system_allocator():
    """pyarrow's default pool (mimalloc) keeps what freed batches leave, so the driver's peak grew with the tables
    it sorts, filters and writes (bench_ray, the Ray driver with 100x the videos: 401 -> 352 MB on glibc's
    allocator, which also returns memory on ``release_unused``). The previous pool comes back after the run; its
    buffers stay valid. Some of pyarrow's C++ readers allocate from the process's first pool regardless."""
    import pyarrow as pa

    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):  # the user chose one
        yield
        return
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)
        previous.release_unused()  # what parts that allocate from the previous pool directly kept


@_arrow_on_the_system_allocator()
def run_pipeline(videos, curation: Curation, output_dir: str | Path, runner=None) -> dict:
    """Run the whole chain on a videos table and write ``videos/``, ``chunks/``, ``pairs/`` (datasets on
    disk) and ``stats.json`` into ``output_dir``. Returns the stats.

    Args:
        videos (`datasets.Dataset`): the videos table (``VIDEO_FEATURES``), e.g. from :func:`.sources.load_videos`.
        curation (`Curation`): the steps and what they share.
        output_dir (`str` or `Path`): where the tables go: a folder (the set is written to a staging folder, then
            renamed in), or an fsspec URL such as ``s3://bucket/prefix`` (written in the cache's folder, uploaded
            as a new set, then made current; :mod:`quilt_hf.object_store`).
        runner: a :class:`~.runners.LocalRunner` (default) or :class:`~.runners.RayRunner`.
    """
    output_dir, shards_next_to, shared_cache = _open_output(output_dir, curation)
    # a cache outside the output may be another live run's too: only what is untouched for a while is a leftover
    curation.cache.clean_tmp(older_than_s=SHARED_LEFTOVER_AGE_S if shared_cache else None)
    runner = runner or LocalRunner()
    if hasattr(runner, "staging_dir") and runner.staging_dir is None:  # Ray: shards next to the outputs
        runner.staging_dir = str(shards_next_to / f"{atomic._TMP}ray-{os.getpid()}-{int(time.time())}")
    try:
        return _curate_and_commit(videos, curation, output_dir, runner)
    finally:  # the staging shards, and a Ray runner's heartbeat, whether the run succeeded or not
        cleanup = getattr(runner, "cleanup", None)
        if callable(cleanup):
            cleanup()


def _open_output(output_dir: str | Path, curation: Curation) -> tuple[str | Path, Path, bool]:
    """Check the output and remove killed runs' leftovers. Returns the output (a URL string or a folder), where
    a runner's staging shards go, and whether the step cache may be shared with other live runs."""
    if object_store.is_url(output_dir):  # an object store: the set is written in the cache's folder, uploaded
        output_dir = str(output_dir).rstrip("/")
        object_store.check_writable(output_dir)  # a missing bucket or missing rights fail here, not at the end
        curation.cache.root.mkdir(parents=True, exist_ok=True)
        # killed runs' shards and upload staging; other runs sharing this cache may be writing theirs
        atomic.clean_leftovers(curation.cache.root, (f"{atomic._TMP}ray-*", f"{atomic._STAGING}*"),
                               older_than_s=SHARED_LEFTOVER_AGE_S)
        return output_dir, curation.cache.root, True
    output_dir = Path(object_store.local_path(str(output_dir)))
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic.clean_leftovers(output_dir)  # finishes an interrupted commit, removes staging/.tmp-/.old- leftovers
    shared = not curation.cache.root.resolve().is_relative_to(output_dir.resolve())  # --cache_dir given
    return output_dir, output_dir, shared


def _curate_and_commit(videos, curation: Curation, output_dir: str | Path, runner) -> dict:
    """The steps on ``runner``, the tables and stats, committed as one set to ``output_dir``."""
    from datasets import Features, Value

    began = time.perf_counter()
    if not getattr(runner, "loads_models_in_workers", False):
        curation.load_models()  # a model that cannot load fails the run here, before any video
    work_features = Features({**VIDEO_FEATURES, **{name: Value("string") for name in KEY_COLUMNS}})
    videos = videos.map(lambda row: {name: "" for name in KEY_COLUMNS}, features=work_features, desc="videos")
    per_video, final = curation.steps()
    try:
        videos = runner.run(videos, per_video)
        rows = runner.run(videos, final)
    finally:
        curation.close()
    for name, counter in getattr(runner, "worker_counters", {}).items():  # Ray: what the workers counted
        getattr(curation, name).update(counter)
    if len(rows) == 0 or not rows.column_names:
        from datasets import Dataset

        rows = Dataset.from_dict({name: [] for name in final[-1].features}, features=final[-1].features)
    rows = rows.sort(["video_id", "chunk_id", "image_id"])
    chunk_table = rows.select_columns(list(CHUNK_FEATURES)).cast(CHUNK_FEATURES)
    pair_table = rows.filter(lambda reason: not reason, input_columns="drop_reason", desc="pairs with a caption")
    pair_table = pair_table.select_columns(list(PAIR_FEATURES)).cast(PAIR_FEATURES)
    video_table = videos.select_columns(list(VIDEO_FEATURES)).sort("video_id")
    video_seconds = sum(float(d or 0.0) for d in video_table["duration"])
    drops = Counter(reason for reason in video_table["drop_reason"] if reason)
    stats = {
        "pipeline_version": PIPELINE_VERSION,
        "videos": len(video_table),
        "videos_kept": len(video_table) - sum(drops.values()),
        "dropped": dict(sorted(drops.items())),
        "dropped_videos": {r["video_id"]: r["drop_reason"] for r in video_table if r["drop_reason"]},
        "damaged_spans": {r["video_id"]: r["damaged_spans"] for r in video_table if r["damaged_spans"]},
        "chunks": _count_chunks(chunk_table),
        "chunks_with_pairs": _count_chunks(pair_table),
        # chunks that give no pair, by reason (caption policy: "no_medical_text")
        "chunks_dropped": _chunk_drop_reasons(chunk_table),
        "images": len(pair_table),
        "pairs": len(pair_table),
        "timings_s": {name: round(value, 3) for name, value in runner.timings.items()},
        "total_s": round(time.perf_counter() - began, 3),
        "video_hours": round(video_seconds / 3600, 6),
        # hours of input video per hour of each step (wall time locally; summed worker time under Ray)
        "throughput_video_h_per_h": {name: round(video_seconds / value, 3)
                                     for name, value in runner.timings.items() if value > 0},
        "cache_keys": {r["video_id"]: {name: r[name] for name in KEY_COLUMNS if r[name]} for r in videos},
        "cache_hits": dict(curation.cache_hits),
        "computed": dict(curation.computed),
        **({"ray_nodes": dict(sorted(runner.nodes.items()))} if getattr(runner, "nodes", None) else {}),
        **(runner.summary() if hasattr(runner, "summary") else {}),  # Ray: worker processes per step, timeline
        "models": {"asr": curation.asr_name, "histology": curation.histology.name,
                   "text": curation.text.name if curation.text is not None else "none"},
        "asr_decoding": {"num_beams": curation.asr_num_beams, "dtype": curation.asr_dtype or "auto"},
        "options": json.loads(json.dumps(asdict(curation.options), default=str)),
    }
    writers = {  # one set: a crash leaves the old outputs or the new ones, never a mix
        "videos": _dataset_writer(video_table),
        "chunks": _dataset_writer(chunk_table),
        "pairs": _dataset_writer(pair_table),
        "stats.json": lambda path: path.write_text(json.dumps(stats, indent=2, sort_keys=True)),
    }
    if object_store.is_url(output_dir):
        written_to = object_store.commit_set(output_dir, writers, local_dir=curation.cache.root)
    else:
        atomic.commit_set(output_dir, writers)
        written_to = str(output_dir)
    logger.info("curation: %d pairs from %d/%d videos (dropped: %s) -> %s", stats["pairs"], stats["videos_kept"],
                stats["videos"], stats["dropped"] or "none", written_to)
    return stats

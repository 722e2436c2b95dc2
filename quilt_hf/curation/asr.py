"""ASR: narration to timed text with Whisper (transformers, or faster-whisper as an optional backend).

Audio comes straight out of the video container at 16 kHz mono (PyAV, resampled while decoding, never a
temporary WAV). The transformers backend runs Whisper's own sequential long-form generation (30 s windows,
each one starting at the last complete timestamped segment of the previous one, as OpenAI's decoder does),
not the pipeline's overlapping chunks, so segment timestamps are exact and no words are stitched twice.

Speed on CPU (``bench/bench_asr.py``): transformers' token-suppression logits processors rebuild a mask
over the 51,865-token vocabulary (``torch.isin``, a sort) at every decoding step, twice; here the masks are
built once, which with long-form generation makes the backend several times faster than the plain ASR
pipeline with identical output. ``dtype="int8"`` adds dynamic int8 quantization of the Linear layers on CPU
(faster still, slightly less accurate); ``"auto"`` is float32 on CPU and float16 on GPU. The model is loaded once per process and shared by every
``WhisperTranscriber`` that asks for the same model, backend, device and dtype.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from quilt_hf.curation import limits
from quilt_hf.errors import ModelLoadError, UserFacingError, require

logger = logging.getLogger(__name__)

__all__ = ["SAMPLE_RATE", "NoAudioError", "Transcript", "WhisperTranscriber", "iter_audio", "load_audio"]

SAMPLE_RATE = 16000
WINDOW_SECONDS = 30.0
ASR_VERSION = "1"
BACKENDS = ("transformers", "faster-whisper")
DTYPES = ("auto", "float32", "float16", "bfloat16", "int8")


class NoAudioError(UserFacingError):
    """The file has no audio stream (or no decodable audio): there is nothing to transcribe."""


def iter_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """Stream the first audio stream of a media file as mono float32 blocks at ``sample_rate``, on the video's
    clock: an audio track that starts after the video begins is preceded by silence (and one that starts
    before it is trimmed), so sample ``n`` is at ``n / sample_rate`` seconds of the video.

    Decoding and resampling are streamed (PyAV's resampler, frame by frame); only one block is held.

    Args:
        path (`str` or `Path`): a video or audio file FFmpeg can read.
        sample_rate (`int`): the output rate (Whisper wants 16,000).
        block_seconds (`float`): length of each yielded block (the last one may be shorter).

    Yields:
        `np.ndarray`: 1-d float32 samples in [-1, 1].

    Raises:
        NoAudioError: when the file has no audio stream.
        UserFacingError: when the file cannot be opened or its audio cannot be decoded.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise UserFacingError(f"{path} does not exist")
    try:
        container = av.open(str(path))
    except Exception as error:  # FFmpeg raises many kinds; each means the file is not readable media
        raise UserFacingError(f"cannot open {path} as a media file: {error}") from error
    block = max(1, int(block_seconds * sample_rate))
    with container:
        if not container.streams.audio:
            raise NoAudioError(f"{path.name} has no audio stream: there is no narration to transcribe")
        stream = container.streams.audio[0]
        stream.thread_type = "AUTO"
        origin = _video_origin(container)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        pending: list[np.ndarray] = []
        held = 0
        emitted = 0
        skip: int | None = None  # samples to drop (audio before the video) once the first frame is seen

        def take(samples: np.ndarray):
            nonlocal held, skip
            if skip is None:
                return
            if skip > 0:
                cut = min(skip, len(samples))
                samples, skip = samples[cut:], skip - cut
            if len(samples):
                pending.append(samples)
                held += len(samples)

        damaged = 0
        try:
            for packet in container.demux(stream):
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError:  # a damaged packet: skipped, its time filled with silence
                    damaged += 1
                    continue
                for frame in decoded:
                    if skip is None:
                        start = float(frame.time) if frame.time is not None else origin
                        lead = int(round((start - origin) * sample_rate))
                        skip = max(0, -lead)
                        if lead > 0:  # the audio starts late: silence until it does
                            pending.append(np.zeros(lead, np.float32))
                            held += lead
                    elif frame.time is not None:
                        gap = int(round((float(frame.time) - origin) * sample_rate)) - (emitted + held)
                        if gap > sample_rate // 10:  # lost packets (damage) or a hole: keep the clock
                            pending.append(np.zeros(gap, np.float32))
                            held += gap
                    frame.pts = None  # let the resampler follow its own clock (broken pts otherwise warn/skip)
                    for out in resampler.resample(frame):
                        take(out.to_ndarray().reshape(-1))
                    while held >= block:
                        emitted += block
                        held -= block
                        yield _cut_block(pending, block)  # held by the caller only: freed when it lets go
            for out in resampler.resample(None):
                take(out.to_ndarray().reshape(-1))
            if damaged:
                logger.warning("%s: %d damaged audio packets skipped (silence in their place)", path.name, damaged)
        except av.error.FFmpegError as error:
            if not emitted and not held:
                raise UserFacingError(f"cannot decode the audio of {path.name}: {error}") from error
            logger.warning("%s: audio decoding stopped early (%s); keeping the first %.1f s", path.name, error,
                           (emitted + held) / sample_rate)
    if skip is None and not emitted:
        raise NoAudioError(f"{path.name} has an audio stream but no decodable samples")
    if held:
        yield np.concatenate(pending).astype(np.float32, copy=False)
    elif not emitted:
        raise NoAudioError(f"{path.name} has an audio stream but no decodable samples")


def _cut_block(pending: list[np.ndarray], block: int) -> np.ndarray:
    """Remove the first ``block`` samples from ``pending`` (in place) and return them. A generator that kept the
    joined array in a local while suspended would hold every block until the next one is read."""
    joined = np.concatenate(pending)
    pending[:] = [joined[block:].copy()]  # the rest (under one frame) as its own array
    return joined[:block]


def _video_origin(container) -> float:
    """Time (s) at which the video's first frame is shown: the origin of every time the pipeline records."""
    streams = container.streams.video or container.streams.audio
    stream = streams[0]
    if stream.start_time is not None and stream.time_base is not None:
        return float(stream.start_time * stream.time_base)
    return (container.start_time or 0) / 1_000_000


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio stream of a media file to mono float32 at ``sample_rate`` (on the video's clock;
    see :func:`iter_audio`, which streams the same samples block by block).

    Args:
        path (`str` or `Path`): a video or audio file FFmpeg can read.
        sample_rate (`int`): the output rate (Whisper wants 16,000).

    Returns:
        `np.ndarray`: 1-d float32 samples in [-1, 1].

    Raises:
        NoAudioError: when the file has no audio stream.
        UserFacingError: when the file cannot be opened or its audio cannot be decoded.
    """
    blocks = list(iter_audio(path, sample_rate, block_seconds=600.0))
    return np.concatenate(blocks).astype(np.float32, copy=False) if len(blocks) > 1 else blocks[0]


@dataclass
class Transcript:
    """What was said, with segment timings.

    Attributes:
        language (`str`): ISO code of the spoken language (``"en"``), detected unless given.
        text (`str`): the whole transcript.
        segments (`list[dict]`): ``{"start": float, "end": float, "text": str}`` in seconds, in order.
    """

    language: str
    text: str
    segments: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# One model per process per (backend, model, device, dtype): datasets.map workers each load their own.
_MODELS: dict[tuple, object] = {}
_LOCK = threading.Lock()


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _clean_segments(segments: list[dict], duration: float) -> list[dict]:
    """Clip to the audio, drop empty text, keep the order monotonic."""
    out: list[dict] = []
    previous_end = 0.0
    for segment in segments:
        text = segment["text"].strip()
        if not text:
            continue
        start = min(max(float(segment["start"]), previous_end if out else 0.0), duration)
        end = min(max(float(segment["end"]), start), duration)
        out.append({"start": round(start, 3), "end": round(end, 3), "text": text})
        previous_end = end
    return out


class WhisperTranscriber:
    """Whisper speech recognition with segment timestamps, for whole lectures.

    Args:
        model (`str`, *optional*): a Hub name or local folder. None uses ``resolve_model(None, "asr")``: the
            Hub default, else the offline Whisper base that ``make models`` prepared. For the faster-whisper
            backend: a CTranslate2 folder, a faster-whisper size name ("base", "large-v3-turbo") or a Hub
            CTranslate2 repository; None uses the offline ``whisper-base-ct2`` when the transformers
            default is the offline model, else ``large-v3-turbo``.
        backend (`str`): ``"transformers"`` (default) or ``"faster-whisper"`` (``pip install
            'quilt_hf[faster-whisper]'``).
        device (`str`, *optional*): ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default: CUDA when available.
        batch_size (`int`): audio files decoded together by ``transcribe_many`` (transformers), or 30 s
            windows decoded together (faster-whisper's batched pipeline) when above 1.
        language (`str`, *optional*): ISO code to force (``"en"``); None detects it per file.
        dtype (`str`): ``"auto"`` (float32 on CPU, float16 on GPU), ``"float32"``, ``"float16"``,
            ``"bfloat16"`` or ``"int8"`` (dynamic quantization of the Linear layers, CPU only; for
            faster-whisper, CTranslate2's int8).
        num_beams (`int`): beam search width (1: greedy decoding, the fastest). openai-whisper's command line
            and faster-whisper's ``transcribe`` default to 5; with Whisper base on the demo lectures 5 beams
            lowered the WER (0.293 -> 0.254) and raised the medical terms heard, at about twice the CPU time of
            greedy decoding (``bench/bench_asr.py --peers ours-fp32 ours-beam``; README, issue #15).

    Example:

    ```python
    >>> transcriber = WhisperTranscriber()
    >>> transcript = transcriber.transcribe(load_audio("lecture.mp4"))
    >>> transcript.segments[0]
    {'start': 0.0, 'end': 4.0, 'text': 'This section shows an invasive ductal carcinoma.'}
    ```
    """

    def __init__(
        self,
        model: str | None = None,
        backend: str = "transformers",
        device: str | None = None,
        batch_size: int = 1,
        language: str | None = None,
        dtype: str = "auto",
        num_beams: int = 1,
    ):
        if backend not in BACKENDS:
            raise UserFacingError(f"unknown ASR backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        if dtype not in DTYPES:
            raise UserFacingError(f"unknown ASR dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
        if batch_size < 1:
            raise UserFacingError("batch_size must be at least 1")
        if num_beams < 1:
            raise UserFacingError("num_beams must be at least 1 (1: greedy decoding)")
        self.backend = backend
        self.device = device
        self.batch_size = batch_size
        self.language = language.strip("<|>").lower() if language else None
        self.dtype = dtype
        self.num_beams = int(num_beams)
        self.model_name = self._resolve(model)

    def _resolve(self, model: str | None) -> str:
        from quilt_hf.models import offline_model_path, resolve_model

        if self.backend == "transformers":
            return resolve_model(model, "asr")
        if model:
            path = Path(model).expanduser()
            if path.is_dir() and not (path / "model.bin").is_file():
                sibling = path.parent / f"{path.name}-ct2"
                if (sibling / "model.bin").is_file():
                    return str(sibling)
                raise UserFacingError(
                    f"{model} is not a CTranslate2 model (no model.bin); convert it with: ct2-transformers-converter "
                    f"--model {model} --output_dir {model}-ct2 --copy_files tokenizer.json preprocessor_config.json"
                )
            return str(path) if path.is_dir() else model
        default = resolve_model(None, "asr")
        offline = offline_model_path("asr")
        if offline is not None and Path(default) == offline:
            ct2 = offline.parent / f"{offline.name}-ct2"
            if (ct2 / "model.bin").is_file():
                return str(ct2)
        return "large-v3-turbo"  # faster-whisper's own name for the Hub CTranslate2 export

    # ------------------------------------------------------------------ loading
    def _key(self) -> tuple:
        batched = self.backend == "faster-whisper" and self.batch_size > 1  # a different pipeline object
        return (self.backend, self.model_name, self.device or _default_device(), self.dtype, batched)

    def load(self) -> None:
        """Load the model now (once per process, shared by every transcriber of the same settings).

        Raises:
            ModelLoadError: the model cannot be loaded; the message names it and the fix.
        """
        try:
            self._load()
        except UserFacingError:
            raise
        except Exception as error:  # from_pretrained / CTranslate2 raise many kinds
            raise ModelLoadError("--asr_model", self.model_name, *self._load_problem(error)) from error

    def _load_problem(self, error: Exception) -> tuple[str, str]:
        """(what is wrong, the fix) for a model that failed to load."""
        path = Path(self.model_name).expanduser()
        marker = "config.json" if self.backend == "transformers" else "model.bin"
        if path.is_dir() and not (path / marker).is_file():
            kind = "Whisper" if self.backend == "transformers" else "CTranslate2 Whisper"
            return (f"no {kind} model in that folder (no {marker})",
                    "run `make models` for the offline models, or give a Hub name such as openai/whisper-base")
        return (f"the model cannot be loaded ({type(error).__name__}: {error})",
                "check the name or folder (a Whisper model with its processor files), or run `make models`")

    def _load(self):
        key = self._key()
        with _LOCK:
            if key not in _MODELS:
                loader = self._load_transformers if self.backend == "transformers" else self._load_faster_whisper
                _MODELS[key] = loader(key[2])
            return _MODELS[key]

    def _load_transformers(self, device: str):
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        dtype = self.dtype
        if dtype == "auto":
            dtype = "float32" if device == "cpu" else "float16"
        torch_dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(dtype, torch.float32)
        model = WhisperForConditionalGeneration.from_pretrained(self.model_name, dtype=torch_dtype)
        processor = WhisperProcessor.from_pretrained(self.model_name)
        _restore_whisper_generation_fields(model, self.model_name)
        model.eval()
        if dtype == "int8":
            if device != "cpu":
                raise UserFacingError("dtype='int8' (dynamic quantization) runs on CPU only; use float16 on GPU")
            model = _quantize_linear_int8(model)
        model.to(device)
        _install_static_suppression(model)
        logger.info("loaded Whisper %s (%s, %s) for ASR", self.model_name, device, dtype)
        return model, processor

    def _load_faster_whisper(self, device: str):
        faster_whisper = require("faster_whisper", package="faster-whisper", extra="faster-whisper",
                                 purpose="the faster-whisper ASR backend")
        import torch

        kind, _, index = device.partition(":")
        compute_type = {"auto": "float32" if kind == "cpu" else "float16"}.get(self.dtype, self.dtype)
        model = faster_whisper.WhisperModel(
            self.model_name, device=kind, device_index=int(index or 0), compute_type=compute_type,
            cpu_threads=torch.get_num_threads(),
        )
        pipeline = faster_whisper.BatchedInferencePipeline(model) if self.batch_size > 1 else None
        logger.info("loaded faster-whisper %s (%s, %s) for ASR", self.model_name, device, compute_type)
        return model, pipeline

    # ------------------------------------------------------------------ transcription
    def transcribe(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, prompt: str | None = None) -> Transcript:
        """Transcribe one recording.

        Args:
            audio (`np.ndarray`): mono samples (float32 in [-1, 1]), e.g. from ``load_audio``.
            sample_rate (`int`): rate of ``audio``; resampled to 16 kHz when different.
            prompt (`str`, *optional*): text Whisper reads as preceding context of every 30 s window
                (domain terms biasing recognition, see :mod:`quilt_hf.curation.asr_prompt`); ``prompt_ids``
                in transformers, ``initial_prompt`` in faster-whisper.

        Returns:
            `Transcript`
        """
        return self.transcribe_many([audio], sample_rate=sample_rate, prompt=prompt)[0]

    def transcribe_file(self, path: str | Path, block_seconds: float = 300.0, prompt: str | None = None) -> Transcript:
        """Transcribe a media file's narration with memory flat in its length.

        The audio is decoded block by block (:func:`iter_audio`, on the video's clock) and each block of
        ``block_seconds`` (plus what the previous block left open, at most about a minute) is transcribed with
        the usual long-form decoding. The segments that end in a block's last 30 s may have been cut by the
        block's end, so they are decoded again at the start of the next block. The language is detected on the first block (unless given) and kept for the rest. A lecture
        shorter than one block is transcribed exactly as ``transcribe(load_audio(path))``.

        Args:
            path (`str` or `Path`): a video or audio file.
            block_seconds (`float`): audio held at a time (at least 60 s).
            prompt (`str`, *optional*): the Whisper prompt of every block (see ``transcribe``).

        Returns:
            `Transcript`
        """
        state = _FileBlocks(iter_audio(path, block_seconds=max(60.0, float(block_seconds))), self.language)
        while not state.done:
            limits.check()
            audio = state.next_audio()  # one block of audio held while it is transcribed, never two
            saved, self.language = self.language, state.language
            try:
                part = self.transcribe(audio, prompt=prompt)
            finally:
                self.language = saved
            state.add(audio, part)
            del audio
        return state.transcript()

    def transcribe_many(
        self, audios: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE, prompt: str | None = None,
        languages: Sequence[str | None] | None = None,
    ) -> list[Transcript]:
        """Transcribe several recordings, ``batch_size`` at a time; one ``Transcript`` per input, in order.
        ``prompt`` (optional) is given to every recording (see ``transcribe``). ``languages`` (optional): a
        language per recording (None: the transcriber's, else detected), e.g. each lecture's language detected
        on its first block. A batch never mixes recordings of at most 30 s with longer ones (Whisper decodes
        them differently), so each transcript is the one ``transcribe`` gives for that recording alone."""
        prompt = (prompt or "").strip() or None
        audios = [_as_16k_mono(audio, sample_rate) for audio in audios]
        given = [None] * len(audios) if languages is None else [language or self.language for language in languages]
        results: list[Transcript | None] = [None] * len(audios)
        todo = []
        for i, audio in enumerate(audios):
            if len(audio) < SAMPLE_RATE // 10:  # under 0.1 s: nothing Whisper could hear
                results[i] = Transcript(language=given[i] or self.language or "", text="", segments=[])
            else:
                todo.append(i)
        if self.backend == "faster-whisper":
            for i in todo:
                saved, self.language = self.language, given[i] or self.language
                try:
                    results[i] = self._faster_whisper_one(audios[i], prompt)
                finally:
                    self.language = saved
            return results
        # Similar lengths together: less padding in long-form batches.
        todo.sort(key=lambda i: len(audios[i]))
        batches: list[list[int]] = []
        for i in todo:
            long_form = len(audios[i]) > WINDOW_SECONDS * SAMPLE_RATE
            if not batches or len(batches[-1]) >= self.batch_size or (len(audios[batches[-1][0]]) > WINDOW_SECONDS * SAMPLE_RATE) != long_form:
                batches.append([])
            batches[-1].append(i)
        for batch in batches:
            transcripts = self._transformers_batch([audios[i] for i in batch], prompt, [given[i] for i in batch])
            for i, transcript in zip(batch, transcripts):
                results[i] = transcript
        return results

    def transcribe_files(
        self, paths: Sequence[str | Path], block_seconds: float = 300.0, prompts: Sequence[str | None] | None = None
    ) -> list[Transcript]:
        """Transcribe several media files together: each file is decoded block by block exactly as in
        ``transcribe_file`` (memory flat in its length), and the current blocks of all files that share a
        prompt go through the model together, ``batch_size`` at a time (the 30 s windows of several lectures
        in one ``generate`` call). Each transcript is the one ``transcribe_file`` gives for that file alone.

        Args:
            paths (`list`): video or audio files.
            block_seconds (`float`): audio held at a time per file (at least 60 s).
            prompts (`list`, *optional*): the Whisper prompt of each file (see ``transcribe``).

        Returns:
            `list[Transcript]`: one per file, in order.
        """
        prompts = [(prompt or "").strip() for prompt in prompts] if prompts is not None else [""] * len(paths)
        if self.backend != "transformers" or len(paths) < 2:
            return [self.transcribe_file(path, block_seconds, prompt=prompt or None) for path, prompt in zip(paths, prompts)]
        block_seconds = max(60.0, float(block_seconds))
        files = [_FileBlocks(iter_audio(path, block_seconds=block_seconds), self.language) for path in paths]
        while True:
            limits.check()
            active = [i for i, state in enumerate(files) if not state.done]
            if not active:
                break
            audios = {i: files[i].next_audio() for i in active}  # one block per file
            for prompt in dict.fromkeys(prompts[i] for i in active):
                group = [i for i in active if prompts[i] == prompt]
                parts = self.transcribe_many([audios[i] for i in group], prompt=prompt or None,
                                             languages=[files[i].language for i in group])
                for i, part in zip(group, parts):
                    files[i].add(audios.pop(i), part)  # the block is freed once its open end is copied
        return [state.transcript() for state in files]

    def _transformers_batch(
        self, audios: list[np.ndarray], prompt: str | None = None, languages: Sequence[str | None] | None = None
    ) -> list[Transcript]:
        import torch

        model, processor = self._load()
        conv = model.model.encoder.conv1.weight  # stays a float parameter under int8 quantization
        device, float_dtype = conv.device, conv.dtype
        long_form = max(len(a) for a in audios) > WINDOW_SECONDS * SAMPLE_RATE
        if long_form:
            # each recording's features as it alone would have them (the frames at its end are not mixed with the
            # padding of the batch), window by window (flat memory), padded with zeros the attention mask hides
            features = _stack_features([_long_form_features(processor.feature_extractor, audio) for audio in audios])
        else:
            features = processor.feature_extractor(
                audios, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True
            )
        inputs = {"input_features": features["input_features"].to(device, float_dtype)}
        if long_form:
            inputs["attention_mask"] = features["attention_mask"].to(device)
        languages = self._languages(model, features["input_features"][..., :3000].to(device, float_dtype), processor,
                                    languages)
        del features
        if prompt:
            # Every 30 s window reads the prompt ("all-segments", which transformers allows only together
            # with conditioning on the previous window's text), not only the first window.
            inputs["prompt_ids"] = processor.get_prompt_ids(prompt, return_tensors="pt").to(device)
            inputs["prompt_condition_type"] = "all-segments"
            inputs["condition_on_prev_tokens"] = True
        limits.check()
        extra = {}
        if limits.remaining() is not None:  # stop decoding when the video's ASR time limit is spent
            from transformers import StoppingCriteriaList

            extra["stopping_criteria"] = StoppingCriteriaList([_DeadlineReached()])
        with torch.inference_mode():
            output = model.generate(
                **inputs, language=languages, task="transcribe", return_timestamps=True,
                return_segments=True, return_dict_in_generate=True, num_beams=self.num_beams,
                logits_processor=[processor_ for processor_ in [getattr(model, "_quilt_begin_suppress", None)] if processor_],
                **extra,
            )
        limits.check()
        tokenizer = processor.tokenizer
        timestamp_begin = model.generation_config.no_timestamps_token_id + 1
        transcripts = []
        for audio, language, segments in zip(audios, languages, output["segments"]):
            parts = []
            for segment in segments:
                ids = [int(t) for t in segment["tokens"] if int(t) < timestamp_begin]
                parts.append({"start": float(segment["start"]), "end": float(segment["end"]),
                              "text": tokenizer.decode(ids, skip_special_tokens=True)})
            clean = _clean_segments(parts, len(audio) / SAMPLE_RATE)
            transcripts.append(Transcript(language=language, text=" ".join(s["text"] for s in clean), segments=clean))
        return transcripts

    def _languages(self, model, first_windows, processor, given: Sequence[str | None] | None = None) -> list[str]:
        """The forced language, or ``given[i]``, or one detected on each recording's first 30 s."""
        import torch

        if self.language:
            return [self.language] * len(first_windows)
        if not getattr(model.generation_config, "is_multilingual", True):
            return ["en"] * len(first_windows)
        given = list(given) if given is not None else [None] * len(first_windows)
        unknown = [i for i, language in enumerate(given) if not language]
        if unknown:
            with torch.inference_mode():
                ids = model.detect_language(first_windows[unknown] if len(unknown) < len(given) else first_windows)
            for i, token in zip(unknown, processor.tokenizer.convert_ids_to_tokens(ids.tolist())):
                given[i] = token.strip("<|>")
        return given

    def _faster_whisper_one(self, audio: np.ndarray, prompt: str | None = None) -> Transcript:
        model, pipeline = self._load()
        options = {"language": self.language, "beam_size": self.num_beams, "without_timestamps": False, "vad_filter": False}
        if prompt:
            options["initial_prompt"] = prompt
        if pipeline is not None:
            segments, info = pipeline.transcribe(audio, batch_size=self.batch_size, **options)
        else:
            segments, info = model.transcribe(audio, condition_on_previous_text=False, **options)
        parts = []
        for s in segments:  # a generator: faster-whisper decodes window by window as it is read
            limits.check()
            parts.append({"start": s.start, "end": s.end, "text": s.text})
        clean = _clean_segments(parts, len(audio) / SAMPLE_RATE)
        return Transcript(language=info.language, text=" ".join(s["text"] for s in clean), segments=clean)


def whisper_log_mel(extractor, audio: np.ndarray, window_frames: int = 3000) -> np.ndarray:
    """Whisper's log-mel features of one recording, equal to ``WhisperFeatureExtractor(audio,
    truncation=False, padding="longest")`` (long-form, no dither), computed ``window_frames`` frames at a time.

    The extractor transforms the whole recording at once: its STFT, power and mel arrays take about 0.7 MB
    per second of audio (over 200 MB for a 5-minute block). Here only one window's arrays (30 s by default)
    exist at a time next to the result (``n_mels x frames`` float32, 32 KB per second); the frames and
    filters are the extractor's (centred, reflect-padded Hann STFT), so the values are the same.

    Args:
        extractor (`WhisperFeatureExtractor`): gives ``n_fft``, ``hop_length`` and ``mel_filters``.
        audio (`np.ndarray`): 1-d float32 samples at 16 kHz.
        window_frames (`int`): feature frames computed at a time.

    Returns:
        `np.ndarray`: ``n_mels x (len(audio) // hop_length)`` float32.
    """
    import torch

    n_fft, hop = int(extractor.n_fft), int(extractor.hop_length)
    half = n_fft // 2
    frames = len(audio) // hop
    filters = torch.from_numpy(np.asarray(extractor.mel_filters, np.float32)).T.contiguous()
    window = torch.hann_window(n_fft)
    out = np.empty((filters.shape[0], frames), np.float32)
    for first in range(0, frames, window_frames):
        last = min(frames, first + window_frames)
        start, end = first * hop - half, (last - 1) * hop + n_fft - half  # the samples of these frames
        piece = audio[max(0, start) : min(len(audio), end)]
        if start < 0 or end > len(audio):  # the recording's edges: reflect-padded, as torch.stft(center=True)
            piece = np.pad(piece, (max(0, -start), max(0, end - len(audio))), mode="reflect")
        stft = torch.stft(torch.from_numpy(np.ascontiguousarray(piece, np.float32)), n_fft, hop, window=window,
                          center=False, return_complex=True)
        out[:, first:last] = (filters @ (stft.abs() ** 2).contiguous()).clamp_(min=1e-10).log10_().numpy()
    np.maximum(out, out.max(initial=-10.0) - 8.0, out=out)  # the clamp reads the whole recording's maximum
    out += 4.0
    out /= 4.0
    return out


class _FileBlocks:
    """One file's block-by-block transcription state (``transcribe_file``, and each file of
    ``transcribe_files``): the segments ending in a block's last 30 s are decoded again with the next block,
    whose audio starts where they start; the next block is read only after the current one is transcribed (its
    existence decides the cut), so one block is held at a time, plus the open end (at most 30 s) of the last."""

    def __init__(self, blocks: Iterator[np.ndarray], language: str | None):
        self.blocks, self.language = blocks, language
        self.following = next(blocks, None)
        self.segments: list[dict] = []
        self.carry, self.offset = np.zeros(0, np.float32), 0.0

    @property
    def done(self) -> bool:
        return self.following is None

    def next_audio(self) -> np.ndarray:
        """The next block to transcribe (the previous block's open end, then the block read last)."""
        audio = np.concatenate([self.carry, self.following]) if len(self.carry) else self.following
        self.carry, self.following = np.zeros(0, np.float32), None
        return audio

    def add(self, audio: np.ndarray, part: Transcript) -> None:
        """Keep what ``part`` (the transcript of ``audio``) decoded for good and read the next block."""
        self.following = next(self.blocks, None)  # read after the block: whether it was the last decides the cut
        self.language = self.language or part.language or None
        duration = len(audio) / SAMPLE_RATE
        if self.following is None:
            kept, resume = part.segments, duration
        else:
            cutoff = duration - WINDOW_SECONDS
            kept = [segment for segment in part.segments if segment["end"] <= cutoff]
            redo = [segment["start"] for segment in part.segments if segment["end"] > cutoff]
            # Resume at the first segment decoded again (or at the cutoff: every window that started before it
            # was whole, so nothing before it is lost); never before the last kept segment's end.
            resume = max(min([cutoff, *redo]), kept[-1]["end"] if kept else 0.0)
        self.segments += [{**segment, "start": round(segment["start"] + self.offset, 3),
                           "end": round(segment["end"] + self.offset, 3)} for segment in kept]
        start = min(len(audio), int(round(resume * SAMPLE_RATE)))
        self.carry, self.offset = audio[start:].copy(), self.offset + start / SAMPLE_RATE  # not a view of audio

    def transcript(self) -> Transcript:
        return Transcript(language=self.language or "", text=" ".join(s["text"] for s in self.segments),
                          segments=self.segments)


def _long_form_features(extractor, audio: np.ndarray) -> dict:
    """One recording's long-form features (``(1, mels, frames)``) and mask: :func:`whisper_log_mel` (flat
    memory), or the extractor itself when it dithers (random noise: no window-by-window equivalent)."""
    import torch

    if getattr(extractor, "dither", 0.0):
        return extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True,
                         padding="longest", truncation=False)
    mel = torch.from_numpy(whisper_log_mel(extractor, audio))[None]
    return {"input_features": mel, "attention_mask": torch.ones(mel.shape[::2], dtype=torch.int32)}


def _stack_features(parts: list) -> dict:
    """Per-recording Whisper features (each ``(1, mels, frames_i)`` with its mask) as one zero-padded batch."""
    import torch

    frames = max(part["input_features"].shape[-1] for part in parts)
    pad = torch.nn.functional.pad
    return {
        "input_features": torch.cat([pad(p["input_features"], (0, frames - p["input_features"].shape[-1])) for p in parts]),
        "attention_mask": torch.cat([pad(p["attention_mask"], (0, frames - p["attention_mask"].shape[-1])) for p in parts]),
    }


class _DeadlineReached:
    """A ``generate`` stopping criterion: true for every row once the current time limit is spent."""

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        done = limits.remaining() == 0.0
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


def _as_16k_mono(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:  # (channels, samples) or (samples, channels): average the shorter axis
        audio = audio.mean(axis=0 if audio.shape[0] < audio.shape[1] else 1)
    if audio.ndim != 1:
        raise ValueError(f"audio must be 1-d (or 2-d channels x samples), got shape {audio.shape}")
    if sample_rate != SAMPLE_RATE:
        from math import gcd

        from scipy.signal import resample_poly

        common = gcd(int(sample_rate), SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // common, int(sample_rate) // common)
    return np.ascontiguousarray(audio, dtype=np.float32)


def _restore_whisper_generation_fields(model, name: str) -> None:
    """Put back Whisper fields (``lang_to_id``, ``task_to_id``...) of ``generation_config.json``.

    transformers rebuilds a generation config marked ``_from_model_config`` from the model config and drops
    the Whisper-only fields that language detection and long-form generation need.
    """
    from transformers.utils import cached_file

    try:
        path = cached_file(name, "generation_config.json", _raise_exceptions_for_missing_entries=False)
    except OSError:
        path = None
    if path is None:
        logger.warning("%s has no generation_config.json: language detection may not work", name)
        return
    with open(path, encoding="utf-8") as handle:
        saved = json.load(handle)
    for key, value in saved.items():
        if not key.startswith("_") and getattr(model.generation_config, key, None) is None:
            setattr(model.generation_config, key, value)


def _install_static_suppression(model) -> None:
    """Suppress Whisper's banned tokens with precomputed masks instead of transformers' logits processors.

    transformers' ``SuppressTokensLogitsProcessor`` and ``SuppressTokensAtBeginLogitsProcessor`` rebuild
    their mask with ``torch.isin(arange(vocab), ids)`` (a sort over the 51,865-token vocabulary) at every
    decoding step, each: on CPU that was the largest single cost of greedy decoding in our profile. The
    always-suppressed ids become a forward hook on the output projection (so they are masked before the
    timestamp rule looks at the logits, as in transformers' order); the begin-suppressed ids, a cached
    processor passed to ``generate``.
    """
    import torch

    generation = model.generation_config
    suppress, begin = generation.suppress_tokens, generation.begin_suppress_tokens
    generation.suppress_tokens = None
    generation.begin_suppress_tokens = None
    if suppress:
        ids = torch.tensor(sorted(set(suppress)), dtype=torch.long)

        def mask_logits(module, args, output):
            return output.index_fill(-1, ids.to(output.device), float("-inf"))

        model.get_output_embeddings().register_forward_hook(mask_logits)
    if begin:
        model._quilt_begin_suppress = _CachedBeginSuppress(begin)


class _CachedBeginSuppress:
    """``SuppressTokensAtBeginLogitsProcessor`` without the per-step mask rebuild (see above)."""

    def __init__(self, ids: Sequence[int]):
        self.ids = list(ids)
        self.begin_index = 0

    def set_begin_index(self, begin_index: int) -> None:
        self.begin_index = begin_index

    def __call__(self, input_ids, scores):
        if input_ids.shape[-1] != self.begin_index:
            return scores
        import torch

        return scores.index_fill(-1, torch.tensor(self.ids, device=scores.device), float("-inf"))


def _quantize_linear_int8(model):
    """Int8 dynamic quantization of every ``nn.Linear`` (weights int8, activations quantized per call).

    The output projection is tied to the token embeddings; it gets its own quantized copy while the
    embedding lookup keeps the float weights.
    """
    import warnings

    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates the quantized tensor API in favour of torchao
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)

"""ASR stage: audio straight from the container, Whisper transcripts with ordered segment timestamps."""

from __future__ import annotations

import json

import numpy as np
import pytest
from factories import Scene, histology_like_image, tone

from quilt_hf.curation.asr import NoAudioError, Transcript, WhisperTranscriber, load_audio
from quilt_hf.errors import UserFacingError


def _check(transcript: Transcript, seconds: float) -> None:
    assert isinstance(transcript, Transcript)
    assert isinstance(transcript.language, str) and transcript.language
    assert isinstance(transcript.text, str)
    previous = 0.0
    for segment in transcript.segments:
        assert set(segment) == {"start", "end", "text"}
        assert 0.0 <= previous <= segment["start"] <= segment["end"] <= seconds + 1e-6
        assert segment["text"] == segment["text"].strip() and segment["text"]
        previous = segment["end"]
    assert transcript.text == " ".join(s["text"] for s in transcript.segments)


def test_load_audio_from_video_is_16k_mono(make_video):
    audio_in = tone(3.0, sample_rate=44100, frequency=300.0)
    path = make_video([Scene(histology_like_image(0), 3.0)], audio=audio_in, sample_rate=44100)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / 16000 - 3.0) < 0.1  # AAC adds a frame of priming at most
    # the tone survives resampling: its dominant frequency is still 300 Hz
    spectrum = np.abs(np.fft.rfft(audio[4000:36000]))
    assert abs(np.argmax(spectrum) * 16000 / 32000 - 300.0) < 2.0
    assert 0.1 < np.abs(audio).max() <= 1.0


def test_load_audio_without_audio_stream_says_so(make_video):
    path = make_video([Scene(histology_like_image(1), 1.0)])
    with pytest.raises(NoAudioError, match="no audio stream"):
        load_audio(path)


def test_load_audio_rejects_non_media(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video")
    with pytest.raises(UserFacingError, match="cannot open"):
        load_audio(path)
    with pytest.raises(UserFacingError, match="does not exist"):
        load_audio(tmp_path / "missing.mp4")


def test_transcribe_shape_with_tiny_whisper(tiny_whisper_dir):
    transcriber = WhisperTranscriber(str(tiny_whisper_dir), dtype="float32")
    assert transcriber.model_name == str(tiny_whisper_dir)
    transcript = transcriber.transcribe(tone(4.0))
    _check(transcript, 4.0)
    assert transcript.language == "en"  # the tiny model knows one language
    assert json.loads(json.dumps(transcript.to_dict()))["language"] == "en"


def test_transcribe_many_long_form_batched_keeps_order(tiny_whisper_dir):
    transcriber = WhisperTranscriber(str(tiny_whisper_dir), batch_size=2, language="en", dtype="float32")
    audios = [tone(35.0, frequency=220.0), tone(2.0), np.zeros(100, np.float32)]
    transcripts = transcriber.transcribe_many(audios)
    assert len(transcripts) == 3
    for transcript, audio in zip(transcripts[:2], audios):
        _check(transcript, len(audio) / 16000)
    assert transcripts[2] == Transcript(language="en", text="", segments=[])  # too short to hear


def test_resampled_input(tiny_whisper_dir):
    transcriber = WhisperTranscriber(str(tiny_whisper_dir), dtype="float32", language="en")
    _check(transcriber.transcribe(tone(2.0, sample_rate=8000), sample_rate=8000), 2.0)


@pytest.mark.slow  # int8 kernels are slow on a 32-wide toy model (fast on the real one)
def test_int8_dynamic_quantization(tiny_whisper_dir):
    import torch

    transcriber = WhisperTranscriber(str(tiny_whisper_dir), dtype="int8", language="en")
    model, _ = transcriber._load()
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
    _check(transcriber.transcribe(tone(2.0)), 2.0)


def test_beam_search_width_reaches_whisper_generate(tiny_whisper_dir, monkeypatch):
    transcriber = WhisperTranscriber(str(tiny_whisper_dir), dtype="float32", language="en", num_beams=3, batch_size=2)
    model, _ = transcriber._load()
    widths = []
    generate = model.generate

    def spy(*args, **kwargs):
        widths.append(kwargs.get("num_beams"))
        return generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    # long-form and short-form decoding; the two short recordings are decoded together (batch of 2)
    audios = [tone(35.0, frequency=220.0), tone(2.0), tone(3.0, frequency=330.0)]
    transcripts = transcriber.transcribe_many(audios)
    for transcript, audio in zip(transcripts, audios):
        _check(transcript, len(audio) / 16000)
    assert widths == [3, 3]
    alone = WhisperTranscriber(str(tiny_whisper_dir), dtype="float32", language="en", num_beams=3)
    assert transcripts[2].text and alone.transcribe(audios[2]) == transcripts[2]  # batched = alone
    with pytest.raises(UserFacingError, match="num_beams"):
        WhisperTranscriber(str(tiny_whisper_dir), num_beams=0)


def test_beam_search_width_reaches_faster_whisper(tmp_path, monkeypatch):
    from types import SimpleNamespace

    (tmp_path / "model.bin").write_bytes(b"")  # a CTranslate2 folder, as far as the transcriber can tell
    transcriber = WhisperTranscriber(str(tmp_path), backend="faster-whisper", language="en", num_beams=4)
    options = {}

    class FasterWhisperModel:  # faster_whisper.WhisperModel's transcribe(): lazy segments and the run's info
        def transcribe(self, audio, **given):
            options.update(given)
            return iter([SimpleNamespace(start=0.0, end=1.5, text=" Hello.")]), SimpleNamespace(language="en")

    monkeypatch.setattr(transcriber, "_load", lambda: (FasterWhisperModel(), None))
    assert transcriber.transcribe(tone(2.0)).text == "Hello."
    assert options["beam_size"] == 4 and options["language"] == "en"


def test_beam_search_width_is_in_the_transcript_cache_key(tmp_path, tiny_whisper_dir):
    import functools

    from quilt_hf.curation.cli import CurateConfig, build_transcriber_factory
    from quilt_hf.curation.pipeline import Curation

    def key(**settings) -> str:
        factory = functools.partial(WhisperTranscriber, model=str(tiny_whisper_dir), **settings)
        return Curation(tmp_path / "cache", factory, histology=None)._asr_key({"sha256": "0" * 64})

    assert key() == key(num_beams=1)  # greedy keeps the transcripts cached before the option existed
    assert key(num_beams=5) not in (key(), key(num_beams=4))
    factory, _ = build_transcriber_factory(CurateConfig(videos="v", output="o", asr_model=str(tiny_whisper_dir),
                                                        asr_beams=5))
    assert factory.keywords["num_beams"] == 5 and factory().num_beams == 5
    with pytest.raises(UserFacingError, match="--asr_beams 0"):  # before any model is built (Ray workers build it)
        build_transcriber_factory(CurateConfig(videos="v", output="o", asr_model=str(tiny_whisper_dir), asr_beams=0))


def test_model_loaded_once_per_process(tiny_whisper_dir):
    first = WhisperTranscriber(str(tiny_whisper_dir), dtype="float32")
    second = WhisperTranscriber(str(tiny_whisper_dir), dtype="float32", language="en")
    assert first._load() is second._load()


def test_default_model_is_the_offline_one(tmp_path, monkeypatch, tiny_whisper_dir):
    import shutil

    shutil.copytree(tiny_whisper_dir, tmp_path / "models" / "whisper-base")
    monkeypatch.setenv("QUILT_HF_HOME", str(tmp_path))
    assert WhisperTranscriber().model_name == str(tmp_path / "models" / "whisper-base")


def test_bad_options_fail_clearly(tiny_whisper_dir):
    with pytest.raises(UserFacingError, match="backend"):
        WhisperTranscriber(str(tiny_whisper_dir), backend="nemo")
    with pytest.raises(UserFacingError, match="dtype"):
        WhisperTranscriber(str(tiny_whisper_dir), dtype="int4")
    with pytest.raises(UserFacingError, match="not a CTranslate2 model"):
        WhisperTranscriber(str(tiny_whisper_dir), backend="faster-whisper")


@pytest.mark.slow
def test_whisper_base_on_demo_video_has_sane_wer():
    from factories import DEMO_CORPUS

    from quilt_hf.metrics import wer
    from quilt_hf.models import offline_model_path

    model = offline_model_path("asr")
    if model is None or not (DEMO_CORPUS / "ground_truth.json").is_file():
        pytest.skip("needs the offline whisper-base (make models) and the demo corpus")
    video = min(json.loads((DEMO_CORPUS / "ground_truth.json").read_text())["videos"], key=lambda v: v["duration"])
    audio = load_audio(DEMO_CORPUS / video["file"])
    transcript = WhisperTranscriber(str(model), dtype="float32").transcribe(audio)
    _check(transcript, len(audio) / 16000)
    assert transcript.language == "en"
    reference = " ".join(sentence["text"] for sentence in video["narration"])
    assert wer(reference, transcript.text) < 0.35
    # segment timings follow the narration: the first words are heard near the first sentence's start
    assert abs(transcript.segments[0]["start"] - video["narration"][0]["start"]) < 1.5
    assert transcript.segments[-1]["end"] > video["narration"][-1]["end"] - 3.0

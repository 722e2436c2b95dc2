"""Memory of long lectures (issue #9 item 10): what ASR holds does not grow with the recording's length."""

from __future__ import annotations

import gc
import os
import weakref

import numpy as np
import pytest

from quilt_hf.curation import asr
from quilt_hf.curation.asr import Transcript, WhisperTranscriber, whisper_log_mel


@pytest.fixture(scope="module")
def feature_extractor(tiny_whisper_dir):
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor.from_pretrained(tiny_whisper_dir)


def speech_like(seconds: float, extra_samples: int = 0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * asr.SAMPLE_RATE) + extra_samples
    envelope = np.abs(np.sin(np.arange(n) / 4000.0))  # loud and quiet stretches
    return (rng.standard_normal(n) * 0.1 * envelope).astype(np.float32)


@pytest.mark.parametrize("seconds, extra", [(30.0, 1), (95.0, 7), (64.0, 159)])
def test_windowed_log_mel_equals_the_feature_extractor(feature_extractor, seconds, extra):
    audio = speech_like(seconds, extra)
    reference = feature_extractor(audio, sampling_rate=16000, return_tensors="np", truncation=False,
                                  padding="longest").input_features[0]
    ours = whisper_log_mel(feature_extractor, audio, window_frames=1000)  # several windows and both edges
    assert ours.shape == reference.shape == (80, len(audio) // 160)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5)


def test_long_form_features_are_never_computed_on_the_whole_recording(tiny_whisper_dir, monkeypatch):
    """The feature extractor's whole-recording STFT takes ~0.7 MB per second of audio; a 5-minute block must
    not go through it at once."""
    from transformers import WhisperFeatureExtractor

    fed: list[int] = []
    original = WhisperFeatureExtractor.__call__

    def recording(self, raw_speech, *args, **kwargs):
        items = raw_speech if isinstance(raw_speech, list) else [raw_speech]
        fed.extend(len(item) for item in items)
        return original(self, raw_speech, *args, **kwargs)

    monkeypatch.setattr(WhisperFeatureExtractor, "__call__", recording)
    transcriber = WhisperTranscriber(str(tiny_whisper_dir), device="cpu", language="en")
    result = transcriber.transcribe(speech_like(100.0))
    assert isinstance(result, Transcript) and result.segments
    assert max(fed, default=0) <= asr.WINDOW_SECONDS * asr.SAMPLE_RATE


@pytest.mark.parametrize("files", [1, 2])
def test_transcribing_a_file_holds_one_block_of_audio_at_a_time(tiny_whisper_dir, monkeypatch, files):
    """While blocks are transcribed, no other block read from a file is still alive (the next one is read
    after it; the previous one is freed once its open end is copied): ``transcribe_file`` and, per file,
    ``transcribe_files`` (several files' current blocks go through the model together)."""
    alive: list[weakref.ref] = []

    def tracked(block: np.ndarray) -> np.ndarray:
        alive.append(weakref.ref(block))
        return block

    def blocks(path, block_seconds):  # like iter_audio: keeps no reference to a block it gave out
        for i in range(6):
            yield tracked(speech_like(block_seconds, seed=i))

    most = []

    def count(audios) -> None:
        gc.collect()
        most.append(sum(ref() is not None and not any(ref() is a for a in audios) for ref in alive))

    class Counting(WhisperTranscriber):
        def transcribe(self, audio, prompt=None):
            count([audio])
            return Transcript("en", "", [{"start": 1.0, "end": 2.0, "text": "a"}])

        def transcribe_many(self, audios, sample_rate=16000, prompt=None, languages=None):
            count(audios)
            return [Transcript("en", "", [{"start": 1.0, "end": 2.0, "text": "a"}]) for _ in audios]

    monkeypatch.setattr(asr, "iter_audio", lambda path, block_seconds: blocks(path, block_seconds))
    transcriber = Counting(str(tiny_whisper_dir), device="cpu", language="en")
    if files == 1:
        results = [transcriber.transcribe_file("unused.mp4", block_seconds=60)]
    else:
        results = transcriber.transcribe_files(["a.mp4", "b.mp4"], block_seconds=60)
    assert len(most) == 6 and [len(r.segments) for r in results] == [6] * files
    assert max(most) == 0, most


def test_audio_blocks_are_freed_as_soon_as_the_reader_lets_go(make_video):
    """``iter_audio`` keeps no reference to a block it yielded (nor to the array it was cut from)."""
    from factories import Scene, histology_like_image

    audio = speech_like(130.0)
    path = make_video([Scene(histology_like_image(1), 130)], fps=1, audio=audio)
    lengths = []
    for block in asr.iter_audio(path, block_seconds=60):
        lengths.append(len(block))
        memory = weakref.ref(block if block.base is None else block.base)
        del block
        gc.collect()
        assert memory() is None
    assert lengths[:2] == [60 * 16000, 60 * 16000] and sum(lengths) >= 129 * 16000


def test_the_default_frame_reader_decodes_only_what_is_asked_and_matches_decord(tmp_path, monkeypatch):
    """decord decodes ahead in a background thread while its caller is busy (its issues #157, #208, #304): the
    default reader decodes in the calling thread, packet by packet as the consumer pulls, and gives decord's
    sequential frames pixel for pixel."""
    import av
    from factories import Scene, histology_like_image, write_video

    from quilt_hf.curation.frames import iter_frame_batches

    scenes = [Scene(histology_like_image(seed, (96, 128)), 3.0, drift=(seed, 0)) for seed in range(4)]
    video = write_video(tmp_path / "v.mp4", scenes, fps=10)
    decoded = {"packets": 0}
    real_decode = av.packet.Packet.decode

    def counting_decode(packet):
        decoded["packets"] += 1
        return real_decode(packet)

    monkeypatch.setattr(av.packet.Packet, "decode", counting_decode)
    batches = iter_frame_batches(video, sample_fps=1.0, batch_size=2)
    times, frames = next(batches)
    assert times.tolist() == [0.0, 1.0]
    # in this thread, up to the second sample plus the decoder's delay (FFmpeg's frame threads, one per core,
    # each hold a frame): far fewer than the video's 120 packets
    assert 11 <= decoded["packets"] <= min(11 + 8 + 2 * (os.cpu_count() or 1), 100)
    rest = list(batches)
    monkeypatch.undo()
    ours = np.stack(frames + [f for _, fs in rest for f in fs])
    ours_times = [*times.tolist(), *(t for ts, _ in rest for t in ts.tolist())]
    reference = list(iter_frame_batches(video, sample_fps=1.0, batch_size=2, reader="sequential"))
    assert ours_times == [t for ts, _ in reference for t in ts.tolist()] == [float(i) for i in range(12)]
    assert np.array_equal(ours, np.stack([f for _, fs in reference for f in fs]))

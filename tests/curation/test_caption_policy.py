"""Caption policy: a pair's caption is medical text only; a chunk whose window has none gives no pair."""

from __future__ import annotations

import json

from _curation_helpers import FakeTranscript
from factories import tone, write_video
from test_curation import lecture

from quilt_hf.curation.asr import load_audio

CHATTER = "Before we go on, please remember to fill in the attendance sheet at the back of the room."
MIXED = "That's it all for today. The nuclei are hyperchromatic. Thank you for watching."
MEDICAL = "Here the koilocytes show clear perinuclear halos."


class ScriptedTranscriber:
    """Logistics talk over the first histology stretch, mixed talk next, medical narration at the end."""

    model_name = "scripted-asr"
    backend = "fake"
    language = "en"

    def transcribe(self, audio):
        seconds = int(len(audio) / 16000)
        segments = []
        for t in range(0, seconds - 1, 2):
            text = CHATTER if t < 10 else MIXED if t < 18 else MEDICAL
            segments.append({"start": float(t), "end": float(t + 2), "text": text})
        return FakeTranscript("en", " ".join(s["text"] for s in segments), segments)


def test_chatter_only_windows_give_no_pair_and_keep_their_chunk_with_a_reason(tmp_path):
    from datasets import load_from_disk

    from quilt_hf.curation.cli import CurateConfig, run_curate
    from quilt_hf.curation.text import build_text_processor

    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "lec.mp4", lecture(), audio=tone(24))
    config = CurateConfig(videos=str(videos), output=str(tmp_path / "out"))
    stats = run_curate(
        config, transcriber=ScriptedTranscriber(), text_processor=build_text_processor("lexicon"),
        load_audio=load_audio,
    )
    chunks = load_from_disk(str(tmp_path / "out" / "chunks")).remove_columns(["image"])
    pairs = load_from_disk(str(tmp_path / "out" / "pairs")).remove_columns(["image"])
    dropped = {c["chunk_id"] for c in chunks if c["drop_reason"]}
    kept = {c["chunk_id"] for c in chunks if not c["drop_reason"]}
    assert dropped and kept, "the scripted lecture has both a chatter-only and a medical window"
    assert {c["drop_reason"] for c in chunks if c["drop_reason"]} == {"no_medical_text"}
    for chunk in chunks:
        if chunk["drop_reason"]:
            assert "hyperchromatic" not in chunk["noisy_text"] and "koilocytes" not in chunk["noisy_text"]
    assert set(pairs["chunk_id"]) == kept and len(pairs) > 0
    for row in pairs:
        caption = row["caption"]
        assert caption == row["medical_text"] and caption
        assert "attendance" not in caption and "watching" not in caption and "today" not in caption
        assert "hyperchromatic" in caption or "koilocytes" in caption
        assert row["corrected_text"] and row["noisy_text"]  # Quilt's other text columns stay
    assert stats["chunks"] == len(dropped) + len(kept) and stats["chunks_with_pairs"] == len(kept)
    assert stats["chunks_dropped"] == {"no_medical_text": len(dropped)}
    written = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert written["chunks_dropped"] == stats["chunks_dropped"]


class PromptRecordingTranscriber:
    """Plain pass: logistics talk. Prompted pass: the same talk with a prompt term put in (a hallucination)."""

    model_name = "prompt-asr"
    backend = "fake"
    language = "en"

    def __init__(self):
        self.prompts = []

    def transcribe(self, audio, prompt=None):
        self.prompts.append(prompt)
        seconds = int(len(audio) / 16000)
        segments = []
        for t in range(0, seconds - 1, 2):
            if t < 10:
                text = "Please fill in the acanthosis sheet." if prompt else "Please fill in the attendance sheet."
            else:
                text = "The epidermis shows acanthosis." if prompt else "The epidermis shows a canthosis."
            segments.append({"start": float(t), "end": float(t + 2), "text": text})
        return FakeTranscript("en", " ".join(s["text"] for s in segments), segments)


def test_guarded_prompt_comes_from_the_title_and_inserted_terms_are_reverted(tmp_path):
    from datasets import load_from_disk

    from quilt_hf.curation.cli import CurateConfig, run_curate
    from quilt_hf.curation.text import build_text_processor

    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "seborrheic_keratosis_review.mp4", lecture(), audio=tone(24))
    transcriber = PromptRecordingTranscriber()
    config = CurateConfig(videos=str(videos), output=str(tmp_path / "out"), asr_prompt="guarded")
    run_curate(config, transcriber=transcriber, text_processor=build_text_processor("lexicon", threshold=1.01),
               load_audio=load_audio)
    prompted = [p for p in transcriber.prompts if p]
    assert len(transcriber.prompts) == 2 and len(prompted) == 1  # one prompted pass, one plain pass
    assert "seborrheic keratosis" in prompted[0] and "acanthosis" in prompted[0]
    chunks = load_from_disk(str(tmp_path / "out" / "chunks")).remove_columns(["image"])
    text = " ".join(chunks["noisy_text"])
    assert "acanthosis sheet" not in text  # inserted over logistics talk: reverted to the plain pass
    assert "shows acanthosis" in text  # heard (the plain pass has "a canthosis"): the prompt's spelling stays


def test_first_pass_prompt_comes_from_what_the_plain_pass_heard(tmp_path):
    from datasets import load_from_disk

    from quilt_hf.curation.cli import CurateConfig, run_curate
    from quilt_hf.curation.text import build_text_processor

    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "rapid_review.mp4", lecture(), audio=tone(24))  # a title that names no topic
    transcriber = PromptRecordingTranscriber()
    config = CurateConfig(videos=str(videos), output=str(tmp_path / "out"), asr_prompt="first_pass")
    run_curate(config, transcriber=transcriber, text_processor=build_text_processor("lexicon", threshold=1.01),
               load_audio=load_audio)
    assert transcriber.prompts[0] is None and len(transcriber.prompts) == 2  # the plain pass first, once
    prompt = transcriber.prompts[1]
    assert prompt and "acanthosis" in prompt and "epidermis" in prompt  # its near-miss and a term it heard
    chunks = load_from_disk(str(tmp_path / "out" / "chunks")).remove_columns(["image"])
    text = " ".join(chunks["noisy_text"])
    assert "acanthosis sheet" not in text and "shows acanthosis" in text  # guarded as in `guarded`

"""Acoustic rescoring: the decision rules with a scripted scorer, and the real Whisper scorer's arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quilt_hf.curation.asr_rescore import AcousticTermRescorer, RescoreOptions, WhisperSegmentScorer
from quilt_hf.curation.text import load_lexicon
from quilt_hf.curation.text.correct import LexiconCorrector, tokenize

SURE, UNSURE = math.log(0.9), math.log(0.1)


class ScriptedScorer:
    """One "token" per word; the heard words listed in ``unsure`` get a low probability; a text's total is
    the sum of the scripted values of the phrases it holds (the stand-in for Whisper's judgement)."""

    def __init__(self, unsure: set[str], bonus: dict[str, float]):
        self.unsure, self.bonus = unsure, bonus
        self.calls: list[str] = []

    def encode(self, audio):
        return None

    def fits(self, text):
        return True

    def own_log_probs(self, states, text):
        return None  # the canonical split is Whisper's own here

    def token_log_probs(self, states, texts, batch_size=32):
        out = []
        for text in texts:
            self.calls.append(text)
            words = tokenize(text)
            values = [UNSURE if w.key in self.unsure else SURE for w in words]
            total = sum(v for phrase, v in self.bonus.items() if phrase in text.lower())
            values.append(total - sum(values))  # the end-of-text token makes the text's total the scripted one
            out.append((values, [(w.start, w.end) for w in words] + [(len(text), len(text))]))
        return out


@pytest.fixture(scope="module")
def lexicon():
    return load_lexicon()


def rescore(lexicon, text, unsure, bonus, **options):
    scorer = ScriptedScorer(unsure, bonus)
    rescorer = AcousticTermRescorer(scorer, lexicon, RescoreOptions(**options))
    segments, report = rescorer.rescore(np.zeros(16000 * 5, dtype=np.float32), [{"start": 0.0, "end": 4.0, "text": text}])
    return segments[0]["text"], report, scorer


def test_a_term_heard_as_english_is_replaced_when_whisper_prefers_it(lexicon):
    text, report, _ = rescore(lexicon, "and the my topic activity is brisk", {"my", "topic"}, {"mitotic activity": 4.0})
    assert text == "and the mitotic activity is brisk"
    assert report.edits == [{"segment": 0, "original": "my topic activity", "replacement": "mitotic activity", "gain": 4.0}]


def test_ordinary_english_is_rescored_only_into_a_term_that_sounds_like_it(lexicon):
    heard = "common causes are exhaustive reagents and thick sections"
    text, report, scorer = rescore(lexicon, heard, {"exhaustive", "reagents"}, {"reactive": 5.0, "margins": 5.0})
    assert text == heard and report.edits == []
    assert not any("reactive" in call or "margins" in call for call in scorer.calls)  # never even offered
    # a word Whisper wrote in hyphenated pieces is not ordinary English: its candidates stay
    text, _, _ = rescore(lexicon, "the brand-yore layer is thick", {"brand", "yore"}, {"granular layer": 5.0})
    assert text == "the granular layer is thick"
    # English words that sound like the term are still offered it ("my topic" above; "legion" here)
    text, _, _ = rescore(lexicon, "the legion is sharply demarcated", {"legion"}, {"lesion": 3.0})
    assert text == "the lesion is sharply demarcated"


def test_a_candidate_whisper_does_not_prefer_by_the_margin_is_left_alone(lexicon):
    text, report, _ = rescore(lexicon, "and the my topic activity is brisk", {"my", "topic"}, {"mitotic activity": 0.5},
                              margin=1.0)
    assert text == "and the my topic activity is brisk" and report.edits == []
    text, _, _ = rescore(lexicon, "and the my topic activity is brisk", {"my", "topic"}, {"mitotic activity": -0.5})
    assert text == "and the my topic activity is brisk"  # the default margin (0): less probable, never taken


def test_words_whisper_was_sure_of_are_never_offered_candidates(lexicon):
    text, report, scorer = rescore(lexicon, "and the my topic activity is brisk", set(), {"mitotic activity": 9.0})
    assert text == "and the my topic activity is brisk"
    assert scorer.calls == ["and the my topic activity is brisk"]  # the original only: nothing to rescore
    assert report.variants_scored == 0


def test_an_unknown_word_is_rescored_even_when_whisper_was_sure(lexicon):
    # "carotidination" is neither English nor a lexicon form: a probable misheard term
    text, _, _ = rescore(lexicon, "there is no obvious carotidination here", set(), {"keratinization": 3.0})
    assert text == "there is no obvious keratinization here"


def test_edits_that_win_alone_but_not_together_keep_only_the_best(lexicon):
    bonus = {"mitotic activity": 4.0, "pleomorphic": 3.0, "pleomorphic and the mitotic": -10.0}
    text, report, _ = rescore(
        lexicon, "the nuclei are pretty more thick and the my topic activity is brisk",
        {"pretty", "more", "thick", "my", "topic"}, bonus,
    )
    assert text == "the nuclei are pretty more thick and the mitotic activity is brisk"
    assert [e["replacement"] for e in report.edits] == ["mitotic activity"]


def test_a_gain_that_is_not_a_number_never_wins(lexicon):
    # a suppressed token in the heard text makes its score -inf and every gain NaN
    text, report, _ = rescore(lexicon, "and the my topic activity is brisk", {"my", "topic"},
                              {"mitotic activity": float("nan")})
    assert text == "and the my topic activity is brisk" and report.edits == []


def test_a_word_already_spelling_a_term_is_kept_by_every_candidate(lexicon):
    corrector = LexiconCorrector(lexicon, max_window=3)
    text = "tumor cells show pleomorphic nucleii"  # "pleomorphic" spells a term; "nucleii" is misheard
    proposals = [(text[a:b], surface.lower()) for a, b, surface, _ in corrector.alternatives(text)]
    assert ("nucleii", "nucleoli") in proposals
    for window, surface in proposals:
        if "pleomorphic" in window.split():
            assert "pleomorphic" in surface.split(), (window, surface)  # never "hyperchromatic nucleii"


def test_candidates_never_drop_or_change_a_word_already_spelling_a_term(lexicon):
    corrector = LexiconCorrector(lexicon, max_window=3)
    text = "overstained nuclei can mimic hyperchromasia"
    for start, end, surface, _ in corrector.alternatives(text):
        if "hyperchromasia" in text[start:end]:
            assert "hyperchromasia" in surface.lower(), (text[start:end], surface)


def test_whisper_scorer_log_probs_match_the_models_own_loss(tiny_whisper_dir):
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir).eval()
    processor = WhisperProcessor.from_pretrained(tiny_whisper_dir)
    scorer = WhisperSegmentScorer(model, processor, "en")
    assert scorer.prefix == [50258, 50259, 50359, 50363]  # <|startoftranscript|><|en|><|transcribe|><|notimestamps|>
    assert WhisperSegmentScorer(model, processor, "English").prefix == scorer.prefix  # a language name is mapped
    rng = np.random.default_rng(0)
    states = scorer.encode(rng.standard_normal(16000 * 3).astype(np.float32) * 0.1)
    texts = ["the nuclei are pleomorphic", "mitotic activity is brisk, and the stroma is loose"]
    results = scorer.token_log_probs(states, texts, batch_size=2)  # padded together in one batch
    for text, (values, spans) in zip(texts, results):
        ids = processor.tokenizer(" " + text, add_special_tokens=False).input_ids + [processor.tokenizer.eos_token_id]
        labels = torch.tensor([scorer.prefix[1:] + ids])
        decoder_input = torch.tensor([scorer.prefix + ids[:-1]])
        with torch.no_grad():
            logits = model(encoder_outputs=(states,), decoder_input_ids=decoder_input).logits[0]
        expected = torch.log_softmax(logits, -1)[torch.arange(len(labels[0])), labels[0]][len(scorer.prefix) - 1 :]
        assert len(values) == len(ids) == len(spans)
        assert np.allclose(values, expected.tolist(), atol=1e-4)
        # every text token's span lies in the text and the spans cover its words in order
        assert all(0 <= a <= b <= len(text) for a, b in spans)
        assert text[spans[0][0] : spans[0][1]].strip() == text.split()[0][: spans[0][1] - spans[0][0]].strip()


class TinyWhisperTranscriber:
    """Scripted segments (a misheard term in each), with a real tiny Whisper behind ``_load`` for the rescorer."""

    backend = "transformers"
    language = "en"

    def __init__(self, folder):
        self.model_name = str(folder)
        self.folder = folder

    def _load(self):
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        return WhisperForConditionalGeneration.from_pretrained(self.folder).eval(), WhisperProcessor.from_pretrained(self.folder)

    def transcribe(self, audio, prompt=None):
        from _curation_helpers import FakeTranscript

        seconds = int(len(audio) / 16000)
        segments = [{"start": float(t), "end": float(t + 2), "text": "The epidermis shows my topic activity."}
                    for t in range(0, seconds - 1, 2)]
        return FakeTranscript("en", " ".join(s["text"] for s in segments), segments)


def _curate(tmp_path, transcriber, **config):
    from factories import tone, write_video
    from test_curation import lecture

    from quilt_hf.curation.asr import load_audio
    from quilt_hf.curation.cli import CurateConfig, run_curate
    from quilt_hf.curation.text import build_text_processor

    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "skin_review.mp4", lecture(), audio=tone(24))
    settings = CurateConfig(videos=str(videos), output=str(tmp_path / "out"), **config)
    return run_curate(settings, transcriber=transcriber, text_processor=build_text_processor("lexicon"),
                      load_audio=load_audio)


def test_curate_with_asr_rescore_rescores_and_caches_the_transcript(tmp_path, tiny_whisper_dir):
    import json

    _curate(tmp_path, TinyWhisperTranscriber(tiny_whisper_dir), asr_rescore=True)
    cached = [json.loads(p.read_text()) for p in (tmp_path / "out" / "cache" / "asr").glob("*.json")]
    rescored = [c for c in cached if "rescore" in c]
    assert len(cached) == 2 and len(rescored) == 1  # the recognition pass, then its rescored copy
    report = rescored[0]["rescore"]
    plain = next(c for c in cached if "rescore" not in c)
    assert report["segments_scored"] == len(rescored[0]["segments"]) > 0
    assert report["variants_scored"] > 0  # "my topic" is unsure for a random model: candidates were scored
    edited = {e["segment"] for e in report["edits"]}
    for index, (before, after) in enumerate(zip(plain["segments"], rescored[0]["segments"])):
        if index not in edited:  # a segment without an edit is left exactly as recognised
            assert after == before
    for edit in report["edits"]:
        assert edit["gain"] > 0.0 and edit["replacement"] in rescored[0]["segments"][edit["segment"]]["text"]


def test_a_rescoring_failure_keeps_the_recognised_transcript(tmp_path, caplog):
    class BrokenModel(TinyWhisperTranscriber):
        def _load(self):
            raise RuntimeError("weights missing")

    with caplog.at_level("WARNING"):
        stats = _curate(tmp_path, BrokenModel(tmp_path), asr_rescore=True)
    assert stats["videos_kept"] == 1 and stats["pairs"] > 0  # the video is not dropped
    assert "kept as recognised" in caplog.text


def test_asr_rescore_with_a_backend_that_cannot_score_fails_the_run(tmp_path):
    from _curation_helpers import FakeTranscript

    from quilt_hf.errors import UserFacingError

    class CTranslate2Like:
        backend, model_name, language = "faster-whisper", "ct2", "en"

        def transcribe(self, audio, prompt=None):
            return FakeTranscript("en", "The epidermis.", [{"start": 0.0, "end": 2.0, "text": "The epidermis."}])

    with pytest.raises(UserFacingError, match="transformers"):
        _curate(tmp_path, CTranslate2Like(), asr_rescore=True)


def test_candidates_never_swallow_a_word_the_term_does_not_need(lexicon):
    corrector = LexiconCorrector(lexicon, max_window=3)
    text = "overstained nuclei can mimic hyperchromasia"
    spans = {(text[a:b], surface.lower()) for a, b, surface, _ in corrector.alternatives(text)}
    assert ("mimic hyperchromasia", "hyperchromasia") not in spans


def test_candidates_keep_the_heard_inflection(lexicon):
    corrector = LexiconCorrector(lexicon, max_window=3)
    text = "we count the metatic figures here"
    surfaces = {(text[a:b], surface.lower()) for a, b, surface, _ in corrector.alternatives(text)}
    assert ("metatic figures", "mitotic figures") in surfaces
    assert ("metatic figures", "mitotic figure") not in surfaces


def test_quilt_curate_refuses_asr_rescore_with_faster_whisper_before_any_work(tmp_path):
    from quilt_hf.curation.cli import CurateConfig, run_curate
    from quilt_hf.errors import UserFacingError

    config = CurateConfig(videos=str(tmp_path / "none"), output=str(tmp_path / "out"), asr_backend="faster-whisper",
                          asr_rescore=True)
    with pytest.raises(UserFacingError, match="asr_backend transformers"):
        run_curate(config)
    assert not (tmp_path / "out").exists()


def test_whisper_scorer_own_split_spells_the_text_and_is_what_the_model_prefers(tiny_whisper_dir):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir).eval()
    processor = WhisperProcessor.from_pretrained(tiny_whisper_dir)
    scorer = WhisperSegmentScorer(model, processor, "en")
    states = scorer.encode(np.random.default_rng(1).standard_normal(16000 * 2).astype(np.float32) * 0.1)
    text = "the plymorphic nuclei"
    values, spans = scorer.own_log_probs(states, text)
    pieces = [text[a:b] for a, b in spans[:-1]]
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")  # the pieces spell the text, in order
    assert all(math.isfinite(v) for v in values) and len(values) == len(spans)
    # each step took the likeliest token that spells the next bytes: never less probable than the canonical
    # split's first differing token
    (canonical, _), = scorer.token_log_probs(states, [text])
    assert values[0] >= canonical[0] - 1e-5


def test_whisper_scorer_projects_the_audio_for_cross_attention_once_per_clip(tiny_whisper_dir):
    """Every variant of a segment attends to the same audio: its cross-attention keys and values are computed
    once per clip and shared by every batch (projecting the encoder frames per row was most of the cost)."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir).eval()
    scorer = WhisperSegmentScorer(model, WhisperProcessor.from_pretrained(tiny_whisper_dir), "en")
    rows = []
    model.model.decoder.layers[0].encoder_attn.k_proj.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    states = scorer.encode(np.random.default_rng(2).standard_normal(16000 * 2).astype(np.float32) * 0.1)
    texts = ["the nuclei are pleomorphic", "mitotic activity is brisk", "the stroma is loose", "no necrosis"]
    first = scorer.token_log_probs(states, texts, batch_size=2)  # two batches of two
    assert rows == [1]  # one projection of one row, for the clip
    import torch

    (alone, _), = scorer.token_log_probs(states, texts[:1])
    assert np.allclose(alone, first[0][0], atol=1e-5)
    ids = scorer.processor.tokenizer(" " + texts[0], add_special_tokens=False).input_ids + [scorer.eos]
    with torch.no_grad():  # the model's own forward, no cache at all
        logits = model(encoder_outputs=(states,), decoder_input_ids=torch.tensor([scorer.prefix + ids[:-1]])).logits[0]
    plain = torch.log_softmax(logits, -1)[torch.arange(len(scorer.prefix) - 1, len(scorer.prefix) - 1 + len(ids)), ids]
    assert np.allclose(alone, plain.tolist(), atol=1e-5)
    assert rows == [1, 1]  # the memo served the second call; the plain forward projected once
    scorer.release()  # the rescorer does so after each video
    scorer.token_log_probs(states, texts[:1])
    assert rows == [1, 1, 1]
    other = scorer.encode(np.random.default_rng(3).standard_normal(16000 * 2).astype(np.float32) * 0.1)
    scorer.token_log_probs(other, texts[:1])
    assert rows == [1, 1, 1, 1]  # a new clip: projected again

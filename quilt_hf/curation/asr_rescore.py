"""Acoustic rescoring of misheard medical terms: Whisper itself judges the lexicon's candidates on the audio.

Greedy decoding commits to the likeliest next token, and a rare term's first piece is rarely the likeliest:
Whisper writes "my topic activity" where the speaker said "mitotic activity", although, given the audio, it
finds the sentence with "mitotic activity" far more probable once it is offered whole. So, per segment:

1. **Where.** The segment's text is scored on its own audio (the segment's time span plus a margin, one
   encoder pass): words holding a token Whisper gave less than ``unsure_prob``, and words that are neither
   ordinary English nor a lexicon term, are the places a term may have been misheard.
2. **What.** Around those words, the lexicon's nearest terms by spelling and by sound
   (:meth:`LexiconCorrector.alternatives`: single words, merges and splits of neighbouring words). Words that
   are all ordinary English get only a term that sounds like them (:func:`sounds_alike`): Whisper's doubt and
   its preference are not enough to turn "exhausted reagents" heard as "exhaustive reagents" into "reactive
   margins" (the corrector's own rule for English words). Heard words that hold a hyphen ("brand-yore",
   Whisper spelling by syllables what it did not know) are not ordinary English.
3. **Which.** Every variant of the segment (one candidate in place) is scored in the same way, batched: the
   teacher-forced log-probability of the whole segment text given the audio. A candidate replaces the heard
   words only when Whisper finds the variant more probable than what it wrote (its gain, in nats, above
   ``margin``); overlapping candidates: the larger gain wins; several edits in one segment are kept together
   only if the segment with all of them still beats the original.

The audio decides, not the lexicon: a word that was heard right usually keeps the higher score. Transformers
backend only (the decoder is run directly).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from quilt_hf.curation.text.correct import LexiconCorrector, match_case, sounds_alike, tokenize
from quilt_hf.curation.text.lexicon import Lexicon

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WINDOW_SECONDS = 30.0


@dataclass
class RescoreOptions:
    """Settings of the acoustic rescorer (``quilt curate --asr_rescore``).

    Args:
        unsure_prob (`float`): a word holding a token Whisper gave less than this probability is rescored.
        margin (`float`): nats a variant must gain over the heard text to replace it (0: Whisper finds it
            more probable; chosen on the demo corpus, where 0, 0.5 and 1 all gave no false correction and 0
            the highest recall).
        candidates (`int`): lexicon candidates per word window.
        pad_seconds (`float`): audio kept around a segment's timestamps (they are approximate).
        batch_size (`int`): variants scored per decoder pass.
    """

    unsure_prob: float = 0.5
    margin: float = 0.0
    candidates: int = 3
    pad_seconds: float = 0.5
    batch_size: int = 8

    def cache_key(self) -> list:
        return ["rescore-v5", self.unsure_prob, self.margin, self.candidates, self.pad_seconds]


@dataclass
class RescoreReport:
    """What the rescorer did to one transcript."""

    segments_scored: int = 0
    variants_scored: int = 0
    edits: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"segments_scored": self.segments_scored, "variants_scored": self.variants_scored, "edits": self.edits}


class WhisperSegmentScorer:
    """Teacher-forced log-probabilities of texts given an audio clip, from a transformers Whisper model.

    Args:
        model (`WhisperForConditionalGeneration`): the model (any device and dtype).
        processor (`WhisperProcessor`): its processor (feature extractor and tokenizer).
        language (`str`): the language token's code ("en").
    """

    def __init__(self, model, processor, language: str = "en"):
        self.model = model
        self.processor = processor
        tokenizer = processor.tokenizer
        prefix = ["<|startoftranscript|>", f"<|{language_code(language)}|>", "<|transcribe|>", "<|notimestamps|>"]
        self.prefix = tokenizer.convert_tokens_to_ids(prefix)
        if any(i is None or i == tokenizer.unk_token_id for i in self.prefix):
            raise ValueError(f"the Whisper tokenizer lacks one of {prefix}")
        self.eos = tokenizer.eos_token_id
        self._token_bytes: dict[bytes, int] | None = None
        self._longest_token = 0
        # transformers 5 names the decoder cache argument `cache`, 4.x `past_key_values`
        self._cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.max_positions = int(getattr(model.config, "max_target_positions", 448))
        self._cross = None  # (encoder states, per-layer cross-attention keys and values) of the last clip

    def encode(self, audio: np.ndarray):
        """Encoder states of one clip of at most 30 s (16 kHz mono)."""
        import torch

        features = self.processor.feature_extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        parameter = next(self.model.parameters())
        with torch.inference_mode():
            return self.model.model.encoder(features.to(parameter.device, parameter.dtype)).last_hidden_state

    def token_log_probs(self, states, texts: Sequence[str], batch_size: int = 32) -> list[tuple[list[float], list[tuple[int, int]]]]:
        """Per text: the log-probability of each of its tokens (end of text included, last) and each token's
        character span in the text."""
        import torch

        tokenizer = self.processor.tokenizer
        out = []
        for begin in range(0, len(texts), batch_size):
            chunk = list(texts[begin : begin + batch_size])
            encoded = [tokenizer(" " + t.strip(), add_special_tokens=False, return_offsets_mapping=True) for t in chunk]
            ids = [list(e.input_ids) + [self.eos] for e in encoded]
            width = max(len(i) for i in ids)
            inputs = torch.full((len(ids), len(self.prefix) + width - 1), self.eos, dtype=torch.long)
            for row, seq in enumerate(ids):
                inputs[row, : len(self.prefix) + len(seq) - 1] = torch.tensor(self.prefix + seq[:-1])
            device = states.device
            with torch.inference_mode():
                shared = self._cross_attention_cache(states, len(ids))
                logits = self.model(
                    encoder_outputs=(states.expand(len(ids), -1, -1),), decoder_input_ids=inputs.to(device),
                    **({"use_cache": True, self._cache_arg: shared} if shared is not None else {}),
                ).logits
            log_probs = torch.log_softmax(logits.float(), dim=-1)
            for row, (seq, enc) in enumerate(zip(ids, encoded)):
                positions = torch.arange(len(self.prefix) - 1, len(self.prefix) - 1 + len(seq), device=device)
                values = log_probs[row, positions, torch.tensor(seq, device=device)].tolist()
                # offsets are in " " + text: one character to the left of the text's own
                spans = [(max(0, a - 1), max(0, b - 1)) for a, b in enc.offset_mapping] + [(len(chunk[row].strip()),) * 2]
                out.append((values, spans))
        return out

    def _cross_attention_cache(self, states, batch: int):
        """A decoder cache holding the cross-attention keys and values of ``states`` for ``batch`` rows, computed
        once per clip: every variant of a segment attends to the same audio, and projecting the 1,500 encoder
        frames per row and per layer was most of a scoring pass's cost."""
        import torch
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        if self._cross is None or self._cross[0] is not states:
            cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            with torch.inference_mode():
                first = torch.tensor([self.prefix[:1]], device=states.device)
                out = self.model(encoder_outputs=(states,), decoder_input_ids=first, use_cache=True,
                                 **{self._cache_arg: cache})
            filled = (getattr(out, "cache", None) or out.past_key_values).cross_attention_cache
            if not hasattr(filled, "layers"):  # transformers before the per-layer cache API: no sharing
                return None
            self._cross = (states, [(layer.keys, layer.values) for layer in filled.layers])
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        for index, (keys, values) in enumerate(self._cross[1]):
            cache.cross_attention_cache.update(keys[:, :, :0], values[:, :, :0], index)  # the layer, no copy
            layer = cache.cross_attention_cache.layers[index]
            layer.keys, layer.values = keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1)
            cache.is_updated[index] = True  # the decoder reads the cross-attention keys and values from the cache
        return cache

    def release(self) -> None:
        """Forget the last clip's cross-attention keys and values (their memory: tens of MB, more on a GPU)."""
        self._cross = None

    def fits(self, text: str, room: int = 8) -> bool:
        """Whether ``text`` and the prefix fit in the decoder's context, with ``room`` tokens to spare for a
        candidate longer than the words it replaces."""
        count = len(self.processor.tokenizer(" " + text.strip(), add_special_tokens=False).input_ids)
        return len(self.prefix) + count + 1 + room <= self.max_positions

    def _text_tokens(self) -> dict[bytes, int]:
        """Every text token's bytes -> its id (the byte-level BPE alphabet decoded)."""
        if self._token_bytes is None:
            from quilt_hf.offline import byte_decoder

            decode = byte_decoder()
            vocab = self.processor.tokenizer.get_vocab()
            self._token_bytes = {}
            for token, index in vocab.items():
                if index < self.eos and all(c in decode for c in token):
                    self._token_bytes.setdefault(bytes(decode[c] for c in token), index)
            self._longest_token = max(len(piece) for piece in self._token_bytes)
        return self._token_bytes

    def own_log_probs(self, states, text: str) -> tuple[list[float], list[tuple[int, int]]] | None:
        """The text's token log-probabilities when Whisper splits it as it would write it: a greedy decode
        constrained to the text (at each step, the likeliest token that spells the next bytes of the text).
        A misheard word is often written with unusual pieces; scoring it only in the canonical BPE split would
        make what Whisper wrote look less probable than it was. None when the text cannot be spelled."""
        import torch
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        tokens = self._text_tokens()
        longest = self._longest_token
        target = (" " + text.strip()).encode("utf-8")
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        inputs = torch.tensor([self.prefix], device=states.device)
        values: list[float] = []
        spans: list[tuple[int, int]] = []
        position = 0
        with torch.inference_mode():
            while True:
                if len(self.prefix) + len(values) >= self.max_positions:
                    return None
                out = self.model(encoder_outputs=(states,), decoder_input_ids=inputs, use_cache=True, **{self._cache_arg: cache})
                cache = getattr(out, "cache", None) or out.past_key_values
                log_probs = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
                if position == len(target):
                    values.append(float(log_probs[self.eos]))
                    spans.append((len(text.strip()),) * 2)
                    return values, spans
                options = [(tokens[piece], len(piece)) for piece in
                           (target[position : position + n] for n in range(1, min(longest, len(target) - position) + 1))
                           if piece in tokens]
                if not options:
                    return None
                best, size = max(options, key=lambda option: float(log_probs[option[0]]))
                start = len(target[:position].decode("utf-8", errors="ignore")) - 1
                values.append(float(log_probs[best]))
                position += size
                spans.append((max(0, start), len(target[:position].decode("utf-8", errors="ignore")) - 1))
                inputs = torch.tensor([[best]], device=states.device)


def language_code(language: str | None) -> str:
    """Whisper's language token code of ``language`` ("en", "english", "English" -> "en")."""
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    key = (language or "en").strip("<|>").lower()
    return TO_LANGUAGE_CODE.get(key, key)


class AcousticTermRescorer:
    """Replace misheard medical terms in a transcript when Whisper, given the audio, prefers the lexicon's
    term (see the module docstring).

    Args:
        scorer (`WhisperSegmentScorer`): scores texts on audio.
        lexicon (`Lexicon`): the terms to propose.
        options (`RescoreOptions`, *optional*): thresholds.
    """

    def __init__(self, scorer: WhisperSegmentScorer, lexicon: Lexicon, options: RescoreOptions | None = None):
        self.scorer = scorer
        self.lexicon = lexicon
        self.options = options or RescoreOptions()
        self.corrector = LexiconCorrector(lexicon, max_window=3)

    def _unknown(self, word: str) -> bool:
        key = word.lower()
        return key.isalpha() and len(key) >= 4 and key not in self.lexicon.common_words and key not in self.lexicon.forms

    def _ordinary_english(self, heard: str) -> bool:
        """Whether every heard word is an ordinary English word written whole (not in hyphenated pieces)."""
        words = heard.split()
        return bool(words) and all(
            "-" not in word and all(key in self.lexicon.common_words for key in (t.key for t in tokenize(word)))
            for word in words
        )

    def rescore(self, audio: np.ndarray, segments: Sequence[dict]) -> tuple[list[dict], RescoreReport]:
        """Rescored copies of ``segments`` (``start``, ``end``, ``text``) of ``audio`` (16 kHz mono)."""
        report = RescoreReport()
        out = []
        try:
            for index, segment in enumerate(segments):
                text = (segment.get("text") or "").strip()
                new = dict(segment)
                if text:
                    new["text"] = self._segment(audio, segment, text, index, report)
                out.append(new)
        finally:
            if hasattr(self.scorer, "release"):
                self.scorer.release()
        return out, report

    def _segment(self, audio: np.ndarray, segment: dict, text: str, index: int, report: RescoreReport) -> str:
        o = self.options
        start = max(0.0, float(segment["start"]) - o.pad_seconds)
        end = min(len(audio) / SAMPLE_RATE, float(segment["end"]) + o.pad_seconds, start + WINDOW_SECONDS)
        clip = audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
        if len(clip) < SAMPLE_RATE // 10:
            return text
        if not self.scorer.fits(text):  # longer than Whisper's decoder context (e.g. a repetition loop)
            return text
        words = tokenize(text)
        unknown = {k for k, w in enumerate(words) if self._unknown(w.text)}
        states = self.scorer.encode(clip)
        report.segments_scored += 1
        (values, spans), = self.scorer.token_log_probs(states, [text], o.batch_size)
        own = self.scorer.own_log_probs(states, text)
        if own is not None and sum(own[0]) > sum(values):  # what Whisper wrote, split as it wrote it
            values, spans = own
        original = sum(values)
        if not math.isfinite(original):  # a suppressed token in the heard text: nothing to compare with
            return text
        floor = math.log(o.unsure_prob)
        unsure = set(unknown)
        for value, (a, b) in zip(values[:-1], spans[:-1]):
            if value < floor:
                unsure.update(k for k, w in enumerate(words) if w.start < b and a < w.end)
        if not unsure:
            return text
        proposals = [
            (a, b, surface, similarity)
            for a, b, surface, similarity in self.corrector.alternatives(text, focus=unsure.__contains__, limit=o.candidates)
            if not self._ordinary_english(text[a:b]) or sounds_alike(text[a:b], surface)
        ]
        if not proposals:
            return text
        variants = [text[:a] + match_case(surface, text[a:b]) + text[b:] for a, b, surface, _ in proposals]
        scores = [sum(v) for v, _ in self.scorer.token_log_probs(states, variants, o.batch_size)]
        report.variants_scored += len(variants)
        ranked = sorted(
            ((score - original, a, b, surface) for score, (a, b, surface, _) in zip(scores, proposals)),
            key=lambda item: -item[0],
        )
        chosen: list[tuple[float, int, int, str]] = []
        for gain, a, b, surface in ranked:
            if not gain > o.margin:  # NaN never wins
                break
            if all(b <= c or d <= a for _, c, d, _ in chosen):
                chosen.append((gain, a, b, surface))
        if not chosen:
            return text
        result = _apply(text, chosen)
        if len(chosen) > 1:  # each edit won alone; together they must still beat what was heard
            (together, _), = self.scorer.token_log_probs(states, [result], o.batch_size)
            if not sum(together) - original > o.margin:
                chosen = chosen[:1]
                result = _apply(text, chosen)
        for gain, a, b, surface in sorted(chosen, key=lambda c: c[1]):
            report.edits.append({"segment": index, "original": text[a:b], "replacement": match_case(surface, text[a:b]),
                                 "gain": round(gain, 3)})
        return result


def _apply(text: str, chosen: list[tuple[float, int, int, str]]) -> str:
    pieces, cursor = [], 0
    for _, a, b, surface in sorted(chosen, key=lambda c: c[1]):
        pieces += [text[cursor:a], match_case(surface, text[a:b])]
        cursor = b
    return "".join(pieces + [text[cursor:]])

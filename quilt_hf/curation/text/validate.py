"""Parse and validate an LLM answer against the text-stage schema; nothing malformed gets through.

An answer is accepted only when it is one JSON object with the keys of ``prompts.ANSWER_KEYS`` and:

- ``corrected_text`` is a string close to the noisy text (word-level similarity >= ``min_similarity`` and
  length within ``max_length_ratio``): a model that rewrites, summarises, translates or obeys an instruction
  hidden in the narration fails here;
- ``medical_text`` / ``roi_text`` are lists of strings (or one string), each found in ``corrected_text``;
- ``pathology`` holds at most 3 labels of ``PATHOLOGY_LABELS`` (case-insensitive, mapped to the exact spelling);
- ``magnification`` is -1, 0, 1 or 2.

``InvalidAnswer`` carries the reason; the caller falls back to the rule result and counts the reason.
"""

from __future__ import annotations

import difflib
import json
import re

from quilt_hf.curation.text.lexicon import normalize
from quilt_hf.curation.text.prompts import ANSWER_KEYS
from quilt_hf.schema import MAGNIFICATION_CLASSES, MAGNIFICATION_UNKNOWN, PATHOLOGY_LABELS

_LABELS = {label.lower(): label for label in PATHOLOGY_LABELS}
_VALID_MAGNIFICATIONS = {MAGNIFICATION_UNKNOWN, *MAGNIFICATION_CLASSES}


class InvalidAnswer(ValueError):
    """An LLM answer that does not validate; ``reason`` is a short stable key (counted in stats)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def parse_json_object(answer: str) -> dict:
    """The first JSON object in ``answer`` (code fences and text around it are ignored)."""
    if not isinstance(answer, str) or not answer.strip():
        raise InvalidAnswer("empty")
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", answer):
        try:
            value, _ = decoder.raw_decode(answer[match.start() :])
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    raise InvalidAnswer("not_json", answer[:80])


def _sentences(value, corrected_key: str, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value] if value.strip() else []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidAnswer("bad_type", name)
    out = []
    for sentence in value:
        key = normalize(sentence)
        if not key:
            continue
        if key not in corrected_key:
            raise InvalidAnswer("sentence_not_in_text", name)
        out.append(sentence.strip())
    return out


def validate_answer(
    answer: str | dict,
    noisy_text: str,
    *,
    min_similarity: float = 0.75,
    max_length_ratio: float = 1.3,
) -> dict:
    """Validate one answer; returns a clean dict with the ``ANSWER_KEYS`` or raises `InvalidAnswer`.

    Args:
        answer (`str` or `dict`): the raw model output or an already-decoded object.
        noisy_text (`str`): the transcript the model was given.
        min_similarity (`float`): lowest word-level similarity between noisy and corrected text.
        max_length_ratio (`float`): highest word-count ratio either way.
    """
    obj = parse_json_object(answer) if isinstance(answer, str) else answer
    if not isinstance(obj, dict):
        raise InvalidAnswer("not_object")
    missing = [k for k in ANSWER_KEYS if k not in obj]
    if missing:
        raise InvalidAnswer("missing_keys", ",".join(missing))
    corrected = obj["corrected_text"]
    if not isinstance(corrected, str):
        raise InvalidAnswer("bad_type", "corrected_text")
    noisy_words, new_words = normalize(noisy_text).split(), normalize(corrected).split()
    if noisy_words or new_words:
        if not noisy_words or not new_words:
            raise InvalidAnswer("text_changed")
        ratio = len(new_words) / len(noisy_words)
        if ratio > max_length_ratio or ratio < 1 / max_length_ratio:
            raise InvalidAnswer("text_changed", f"length ratio {ratio:.2f}")
        similarity = difflib.SequenceMatcher(None, noisy_words, new_words, autojunk=False).ratio()
        if similarity < min_similarity:
            raise InvalidAnswer("text_changed", f"similarity {similarity:.2f}")
    corrected_key = normalize(corrected)
    medical = _sentences(obj["medical_text"], corrected_key, "medical_text")
    roi = _sentences(obj["roi_text"], corrected_key, "roi_text")
    labels = obj["pathology"]
    if isinstance(labels, str):
        labels = [labels] if labels.strip() else []
    if not isinstance(labels, list) or not all(isinstance(v, str) for v in labels):
        raise InvalidAnswer("bad_type", "pathology")
    pathology = []
    for label in labels:
        exact = _LABELS.get(label.strip().lower())
        if exact is None:
            raise InvalidAnswer("unknown_label", label[:40])
        if exact not in pathology:
            pathology.append(exact)
    if len(pathology) > 3:
        raise InvalidAnswer("too_many_labels")
    magnification = obj["magnification"]
    if isinstance(magnification, str) and re.fullmatch(r"-?\d", magnification.strip()):
        magnification = int(magnification)
    if (
        isinstance(magnification, bool)
        or not isinstance(magnification, int)
        or magnification not in _VALID_MAGNIFICATIONS
    ):
        raise InvalidAnswer("bad_magnification", str(magnification)[:20])
    return {
        "corrected_text": corrected.strip() if noisy_text.strip() else noisy_text,
        "medical_text": medical,
        "roi_text": roi,
        "pathology": pathology,
        "magnification": int(magnification),
    }

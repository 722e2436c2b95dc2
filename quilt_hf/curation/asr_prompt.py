"""Domain biasing of Whisper: the lexicon terms of a video's topic, as a recognition prompt, and the guard
against what prompting is known to cause.

Whisper reads a text prompt as the transcript that came before the audio; spelled-out terms there make it
write "pleomorphism" where it would hear "plier morphism". Per video:

1. **Topic.** The lexicon's concepts found in the title and metadata (counted twice), and in a first (plain)
   pass when there is one, vote Quilt's sub-pathology labels (the rule extractor's vote).
2. **Terms.** In order, until the prompt budget is spent: the terms already spelled in the topic text; the
   terms the lexicon corrector proposes for near-misses in the first pass (what was probably said); the terms
   the first pass heard right; then the
   curated terms of the topic's labels and the generic histology features, stains and cells, harder words
   first (words outside ordinary English), shorter terms before longer ones. ICD-10 diagnosis titles
   ("Malignant neoplasm of ...") are written, not spoken, and are left out.
3. **Budget.** Whisper's prompt holds at most 223 tokens (half its text context); the default budget of
   ``max_tokens=120`` keeps well below it.

The guard (``guard_prompted``) compares the prompted pass with the plain one segment by segment: a prompted
segment is replaced by the plain text of the same time span when it is stuck in a repetition loop (its text
compresses more than 2.4 times, Whisper's own ``compression_ratio_threshold``), when it repeats a run of the
prompt (prompt echo),
or when it holds a prompt term that the plain pass has nothing like (no spelling or sound within reach), i.e.
a term inserted over silence or ordinary talk. Both are counted.
"""

from __future__ import annotations

import functools
import logging
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from quilt_hf.curation.text.correct import LexiconCorrector, _phonetic
from quilt_hf.curation.text.extract import RuleExtractor
from quilt_hf.curation.text.lexicon import Lexicon, normalize

logger = logging.getLogger(__name__)

#: Whisper's prompt limit in tokens (``max_target_positions // 2 - 1``).
WHISPER_PROMPT_LIMIT = 223
_PREFERRED_KINDS = {"feature": 0, "cell": 1, "diagnosis": 2, "stain": 3, "marker": 4, "grading": 5, "site": 6}


def estimate_tokens(text: str) -> int:
    """A cautious token count without a tokenizer: medical words split into short BPE pieces (~3 chars)."""
    return math.ceil(len(text) / 3)


@dataclass
class PromptSelection:
    """The chosen prompt and why each term is in it."""

    prompt: str
    terms: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # term -> topic | first_pass | near_miss | label


def _spoken(concept) -> bool:
    return not concept.source.upper().startswith("ICD")


def select_prompt_terms(
    lexicon: Lexicon,
    topic_text: str,
    first_pass: str = "",
    *,
    max_tokens: int = 120,
    count_tokens: Callable[[str], int] = estimate_tokens,
    corrector: LexiconCorrector | None = None,
) -> PromptSelection:
    """Choose a video's Whisper prompt.

    Args:
        lexicon (`Lexicon`): the terms to choose from.
        topic_text (`str`): the video's title and metadata (description, tags).
        first_pass (`str`, *optional*): a plain transcript of the video, when one was made.
        max_tokens (`int`, *optional*, defaults to 120): the prompt budget (at most 223, Whisper's limit).
        count_tokens (`Callable[[str], int]`, *optional*): token counter (the Whisper tokenizer's length);
            defaults to a cautious estimate.
        corrector (`LexiconCorrector`, *optional*): used to read near-misses in ``first_pass``.

    Returns:
        `PromptSelection`: ``prompt`` is "" when nothing in the topic names a term or a label.
    """
    if max_tokens > WHISPER_PROMPT_LIMIT:
        raise ValueError(f"max_tokens {max_tokens} exceeds Whisper's prompt limit of {WHISPER_PROMPT_LIMIT}")
    extractor = RuleExtractor(lexicon)
    ranked: list[tuple[str, str]] = []  # (term, reason)
    seen: set[str] = set()

    def add(term: str, reason: str) -> None:
        key = normalize(term)
        if key and key not in seen and len(key.replace(" ", "")) >= 4:
            seen.add(key)
            ranked.append((term, reason))

    topic_entities = extractor.entities(topic_text or "")
    heard_entities = extractor.entities(first_pass or "")
    # The topic is voted by the title's terms (counted twice: the title names the lecture) and every term
    # the first pass heard: a title that names no organ ("Unknown cases") still gets the lecture's topic.
    labels = extractor.pathology(topic_entities * 2 + heard_entities)
    for entity in topic_entities:
        concept = lexicon.concepts[entity.concept_id]
        if _spoken(concept):
            add(concept.term, "topic")
    if first_pass:
        # What was probably said but misheard comes before what was heard right: the prompt is there to
        # fix the misses, and the budget may not hold both.
        corrector = corrector or LexiconCorrector(lexicon)
        for term in corrector.candidates(first_pass):
            concept = lexicon.lookup(term)
            if concept is None or _spoken(concept):
                add(term, "near_miss")
    for entity in heard_entities:
        concept = lexicon.concepts[entity.concept_id]
        if _spoken(concept):
            add(concept.term, "first_pass")
    if labels or ranked:
        wanted = set(labels)
        common = lexicon.common_words
        pool = []
        for concept in lexicon.concepts.values():
            if not _spoken(concept) or concept.kind not in _PREFERRED_KINDS:
                continue
            if concept.sub_pathology and not wanted.intersection(concept.sub_pathology):
                continue
            words = normalize(concept.term).split()
            if len(words) > 3 or any(c.isdigit() for c in concept.term) or concept.term.isupper():
                continue
            rare = sum(1 for w in words if w not in common)
            specific = 0 if concept.sub_pathology else 1
            pool.append((specific, -min(rare, 1), _PREFERRED_KINDS[concept.kind], len(words), concept.term))
        for *_, term in sorted(pool):
            add(term, "label")
    prefix = "Histopathology lecture"
    if labels:
        prefix += " (" + ", ".join(label.lower() for label in labels) + ")"
    prompt, chosen, reasons = "", [], {}
    for term, reason in ranked:
        candidate = f"{prefix}: {', '.join([*chosen, term])}."
        if count_tokens(candidate) > max_tokens:
            if reason in ("topic", "first_pass", "near_miss"):
                continue  # a longer term may not fit while a shorter later one does
            break
        chosen.append(term)
        reasons[term] = reason
        prompt = candidate
    return PromptSelection(prompt=prompt, terms=chosen, labels=list(labels), reasons=reasons)


# -- guard ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def guard_fingerprint() -> str:
    """A short hash of this module's source: part of a guarded transcript's cache key (with the text stage's
    :func:`~quilt_hf.curation.text.processor.rules_fingerprint`, whose extractor and corrector it uses)."""
    from quilt_hf.curation.text.processor import source_hash

    return source_hash(Path(__file__))


#: Whisper's own test for a decoding stuck in a loop (the default ``compression_ratio_threshold`` of
#: openai-whisper and faster-whisper): text that gzip compresses more than this much repeats itself.
COMPRESSION_RATIO_LIMIT = 2.4


def compression_ratio(text: str) -> float:
    """Length of ``text`` in UTF-8 bytes over its zlib-compressed length (0.0 for empty text)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


@dataclass
class GuardReport:
    segments: int = 0
    reverted_echo: int = 0
    reverted_inserted_term: int = 0
    reverted_loop: int = 0
    inserted_terms: list[str] = field(default_factory=list)


def _text_within(segments: Sequence[dict], start: float, end: float) -> str:
    """Segments whose middle falls in ``[start, end)``: each plain segment replaces at most one."""
    return " ".join(
        s["text"] for s in segments if start <= (float(s["start"]) + float(s["end"])) / 2 < end
    ).strip()


def _overlapping_text(segments: Sequence[dict], start: float, end: float) -> str:
    return " ".join(
        s["text"] for s in segments if min(float(s["end"]), end) - max(float(s["start"]), start) > 0
    ).strip()


def _echoes(text: str, prompt_words: list[str], run: int = 4) -> bool:
    """Whether ``text`` repeats ``run`` consecutive words of the prompt (a list of terms read back)."""
    words = normalize(text).split()
    if len(words) < run:
        return False
    grams = {tuple(prompt_words[i : i + run]) for i in range(len(prompt_words) - run + 1)}
    return any(tuple(words[i : i + run]) in grams for i in range(len(words) - run + 1))


def heard_like(term: str, heard: str, min_ratio: float = 70.0) -> bool:
    """Whether ``heard`` (the plain pass over the same time) holds something spelled or sounding like
    ``term``: the term's letters against every run of as many letters in ``heard`` (spaces removed), or the
    same on Metaphone codes."""
    from rapidfuzz import fuzz

    target = normalize(term).replace(" ", "")
    words = normalize(heard).split()
    if not target or not words:
        return False
    target_ph = _phonetic(target)
    for i in range(len(words)):
        squashed = ""
        for j in range(i, min(len(words), i + 4)):
            squashed += words[j]
            if len(squashed) >= 0.6 * len(target):
                if fuzz.ratio(target, squashed) >= min_ratio:
                    return True
                if target_ph and fuzz.ratio(target_ph, _phonetic(squashed)) >= 80:
                    return True
            if len(squashed) > 1.4 * len(target):
                break
    return False


def guard_prompted(
    prompted: Sequence[dict], plain: Sequence[dict], selection: PromptSelection, lexicon: Lexicon
) -> tuple[list[dict], GuardReport]:
    """Replace prompted segments that are stuck in a repetition loop (Whisper's compression-ratio test), echo
    the prompt, or insert a prompt term nothing in the plain pass sounds like (spelled right, or a little off so
    that the corrector would write it), by the plain pass's text of the same span (its segments whose middle falls
    in it: each plain segment replaces at most one; where the two passes cut the audio at different places, a few
    words at the edge can be repeated or lost).

    Args:
        prompted (`Sequence[dict]`): segments (``start``, ``end``, ``text``) of the prompted pass.
        plain (`Sequence[dict]`): segments of the plain pass of the same audio.
        selection (`PromptSelection`): the prompt used.
        lexicon (`Lexicon`): to find the prompt's terms in the text.

    Returns:
        `tuple[list[dict], GuardReport]`: the guarded segments and what was reverted.
    """
    report = GuardReport()
    prompt_words = normalize(selection.prompt).split()
    term_keys = {normalize(t) for t in selection.terms}
    extractor = RuleExtractor(lexicon)
    corrector = LexiconCorrector(lexicon)
    out = []
    for segment in prompted:
        report.segments += 1
        start, end = float(segment["start"]), float(segment["end"])
        heard = _overlapping_text(plain, start, end)
        text = segment["text"]
        if compression_ratio(text) > COMPRESSION_RATIO_LIMIT:
            # A prompted window can fall into a repetition loop (the prompt conditions every window): Whisper's
            # own compression-ratio test finds it; the plain pass's text of the span replaces it.
            report.reverted_loop += 1
            out.append({**segment, "text": _text_within(plain, start, end)})
            continue
        if _echoes(text, prompt_words):
            report.reverted_echo += 1
            out.append({**segment, "text": _text_within(plain, start, end)})
            continue
        heard_key = f" {normalize(heard)} "
        inserted = []
        for entity in extractor.entities(text):
            key = normalize(entity.text)
            concept = lexicon.concepts[entity.concept_id]
            if normalize(concept.term) not in term_keys and key not in term_keys:
                continue
            if f" {key} " in heard_key or heard_like(key, heard):
                continue
            inserted.append(entity.text)
        # A prompt term spelled a little off ("chalcitonin"): the corrector would write the term into the caption.
        for edit in corrector.correct(text).edits:
            key = normalize(edit.replacement)
            if key in term_keys and f" {key} " not in heard_key and not heard_like(key, heard):
                inserted.append(edit.original)
        if inserted:
            report.reverted_inserted_term += 1
            report.inserted_terms.extend(inserted)
            out.append({**segment, "text": _text_within(plain, start, end)})
        else:
            out.append(dict(segment))
    if report.reverted_echo or report.reverted_inserted_term or report.reverted_loop:
        logger.info(
            "prompt guard: %d of %d segments reverted to the plain pass (%d echo, %d inserted term, %d loop)",
            report.reverted_echo + report.reverted_inserted_term + report.reverted_loop,
            report.segments,
            report.reverted_echo,
            report.reverted_inserted_term,
            report.reverted_loop,
        )
    return [s for s in out if s["text"].strip()], report

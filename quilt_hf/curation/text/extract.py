"""Rule-based extraction from a (corrected) transcript window.

- ``entities``: lexicon concepts found in the text (longest match first), with character spans and a
  confidence (1.0 for words as spoken, the edit's confidence where the corrector changed them);
- ``medical_text``: the sentences that describe tissue, talk cut out (``caption_policy``: a lexicon entity,
  a misheard term, histology vocabulary, or a sentence that continues a medical one; never greetings,
  logistics, navigation or talk about the lecture);
- ``roi_text``: the sentences that say where to look or what is pointed at ("here", "the cursor",
  "on the left", "notice ...") and name something to look at;
- ``pathology``: up to 3 of Quilt's 18 sub-pathology labels, voted by the entities' labels (sites weigh
  double);
- ``magnification``: Quilt's classes (0: <=10x, 1: 10-20x, 2: >20x, -1: not stated) from a stated
  objective ("at 20x", "forty times") or power ("low power", "high power"); the last statement wins.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from quilt_hf.curation.text.caption_policy import ABOUT_THE_LECTURE, NAVIGATES, TALK, is_talk, medical_mask
from quilt_hf.curation.text.correct import Edit, LexiconCorrector, _is_acronym, tokenize
from quilt_hf.curation.text.lexicon import Lexicon
from quilt_hf.schema import MAGNIFICATION_UNKNOWN

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
#: Talk: greetings, sign-offs, logistics, navigation, talk about the lecture (see ``caption_policy``).
CHATTER = TALK
ROI_CUES = re.compile(
    r"\b(here|cursor|pointer|arrow|arrowhead|circled?|notice|note the|look at|you can see|"
    r"(?:on|at|in|to|along|near) the (?:upper |lower |far )?(?:left|right|top|bottom|middle|center|centre|edge|"
    r"periphery)|(?:upper|lower) (?:left|right)|(?:left|right) (?:side|edge|corner|half)|"
    r"(?:middle|center|centre|top|bottom|edge) of the (?:field|slide|image|screen)|"
    r"under the cursor|pointing|points? to)\b",
    re.IGNORECASE,
)
_NUMBER_WORDS = {
    "two": 2,
    "four": 4,
    "five": 5,
    "ten": 10,
    "twenty": 20,
    "forty": 40,
    "fourty": 40,
    "sixty": 60,
    "hundred": 100,
    "one hundred": 100,
}
_OBJECTIVE = re.compile(
    r"\b(\d{1,3}|two|four|five|ten|twenty|forty|fourty|sixty|one hundred|hundred)\s*(?:x|×|times)(?![a-z])",
    re.IGNORECASE,
)
_POWER = re.compile(
    r"\b(low|scanning|medium|intermediate|mid|high)[- ](?:power|magnification)(?! fields?)\b|\boil immersion\b",
    re.IGNORECASE,
)
_POWER_CLASS = {"low": 0, "scanning": 0, "medium": 1, "intermediate": 1, "mid": 1, "high": 2}


@dataclass
class Entity:
    concept_id: str
    text: str
    char_start: int
    char_end: int
    confidence: float

    def as_row(self) -> dict:
        return {
            "concept_id": self.concept_id,
            "text": self.text,
            "char_start": int(self.char_start),
            "char_end": int(self.char_end),
            "confidence": float(round(self.confidence, 4)),
        }


@dataclass
class Extraction:
    entities: list[Entity] = field(default_factory=list)
    medical_sentences: list[str] = field(default_factory=list)
    roi_sentences: list[str] = field(default_factory=list)
    pathology: list[str] = field(default_factory=list)
    magnification: int = MAGNIFICATION_UNKNOWN


def split_sentences(text: str) -> list[tuple[int, int, str]]:
    """Sentences of ``text`` with their character spans."""
    out, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        piece = text[start : match.start()]
        if piece.strip():
            out.append((start, match.start(), piece.strip()))
        start = match.end()
    if text[start:].strip():
        out.append((start, len(text), text[start:].strip()))
    return out


_CLAUSE_BREAK = re.compile(r"[,;:]\s+|\s+(?:but|and then|so)\s+", re.IGNORECASE)


def split_clauses(text: str, start: int, end: int) -> list[tuple[int, int, str]]:
    """Clauses of the sentence ``text[start:end]`` (split at commas, semicolons, colons and "but", "and then",
    "so"), with their character spans in ``text``."""
    out, cursor = [], start
    for match in _CLAUSE_BREAK.finditer(text, start, end):
        if text[cursor : match.start()].strip():
            out.append((cursor, match.start(), text[cursor : match.start()].strip()))
        cursor = match.end()
    if text[cursor:end].strip():
        out.append((cursor, end, text[cursor:end].strip()))
    return out


#: Words a bare noun phrase is made of besides its term: "the thyroid", "of the pancreas" (no verb, nothing said).
_NOUN_PHRASE_WORDS = frozenset("a an the this that these those its their his her our your of in on at with and or".split())


def _says_more_than_its_terms(text: str, start: int, end: int, entities) -> bool:
    """Whether the clause ``text[start:end]`` holds two entities, or a word outside its entity that a bare noun
    phrase would not hold: a clause left as "the thyroid" after the talk around it is cut names a term, it
    describes nothing ("these are Reed-Sternberg cells", "the nuclei are hyperchromatic" do)."""
    spans = [(e.char_start, e.char_end) for e in entities if start <= e.char_start < end]
    return len(spans) > 1 or any(
        token.key not in _NOUN_PHRASE_WORDS and not any(a <= start + token.start < b for a, b in spans)
        for token in tokenize(text[start:end])
    )


def _joined_clauses(clauses: list[str]) -> str:
    """The kept clauses of a sentence as one sentence: joined by commas, a leading conjunction dropped, capitalised,
    one full stop."""
    text = re.sub(r"^(?:and|but|so|then)\s+", "", ", ".join(clauses), flags=re.IGNORECASE)
    return text[:1].upper() + text[1:].rstrip(".,;:") + "."


_JOINED = re.compile(r"\s(?:and|where|while|whereas|which)\s+", re.IGNORECASE)


def _outside(text: str, clauses: list[tuple[int, int, str]], spans: list[tuple[int, int]]):
    """The clauses that none of ``spans`` (descriptions of the lecture) runs through; of a clause one runs
    through, what follows a conjunction after it ("My talk is about melanoma and the nuclei are dark")."""
    pieces = []
    for a, b, clause in clauses:
        touching = [span_end for span_start, span_end in spans if a < span_end and b > span_start]
        if not touching:
            pieces.append((a, b, clause))
            continue
        joined = _JOINED.search(text, max(touching), b)
        if joined and text[joined.end() : b].strip():
            pieces.append((joined.end(), b, text[joined.end() : b].strip()))
    return pieces


def magnification_of(text: str) -> int:
    """Quilt's magnification class of the last magnification statement in ``text`` (-1 if none)."""
    found: list[tuple[int, int]] = []
    for match in _OBJECTIVE.finditer(text):
        raw = match.group(1).lower()
        value = int(raw) if raw.isdigit() else _NUMBER_WORDS.get(raw, 0)
        if value in (1, 2, 3) and "times" in match.group(0).lower():
            continue  # "two times" is a count, not an objective
        if value <= 0 or value > 100:
            continue
        found.append((match.start(), 0 if value <= 10 else 1 if value <= 20 else 2))
    for match in _POWER.finditer(text):
        word = (match.group(1) or "high").lower()
        found.append((match.start(), _POWER_CLASS[word]))
    if not found:
        return MAGNIFICATION_UNKNOWN
    return max(found)[1]


class RuleExtractor:
    """Lexicon and rule based extraction (see the module docstring).

    Args:
        lexicon (`Lexicon`): concepts to find.
        max_labels (`int`, *optional*, defaults to 3): sub-pathology labels kept.
    """

    def __init__(self, lexicon: Lexicon, max_labels: int = 3):
        self.lexicon = lexicon
        self.max_labels = max_labels
        self._max_words = min(lexicon.max_form_words, 8)
        self._corrector: LexiconCorrector | None = None

    def _near_miss(self, sentence: str, floor: float = 0.8) -> bool:
        """Whether ``sentence`` holds a probable misrecognition of a lexicon term (a correction candidate of
        confidence ``floor`` or more, applied or not)."""
        if self._corrector is None:
            self._corrector = LexiconCorrector(self.lexicon)
        return bool(self._corrector.suggestions(sentence, floor=floor))

    def entities(self, text: str, edits: list[Edit] | None = None) -> list[Entity]:
        """Lexicon concepts in ``text`` (longest match first). ``edits`` (spans in ``text``) lower confidence."""
        tokens = tokenize(text)
        keys = [t.key for t in tokens]
        found, i = [], 0
        while i < len(tokens):
            for n in range(min(self._max_words, len(tokens) - i), 0, -1):
                hit = self.lexicon.forms.get(" ".join(keys[i : i + n]))
                if hit is None:
                    continue
                concept_id, surface = hit
                start, end = tokens[i].start, tokens[i + n - 1].end
                spoken = text[start:end]
                if _is_acronym(surface) and not any(c.isdigit() for c in surface):
                    if re.sub(r"[^A-Za-z0-9]", "", spoken) != re.sub(r"[^A-Za-z0-9]", "", surface):
                        continue  # "all" is not ALL, "er" is not ER
                if n == 1 and len(keys[i]) <= 2 and not any(c.isdigit() for c in keys[i]):
                    if spoken != surface:
                        continue
                confidence = 1.0
                for edit in edits or ():
                    if edit.char_start < end and start < edit.char_end:
                        confidence = min(confidence, edit.confidence)
                found.append(Entity(concept_id, spoken, start, end, confidence))
                i += n
                break
            else:
                i += 1
        return found

    def _unknown_word(self, sentence: str) -> bool:
        """Whether ``sentence`` holds a long word that is neither ordinary English nor a lexicon form: in
        narration over tissue that is almost always a medical term the recogniser spelled its own way
        ("Merukovolgaris"). Words of 8 letters or more; names of people or places look alike and are rare."""
        common = self.lexicon.common_words
        if not common:
            return False
        for token in tokenize(sentence):
            key = token.key
            if len(key) >= 8 and key.isalpha() and key not in common and key not in self.lexicon.forms:
                if key.rstrip("s") not in common and key[:-2] not in common:  # plurals, -ed/-er forms
                    return True
        return False

    @staticmethod
    def entity_from_row(row: dict) -> Entity:
        return Entity(row["concept_id"], row["text"], row["char_start"], row["char_end"], row["confidence"])

    def pathology(self, entities: list[Entity]) -> list[str]:
        votes: Counter[str] = Counter()
        for entity in entities:
            concept = self.lexicon.concepts.get(entity.concept_id)
            if concept is None:
                continue
            weight = (2.0 if concept.kind == "site" else 1.0) * entity.confidence
            for label in concept.sub_pathology:
                votes[label] += weight / len(concept.sub_pathology) ** 0.5
        if not votes:
            return []
        top = max(votes.values())
        ranked = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))
        return [label for label, score in ranked if score >= 0.5 * top][: self.max_labels]

    def extract(self, text: str, edits: list[Edit] | None = None) -> Extraction:
        """Run every extractor on ``text`` (already corrected; ``edits`` spans refer to it)."""
        text = text or ""
        entities = self.entities(text, edits)
        medical, roi = [], []
        spans = split_sentences(text)
        inside_of = [[e for e in entities if start <= e.char_start < end] for start, end, _ in spans]
        sentences = [sentence for _, _, sentence in spans]
        named = [bool(inside) for inside in inside_of]
        misheard = [
            not n and not is_talk(s) and (self._unknown_word(s) or self._near_miss(s))
            for s, n in zip(sentences, named)
        ]
        is_medical = medical_mask(sentences, named, misheard, self.lexicon)
        for (start, end, sentence), inside, keep in zip(spans, inside_of, is_medical):
            if inside and TALK.search(sentence):
                # A sentence that mixes talk and tissue ("Thanks for watching, and remember the koilocytes"):
                # keep its clauses that name a term and hold no talk. A clause that a description of the
                # lecture runs through ("this is a short, high-power tour of the skin") goes too.
                offset = start + len(text[start:end]) - len(text[start:end].lstrip())
                lecture = [(offset + m.start(), offset + m.end()) for m in ABOUT_THE_LECTURE.finditer(sentence)]
                pieces = [
                    (a, b, clause)
                    for a, b, clause in _outside(text, split_clauses(text, start, end), lecture)
                    if any(a <= e.char_start < b for e in inside) and not TALK.search(clause)
                ]
                if len(pieces) == 1 and not _says_more_than_its_terms(text, pieces[0][0], pieces[0][1], inside):
                    pieces = []  # all that is left is a bare term ("..., the thyroid"): it describes nothing
                kept = [clause for _, _, clause in pieces]
                if kept:
                    trimmed = _joined_clauses(kept)
                    medical.append(trimmed)
                    if ROI_CUES.search(trimmed):  # what is left names a term: a region cue in it points at one
                        roi.append(trimmed)
                continue
            if inside and keep:
                # A medical sentence with a clause that navigates and names no term ("..., giving the signet
                # ring appearance, I'll come back to this field in a minute"): that clause goes.
                clauses = split_clauses(text, start, end)
                navigating = [
                    (a, b) for a, b, clause in clauses
                    if not any(a <= e.char_start < b for e in inside) and NAVIGATES.search(clause)
                ]
                if navigating and len(navigating) < len(clauses):
                    sentence = _joined_clauses([clause for a, b, clause in clauses if (a, b) not in navigating])
            if keep:
                medical.append(sentence)
                if inside and ROI_CUES.search(sentence):
                    roi.append(sentence)
            elif ROI_CUES.search(sentence) and re.search(
                r"\bcursor|pointer|arrow\b", sentence, re.IGNORECASE
            ):
                roi.append(sentence)
        return Extraction(entities, medical, roi, self.pathology(entities), magnification_of(text))

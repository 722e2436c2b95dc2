"""Lexicon corrector: find probably misrecognised medical terms in ASR text and correct them.

How a span is judged (conservative by design: when unsure, the text is left as it is):

1. Words that already spell a lexicon form (longest match first) are protected: never changed.
2. Every window of 1-4 consecutive words is compared with the lexicon's surface forms of similar length:
   character similarity of the words with spaces removed (so "adeno carcinoma" meets "adenocarcinoma") and
   phonetic similarity (Metaphone keys: "bunch"/"punch", "erythematis"/"erythematosus").
3. A window may change an ordinary English word (``common_words``) only when the window also keeps at least
   one of its words unchanged inside the target term ("skin bunch biopsy" -> "skin punch biopsy": "skin" and
   "biopsy" anchor it) and the changed word sounds like its replacement. A lone English word is never changed.
4. Medical context (lexicon terms within a few words) raises confidence; a window whose confidence stays
   under ``threshold`` is left alone. Overlapping candidates: the most confident wins.

Every edit is kept with its character span in the original text and its confidence.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from quilt_hf.curation.text.caption_policy import has_medical_shape
from quilt_hf.curation.text.lexicon import Lexicon, normalize

_TOKEN = re.compile(r"[A-Za-z0-9]+")
# Function words: a window never starts or ends on one (they are never misrecognised term pieces).
STOPWORDS = frozenset(
    ["a", "an", "the", "and", "or", "of", "in", "on", "at", "to", "for", "with", "by", "from", "as", "is", "are", "was", "were", "be", "been", "this", "that", "these", "those", "it", "its", "we", "you", "they", "he", "she", "i", "our", "your", "their", "there", "here", "so", "but", "if", "then", "than", "not", "no", "do", "does", "did", "has", "have", "had", "will", "can", "may", "might", "should", "would", "could", "into", "onto", "over", "under", "about", "up", "down", "out", "very", "more", "most", "some", "any", "all"]
)


@dataclass
class Token:
    text: str
    start: int
    end: int

    @property
    def key(self) -> str:
        return self.text.lower()


@dataclass
class Edit:
    """One correction: ``original`` at ``[char_start, char_end)`` of the input becomes ``replacement``."""

    original: str
    replacement: str
    char_start: int
    char_end: int
    confidence: float
    concept_id: str = ""

    def as_row(self) -> dict:
        return {
            "original": self.original,
            "replacement": self.replacement,
            "char_start": int(self.char_start),
            "char_end": int(self.char_end),
            "confidence": float(round(self.confidence, 4)),
        }


@dataclass
class Correction:
    """The corrected text and the edits that produced it (spans refer to the input text)."""

    text: str
    edits: list[Edit] = field(default_factory=list)


def tokenize(text: str) -> list[Token]:
    return [Token(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text)]


_DEVOICE = str.maketrans("BDGVZ", "PTKFS")
_BOUNDARY = re.compile(r"[.,;:?!]")


# Greek-derived initial clusters whose first letter is silent in English ("psammoma", "pterygium", "pneumo",
# "mnemonic", "ctenoid", "gnathic", "phthisis"): Metaphone keeps the letter, a listener does not hear it.
_SILENT_INITIAL = re.compile(r"^(?:p(?=[stn])|m(?=n)|c(?=t)|g(?=n)|k(?=n))")


def _phonetic(text: str) -> str:
    import jellyfish

    # Voiced and voiceless pairs sound alike through a microphone and an ASR model ("bunch" / "punch").
    return jellyfish.metaphone(_SILENT_INITIAL.sub("", text)).translate(_DEVOICE) if text else ""


def sounds_alike(heard: str, term: str) -> bool:
    """Whether ``heard`` and ``term`` (one word or a few, spaces ignored) sound alike by a vote of three
    phonetic codes: Metaphone (with voicing and silent initials folded), NYSIIS and the match rating
    approach; two must agree. Pairs like "summer"/"psammoma", "sites"/"cytes", "bunch"/"punch" pass;
    "hardened"/"hematoxylin" does not."""
    import jellyfish
    from rapidfuzz import fuzz

    a = _SILENT_INITIAL.sub("", heard.lower().replace(" ", ""))
    b = _SILENT_INITIAL.sub("", term.lower().replace(" ", ""))
    if not a or not b:
        return False
    votes = 0
    votes += fuzz.ratio(_phonetic(a), _phonetic(b)) >= 75
    votes += fuzz.ratio(jellyfish.nysiis(a), jellyfish.nysiis(b)) >= 75
    try:
        votes += bool(jellyfish.match_rating_comparison(a, b))
    except ValueError:  # the match rating approach refuses some inputs (digits, very long strings)
        pass
    return votes >= 2


def match_case(replacement: str, original: str) -> str:
    """Keep the original's capitalisation where the replacement is a plain lower-case term."""
    if replacement.islower() and original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


class LexiconCorrector:
    """Deterministic, offline ASR term corrector backed by a `Lexicon`.

    Args:
        lexicon (`Lexicon`): the terms to correct towards.
        threshold (`float`, *optional*, defaults to 0.86): minimal confidence (0-1) of an applied edit.
        max_window (`int`, *optional*, defaults to 4): longest word window considered.
        min_term_chars (`int`, *optional*, defaults to 5): shortest target (letters, spaces removed); shorter
            terms (ER, PR, CD3...) are too ambiguous to correct towards.
    """

    def __init__(
        self, lexicon: Lexicon, threshold: float = 0.86, max_window: int = 4, min_term_chars: int = 5
    ):
        self.lexicon = lexicon
        self.threshold = threshold
        self.max_window = max_window
        self.min_term_chars = min_term_chars
        self._max_form_words = min(lexicon.max_form_words, 8)
        # Target forms for fuzzy search, bucketed by squashed length.
        self._buckets: dict[int, list[tuple[str, str, str, str]]] = {}
        for key, (concept_id, surface) in lexicon.forms.items():
            squashed = key.replace(" ", "")
            if len(squashed) < min_term_chars or squashed.isdigit():
                continue
            if _is_acronym(surface):
                continue
            entry = (squashed, key, concept_id, surface)
            self._buckets.setdefault(len(squashed), []).append(entry)
        self._phonetic_cache: dict[str, str] = {}
        self._pools: dict[int, tuple[list[str], list, list[str]]] = {}
        self._memo: dict[str, tuple | None] = {}

    # -- helpers ----------------------------------------------------------------------------------------
    def _ph(self, text: str) -> str:
        value = self._phonetic_cache.get(text)
        if value is None:
            value = self._phonetic_cache[text] = _phonetic(text)
        return value

    def protected(self, tokens: list[Token]) -> list[bool]:
        """Which tokens are part of an exact lexicon form (longest match first)."""
        keys = [t.key for t in tokens]
        mask = [False] * len(tokens)
        i = 0
        while i < len(tokens):
            for n in range(min(self._max_form_words, len(tokens) - i), 0, -1):
                if " ".join(keys[i : i + n]) in self.lexicon.forms:
                    for j in range(i, i + n):
                        mask[j] = True
                    i += n
                    break
            else:
                i += 1
        return mask

    def _pool(self, size: int) -> tuple[list[str], list[tuple[str, str, str, str]], list[str]]:
        """Target forms whose squashed length is within 25% of ``size`` (built once per size), with their
        phonetic codes."""
        pool = self._pools.get(size)
        if pool is None:
            spread = max(1, round(size * 0.25))
            entries = [e for n in range(size - spread, size + spread + 1) for e in self._buckets.get(n, ())]
            pool = self._pools[size] = ([e[0] for e in entries], entries, [self._ph(e[0]) for e in entries])
        return pool

    def _best(self, squashed: str) -> tuple[float, float, tuple[str, str, str, str]] | None:
        if squashed in self._memo:
            return self._memo[squashed]
        from rapidfuzz import fuzz, process

        strings, entries, codes = self._pool(len(squashed))
        best = None
        if strings:
            phon = self._ph(squashed)
            # Candidates by spelling (edit distance) and by sound (phonetic codes): a term heard as ordinary
            # English ("summer bodies") is far in letters but close in sound.
            found = {i: score for _, score, i in process.extract(squashed, strings, scorer=fuzz.ratio, score_cutoff=75, limit=5)}
            if phon:
                for _, _, i in process.extract(phon, codes, scorer=fuzz.ratio, score_cutoff=80, limit=5):
                    if i not in found:
                        score = fuzz.ratio(squashed, strings[i])
                        if score >= 60:
                            found[i] = score
            for index, char_score in found.items():
                entry = entries[index]
                phon_score = fuzz.ratio(phon, codes[index]) if phon else 0.0
                combined = 0.6 * char_score + 0.4 * phon_score
                if best is None or combined > best[0]:
                    best = (combined, char_score, entry)
        if len(self._memo) < 200_000:
            self._memo[squashed] = best
        return best

    # -- main -------------------------------------------------------------------------------------------
    def correct(self, text: str) -> Correction:
        """Correct ``text``; returns the new text and the edits (spans in ``text``)."""
        tokens, candidates = self._candidates(text or "", self.threshold)
        return self._apply(text or "", tokens, candidates)

    def suggestions(self, text: str, floor: float = 0.75) -> list[Edit]:
        """Every probable correction of ``text`` with a confidence of at least ``floor`` (below the applied
        ``threshold`` too), non-overlapping, most confident first per span: the candidates an LLM backend
        is given to decide on, and the near-misses a Whisper prompt is built from."""
        tokens, candidates = self._candidates(text or "", min(floor, self.threshold))
        return self._apply(text or "", tokens, candidates).edits

    def candidates(self, text: str, floor: float = 0.75) -> list[str]:
        """The lexicon terms ``suggestions`` proposes for ``text``, in order of appearance."""
        return list(dict.fromkeys(edit.replacement for edit in self.suggestions(text, floor)))

    def alternatives(
        self,
        text: str,
        focus: Callable[[int], bool] | None = None,
        limit: int = 3,
        floor: float = 60.0,
    ) -> list[tuple[int, int, str, float]]:
        """Lexicon terms the words of ``text`` may have been heard as, with no decision taken: for each window of
        1-``max_window`` words (the same edge rules as :meth:`correct`, never wholly made of exact terms),
        the ``limit`` nearest forms by spelling and by sound (Metaphone), as ``(char_start, char_end,
        surface, similarity)``. What to believe is left to the caller (the acoustic rescorer asks Whisper).

        Args:
            text (`str`): the text.
            focus (`Callable[[int], bool]`, *optional*): keeps only windows holding a token index it accepts
                (e.g. the words the recogniser was unsure of).
            limit (`int`): candidates per window.
            floor (`float`): lowest similarity (0-100, spelling and sound combined) of a candidate.
        """
        from rapidfuzz import fuzz, process

        tokens = tokenize(text or "")
        mask = self.protected(tokens)
        out: list[tuple[int, int, str, float]] = []
        for i, n, window, keys, squashed in self._windows(text or "", tokens, mask):
            if focus is not None and not any(focus(k) for k in range(i, i + n)):
                continue
            strings, entries, codes = self._pool(len(squashed))
            if not strings:
                continue
            phon = self._ph(squashed)
            found = {j for _, _, j in process.extract(squashed, strings, scorer=fuzz.ratio, limit=limit)}
            if phon:
                found |= {j for _, _, j in process.extract(phon, codes, scorer=fuzz.ratio, limit=limit)}
            scored = []
            for j in found:
                char_score = fuzz.ratio(squashed, strings[j])
                similarity = 0.6 * char_score + 0.4 * (fuzz.ratio(phon, codes[j]) if phon else 0.0)
                if similarity < floor or entries[j][1] == " ".join(keys):
                    continue
                if n > 1 and self._holds_extra_word(keys, strings[j], char_score):
                    continue  # "mimic hyperchromasia" is the term and a word before it, not pieces of it
                scored.append((similarity, entries[j][3]))
            kept = [k for k, m in zip(keys, mask[i : i + n]) if m]  # words already spelling a term
            for similarity, surface in sorted(scored, reverse=True)[:limit]:
                surface = _keep_inflection(keys, surface)
                # a candidate may not drop or change a word that is already part of a lexicon term
                if normalize(surface) != " ".join(keys) and all(k in surface.lower().split() for k in kept):
                    out.append((window[0].start, window[-1].end, surface, similarity))
        return out

    def _windows(self, text: str, tokens: list[Token], mask: list[bool]):
        """Windows of 1-``max_window`` words that may hold a misheard term: ``(i, n, window, keys, squashed)``.
        A window never spans a sentence or clause boundary (". , ; : ? !" between two of its words), never
        ends on a function word or a single letter, never starts on a function word of two letters or more,
        is never wholly made of exact terms, holds no number, and spells at least ``min_term_chars`` letters."""
        breaks = [bool(_BOUNDARY.search(text[a.end : b.start])) for a, b in zip(tokens, tokens[1:])]
        for i in range(len(tokens)):
            for n in range(1, self.max_window + 1):
                window = tokens[i : i + n]
                if len(window) < n or (n > 1 and breaks[i + n - 2]):
                    break
                keys = [t.key for t in window]
                if keys[-1] in STOPWORDS or len(keys[-1]) == 1 or (keys[0] in STOPWORDS and len(keys[0]) > 1):
                    continue
                if all(mask[i : i + n]) or any(k.isdigit() for k in keys):
                    continue
                squashed = "".join(keys)
                if len(squashed) >= self.min_term_chars:
                    yield i, n, window, keys, squashed

    def _window_labels(self, tokens: list[Token], mask: list[bool]) -> set[str]:
        """Sub-pathology labels of the exact lexicon terms of the text (its topic)."""
        labels: set[str] = set()
        keys = [t.key for t in tokens]
        i = 0
        while i < len(tokens):
            if not mask[i]:
                i += 1
                continue
            for n in range(min(self._max_form_words, len(tokens) - i), 0, -1):
                hit = self.lexicon.forms.get(" ".join(keys[i : i + n]))
                if hit is not None:
                    labels.update(self.lexicon.concepts[hit[0]].sub_pathology)
                    i += n
                    break
            else:
                i += 1
        return labels

    def _candidates(self, text: str, threshold: float) -> tuple[list[Token], list[tuple[float, int, int, str, str]]]:
        tokens = tokenize(text)
        if not tokens:
            return tokens, []
        mask = self.protected(tokens)
        topic = self._window_labels(tokens, mask)
        common = self.lexicon.common_words
        candidates: list[tuple[float, int, int, str, str]] = []
        for i, n, _, keys, squashed in self._windows(text, tokens, mask):
            if len(keys[0]) == 1 and (n == 1 or keys[0] not in STOPWORDS):
                continue  # only the article "a" may be absorbed into a term ("a canthosis")
            scored = self._best(squashed)
            if scored is None:
                continue
            combined, char_score, (target_sq, target_key, concept_id, surface) = scored
            if target_sq == squashed and " ".join(keys) == target_key:
                continue  # already exact
            judged = self._judge(keys, mask[i : i + n], target_key, combined, char_score, common)
            if judged is None:
                continue
            confidence, needs_context = judged
            context = self._context(mask, i, i + n)
            if needs_context and not context:
                continue  # ordinary English with no medical term nearby stays as it is
            # Context ranks candidates: exact terms nearby, and the same sub-pathology as the text's terms.
            on_topic = bool(topic.intersection(self.lexicon.concepts[concept_id].sub_pathology))
            confidence = min(0.99, confidence + 0.02 * context + 0.02 * on_topic)
            if confidence >= threshold:
                candidates.append((confidence, i, i + n, surface, concept_id))
        return tokens, candidates

    def _judge(self, keys, window_mask, target_key, combined, char_score, common) -> tuple[float, bool] | None:
        """Confidence of replacing the window ``keys`` by ``target_key`` and whether the edit needs medical
        context around it (a term heard as ordinary English), or None when it must not happen."""
        from rapidfuzz import fuzz

        target_words = target_key.split()
        if "".join(keys) == "".join(target_words):
            return 0.97, False  # the same letters, split or joined differently: "adeno carcinoma"
        if keys[0] in STOPWORDS or (len(target_words) == 1 and len(keys) > 1):
            # A term split into pieces, one of them kept whole: "ad hoc carcinoma", "a canthosis".
            squashed = "".join(keys)
            target = target_words[0] if len(target_words) == 1 else ""
            if target and len(keys) > 1 and self._holds_extra_word(keys, target, char_score):
                return None
            anchored = any(len(k) >= 5 and k in target and k not in STOPWORDS for k in keys)
            if target and anchored and squashed[:1] == target[:1] and char_score >= 85:
                return combined / 100.0, False
            # Pieces that together sound like the term ("koilo sites" -> "koilocytes"): same first letter,
            # the same phonetic code, letters close enough, and no piece a function word.
            if (
                target
                and keys[0] not in STOPWORDS
                and squashed[:1] == target[:1]
                and char_score >= 75
                and self._ph(squashed) == self._ph(target)
            ):
                return combined / 100.0, False
            return None
        changed = [k for k in keys if k not in target_words]
        kept = [k for k in keys if k in target_words]
        if not changed:
            return None
        for k in changed:
            partner = max(target_words, key=lambda w: fuzz.ratio(w, k))
            if _is_inflection(k, partner):
                # An inflection of the term's word ("controls", "immunostains", "high power fields"): what
                # the speaker said, not an ASR error. Checked before the sound rules, which would accept it.
                return None
        group = self._anchored_group(keys, window_mask, target_words, combined)
        if group is not None:
            return group
        for k in changed:
            if k in common or k in STOPWORDS:
                # A real English word: only inside a term anchored by kept words, and only if it sounds alike.
                if not kept:
                    return None
                partner = max(target_words, key=lambda w: fuzz.ratio(w, k))
                close = fuzz.ratio(self._ph(k), self._ph(partner)) >= 75 and fuzz.ratio(k, partner) >= 70
                # Far in letters but alike in sound, towards a word that is not ordinary English itself.
                heard_as_english = (
                    len(keys) == len(target_words)  # word for word: never drops or adds a word
                    and partner not in common
                    and sounds_alike(k, partner)
                    and fuzz.ratio(k, _SILENT_INITIAL.sub("", partner)) >= 40
                )
                if not (close or heard_as_english):
                    return None
        if any(m for m, k in zip(window_mask, keys) if k in changed):
            return None  # never rewrite a word that is already part of a lexicon term
        if kept and any(k in common for k in changed) and all(len(k) >= 3 for k in changed):
            # Kept words anchor the term and every changed English word sounds like its partner (checked
            # above): "summer bodies" -> "psammoma bodies", although the letters are far apart.
            return max(combined / 100.0, 0.88), True
        if char_score < 75:
            return None
        return combined / 100.0, False

    @staticmethod
    def _holds_extra_word(keys: list[str], target: str, char_score: float) -> bool:
        """Whether a run of words merged into the one-word ``target`` holds a word the term does not need:
        one of them already is the term (or an inflection of it), or the run without its first or last word
        spells the term at least as well ("immunohistochemistry slide" is the term and another word, not
        pieces of it; "a canthosis" and "hyper chromatic" need every piece)."""
        from rapidfuzz import fuzz

        if any(k == target or _is_inflection(k, target) for k in keys):
            return True
        for rest in (keys[1:], keys[:-1]):
            if fuzz.ratio("".join(rest), target) >= char_score:
                return True
        return False

    def _anchored_group(self, keys, window_mask, target_words, combined: float) -> tuple[float, bool] | None:
        """A multi-word term whose first or last words were heard right and whose other words were heard as
        a different run of words that sounds like them: "stratum mass ale" -> "stratum basale", "mask it
        weave" -> "basket weave", "horn soodle sist" -> "horn pseudocyst". The heard run and the missing run
        must take the same place in the term, sound alike (``sounds_alike``) and share some letters; the edit
        needs medical context (checked by the caller)."""
        from rapidfuzz import fuzz

        if len(target_words) < 2:
            return None
        prefix = 0
        while prefix < min(len(keys), len(target_words)) and keys[prefix] == target_words[prefix]:
            prefix += 1
        suffix = 0
        while (
            suffix < min(len(keys), len(target_words)) - prefix
            and keys[len(keys) - 1 - suffix] == target_words[len(target_words) - 1 - suffix]
        ):
            suffix += 1
        if prefix + suffix == 0:
            return None
        heard = keys[prefix : len(keys) - suffix]
        missing = target_words[prefix : len(target_words) - suffix]
        if not heard or not missing:
            return None
        common = self.lexicon.common_words
        if not any(k in common for k in heard):
            return None  # no ordinary English heard: the spelling rules judge it
        # A heard word that spells a lexicon form stays, unless the form is ordinary English too ("mass") and the
        # only one of the run: a run through two forms, or through one shaped like histology vocabulary, is
        # terms heard right ("adenoma with papillary" is not "adrenomedullary"; the dictionary holds "adenoma").
        forms = [k for m, k in zip(window_mask[prefix : len(keys) - suffix], heard) if m]
        if len(forms) > 1 or any(k not in common or has_medical_shape(k) for k in forms):
            return None
        heard_sq, missing_sq = "".join(heard), "".join(missing)
        if len(heard_sq) < 4 or len(missing_sq) < 4:
            return None
        whole = fuzz.ratio(heard_sq, missing_sq)
        if suffix == 0 and len(heard) > 1 and fuzz.ratio("".join(heard[:-1]), missing_sq) >= whole:
            # The run's last word is not needed: "horn sudosis filled" is the term and the verb after it.
            return None
        if len(heard) > 1:
            # Nor a content word between the run and the words heard right: "hepatitisites show ballooning" is
            # "hepatocyte(s)", the verb, then "ballooning", not the term "hepatocyte ballooning". A function word
            # there is often a piece of the term ("ballooning the generation" is "ballooning degeneration").
            inner, rest = (heard[-1], heard[:-1]) if suffix else (heard[0], heard[1:])
            if inner in common and inner not in STOPWORDS and fuzz.ratio("".join(rest), missing_sq) >= whole:
                return None
        if not sounds_alike(heard_sq, missing_sq):
            return None
        if fuzz.ratio(heard_sq, _SILENT_INITIAL.sub("", missing_sq)) < 50:
            return None
        return max(combined / 100.0, 0.88), True

    def _context(self, mask: list[bool], start: int, end: int, radius: int = 8) -> int:
        left = mask[max(0, start - radius) : start]
        right = mask[end : end + radius]
        return min(3, sum(left) + sum(right))

    def _apply(self, text: str, tokens: list[Token], candidates) -> Correction:
        candidates.sort(key=lambda c: (-c[0], -(c[2] - c[1]), c[1]))
        taken = [False] * len(tokens)
        chosen = []
        for confidence, i, j, surface, concept_id in candidates:
            if any(taken[i:j]):
                continue
            for k in range(i, j):
                taken[k] = True
            chosen.append((i, j, surface, confidence, concept_id))
        chosen.sort()
        edits, pieces, cursor = [], [], 0
        for i, j, surface, confidence, concept_id in chosen:
            start, end = tokens[i].start, tokens[j - 1].end
            original = text[start:end]
            replacement = match_case(surface, original)
            if replacement == original:
                continue
            pieces.append(text[cursor:start])
            pieces.append(replacement)
            cursor = end
            edits.append(Edit(original, replacement, start, end, confidence, concept_id))
        pieces.append(text[cursor:])
        return Correction("".join(pieces), edits)


def _keep_inflection(heard: list[str], surface: str) -> str:
    """``surface`` with the heard inflection of its words ("metatic figures" -> "mitotic figures", not the
    lexicon's "mitotic figure"): word for word when the counts match, else the last word only."""
    words = surface.split(" ")
    pairs = list(zip(range(len(words)), heard)) if len(words) == len(heard) else [(len(words) - 1, heard[-1])]
    for index, said in pairs:
        base = words[index].lower()
        if _is_inflection(said, base) and said.startswith(base):
            words[index] = words[index] + said[len(base):]
    return " ".join(words)


def _is_inflection(word: str, other: str) -> bool:
    """Whether ``word`` and ``other`` are the same word with a different English inflection ("field" /
    "fields", "membrane" / "membranes", "stain" / "stained", "biopsy" / "biopsies"): one is the other plus up
    to three letters, or both share everything but a final "y" / "ies"."""
    if word == other:
        return False
    longer, shorter = (word, other) if len(word) >= len(other) else (other, word)
    if longer.startswith(shorter) and len(longer) - len(shorter) <= 3:
        return True
    return shorter.endswith("y") and longer == shorter[:-1] + "ies"


def _is_acronym(surface: str) -> bool:
    """Short all-caps or digit-bearing forms (ER, HER2, CD20): matched exactly, never corrected towards."""
    letters = surface.replace(" ", "").replace("-", "")
    return len(letters) <= 6 and (sum(c.isupper() for c in letters) >= 2 or any(c.isdigit() for c in letters))

"""Text metrics computed locally (``evaluate.load`` needs the network): word error rate and word alignment.

The normalizer lower-cases, turns punctuation and hyphens into spaces, keeps runs of letters and digits as
words and ``+`` and ``%`` as words of their own (so "TTF-1" and "ttf 1" compare equal, and so do "3+" and
"3 +", or "50%" and "50 %"), which is what ASR scoring usually does.

The word error rate is jiwer's (``tests/test_wer.py`` compares the figures): total edits over total reference
words, where a corpus with no reference word scores its number of inserted words (jiwer 4's rule), never 0.0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["align_words", "normalize_text", "wer", "word_errors"]

_KEEP = re.compile(r"[a-z0-9]+|[+%]")


def normalize_text(text: str) -> list[str]:
    """Words of ``text`` for scoring: lower case, punctuation removed, hyphenated words split, ``+`` and ``%``
    words of their own."""
    return _KEEP.findall((text or "").lower().replace("'", ""))


def align_words(
    reference: Sequence[str], hypothesis: Sequence[str]
) -> list[tuple[str, int | None, int | None]]:
    """Levenshtein alignment of two word lists.

    Returns:
        `list[tuple[str, int | None, int | None]]`: ``(op, ref_index, hyp_index)`` with op one of
        ``equal``, ``sub``, ``del`` (reference word missing) and ``ins`` (extra hypothesis word).
    """
    n, m = len(reference), len(hypothesis)
    dist = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        dist[i][0] = i
    for j in range(m + 1):
        dist[0][j] = j
    for i in range(1, n + 1):
        row, prev = dist[i], dist[i - 1]
        ref = reference[i - 1]
        for j in range(1, m + 1):
            cost = 0 if ref == hypothesis[j - 1] else 1
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost)
    ops: list[tuple[str, int | None, int | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and dist[i][j] == dist[i - 1][j - 1] + (reference[i - 1] != hypothesis[j - 1]):
            ops.append(("equal" if reference[i - 1] == hypothesis[j - 1] else "sub", i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and dist[i][j] == dist[i - 1][j] + 1:
            ops.append(("del", i - 1, None))
            i -= 1
        else:
            ops.append(("ins", None, j - 1))
            j -= 1
    return ops[::-1]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edit distance, reference word count) after normalization."""
    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    errors = sum(op != "equal" for op, _, _ in align_words(ref, hyp))
    return errors, len(ref)


def wer(references: Sequence[str] | str, hypotheses: Sequence[str] | str) -> float:
    """Corpus word error rate: total edits over total reference words, after :func:`normalize_text`.

    Args:
        references (`str` or `Sequence[str]`): the true texts.
        hypotheses (`str` or `Sequence[str]`): the transcripts, one per reference.

    Returns:
        `float`: ``edits / reference words``; with no reference word at all, the number of hypothesis words
        (each one an insertion, as jiwer scores it), so only an empty hypothesis scores 0.0.
    """
    if isinstance(references, str):
        references, hypotheses = [references], [hypotheses]
    if len(references) != len(hypotheses):
        raise ValueError("references and hypotheses differ in length")
    errors = words = 0
    for ref, hyp in zip(references, hypotheses):
        e, w = word_errors(ref, hyp)
        errors, words = errors + e, words + w
    return errors / max(1, words)

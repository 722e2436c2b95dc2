"""Word error rate: the normalizer's rules, hand-counted figures, and jiwer's figures on the same text."""

import pytest

from quilt_hf.metrics import normalize_text, wer, word_errors

PAIRS = [  # (reference, hypothesis)
    ("the tumour is HER2 3+ positive", "the tumor is her2 3 + positive"),
    ("Ki-67 index of 50%", "ki 67 index of fifty percent"),
    ("granulomas with central caseation", "granuloma with caseation necrosis present"),
    ("", "extra words here"),
    ("nothing was said", ""),
    ("TTF-1 positive adenocarcinoma", "ttf 1 positive adeno carcinoma"),
]


def test_normalizer_splits_plus_percent_and_hyphens():
    assert normalize_text("3+") == normalize_text("3 +") == ["3", "+"]
    assert normalize_text("50%") == normalize_text("50 %") == ["50", "%"]
    assert normalize_text("TTF-1") == normalize_text("ttf 1") == ["ttf", "1"]
    assert normalize_text("Don't, STOP.") == ["dont", "stop"]
    assert wer("HER2 3+", "her2 3 +") == 0.0


def test_empty_reference_with_words_is_not_a_perfect_score():
    assert wer("", "three extra words") == 3.0
    assert wer("", "") == 0.0
    assert word_errors("", "two words") == (2, 0)
    assert wer(["a b", ""], ["a b", "c"]) == pytest.approx(0.5)  # one insertion over two reference words


def test_hand_counted_corpus_wer():
    # "the tumour is her2 3 + positive": one substitution (tumour/tumor) over 7 reference words.
    assert wer(PAIRS[0][0], PAIRS[0][1]) == pytest.approx(1 / 7)
    assert wer(PAIRS[4][0], PAIRS[4][1]) == 1.0  # three deletions over three words


def test_wer_matches_jiwer():
    jiwer = pytest.importorskip("jiwer", reason="jiwer is the reference implementation (pip install jiwer)")
    references = [" ".join(normalize_text(r)) for r, _ in PAIRS]
    hypotheses = [" ".join(normalize_text(h)) for _, h in PAIRS]
    ours = wer([r for r, _ in PAIRS], [h for _, h in PAIRS])
    assert ours == pytest.approx(jiwer.wer(references, hypotheses))
    for (reference, hypothesis), ref, hyp in zip(PAIRS, references, hypotheses):
        assert wer(reference, hypothesis) == pytest.approx(jiwer.wer(ref, hyp)), (reference, hypothesis)

"""Lexicon corrector and rule extraction."""

from __future__ import annotations

import random

import pytest

from quilt_hf.curation.text.correct import LexiconCorrector
from quilt_hf.curation.text.extract import RuleExtractor, magnification_of, split_sentences
from quilt_hf.curation.text.lexicon import load_lexicon


@pytest.fixture(scope="module")
def corrector():
    return LexiconCorrector(load_lexicon())


@pytest.mark.parametrize(
    ("noisy", "expected"),
    [
        ("This is a skin bunch biopsy.", "This is a skin punch biopsy."),  # Quilt's own example
        ("It shows lupus erythematis.", "It shows lupus erythematosus."),  # Quilt's own example
        ("Stained with hematoxilin and eosin.", "Stained with hematoxylin and eosin."),
        ("An adeno carcinoma of the colon.", "An adenocarcinoma of the colon."),
        ("Marked papilloma tosis is present.", "Marked papillomatosis is present."),
        # Whisper base on the demo corpus:
        ("with a canthosis and hypercarotosis.", "with acanthosis and hyperkeratosis."),
        (
            "the stratum spinosum and the stratum brandosum.",
            "the stratum spinosum and the stratum granulosum.",
        ),
        (
            "TTF-1 favors ad hoc carcinoma over squamous cell carcinoma.",
            "TTF-1 favors adenocarcinoma over squamous cell carcinoma.",
        ),
    ],
)
def test_corrects_known_asr_errors(corrector, noisy, expected):
    result = corrector.correct(noisy)
    assert result.text == expected
    for edit in result.edits:
        assert noisy[edit.char_start : edit.char_end] == edit.original
        assert 0.86 <= edit.confidence <= 1.0


@pytest.mark.parametrize(
    "clean",
    [
        "I went to the bank to buy some bread and a punch.",
        "The ladies were eating lunch near the bench.",
        "Welcome back, thanks for watching and see you next time.",
        "The epidermis shows hyperkeratosis and parakeratosis.",
        "ER, PR and HER2 are positive; Ki-67 is 20 percent.",
        "There is no clear evidence of nuclear change.",  # "no clear" is not "nuclear"
        "This is invasive ductal carcinoma.",
        "TTF-1 positivity favorne's squamous cell carcinoma.",
        "Mitoses. Midocens are frequent.",  # never across a sentence boundary
    ],
)
def test_leaves_correct_text_alone(corrector, clean):
    assert corrector.correct(clean).text == clean


def test_no_false_corrections_on_ordinary_english(corrector):
    lexicon = corrector.lexicon
    words = sorted(lexicon.common_words)
    text = " ".join(random.Random(0).choice(words) for _ in range(2000))
    edits = corrector.correct(text).edits
    assert len(edits) <= 2, [(e.original, e.replacement) for e in edits]


def test_sentences_and_magnification():
    assert [s for _, _, s in split_sentences("One. Two? Three")] == ["One.", "Two?", "Three"]
    assert magnification_of("At 10x we see") == 0
    assert magnification_of("at twenty x") == 1
    assert magnification_of("now at 40x the nuclei") == 2
    assert magnification_of("At low power ... then under high power") == 2
    assert magnification_of("twenty per ten high power fields and 3+ staining in 50% of cells") == -1
    assert magnification_of("we counted it two times") == -1
    assert magnification_of("no statement") == -1


def test_rule_extraction():
    extractor = RuleExtractor(load_lexicon())
    text = (
        "Welcome to the channel. At 20x, the breast core biopsy shows invasive ductal carcinoma. "
        "Here, under the cursor, you can see a mitotic figure. Let's look at the slide first."
    )
    result = extractor.extract(text)
    assert result.medical_sentences == [
        "At 20x, the breast core biopsy shows invasive ductal carcinoma.",
        "Here, under the cursor, you can see a mitotic figure.",
    ]
    assert result.roi_sentences == ["Here, under the cursor, you can see a mitotic figure."]
    # a sentence mixing talk and tissue keeps its described clauses, and their region cue
    mixed = extractor.extract("Thanks for watching, and under the cursor you can see a mitotic figure.")
    assert mixed.medical_sentences == ["Under the cursor you can see a mitotic figure."]
    assert mixed.roi_sentences == ["Under the cursor you can see a mitotic figure."]
    assert result.pathology[0] == "Breast" and len(result.pathology) <= 3
    assert result.magnification == 1
    ids = [e.concept_id for e in result.entities]
    assert "QH:invasive-ductal-carcinoma" in ids and "QH:breast" in ids
    for e in result.entities:
        assert text[e.char_start : e.char_end] == e.text


def test_acronyms_match_only_in_capitals():
    extractor = RuleExtractor(load_lexicon())
    ids = [e.concept_id for e in extractor.entities("all of the cells are positive, er, mostly")]
    assert ids == []
    ids = [e.concept_id for e in extractor.entities("ALL blasts; ER positive")]
    assert "QH:estrogen-receptor" in ids

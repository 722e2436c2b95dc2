"""Whisper prompt selection per video and the guard against prompt echo and inserted terms."""

from __future__ import annotations

import pytest

from quilt_hf.curation.asr_prompt import (
    WHISPER_PROMPT_LIMIT,
    PromptSelection,
    estimate_tokens,
    guard_prompted,
    select_prompt_terms,
)
from quilt_hf.curation.text import load_lexicon


@pytest.fixture(scope="module")
def lexicon():
    return load_lexicon()


def test_title_selects_terms_of_its_topic_within_the_budget(lexicon):
    selection = select_prompt_terms(lexicon, "Seborrheic keratosis: a case-based review", max_tokens=100)
    assert selection.labels == ["Dermatopathology"]
    assert selection.terms[0] == "seborrheic keratosis" and selection.reasons["seborrheic keratosis"] == "topic"
    assert estimate_tokens(selection.prompt) <= 100 and len(selection.terms) >= 5
    for term in selection.terms:
        concept = lexicon.lookup(term)
        assert concept is not None and not concept.source.startswith("ICD")  # spoken terms, not ICD titles
        assert not concept.sub_pathology or "Dermatopathology" in concept.sub_pathology
    breast = select_prompt_terms(lexicon, "Invasive breast carcinoma: Nottingham grading", max_tokens=100)
    assert breast.labels == ["Breast"] and not set(breast.terms) & {"acanthosis", "koilocyte"}


def test_budget_is_respected_with_a_real_tokenizer_count(lexicon):
    words = lambda text: len(text.split())  # noqa: E731 - any counter the caller gives
    selection = select_prompt_terms(lexicon, "Lung adenocarcinoma", max_tokens=12, count_tokens=words)
    assert words(selection.prompt) <= 12 and selection.terms
    with pytest.raises(ValueError, match="prompt limit"):
        select_prompt_terms(lexicon, "Lung", max_tokens=WHISPER_PROMPT_LIMIT + 1)


def test_no_topic_gives_no_prompt(lexicon):
    assert select_prompt_terms(lexicon, "Unknown cases: a rapid review").prompt == ""


def test_first_pass_near_misses_enter_the_prompt(lexicon):
    selection = select_prompt_terms(lexicon, "", first_pass="The keratinocides of the epidermis show atypia.")
    assert selection.reasons.get("keratinocytes") == "near_miss"
    assert selection.reasons.get("epidermis") == "first_pass"


def test_guard_reverts_echo_and_inserted_terms_but_keeps_heard_ones(lexicon):
    selection = PromptSelection(
        prompt="Histopathology lecture (dermatopathology): acanthosis, parakeratosis, koilocyte, spongiosis.",
        terms=["acanthosis", "parakeratosis", "koilocyte", "spongiosis"],
    )
    plain = [
        {"start": 0.0, "end": 4.0, "text": "There is a canthosis with para keratosis."},
        {"start": 4.0, "end": 8.0, "text": "Please fill in the attendance sheet."},
        {"start": 8.0, "end": 12.0, "text": ""},
        {"start": 12.0, "end": 16.0, "text": "The cells are large."},
    ]
    prompted = [
        {"start": 0.0, "end": 4.0, "text": "There is acanthosis with parakeratosis."},  # heard: kept
        {"start": 4.0, "end": 8.0, "text": "Please fill in the spongiosis sheet."},  # inserted over talk
        {"start": 8.0, "end": 12.0, "text": "acanthosis, parakeratosis, koilocyte, spongiosis."},  # echo
        {"start": 12.0, "end": 16.0, "text": "The cells are large."},
    ]
    guarded, report = guard_prompted(prompted, plain, selection, lexicon)
    assert [s["text"] for s in guarded] == [
        "There is acanthosis with parakeratosis.",
        "Please fill in the attendance sheet.",
        "The cells are large.",
    ]
    assert report.reverted_inserted_term == 1 and report.inserted_terms == ["spongiosis"]
    assert report.reverted_echo == 1


def test_first_pass_gives_the_topic_when_the_title_names_none(lexicon):
    heard = "The glands of the colon show crypt abscesses and the lamina propria is inflamed."
    assert select_prompt_terms(lexicon, "Unknown cases: a rapid review").prompt == ""
    selection = select_prompt_terms(lexicon, "Unknown cases: a rapid review", first_pass=heard)
    assert selection.labels and selection.labels[0] == "Gastrointestinal"
    assert "gastrointestinal" in selection.prompt
    # a title's topic leads, and what the lecture talks about joins it
    assert select_prompt_terms(lexicon, "Skin biopsy review", first_pass=heard).labels == [
        "Dermatopathology",
        "Gastrointestinal",
    ]


def test_near_misses_come_before_terms_heard_right(lexicon):
    heard = "The epidermis is thick and the dermis is scarred. The keratinocides show atypia."
    selection = select_prompt_terms(lexicon, "", first_pass=heard)
    order = selection.terms
    assert selection.reasons["keratinocytes"] == "near_miss"
    assert order.index("keratinocytes") < order.index("epidermis")
    tight = select_prompt_terms(lexicon, "", first_pass=heard, max_tokens=20)
    assert "keratinocytes" in tight.terms  # a small budget keeps the miss, not what was heard right


def test_guard_reverts_a_repetition_loop(lexicon):
    from quilt_hf.curation.asr_prompt import COMPRESSION_RATIO_LIMIT, compression_ratio

    selection = PromptSelection(prompt="Histopathology lecture: acanthosis, koilocyte.", terms=["acanthosis", "koilocyte"])
    plain = [
        {"start": 0.0, "end": 30.0, "text": "The epidermis shows a canthosis and the cells are large near the surface."},
        {"start": 30.0, "end": 60.0, "text": "Further down the dermis holds a few vessels."},
    ]
    loop = "The epidermis shows acanthosis. " * 12  # a window stuck repeating itself
    prompted = [
        {"start": 0.0, "end": 30.0, "text": "The epidermis shows acanthosis and the cells are large near the surface."},
        {"start": 30.0, "end": 60.0, "text": loop},
    ]
    assert compression_ratio(loop) > COMPRESSION_RATIO_LIMIT > compression_ratio(plain[0]["text"])
    guarded, report = guard_prompted(prompted, plain, selection, lexicon)
    assert [s["text"] for s in guarded] == [prompted[0]["text"], plain[1]["text"]]
    assert report.reverted_loop == 1 and report.reverted_echo == 0


def test_guard_reverts_a_prompt_term_spelled_a_little_off_that_was_not_heard(lexicon):
    """The corrector would turn "spongiosys" into the prompt term: an insertion all the same."""
    selection = PromptSelection(
        prompt="Histopathology lecture (dermatopathology): acanthosis, spongiosis.", terms=["acanthosis", "spongiosis"]
    )
    plain = [{"start": 0.0, "end": 4.0, "text": "Please sit down, we start in a minute."},
             {"start": 4.0, "end": 8.0, "text": "There is mild spongy oasis in the epidermis."}]
    prompted = [{"start": 0.0, "end": 4.0, "text": "Please sit down, spongiosys start in a minute."},
                {"start": 4.0, "end": 8.0, "text": "There is mild spongiosys in the epidermis."}]
    guarded, report = guard_prompted(prompted, plain, selection, lexicon)
    assert [s["text"] for s in guarded] == [
        "Please sit down, we start in a minute.",  # not heard: reverted
        "There is mild spongiosys in the epidermis.",  # heard ("spongy oasis"): kept
    ]
    assert report.reverted_inserted_term == 1 and report.inserted_terms == ["spongiosys"]

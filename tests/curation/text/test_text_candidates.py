"""Correction candidates for each kind of miss, by general rules (phonetic codes, edit distance, merges and
splits), and ordinary English left alone. The examples are kinds of miss; none is a lexicon entry of its own."""

from __future__ import annotations

import pytest

from quilt_hf.curation.text import load_lexicon
from quilt_hf.curation.text.correct import LexiconCorrector, sounds_alike
from quilt_hf.curation.text.extract import RuleExtractor


@pytest.fixture(scope="module")
def corrector():
    return LexiconCorrector(load_lexicon())


@pytest.mark.parametrize(
    "heard, expected",
    [
        ("The nuclei are hyper chromatic and crowded.", "hyperchromatic"),  # split term, same letters
        ("The koilo sites sit in the upper layer of the squamous epithelium.", "koilocytes"),  # split, sounds alike
        ("Note the summer bodies in this papillary carcinoma.", "psammoma bodies"),  # heard as ordinary English
        ("The keratinocides show atypia.", "keratinocytes"),  # two or three letters off
        ("There is marked nuclear plier morphism.", "pleomorphism"),  # split and misspelt
        # part of a multi-word term heard as other words that sound alike, the rest heard right
        ("The keratinocytes mature from the stratum mass ale upwards.", "stratum basale"),
        ("On the right, mask it weave keratin covers the epidermis.", "basket weave"),
    ],
)
def test_each_kind_of_miss_is_corrected(corrector, heard, expected):
    result = corrector.correct(heard)
    assert expected in result.text
    assert expected in corrector.candidates(heard)


@pytest.mark.parametrize(
    "text",
    [
        "I had a summer body and we went to the summer camp.",  # no medical term nearby: English stays
        "The muscular wall is thick and the cancer cells are large.",
        "Thank you for watching, see you next time.",
        "These sites are far apart, so the bodies were moved.",
        "We went to the stratum mass ale festival.",  # a term's run, but no medical term nearby
        "The tumor mass is large and the keratinocytes are bland.",
    ],
)
def test_ordinary_english_is_untouched(corrector, text):
    assert corrector.correct(text).text == text


def test_sound_vote_separates_alike_from_unlike():
    assert sounds_alike("summer", "psammoma") and sounds_alike("sites", "cytes") and sounds_alike("bunch", "punch")
    assert not sounds_alike("hardened", "hematoxylin")


def test_suggestions_include_uncertain_candidates_below_the_threshold():
    strict = LexiconCorrector(load_lexicon(), threshold=0.99)
    text = "The keratinocides show atypia."
    assert strict.correct(text).text == text  # not applied at this threshold
    suggested = strict.suggestions(text, floor=0.75)
    assert [(e.original, e.replacement) for e in suggested] == [("keratinocides", "keratinocytes")]


def test_mixed_sentence_is_trimmed_to_its_medical_clauses():
    extractor = RuleExtractor(load_lexicon())
    text = (
        "Before we go on, please remember to fill in the attendance sheet at the back of the room. "
        "Thanks for watching, and remember the koilocytes in the upper layer. That's it all for today."
    )
    medical = extractor.extract(text).medical_sentences
    assert medical == ["Remember the koilocytes in the upper layer."]


def test_sentence_with_a_mangled_term_stays_medical_and_talk_does_not():
    extractor = RuleExtractor(load_lexicon())
    text = "The differential includes Merukovolgaris. Please remember the attendance sheet. Thanks for watching."
    assert extractor.extract(text).medical_sentences == ["The differential includes Merukovolgaris."]


@pytest.mark.parametrize(
    "text",
    [
        # an inflection of a term's word is what was said, even where the sound rules would accept the change
        "Count the mitoses in ten high power fields before you grade it.",
        "The tumour cells show strong membranes staining for the marker.",
        # a merge must not swallow a word the term does not need: the term was heard whole, next to a word
        "Today we read an immunohistochemistry slide together.",
        "The nuclei are counterstained blue with hematoxylin.",
        "Full thickness keratinocyte apia is seen.",
    ],
)
def test_right_words_next_to_a_term_are_not_changed(corrector, text):
    assert corrector.correct(text).text == text


def test_inflection_rule():
    from quilt_hf.curation.text.correct import _is_inflection

    assert _is_inflection("fields", "field") and _is_inflection("biopsies", "biopsy")
    assert _is_inflection("stained", "stain") and not _is_inflection("nuclei", "nucleoli")
    assert not _is_inflection("field", "field")


def test_a_merge_never_takes_in_a_word_that_is_nowhere_in_the_term(corrector):
    # the term's pieces are followed by a verb whose letters are not in the term: the verb stays
    result = corrector.correct("Here is a horn sudosis filled with laminated keratin.")
    assert "filled" in result.text
    assert "hyperchromatic" in corrector.correct("The nuclei are hyper chromatic and crowded.").text
    # nor an English word between the misheard run and the term's word heard right ("show" before "ballooning")
    text = "In established cirrhosis many hepatitisites show ballooning degeneration with clear cytoplasm."
    assert "show ballooning" in corrector.correct(text).text
    # a function word there is a piece of the term, as heard
    text = "Many hepatocytes show ballooning the generation with clear, swollen cytoplasm in cirrhosis."
    assert "ballooning degeneration with" in corrector.correct(text).text


def test_a_run_through_terms_heard_right_is_not_merged_into_another_term():
    corrector = LexiconCorrector(load_lexicon())
    # "adenoma" and "papillary" are lexicon forms and dictionary words: the run is terms, not a mishearing
    text = "The differential is a follicular adenoma with papillary hyperplasia."
    assert corrector.correct(text).edits == []
    # one everyday word that is also a form ("mass") may still be part of what was misheard
    fixed = corrector.correct("At 10x, the lesion is made of bland mass alloyed keratinocytes.")
    assert [(e.original, e.replacement) for e in fixed.edits] == [("mass alloyed keratinocytes", "basaloid keratinocytes")]

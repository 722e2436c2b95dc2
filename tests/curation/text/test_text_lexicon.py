"""The shipped lexicon and user lexicons."""

from __future__ import annotations

from quilt_hf.curation.text.lexicon import load_lexicon, normalize, read_concepts
from quilt_hf.schema import PATHOLOGY_LABELS


def test_shipped_lexicon_is_large_typed_and_stable():
    lexicon = load_lexicon()
    assert len(lexicon) >= 2500 and len(lexicon.forms) >= 4000
    kinds = {c.kind for c in lexicon.concepts.values()}
    assert {"stain", "marker", "cell", "feature", "grading", "magnification", "diagnosis", "site"} <= kinds
    for concept in lexicon.concepts.values():
        assert set(concept.sub_pathology) <= set(PATHOLOGY_LABELS)
        assert concept.concept_id.startswith(("QH:", "ICD10CM:"))
    assert lexicon.lookup("H&E").concept_id == "QH:hematoxylin-and-eosin"
    assert lexicon.lookup("Malignant melanoma").sub_pathology == ("Dermatopathology",)
    assert "Breast" in lexicon.lookup("ductal carcinoma in situ").sub_pathology
    covered = {label for c in lexicon.concepts.values() for label in c.sub_pathology}
    assert covered == set(PATHOLOGY_LABELS)  # every one of Quilt's 18 labels has terms
    assert "the" in lexicon.common_words


def test_user_lexicon_same_format_wins(tmp_path):
    path = tmp_path / "mine.tsv"
    path.write_text(
        "concept_id\tterm\tsynonyms\tsub_pathology\tkind\tsource\n"
        "C0000001\tfrobnicoma\tfrobnic tumour|frob\tBone|Not a label\tdiagnosis\tmy-umls\n"
        "C0000002\teosin\t\tRenal\tstain\tmy-umls\n",
        encoding="utf-8",
    )
    concepts = read_concepts(path)
    assert concepts[0].sub_pathology == ("Bone",)  # unknown label dropped
    lexicon = load_lexicon(path)
    assert lexicon.lookup("Frobnic tumour").concept_id == "C0000001"
    assert lexicon.lookup("eosin").concept_id == "C0000002"
    assert lexicon.name.startswith("quilt_hf-histopath-v1+mine.tsv@")
    only = load_lexicon(path, include_shipped=False)
    assert len(only) == 2


def test_normalize():
    assert normalize("  H&E, Crohn's ") == "h e crohn s"


def test_no_bare_generic_form_from_an_unspecified_icd_site():
    """"Neoplasm of unspecified behavior of unspecified site" once gave the form "site": every sentence with the
    word then named a term."""
    forms = load_lexicon().forms
    assert "site" not in forms and "part of eye" not in forms

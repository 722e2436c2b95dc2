"""Caption policy, sentence by sentence: talk of every kind is cut, medical sentences whose terms were misheard
(or that name none) are kept. Invented examples, one per kind; none is taken from a corpus."""

from __future__ import annotations

import pytest

from quilt_hf.curation.text import build_text_processor, load_lexicon
from quilt_hf.curation.text.caption_policy import has_medical_shape, histology_vocabulary, is_talk, medical_mask
from quilt_hf.curation.text.extract import RuleExtractor


@pytest.fixture(scope="module")
def lexicon():
    return load_lexicon()


@pytest.fixture(scope="module")
def extractor(lexicon):
    return RuleExtractor(lexicon)


@pytest.mark.parametrize(
    "talk",
    [
        "Good morning and welcome, everyone.",  # greeting
        "That's all for now, see you next time.",  # sign-off
        "Don't forget that the exam is next week.",  # logistics
        "Let's move on to the next one.",  # navigation
        "Before we go on, I want to show you something.",  # navigation
        "Can you all hear me at the back?",  # the room and the equipment
        "When I was a resident we used to argue about this.",  # the speaker's life
        "Try to guess before I tell you.",  # quiz talk
        "Okay, and now the final example.",  # announcing the next item
        "Let me pan down a bit so the whole thing fits.",  # navigation in the first person
        "Can everybody in the last row read the slide, or is it too small?",  # the room
        "Sorry for the interruption, a parcel just arrived.",  # an apology for the room
        "Please type your questions in the chat.",  # online teaching
        "Have a great afternoon, all of you.",  # sign-off
        "My old professor always said the answer is in the history.",  # the speaker's memories
        "These pictures are courtesy of the department archive.",  # acknowledgements
        "The next slide lists the criteria, I'll leave it up while you read.",  # the slide deck
        "I'll show the staging table on the following slide.",  # the slide deck, naming no term
        "The whole slide file is about 3 GB, so it takes a while to open.",  # files
    ],
)
def test_each_kind_of_talk_is_talk(talk):
    assert is_talk(talk)


def test_announcing_an_item_is_talk_only_when_the_sentence_says_nothing_else(extractor):
    assert is_talk("Next slide, please.")
    assert not is_talk("The next case shows crowded glands with mucin.")
    assert not is_talk("The last example is a melanoma.", True)
    # a misheard term before the announcement keeps the sentence medical, however short
    assert extractor.extract("Koilocitosis in the next slide.").medical_sentences == ["Koilocitosis in the next slide."]
    assert not is_talk("Nevis in the next slide.")


@pytest.mark.parametrize(
    "talk",
    [
        "Don't forget that the exam is next week.",
        "Let's move on to the next one.",
        "Can you all hear me at the back?",
        "This short video is part of a series.",  # talk about the lecture, naming no term
        "Let's look at the cells over there.",  # an invitation naming no term
    ],
)
def test_talk_between_medical_sentences_stays_out_of_the_caption(extractor, talk):
    text = f"The epidermis is thick and hyperkeratotic. {talk} The dermis shows dense fibrosis."
    medical = extractor.extract(text).medical_sentences
    assert medical == ["The epidermis is thick and hyperkeratotic.", "The dermis shows dense fibrosis."]


def test_navigation_that_names_what_is_shown_is_kept_and_logistics_never(extractor):
    text = "Now let's move on to the koilocytes in the upper layer. Don't forget the exam on the koilocytes."
    assert extractor.extract(text).medical_sentences == ["Now let's move on to the koilocytes in the upper layer."]
    assert is_talk("Let's move on.") and not is_talk("Let's move on to the koilocytes.", True)
    # deixis over a slide is not talk about the equipment
    assert extractor.extract("On the screen you can see koilocytes.").medical_sentences == [
        "On the screen you can see koilocytes."
    ]


@pytest.mark.parametrize(
    "about_the_lecture",
    [
        "This video is about koilocytes.",
        "Hello, this is a short tour of the gastric mucosa.",
        "My lecture is about interface dermatitis.",
        "This lecture will cover the grading of melanoma.",
    ],
)
def test_a_sentence_about_the_lecture_is_talk_even_when_it_names_a_term(extractor, about_the_lecture):
    # It names the lecture's topic; it does not describe what is shown.
    assert is_talk(about_the_lecture, True)
    text = f"{about_the_lecture} The glands are crowded and the nuclei are hyperchromatic."
    assert extractor.extract(text).medical_sentences == ["The glands are crowded and the nuclei are hyperchromatic."]


@pytest.mark.parametrize(
    "text, kept",
    [
        # the greeting and the lecture's description go, whatever commas the recogniser put in
        ("Hi all, this is a short, high power tour of the epidermis.", []),
        # a clause after or before it that names what is shown stays
        ("This video is about psoriasis, and the epidermis shows parakeratosis.", ["The epidermis shows parakeratosis."]),
        ("The nuclei are hyperchromatic; this lecture is on cervical dysplasia.", ["The nuclei are hyperchromatic."]),
        # every description of the lecture in the sentence goes, not only the first
        ("This video is about psoriasis, and this is a short, high power tour of the epidermis.", []),
        # what follows a conjunction after the description stays, with no comma before it
        ("My talk is about melanoma and the nuclei are hyperchromatic.", ["The nuclei are hyperchromatic."]),
    ],
)
def test_the_clauses_around_the_lecture_s_description_are_kept_when_they_describe(extractor, text, kept):
    assert extractor.extract(text).medical_sentences == kept


@pytest.mark.parametrize(
    "describes",
    [
        "This case is a classic example of papillary carcinoma.",
        "This slide is a section of colon with crowded glands.",
        "In the next field we see koilocytes.",
        "The tumor is a tubular adenoma.",
        # words with a medical sense are not lecture nouns
        "This is a classic presentation of sarcoidosis with non-caseating granulomas.",
        "Langerhans cells are central to the presentation of antigen to T cells.",
        "The first episode was a bout of acute pancreatitis with fat necrosis.",
        "This cross talk between macrophages is essential for granuloma formation.",
    ],
)
def test_a_sentence_that_describes_the_tissue_is_not_talk_about_the_lecture(extractor, describes):
    assert not is_talk(describes, True)
    assert extractor.extract(describes).medical_sentences == [describes]


def test_what_the_lecture_does_with_the_tissue_is_kept(extractor):
    text = "In this video we learn how to read an immunohistochemistry slide."
    assert extractor.extract(text).medical_sentences == [text]


def test_vocabulary_is_the_lexicons_head_words(lexicon):
    vocabulary = histology_vocabulary(lexicon)
    assert {"cells", "glands", "nuclei", "stroma"} <= vocabulary
    assert not {"room", "sheet", "morning", "exam"} & vocabulary


def test_medical_shape():
    assert has_medical_shape("Marked angiomatosis of the dermis.")
    assert has_medical_shape("Scattered histiocytes and plasmablasts.")
    assert not has_medical_shape("Please remember the attendance sheet at the back of the room.")


@pytest.mark.parametrize(
    "sentences, named, expected",
    [
        # two vocabulary words with no term named ("cells", "glands"): medical
        (["Talk of nothing.", "The cells line the glands in rows."], [False, False], [False, True]),
        # one vocabulary word: medical only next to a medical sentence
        (["The nuclei are dark.", "The cells pile up."], [True, False], [True, True]),
        (["I like the colour.", "The cells pile up."], [False, False], [False, False]),
        # one everyday head word in each of two neighbouring sentences: not medical (a rule that read signal 3
        # across a sentence end kept 11 of 40 invented off-topic pairs like these; it was not kept)
        (["I left my cell phone in the car.", "It has the whole file on it."], [False, False], [False, False]),
        (["Turn the power off at the wall.", "The system restarts on its own."], [False, False], [False, False]),
        # between two medical sentences, no talk: it continues the description
        (["Koilocytes here.", "Look how wavy it gets.", "More koilocytes."], [True, False, True], [True, True, True]),
        # after a medical sentence, referring back to it
        (["Koilocytes here.", "They look like raisins."], [True, False], [True, True]),
        (["Koilocytes here.", "Raisins are sweet."], [True, False], [True, False]),
        # talk stays talk wherever it sits
        (["Koilocytes here.", "Let's move on.", "More koilocytes."], [True, False, True], [True, False, True]),
    ],
)
def test_medical_mask_signals(lexicon, sentences, named, expected):
    assert medical_mask(sentences, named, [False] * len(sentences), lexicon) == expected


def test_a_sentence_with_a_misheard_term_is_kept_without_correction():
    # No edit is applied at this threshold; the near-miss still marks the sentence as medical.
    processor = build_text_processor("lexicon", threshold=1.01)
    text = "Thanks for watching. They look hyper chromatic."  # ordinary English words, a term's letters
    row = processor.process_batch([text])[0]
    assert row["medical_text"] == "They look hyper chromatic."
    assert row["corrected_text"] == text


def test_the_vocabulary_cache_keeps_a_few_lexicons_only():
    from quilt_hf.curation.text import caption_policy
    from quilt_hf.curation.text.lexicon import Concept, Lexicon

    lexicons = []
    for i in range(10):
        lexicon = Lexicon()
        lexicon.add(Concept(f"X:{i}", f"term{i} cells"))
        lexicons.append(lexicon)
        assert caption_policy.histology_vocabulary(lexicon) == frozenset({"cells"})
    assert len(caption_policy._VOCABULARY) <= caption_policy._VOCABULARY_KEPT


def test_a_navigating_clause_without_a_term_is_cut_from_a_medical_sentence(extractor):
    text = "The glands are crowded and back to back, let me zoom in a little, with cribriform spaces."
    assert extractor.extract(text).medical_sentences == [
        "The glands are crowded and back to back, with cribriform spaces."
    ]
    # a clause that names a term is kept even when it navigates, and a lecture noun alone is not navigation
    kept = "Let's move on to the koilocytes, the nuclei are wrinkled."
    assert extractor.extract(kept).medical_sentences == [kept]
    video = "In this video we read an immunohistochemistry slide, using a Ki-67 stain of the breast."
    assert extractor.extract(video).medical_sentences == [video]


def test_the_screen_as_a_place_on_the_slide_is_not_talk(extractor):
    text = "At the top of my screen the nuclei are large and hyperchromatic."
    assert extractor.extract(text).medical_sentences == [text]


def test_the_lecture_as_subject_with_the_definite_article_is_talk(extractor):
    assert extractor.extract("This is the last lecture of the block on glomerulonephritis.").medical_sentences == []


def test_a_sentence_about_the_speaker_is_not_carried_by_its_neighbours(extractor):
    text = "The nuclei are enlarged. I'm getting an echo on my end. The stroma is fibrotic."
    assert extractor.extract(text).medical_sentences == ["The nuclei are enlarged.", "The stroma is fibrotic."]
    # a description between two medical sentences is still carried
    text = "The nuclei are enlarged. They look a bit like popcorn. The stroma is fibrotic."
    assert len(extractor.extract(text).medical_sentences) == 3


def test_everyday_words_of_a_histology_shape_are_not_misheard_terms():
    assert not has_medical_shape("This is the easiest diagnosis of the week.")
    assert has_medical_shape("There is marked fibrosis.") and has_medical_shape("Note the koilocytosis.")


def test_a_measurement_of_the_specimen_is_medical(extractor):
    assert extractor.extract("The deep margin is clear by 4 mm.").medical_sentences == ["The deep margin is clear by 4 mm."]


@pytest.mark.parametrize(
    "medical",
    [
        # the case told, whatever its terms were heard as
        "A 47-year-old man presented with a painless neck swelling for three months.",
        "The patient had night sweats and weight loss.",
        # words of lecture talk used in descriptions of tissue (found by review: each was cut by an earlier rule)
        "Tumor cells take over the marrow space and displace the fat.",
        "On the next slide we see sheets of tumor cells with clear cytoplasm.",
        "This is a nice section of the appendix with transmural neutrophils.",
        "The other part of the tumor shows extensive necrosis.",
        "The specimen from part three shows a tubular adenoma.",
        "He was diagnosed with hepatitis C last year.",
        "Pathologists used to call this lesion a hemangiopericytoma.",
        "The breast lesion seen at the tumor board was a radial scar.",
        "These vessels bring the blood to the glomerulus.",
        "The link between HPV and cervical cancer is well established.",
        "The patient is a 61-year-old woman with ascites.",
        "So why did the hepatocytes undergo ballooning degeneration?",
        "The tumor cells hold on to each other through desmosomes.",
        "The cells ran out of oxygen and became necrotic.",
        "Next time you see psammoma bodies, think of papillary carcinoma.",
        "In residency we learned that psammoma bodies suggest papillary carcinoma.",
        # clauses addressed to the room that describe the tissue in plain words (a ninth-session rule that cut
        # such a clause when it named no term was taken out for them)
        "Please note that it is sharply demarcated and pushes rather than invades, this is a fibroadenoma.",
        "Please look at the clear halos around them, the koilocytes are in the upper layers.",
        "As everyone knows it is usually seen in young women, the fibroadenoma is a benign tumor.",
        "Thanks to the poor fixation they look shrunken, the glands are hard to read.",
    ],
)
def test_medical_sentences_are_kept_whole(extractor, medical):
    assert extractor.extract(medical).medical_sentences == [medical]


def test_a_term_clause_after_an_aside_stays_with_its_sentence(extractor):
    text = "We see the crypt abscesses, by the way, in ulcerative colitis."
    assert extractor.extract(text).medical_sentences == ["We see the crypt abscesses, in ulcerative colitis."]


def test_what_a_description_says_after_an_aside_is_kept(extractor):
    assert extractor.extract("By the way, these are Reed-Sternberg cells.").medical_sentences == [
        "These are Reed-Sternberg cells."
    ]


@pytest.mark.parametrize(
    "chatter",
    [
        # numbers and questions
        "My 6 year old daughter drew the logo of this course.",
        "Great question, and I will come back to it after the break.",
        "Let me show you one more thing before we stop.",
        "The third floor is closed, so we meet in room 5 next time.",
        "A 30-year-old man stopped me after the last talk to ask about careers.",
        "Stage 3 of the building work starts next month.",
        "We got a score of 7 out of 10 in the course survey.",
        "You can download the whole slide images from the course website.",
        # the speaker's life and the channel, even naming a term
        "My uncle was treated for prostate cancer, so this one matters to me.",  # family illness
        "I actually had my own gallbladder out last spring.",  # the speaker's own
        "My first boss used to call it the dullest organ, the pancreas.",  # only "the pancreas" would be left
        "There is a playlist on the kidney in the description below.",  # the channel
        "I did my liver fellowship in Toronto.",  # career
        # talk that names a term in passing
        "In my next lecture we'll cover renal tumours.",  # other lectures
        "The melanoma cases are on our Instagram page as well.",  # social media
        "Our guest today runs the lymphoma service downtown.",  # people on the programme
        "Hold on, my mouse stopped working on this melanoma slide.",  # the speaker's trouble
        "We ran out of CD34 antibody this month.",  # the lab
        "Somebody asked if sarcomas would be covered later.",  # audience questions
        "Pathoma has a good chapter on colon polyps.",  # learning resources
        "Bring your liver cases on Friday afternoon.",  # logistics
        "The link to the mucin stain protocol is in the description.",  # the channel
        # numbers and the word 'patient' alone do not make talk medical
        "It's 12 cm of snow outside today.",
        "We got up to 12 cm of snow overnight.",
        "The patient is always right, as my chief said.",
        "The patient is a very nice person.",
    ],
)
def test_talk_gives_no_caption(extractor, chatter):
    assert extractor.extract(chatter).medical_sentences == []

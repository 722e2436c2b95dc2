"""Which sentences of a transcript window are medical (a caption's text) and which are talk.

A pair's caption is what QuiltNet learns, so it holds the window's medical sentences only. A sentence is
**talk** when it greets, signs off, handles logistics ("leave your answers in the comments"), speaks of the
room, the equipment or the speaker's life ("can you hear me", "when I was a resident"), or has the speaker's
own lecture as its subject ("this is a short tour of ...", "my lecture is about ..."): such a sentence names
the topic, it does not describe what is shown ("in this video we compare two hematoxylin and eosin stains"
does, and stays). A sentence that names no term is talk too when it navigates ("let's move on", "let's zoom
back out"), mentions the lecture ("this video is part of a series"), opens with an invitation ("let's look at
the slide first") or only announces the next item ("and now the last case"). A sentence is **medical** by the
first signal that holds, in this order:

1. it names a lexicon term (the extractor's entities; a sentence that also holds talk keeps its clauses
   that name a term and hold no talk: the extractor does that);
2. it is not talk and holds a sign of a term the recogniser misheard: a long word that is neither English
   nor a lexicon form, a near-miss of a lexicon term (a correction candidate under the applied threshold),
   or a word shaped like histology vocabulary (``-oma``, ``-itis``, ``-cyte``, ``-plasia``, ``-osis`` ...);
3. it is not talk and holds two words of the lexicon's own histology vocabulary (the head words of its
   curated terms: cells, glands, nuclei, stroma, stain ...), or one of them next to a medical sentence, or it
   tells the case (a patient of an age "with ...", "the patient had ...", a specimen "measuring 11 cm");
4. it is not talk, does not speak of the speaker in the first person singular, and continues a medical
   sentence: it sits between two medical sentences of the window, or it follows one and opens by referring back
   to it ("They ...", "These ...", "Its ...").

Everything here is general English discourse and the lexicon's structure; nothing is a list of phrases
from a corpus.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from quilt_hf.curation.text.lexicon import Lexicon, normalize

#: Greetings and sign-offs (the extractor's historical ``CHATTER``).
GREETING = (
    r"welcome|thanks? (?:you )?for (?:watching|listening|joining|your attention)|thank you|subscribe|"
    r"see you|hello|hi everyone|hi all|good (?:morning|afternoon|evening)|goodbye|bye|stay tuned|"
    r"that'?s (?:it|all)|comments?|like and share|leave your"
)
#: Classroom and meeting logistics.
LOGISTICS = (
    r"attendance|sign[- ]in sheet|homework|assignments?|syllabus|handouts?|exams?|midterm|lunch|coffee|"
    r"microphone|office hours|announcements?|parking|deadline|next week|the room|download|"
    r"web ?pages?|websites?|web sites?|playlists?|(?:description|link(?:ed)?) below|in the description|"
    r"link (?:is |will be )?(?:below|in the description)|bring your\b|"
    r"please remember|(?:don'?t|do not) forget|remember to (?:fill|bring|sign|submit|register|hand|turn)"
)
#: Moving through the slide or the talk, and talk about the lecture itself.
NAVIGATION = (
    r"(?:let'?s|let us|let me|we(?:'ll| will| are going to)|i(?:'ll| will| am going to|'m going to))\s+(?:now\s+|then\s+)?"
    r"(?:move|go|zoom|pan|turn|switch|jump|scroll|head|come back|get back|talk about|discuss|wrap up|show you)|"
    r"before we (?:go on|move on|start|begin|continue|stop|finish|end)|moving on|step by step|"
    r"before i (?:tell|show|reveal)|how many did you|try to (?:make|guess|work out|figure out)|"
    r"on the (?:next|previous|following) slide"
)
#: The room and the equipment, admin and asides.
ASIDES = (
    r"can (?:you|everyone|everybody|anyone|all of you)(?: [\w']+){0,4} (?:hear|see|read) "
    r"(?:me|us|my screen|the screen|(?:the|my|this) slides?)\b(?! (?:of|shows?|with)\b)|"
    r"share my screen|my (?:audio|sound|connection|internet|laptop|microphone)|bear with me|sorry about that|"
    r"(?:apologies|sorry) for (?:the|my|this|that) (?:noise|delay|wait|interruption|inconvenience|confusion|"
    r"technical|late)|(?:the|this|our) (?:lights|projector)|testing,? testing|in the chat|"
    r"have a (?:lovely|nice|good|great) (?:day|evening|night|week|afternoon|morning)|feedback form|"
    r"excuse me|where was i|any questions|(?:great|good|excellent) question|let me know|"
    r"(?:post|upload|share|send) (?:the|my) slides|"
    r"slides will be|when i was a (?:resident|student|fellow|trainee)|funny story|on a personal note|"
    r"weekend|vacation|holiday|the weather|"
    # the speaker's memories and acknowledgements: "my old boss used to say ...", "thanks to her for sharing"
    r"used to (?:say|tell)|had a saying|i remember (?:failing|when|the day|my)|"
    # the speaker's own or family's illness: "my grandmother had breast cancer", "a friend of mine died of ..."
    r"my (?:grand ?)?(?:mother|father|mom|mum|dad|parents?|aunt|uncle|sister|brother|wife|husband|partner|son|"
    r"daughter|cousin|friend|neighbou?r)s?\b|a friend of mine|i (?:\w+ )?had my own|"
    r"(?:my|our) (?:\w+ )?(?:mentor|boss|chief|teacher|professor|attending|supervisor)s? (?:always|once|would|told|used to)|"
    r"thanks? to (?:him|her|them|my|our|dr|professor)\b|borrowed (?:these|this|the|most|some)|courtesy of|"
    # the slide deck and the files, not the tissue: "this slide summarises ...", "on the next slide"
    r"(?:this|the next|the previous|the last|my) (?:slide|table|figure|diagram)s? (?:summari[sz]es|recaps|lists)|"
    r"leave (?:it|this) up|(?:giga|mega)bytes?|\d+ ?[gmt]b|file size|"
    # other lectures and other days: "in the next video ...", "in part two", "next Tuesday is the tumor board"
    r"(?:my|our|the|a|this) (?:next|previous|last|earlier|upcoming|other) (?:videos?|lectures?|episodes?|"
    r"webinars?|talks?)|next (?:monday|tuesday|wednesday|thursday|friday)|"
    # the channel and social media, people on the programme, learning resources
    r"instagram|twitter|facebook|youtube|tiktok|linkedin|social media|follow (?:us|me)|like (?:this|the) video|"
    r"(?:our|today'?s) (?:speaker|guest|presenter|moderator)|pathoma|pathology ?outlines|"
    r"(?:great|good|nice) (?:chapter|resource)|explains (?:this|it) (?:really )?well|by the way|"
    # the speaker's own trouble, lab and teaching life: "my camera is off", "hold on", "we ran out of ..."
    r"my (?:camera|webcam|scanner|slide scanner|slide viewer|viewer|mouse|computer|voice)|"
    r"^(?:ok(?:ay)?,? |so,? )?(?:hold|hang) on\b|give me (?:a|one) (?:second|sec|moment|minute)|"
    r"sorry,? (?:guys|everyone|folks|all)\b|"
    r"we ran out of|drives me crazy|i once had|i always tell|my (?:residents|students|trainees)|"
    r"my (?:\w+ ){0,2}(?:residency|fellowship)|(?:some|every)(?:one|body) (?:\w+ )?(?:asked|asks)"
)
#: The lecture itself as what a sentence is about ("My lecture is about ...", "this is a short tour of ..."): it
#: names the topic, it does not describe what is shown. Its subject is the speaker's own lecture ("this", "our",
#: "today's"); words with a medical sense ("presentation", "session", "episode") are not lecture nouns here.
#: "In this video we compare two hematoxylin and eosin stains" says what is done with the tissue: not this.
_MEDIUM = r"(?:video|lecture|(?<!cross )(?<!cross-)talk|tour|tutorial|webinar|podcast)"
LECTURE_ITSELF = (
    rf"(?:this|these|today'?s|our|my) (?:[\w-]+,? ){{0,2}}{_MEDIUM}s?,? "
    r"(?:is|are|was|were|will|covers?|focus(?:es)?)\b|"
    rf"(?:this|it|here)(?:'s| is) (?:a|an|our|my|the) (?:[\w-]+,? ){{0,3}}{_MEDIUM} (?:of|on|about|through|covering)\b"
)
#: Where a sentence speaks of the lecture itself; the clauses these spans touch go with it.
ABOUT_THE_LECTURE = re.compile(rf"\b(?:{LECTURE_ITSELF})", re.IGNORECASE)
TALK = re.compile(rf"\b(?:{GREETING}|{LOGISTICS}|{ASIDES}|{LECTURE_ITSELF})\b", re.IGNORECASE)
#: Navigation, mentions of the lecture, and a sentence opened by an invitation ("Let's look at the slide
#: first"): talk only in a sentence that names no term ("Let's move on to the koilocytes" names what is shown).
SOFT_TALK = re.compile(
    rf"\b(?:{NAVIGATION})\b|"
    r"\b(?:tour|lecture|video|episode|webinar|tutorial|podcast|teaching series|channel|session)\b|"
    r"^(?:(?:now|so|okay|ok|alright|and|then|first),? )*(?:let'?s|let us)\b|"
    # a sentence that only announces the next item ("And now the last case.", "Next slide, please.")
    r"^(?:(?:and|so|now|okay|ok|alright|then|the|our|on|onto|to|in|here|here'?s|this|it'?s|is|out|up),? ){0,4}"
    r"(?:next|last|final|first|second|third|fourth|fifth|another) "
    r"(?:case|slide|example|question|quiz|image|one)\b(?:,? please)?\W*$",
    re.IGNORECASE,
)

# Word shapes of histology vocabulary (Greek and Latin suffixes of lesions, cells, processes).
_MEDICAL_SHAPE = re.compile(
    r"[a-z]{3,}(?:omas?|omata|itis|cytes?|cytic|plasias?|plastic|osis|oses|otic|philic|philia|blasts?|"
    r"emia|opathy|ectomy|otomy|trophy|trophic|megaly|ectasia|genesis)$"
)
# The case itself: the patient, the history and the specimen's measurements ("a 52-year-old woman with ...",
# "the patient presented with", "clear by 2 mm"):
# how a pathology case is told, whatever its terms were heard as.
_CASE = re.compile(
    r"\b(?:a|an|this|the)\s+(?:\d+|[a-z]+(?:[- ][a-z]+)?)[- ]years?[- ]old\s+"
    r"(?:man|woman|boy|girl|male|female|patient|child|infant|gentleman|lady)\s+"
    r"(?:with|who|present(?:ed|s|ing)|had|has|underwent|complain(?:ed|s|ing))\b|"
    r"\bthe patient (?:had|has|presented|underwent|developed|complained|received)\b|"
    # measurements of the specimen: "the margin is clear by 2 millimetres", "a mass measuring 11 cm"
    r"\b(?:measur(?:es|ing|ed)|clear by|size of)\s+\d+(?:\.\d+)? ?(?:mm|millimet(?:er|re)s?|cm|centimet(?:er|re)s?)\b",
    re.IGNORECASE,
)
# The speaker in the first person singular ("I'm getting feedback", "my phone", "this was my board question").
_FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|i'd|i'll|me|my|mine|myself)\b", re.IGNORECASE)
# Openings that refer back to the sentence before ("They are ...", "These cells ...", "Its nuclei ...").
_REFERS_BACK = re.compile(
    r"^(?:and |but |so )?(?:they|these|those|it|its|this|their|both|each|some|most|many|none|all of them|"
    r"in between|between them|around them|beside them|next to them)\b",
    re.IGNORECASE,
)


NAVIGATES = re.compile(rf"\b(?:{NAVIGATION})\b", re.IGNORECASE)


def is_talk(sentence: str, names_a_term: bool = False) -> bool:
    """Whether ``sentence`` greets, signs off, handles logistics, speaks of the room or the speaker or has the
    lecture as its subject, or (when it names no term) navigates, mentions the lecture or opens with an
    invitation ("Let's ...")."""
    return bool(TALK.search(sentence)) or (not names_a_term and bool(SOFT_TALK.search(sentence.strip())))


def _in_vocabulary(word: str, vocabulary: frozenset[str]) -> bool:
    # Plurals of a head word count as the word ("controls", "glands", "biopsies").
    if word in vocabulary:
        return True
    if word.endswith("ies") and word[:-3] + "y" in vocabulary:
        return True
    return word.endswith("s") and (word[:-1] in vocabulary or (word.endswith("es") and word[:-2] in vocabulary))


_VOCABULARY: dict[int, tuple[Lexicon, frozenset[str]]] = {}
_VOCABULARY_KEPT = 4


def histology_vocabulary(lexicon: Lexicon) -> frozenset[str]:
    """The head words (last word, 4 letters or more) of the lexicon's spoken terms: what a lecturer's
    sentences about tissue are made of ("cells", "glands", "nuclei", "stroma", "stain", "carcinoma").
    ICD titles are written, not spoken: their words are not narration vocabulary. Built once per lexicon."""
    cached = _VOCABULARY.get(id(lexicon))
    if cached is not None and cached[0] is lexicon:
        return cached[1]
    words: set[str] = set()
    for concept in lexicon.concepts.values():
        if concept.source.upper().startswith("ICD"):
            continue
        for form in concept.forms:
            parts = normalize(form).split()
            if parts and parts[-1].isalpha() and len(parts[-1]) >= 4:
                words.add(parts[-1])
    vocabulary = frozenset(words)
    while len(_VOCABULARY) >= _VOCABULARY_KEPT:  # a long-lived process may load many lexicons: keep the newest
        _VOCABULARY.pop(next(iter(_VOCABULARY)))
    _VOCABULARY[id(lexicon)] = (lexicon, vocabulary)
    return vocabulary


#: Everyday words of a histology shape: "the easiest diagnosis in the book" is not a misheard term.
_EVERYDAY_SHAPES = frozenset({"diagnosis", "diagnoses", "prognosis", "prognoses", "hypnosis", "osmosis"})


def has_medical_shape(sentence: str) -> bool:
    """Whether a word of ``sentence`` has the shape of histology vocabulary (``-oma``, ``-itis``, ``-cyte``...)."""
    return any(
        _MEDICAL_SHAPE.fullmatch(w) for w in normalize(sentence).split() if len(w) >= 7 and w not in _EVERYDAY_SHAPES
    )


def medical_mask(
    sentences: Sequence[str],
    named: Sequence[bool],
    misheard: Sequence[bool],
    lexicon: Lexicon,
) -> list[bool]:
    """Which sentences of one window are medical (see the module docstring).

    Args:
        sentences (`Sequence[str]`): the window's sentences in order.
        named (`Sequence[bool]`): per sentence, whether it names a lexicon term (signal 1; the caller trims
            talk out of such sentences).
        misheard (`Sequence[bool]`): per sentence, whether it holds a sign of a misheard term (signal 2, the
            unknown-word and near-miss parts; the word-shape part is checked here).
        lexicon (`Lexicon`): gives the histology vocabulary.

    Returns:
        `list[bool]`: one flag per sentence.
    """
    vocabulary = histology_vocabulary(lexicon)
    talk = [is_talk(s, bool(n)) for s, n in zip(sentences, named)]
    vocab_count = [len({w for w in normalize(s).split() if _in_vocabulary(w, vocabulary)}) for s in sentences]
    medical = [
        bool(n) or (not t and (bool(m) or has_medical_shape(s) or v >= 2 or bool(_CASE.search(s))))
        for s, n, m, t, v in zip(sentences, named, misheard, talk, vocab_count)
    ]
    # Neighbours: a vocabulary word next to a medical sentence, a sentence between two medical ones, and a
    # sentence that refers back to the medical one before it. One pass over the first-round flags, so a
    # chain of unsupported sentences does not carry itself.
    first = list(medical)
    for i, sentence in enumerate(sentences):
        if first[i] or talk[i]:
            continue
        before = i > 0 and first[i - 1]
        after = i + 1 < len(sentences) and first[i + 1]
        if (before or after) and vocab_count[i] >= 1:
            medical[i] = True
        elif _FIRST_PERSON.search(sentence):
            continue  # carried by its neighbours alone, a sentence about the speaker is an aside
        elif before and after:
            medical[i] = True
        elif before and _REFERS_BACK.match(sentence.strip()):
            medical[i] = True
    return medical

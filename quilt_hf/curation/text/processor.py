"""The text stage's entry point: ``build_text_processor(...)`` -> `TextProcessor`.

Each transcript window (a chunk's ``noisy_text``) becomes the ``PAIR_FEATURES`` text columns:
``corrected_text``, ``text_edits``, ``medical_text``, ``roi_text``, ``med_umls_ids``, ``entities``,
``pathology``, ``magnification``.

Backends:

- ``lexicon`` (default): the deterministic lexicon corrector + rule extractor, offline, fast;
- ``transformers``: a local chat model (any name or folder) asked, per window, to correct (given the lexicon's
  candidates) and extract;
- ``openai``: the same prompt sent to an OpenAI-compatible endpoint.

With an LLM backend the lexicon/rule result is always computed first: it gives the LLM its candidate terms and
is the row's result whenever the LLM answer does not validate (``stats["llm_fallbacks"]`` counts those,
``llm_fallback_<reason>`` says why). Entities are always the lexicon's, found in the final corrected text.

Example::

    processor = build_text_processor("lexicon")
    rows = processor.process_batch(["At 20x the hematoxilin and eosin section shows adeno carcinoma."])
    chunks = chunks.map(processor, batched=True, batch_size=64, desc="text stage")  # reads noisy_text
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import logging
from collections import Counter
from pathlib import Path

from quilt_hf.curation.text.correct import Correction, Edit, LexiconCorrector, tokenize
from quilt_hf.curation.text.extract import RuleExtractor
from quilt_hf.curation.text.lexicon import Lexicon, load_lexicon
from quilt_hf.curation.text.llm import ChatLLM, OpenAIChatLLM, TransformersChatLLM
from quilt_hf.curation.text.prompts import PROMPT_VERSION, build_messages
from quilt_hf.curation.text.validate import InvalidAnswer, validate_answer
from quilt_hf.errors import UserFacingError

logger = logging.getLogger(__name__)

BACKENDS = ("lexicon", "transformers", "openai")
OUTPUT_COLUMNS = (
    "corrected_text",
    "text_edits",
    "medical_text",
    "roi_text",
    "med_umls_ids",
    "entities",
    "pathology",
    "magnification",
)
#: Confidence given to an edit an LLM made (it states none).
LLM_EDIT_CONFIDENCE = 0.8


@functools.lru_cache(maxsize=1)
def rules_fingerprint() -> str:
    """A short hash of the text stage's own source (this package's modules): part of the processor's name, so a
    step cache made by other rules (an older quilt_hf) is not reused for new captions, and the ``text_backend``
    column says which rules made a row."""
    return source_hash(*sorted(Path(__file__).parent.glob("*.py")))


def source_hash(*paths: Path) -> str:
    """A short hash of the names and contents of ``paths`` (source files)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:8]


def diff_edits(original: str, corrected: str, confidence: float = LLM_EDIT_CONFIDENCE) -> list[Edit]:
    """Word-level edits turning ``original`` into ``corrected`` (spans in ``original``)."""
    a, b = tokenize(original), tokenize(corrected)
    matcher = difflib.SequenceMatcher(None, [t.text for t in a], [t.text for t in b], autojunk=False)
    edits = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        if i1 < i2:
            start, end = a[i1].start, a[i2 - 1].end
        else:  # pure insertion: an empty span where it goes
            start = end = a[i1].start if i1 < len(a) else len(original)
        replacement = corrected[b[j1].start : b[j2 - 1].end] if j1 < j2 else ""
        edits.append(Edit(original[start:end], replacement, start, end, confidence))
    return edits


def _shift_edits(correction: Correction) -> list[Edit]:
    """The corrector's edits with spans moved into the corrected text (for entity confidences)."""
    shifted, delta = [], 0
    for edit in correction.edits:
        start = edit.char_start + delta
        shifted.append(
            Edit(edit.original, edit.replacement, start, start + len(edit.replacement), edit.confidence)
        )
        delta += len(edit.replacement) - (edit.char_end - edit.char_start)
    return shifted


class TextProcessor:
    """Correct and extract transcript windows; see the module docstring.

    Attributes:
        name (`str`): provenance string written to the ``text_backend`` column.
        stats (`collections.Counter`): ``rows``, ``edits``, ``llm_fallbacks``, ``llm_fallback_<reason>``...
    """

    def __init__(
        self,
        lexicon: Lexicon,
        *,
        llm: ChatLLM | None = None,
        threshold: float = 0.86,
        max_llm_chars: int = 6000,
        few_shot: bool = True,
        input_column: str = "noisy_text",
        group_column: str | None = None,
        carry_magnification: bool = True,
    ):
        self.lexicon = lexicon
        self.corrector = LexiconCorrector(lexicon, threshold=threshold)
        self.extractor = RuleExtractor(lexicon)
        self.llm = llm
        self.max_llm_chars = max_llm_chars
        self.few_shot = few_shot
        self.input_column = input_column
        self.group_column = group_column
        self.carry_magnification = carry_magnification
        self.stats: Counter = Counter()
        base = f"lexicon:{lexicon.name}:t{threshold:g}:rules@{rules_fingerprint()}"
        self.name = f"{llm.name}+prompt-v{PROMPT_VERSION}+{base}" if llm else base

    def load(self) -> None:
        """Load the LLM now, when there is one with a model to load (raises
        :class:`~quilt_hf.errors.ModelLoadError` when it cannot be loaded)."""
        load = getattr(self.llm, "load", None)
        if callable(load):
            load()

    # -- rows -------------------------------------------------------------------------------------------
    def _row(
        self, text: str, corrected: str, edits: list[Edit], shifted: list[Edit], overrides: dict | None
    ) -> dict:
        extraction = self.extractor.extract(corrected, shifted)
        entities = [e.as_row() for e in extraction.entities]
        ids = list(dict.fromkeys(e["concept_id"] for e in entities))
        row = {
            "corrected_text": corrected,
            "text_edits": [e.as_row() for e in edits],
            "medical_text": " ".join(extraction.medical_sentences),
            "roi_text": " ".join(extraction.roi_sentences),
            "med_umls_ids": ids,
            "entities": entities,
            "pathology": list(extraction.pathology),
            "magnification": int(extraction.magnification),
        }
        if overrides:
            row["medical_text"] = " ".join(overrides["medical_text"])
            row["roi_text"] = " ".join(overrides["roi_text"])
            row["pathology"] = list(overrides["pathology"])
            row["magnification"] = int(overrides["magnification"])
        return row

    def _lexicon_row(self, text: str) -> tuple[dict, Correction]:
        correction = self.corrector.correct(text)
        return self._row(text, correction.text, correction.edits, _shift_edits(correction), None), correction

    def process_batch(self, texts: list[str], groups: list[str] | None = None) -> list[dict]:
        """Process transcript windows.

        Args:
            texts (`list[str]`): noisy ASR texts (None is read as "").
            groups (`list[str]`, *optional*): a group key per text (the ``video_id``). A lecturer names the organ
                once and then talks about cells: a row whose own text gives no sub-pathology takes its group's
                (the labels voted by all the group's rows in this batch), and, with ``carry_magnification``, a
                row with medical content but no stated magnification takes the last one stated before it in
                its group (rows in time order). Off when None.

        Returns:
            `list[dict]`: one dict per text with the ``OUTPUT_COLUMNS`` keys, typed as in ``PAIR_FEATURES``.
        """
        texts = [t if isinstance(t, str) else "" for t in texts]
        results, corrections = [], []
        for text in texts:
            row, correction = self._lexicon_row(text)
            results.append(row)
            corrections.append(correction)
            self.stats["rows"] += 1
            self.stats["edits"] += len(correction.edits)
            self.stats["words"] += len(tokenize(text))
        if self.llm is None:
            return self._group_pathology(results, groups)
        todo = [i for i, t in enumerate(texts) if t.strip() and len(t) <= self.max_llm_chars]
        self.stats["llm_skipped_empty"] += sum(1 for t in texts if not t.strip())
        too_long = sum(1 for t in texts if len(t) > self.max_llm_chars)
        if too_long:
            self.stats["llm_fallbacks"] += too_long
            self.stats["llm_fallback_too_long"] += too_long
        batch = [
            build_messages(
                # The same candidates as the lexicon backend, the uncertain ones too: the LLM decides on them.
                texts[i],
                [(e.original, e.replacement) for e in self.corrector.suggestions(texts[i])],
                few_shot=self.few_shot,
            )
            for i in todo
        ]
        answers = self.llm.generate(batch) if batch else []
        for i, answer in zip(todo, answers):
            try:
                if answer is None:
                    raise InvalidAnswer("no_answer")
                valid = validate_answer(answer, texts[i])
            except InvalidAnswer as error:
                self.stats["llm_fallbacks"] += 1
                self.stats[f"llm_fallback_{error.reason}"] += 1
                logger.debug("row %d falls back to the lexicon result: %s", i, error)
                continue
            corrected = valid["corrected_text"]
            edits = diff_edits(texts[i], corrected)
            shifted = [e for e in diff_edits(corrected, texts[i])]  # spans in the corrected text
            results[i] = self._row(texts[i], corrected, edits, shifted, valid)
            self.stats["llm_ok"] += 1
        return self._group_pathology(results, groups)

    def _group_pathology(self, results: list[dict], groups: list[str] | None) -> list[dict]:
        if groups is None:
            return results
        if len(groups) != len(results):
            raise ValueError(f"groups has {len(groups)} keys for {len(results)} texts")
        members: dict[str, list[int]] = {}
        for i, group in enumerate(groups):
            members.setdefault(group, []).append(i)
        for rows in members.values():
            if self.carry_magnification:
                # The objective stays where the lecturer last set it until they say otherwise.
                last = -1
                for i in rows:
                    if results[i]["magnification"] != -1:
                        last = results[i]["magnification"]
                    elif last != -1 and results[i]["entities"]:
                        results[i]["magnification"] = last
                        self.stats["magnification_from_group"] += 1
            if all(results[i]["pathology"] for i in rows):
                continue
            entities = []
            for i in rows:
                entities.extend(self.extractor.entity_from_row(e) for e in results[i]["entities"])
            labels = self.extractor.pathology(entities)
            for i in rows:
                if not results[i]["pathology"] and labels:
                    results[i]["pathology"] = list(labels)
                    self.stats["pathology_from_group"] += 1
        return results

    def __call__(self, batch: dict) -> dict:
        """``Dataset.map(processor, batched=True)``: reads ``input_column``, returns the output columns."""
        groups = list(batch[self.group_column]) if self.group_column and self.group_column in batch else None
        rows = self.process_batch(list(batch[self.input_column]), groups)
        return {column: [row[column] for row in rows] for column in OUTPUT_COLUMNS}


def build_text_processor(
    backend: str = "lexicon", model: str | None = None, url: str | None = None, **options
) -> TextProcessor:
    """Build the text stage.

    Args:
        backend (`str`, *optional*, defaults to ``"lexicon"``): ``lexicon``, ``transformers`` or ``openai``.
        model (`str`, *optional*): the chat model (Hub name or folder for transformers; the server's model name
            for openai).
        url (`str`, *optional*): the OpenAI-compatible base URL (openai backend).
        **options: ``lexicon`` (extra lexicon TSV path or list), ``threshold``, ``max_llm_chars``, ``few_shot``,
            ``input_column``, ``group_column`` (e.g. ``video_id``: see ``process_batch``'s ``groups``); transformers: ``gguf_file``, ``batch_size``, ``max_new_tokens``,
            ``max_input_tokens``, ``device``, ``dtype``; openai: ``api_key_env``, ``concurrency``, ``timeout``,
            ``max_retries``, ``backoff``, ``max_tokens``, ``temperature``, ``json_mode``.

    Returns:
        `TextProcessor`
    """
    if backend not in BACKENDS:
        raise UserFacingError(f"unknown text backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    lexicon = load_lexicon(options.pop("lexicon", None))
    processor_keys = (
        "threshold",
        "max_llm_chars",
        "few_shot",
        "input_column",
        "group_column",
        "carry_magnification",
    )
    processor_options = {k: options.pop(k) for k in processor_keys if k in options}
    llm: ChatLLM | None = None
    if backend == "transformers":
        allowed = ("gguf_file", "batch_size", "max_new_tokens", "max_input_tokens", "device", "dtype")
        llm = TransformersChatLLM(model, **{k: options.pop(k) for k in allowed if k in options})
    elif backend == "openai":
        if not url:
            raise UserFacingError("the openai text backend needs a URL (--text_url http://HOST:PORT/v1)")
        allowed = (
            "api_key_env",
            "concurrency",
            "timeout",
            "max_retries",
            "backoff",
            "max_tokens",
            "temperature",
            "json_mode",
        )
        llm = OpenAIChatLLM(url, model or "default", **{k: options.pop(k) for k in allowed if k in options})
    if options:
        raise UserFacingError(f"unknown text stage option(s) for backend {backend}: {sorted(options)}")
    return TextProcessor(lexicon, llm=llm, **processor_options)

"""The histopathology lexicon: concepts with surface forms, sub-pathology labels and a stable id.

File format (TSV with a header, UTF-8), the one shipped in ``quilt_hf/data/histopath_lexicon.tsv`` and the one
a user's bigger lexicon (a UMLS export, for example) is written in::

    concept_id  term  synonyms  sub_pathology  kind  source
    QH:eosin    eosin           ...

``synonyms`` and ``sub_pathology`` are ``|``-separated and may be empty; ``sub_pathology`` labels must be
``quilt_hf.schema.PATHOLOGY_LABELS`` (others are dropped with a warning). ``kind`` is free text (stain, marker,
cell, feature, grading, magnification, diagnosis, site); ``source`` names where the row came from.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from quilt_hf.errors import UserFacingError
from quilt_hf.schema import PATHOLOGY_LABELS

logger = logging.getLogger(__name__)

COLUMNS = ("concept_id", "term", "synonyms", "sub_pathology", "kind", "source")
SHIPPED_LEXICON = "histopath_lexicon.tsv"
COMMON_WORDS = "common_words.txt.gz"
_WORD = re.compile(r"[a-z0-9]+")


def normalize(text: str) -> str:
    """Lower-case words joined by single spaces: the key every match is made on ("H&E" -> "h e")."""
    return " ".join(_WORD.findall(text.lower()))


@dataclass(frozen=True)
class Concept:
    """One lexicon entry."""

    concept_id: str
    term: str
    synonyms: tuple[str, ...] = ()
    sub_pathology: tuple[str, ...] = ()
    kind: str = ""
    source: str = ""

    @property
    def forms(self) -> tuple[str, ...]:
        return (self.term, *self.synonyms)


@dataclass
class Lexicon:
    """Concepts indexed by their normalized surface forms.

    Attributes:
        concepts (`dict[str, Concept]`): by concept id.
        forms (`dict[str, tuple[str, str]]`): normalized form -> (concept id, surface form as written).
        common_words (`frozenset[str]`): ordinary English words (never corrected on their own).
        name (`str`): provenance string, e.g. ``quilt_hf-histopath-v1+my_umls.tsv``.
    """

    concepts: dict[str, Concept] = field(default_factory=dict)
    forms: dict[str, tuple[str, str]] = field(default_factory=dict)
    common_words: frozenset[str] = frozenset()
    name: str = ""

    def add(self, concept: Concept, *, override: bool = False) -> None:
        self.concepts[concept.concept_id] = concept
        for form in concept.forms:
            key = normalize(form)
            if key and (override or key not in self.forms):
                self.forms[key] = (concept.concept_id, form)

    def lookup(self, text: str) -> Concept | None:
        hit = self.forms.get(normalize(text))
        return self.concepts[hit[0]] if hit else None

    @property
    def max_form_words(self) -> int:
        return max((k.count(" ") + 1 for k in self.forms), default=1)

    def __len__(self) -> int:
        return len(self.concepts)


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split("|") if v.strip())


def read_concepts(path: str | Path) -> list[Concept]:
    """Read a lexicon TSV (see the module docstring for the columns).

    Raises:
        UserFacingError: if the file is missing or lacks the ``concept_id`` / ``term`` columns.
    """
    path = Path(path)
    if not path.is_file():
        raise UserFacingError(f"lexicon file {path} does not exist")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"concept_id", "term"} - set(reader.fieldnames or ())
        if missing:
            raise UserFacingError(
                f"lexicon {path} lacks the column(s) {sorted(missing)}; expected a TSV header with {', '.join(COLUMNS)}"
            )
        concepts, unknown = [], set()
        for row in reader:
            if not (row.get("concept_id") or "").strip() or not (row.get("term") or "").strip():
                continue
            labels = _split(row.get("sub_pathology"))
            unknown.update(label for label in labels if label not in PATHOLOGY_LABELS)
            concepts.append(
                Concept(
                    concept_id=row["concept_id"].strip(),
                    term=row["term"].strip(),
                    synonyms=_split(row.get("synonyms")),
                    sub_pathology=tuple(label for label in labels if label in PATHOLOGY_LABELS),
                    kind=(row.get("kind") or "").strip(),
                    source=(row.get("source") or "").strip(),
                )
            )
    if unknown:
        logger.warning("lexicon %s: dropped unknown sub-pathology labels %s", path, sorted(unknown))
    return concepts


def _data_file(name: str) -> Path:
    return Path(str(resources.files("quilt_hf") / "data" / name))


@lru_cache(maxsize=8)
def _load(extra: tuple[str, ...], include_shipped: bool) -> Lexicon:
    words_file = _data_file(COMMON_WORDS)
    common: frozenset[str] = frozenset()
    if words_file.is_file():
        common = frozenset(gzip.decompress(words_file.read_bytes()).decode("utf-8").split())
    lexicon = Lexicon(common_words=common)
    names = []
    digest = hashlib.sha256()
    if include_shipped:
        shipped = _data_file(SHIPPED_LEXICON)
        for concept in read_concepts(shipped):
            lexicon.add(concept)
        digest.update(shipped.read_bytes())
        names.append("quilt_hf-histopath-v1")
    for path in extra:
        for concept in read_concepts(path):
            lexicon.add(concept, override=True)  # a user's lexicon wins over the shipped one
        digest.update(Path(path).read_bytes())
        names.append(Path(path).name)
    # The content hash makes the name a cache key: any change to a lexicon file changes it.
    lexicon.name = "+".join(names) + f"@{digest.hexdigest()[:8]}"
    logger.info("lexicon %s: %d concepts, %d surface forms", lexicon.name, len(lexicon), len(lexicon.forms))
    return lexicon


def load_lexicon(
    paths: str | Path | list[str | Path] | None = None, *, include_shipped: bool = True
) -> Lexicon:
    """Load the shipped lexicon, plus user lexicons in the same TSV format (they win on conflicts).

    Args:
        paths (`str`, `Path`, list of them or `None`): extra lexicon files.
        include_shipped (`bool`): start from the shipped lexicon (``quilt_hf/data/histopath_lexicon.tsv``).

    Returns:
        `Lexicon`: cached per argument set (loading is done once per process).
    """
    if paths is None or paths == "":
        extra: tuple[str, ...] = ()
    elif isinstance(paths, (str, Path)):
        extra = (str(Path(paths).expanduser().resolve()),)
    else:
        extra = tuple(str(Path(p).expanduser().resolve()) for p in paths)
    return _load(extra, include_shipped)

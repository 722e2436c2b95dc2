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


def test_whisper_tokenizer_encodes_words_as_whisper_does():
    # Ids of openai-whisper's multilingual tiktoken encoding: " the" is one token (264), not "Ġ" + "the"
    # (the shipped tokenizer.json lacked the first merge, "Ġ" + "t"), and so are " terms" and " tumor".
    tokenizer = offline.whisper_tokenizer()
    assert tokenizer(" the", add_special_tokens=False).input_ids == [264]
    assert tokenizer.tokenize(" the terms tumor") == ["Ġthe", "Ġterms", "Ġtumor"]
    spec = offline.whisper_tokenizer_json()
    made = {"".join(m.split(" ")) if isinstance(m, str) else "".join(m) for m in spec["model"]["merges"]}
    specials = {t["content"] for t in spec["added_tokens"]}
    unreachable = [t for t in spec["model"]["vocab"] if len(t) > 1 and t not in made and t not in specials]
    assert unreachable == []


def test_complete_bpe_merges_restores_a_missing_merge_at_its_rank():
    vocab = {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "abc": 5}
    spec = {"model": {"vocab": vocab, "merges": ["b c", "ab c"]}, "added_tokens": []}
    assert offline.complete_bpe_merges(spec) == [("a", "b")]
    assert spec["model"]["merges"] == ["a b", "b c", "ab c"]
    assert offline.complete_bpe_merges(spec) == []  # complete now: nothing more to add
    shuffled = {"model": {"vocab": vocab, "merges": ["ab c", "b c"]}, "added_tokens": []}
    assert offline.complete_bpe_merges(shuffled) == []  # not in rank order: left as it is


def test_a_whisper_folder_with_the_unrepaired_tokenizer_is_built_again(tmp_path, monkeypatch):
    import json

    from quilt_hf.convert import offline_models

    spec = offline.whisper_tokenizer_json()
    old = json.loads(json.dumps(spec))
    old["model"]["merges"] = old["model"]["merges"][1:]  # as shipped: without "Ġ t"
    for name, tokenizer in (("whisper-base", old), ("whisper-base-ct2", spec)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
        (tmp_path / name / "tokenizer.json").write_text(json.dumps(tokenizer))
    built = []
    monkeypatch.setitem(offline_models.OFFLINE_MODELS, "whisper-base", lambda folder: built.append("whisper-base")
                        or (folder / "config.json").write_text("{}"))
    monkeypatch.setitem(offline_models.OFFLINE_MODELS, "whisper-base-ct2", lambda folder: built.append("ct2"))
    summary = offline_models.prepare_offline_models(tmp_path, ["whisper-base", "whisper-base-ct2"])
    assert built == ["whisper-base"]  # the stale folder only
    assert summary["whisper-base"]["status"] == "built" and summary["whisper-base-ct2"]["status"] == "kept"

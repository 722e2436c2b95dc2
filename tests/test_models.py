import pytest

from quilt_hf import models
from quilt_hf.errors import UserFacingError


def test_local_folder_is_returned_as_is(tmp_path):
    assert models.resolve_model(str(tmp_path), "asr") == str(tmp_path)


def test_missing_local_folder_is_a_clear_error(tmp_path):
    with pytest.raises(UserFacingError, match="does not exist"):
        models.resolve_model(str(tmp_path / "nope"), "asr")


def test_hub_name_is_passed_through():
    assert models.resolve_model("openai/whisper-tiny", "asr") == "openai/whisper-tiny"


def test_offline_default_uses_prepared_model(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("QUILT_HF_HOME", str(tmp_path))
    folder = tmp_path / "models" / "whisper-base"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    with caplog.at_level("INFO"):
        assert models.resolve_model(None, "asr") == str(folder)
    assert "offline" in caplog.text


def test_offline_default_without_prepared_models_says_how_to_prepare(tmp_path, monkeypatch):
    monkeypatch.setenv("QUILT_HF_HOME", str(tmp_path))
    with pytest.raises(UserFacingError, match="prepare_offline_models"):
        models.resolve_model(None, "asr")


def test_unknown_role():
    with pytest.raises(ValueError):
        models.resolve_model(None, "nope")

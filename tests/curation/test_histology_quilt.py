"""Quilt's released frame filter on transformers: equal to the authors' timm/DINO code on random weights saved in
the released checkpoints' layout (fixture written by ``dataset_scripts/check_quilt_filter.py reference``)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from factories import REPO
from PIL import Image

from quilt_hf.curation.histology import build_histology_classifier
from quilt_hf.curation.histology_quilt import QuiltEnsembleHistologyClassifier, load_checkpoint, state_dict_of
from quilt_hf.errors import ModelLoadError

FIXTURE = REPO / "tests" / "fixtures" / "quilt_filter"


def _images_and_expected():
    expected = np.asarray(json.loads((FIXTURE / "expected.json").read_text())["class1_probability"])
    images = [np.asarray(Image.open(FIXTURE / f"image_{i}.png").convert("RGB")) for i in range(len(expected))]
    return images, expected


@pytest.fixture(scope="module")
def ensemble():
    classifier = build_histology_classifier(f"quilt-ensemble:{FIXTURE}")
    assert isinstance(classifier, QuiltEnsembleHistologyClassifier)
    return classifier.load()


@pytest.mark.slow
def test_members_equal_the_authors_code_path(ensemble):
    """ConvNeXt (timm checkpoint with module. prefixes, args and an EMA copy) and DINO ViT + linear head, mapped onto
    transformers, give the class-1 probabilities that timm and the authors' vision_transformer.py gave."""
    images, expected = _images_and_expected()
    np.testing.assert_allclose(ensemble.member_probabilities(images), expected, atol=1e-5)


@pytest.mark.slow
def test_any_member_makes_a_frame_histology(ensemble):
    images, expected = _images_and_expected()
    classifier = ensemble
    decisions = classifier.predict(images)
    np.testing.assert_allclose([s for _, s in decisions], expected.max(axis=1), atol=1e-5)
    assert [f for f, _ in decisions] == list(expected.max(axis=1) >= 0.5)
    classifier.threshold = 0.56
    try:
        assert [f for f, _ in classifier.predict(images)] == list((expected >= 0.56).any(axis=1))
    finally:
        classifier.threshold = 0.5
    assert classifier.predict([]) == []


def test_ema_weights_are_preferred_like_timm():
    checkpoint = load_checkpoint(FIXTURE / "all_inclusive.pth.tar")
    assert "state_dict_ema" in checkpoint and "args" in checkpoint
    chosen = state_dict_of(checkpoint)
    assert all(not k.startswith("module.") for k in chosen)
    ema = checkpoint["state_dict_ema"]["module.head.fc.weight"]
    assert torch.equal(chosen["head.fc.weight"], ema)
    assert not torch.equal(chosen["head.fc.weight"], checkpoint["state_dict"]["module.head.fc.weight"])


def test_missing_files_are_named(tmp_path):
    shutil.copy(FIXTURE / "cyto_histo.pth.tar", tmp_path)
    with pytest.raises(ModelLoadError, match="all_inclusive.pth.tar.*dino_deitsmall16_pretrain.pth"):
        QuiltEnsembleHistologyClassifier(tmp_path).load()


class NotAWeight:
    pass


def test_checkpoints_with_arbitrary_objects_are_refused(tmp_path):
    for name in ("cyto_histo.pth.tar", "dino_checkpoint.pth.tar", "dino_deitsmall16_pretrain.pth"):
        shutil.copy(FIXTURE / name, tmp_path)
    torch.save({"state_dict": {}, "payload": NotAWeight()}, tmp_path / "all_inclusive.pth.tar")
    with pytest.raises(ModelLoadError, match="weights-only"):
        QuiltEnsembleHistologyClassifier(tmp_path).load()


def test_wrong_architecture_is_a_clear_error(tmp_path):
    for name in ("all_inclusive.pth.tar", "dino_checkpoint.pth.tar", "dino_deitsmall16_pretrain.pth"):
        shutil.copy(FIXTURE / name, tmp_path)
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 4)}}, tmp_path / "cyto_histo.pth.tar")
    with pytest.raises(ModelLoadError, match="not a timm ConvNeXt"):
        QuiltEnsembleHistologyClassifier(tmp_path).load()


def test_matches_timm_when_timm_is_installed():
    """Recompute the ConvNeXt members with timm itself (skipped where timm/torchvision are absent, as in the main
    venv; the committed expected.json was written by timm in the open_clip venv)."""
    timm = pytest.importorskip("timm")
    pytest.importorskip("torchvision")
    import argparse

    import torchvision.transforms as transforms

    images, expected = _images_and_expected()
    model = timm.models.convnext.ConvNeXt(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32), num_classes=2)
    with torch.serialization.safe_globals([argparse.Namespace]):
        timm.models.load_checkpoint(model, str(FIXTURE / "cyto_histo.pth.tar"))
    tfms = transforms.Compose([transforms.ToTensor(), transforms.Resize((384, 384)), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    with torch.no_grad():
        for image, row in zip(images, expected):
            x = tfms(Image.fromarray(image))[None]
            x = transforms.functional.resize(x[:, :, 42:342, 42:342], [384, 384])
            assert abs(float(model.eval()(x).softmax(-1)[0, 1]) - row[0]) < 1e-5

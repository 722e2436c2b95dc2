"""Each task against a reference: zero-shot vs a direct CLIPModel computation, linear probe vs scikit-learn."""

import numpy as np
import pytest
import torch
from _eval_fixtures import fixture_offline_benchmark, fixture_tiny_adapter  # noqa: F401  (fixtures)

from quilt_hf.evaluation import linear_probe, zero_shot
from quilt_hf.evaluation.features import FeatureCache


def test_zero_shot_matches_direct_clip_computation(tiny_clip_dir, tiny_adapter, offline_benchmark):
    from transformers import CLIPModel, CLIPProcessor

    templates = ["a histopathology image of {c}.", "a photomicrograph of {c}."]
    metrics = zero_shot.evaluate(tiny_adapter, offline_benchmark, templates=templates, cache=FeatureCache())

    # Reference: the plain transformers forward, prompt ensembling written out by hand.
    model = CLIPModel.from_pretrained(tiny_clip_dir).eval()
    processor = CLIPProcessor.from_pretrained(tiny_clip_dir)
    test = offline_benchmark.split("test")
    images = [image.convert("RGB") for image in test["image"]]
    with torch.no_grad():
        class_embeddings = []
        for spec in offline_benchmark.benchmark.classes:
            prompts = [t.format(c=name) for name in spec.names for t in templates]
            out = model(**processor(text=prompts, images=images[:1], return_tensors="pt", padding=True))
            text = out.text_embeds / out.text_embeds.norm(dim=-1, keepdim=True)
            mean = text.mean(dim=0)
            class_embeddings.append(mean / mean.norm())
        pixel = processor(images=images, return_tensors="pt")["pixel_values"]
        image = model.vision_model(pixel_values=pixel).pooler_output
        image = model.visual_projection(image)
        image = image / image.norm(dim=-1, keepdim=True)
    predictions = (image @ torch.stack(class_embeddings).T).argmax(dim=1).numpy()
    labels = np.asarray(test["label"])
    assert metrics["acc1"] == pytest.approx(float((predictions == labels).mean()), abs=1e-9)
    expected = np.zeros((4, 4), int)
    np.add.at(expected, (labels, predictions), 1)
    assert metrics["confusion_matrix"] == expected.tolist()
    assert set(metrics) >= {
        "acc1",
        "balanced_accuracy",
        "mean_per_class_recall",
        "per_class_recall",
        "confusion_matrix",
        "num_samples",
        "num_templates",
    }
    assert metrics["num_samples"] == len(test) == 64


def test_torch_logistic_regression_equals_sklearn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1, (5, 24))
    y = rng.integers(0, 5, 600)
    x = centers[y] + rng.normal(0, 1.6, (600, 24))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x_train, y_train, x_test, y_test = x[:400], y[:400], x[400:], y[400:]
    for C in (0.5, 20.0):
        ours = linear_probe.LogisticRegressionTorch(C).fit(torch.tensor(x_train), torch.tensor(y_train), 5)
        ours_acc = float((ours.decision_function(torch.tensor(x_test)).argmax(1).numpy() == y_test).mean())
        ref = LogisticRegression(C=C, max_iter=10000, tol=1e-8).fit(x_train, y_train)
        ref_acc = float((ref.predict(x_test) == y_test).mean())
        assert abs(ours_acc - ref_acc) <= 0.005, (C, ours_acc, ref_acc)
        np.testing.assert_allclose(
            ours.weight.numpy(), ref.coef_, atol=2e-3 * max(1, np.abs(ref.coef_).max())
        )


def test_torch_logistic_regression_equals_sklearn_on_binary_tasks():
    """sklearn fits one weight vector for two classes with C on it; a two-vector softmax would equal it at 2C."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    x = rng.normal(0, 1, (300, 16)) + 0.6 * (2 * y[:, None] - 1) * rng.normal(1, 0.3, 16)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for C in (0.3, 3.0):
        ours = linear_probe.LogisticRegressionTorch(C).fit(torch.tensor(x), torch.tensor(y), 2)
        ref = LogisticRegression(C=C, max_iter=10000, tol=1e-10).fit(x, y)
        assert ours.weight.shape == ref.coef_.shape == (1, 16)
        np.testing.assert_allclose(ours.weight.numpy(), ref.coef_, rtol=1e-3, atol=2e-4)
        np.testing.assert_allclose(ours.bias.numpy(), ref.intercept_, rtol=1e-3, atol=2e-4)
        scores = ours.decision_function(torch.tensor(x)).numpy()
        np.testing.assert_allclose(scores[:, 1] - scores[:, 0], ref.decision_function(x), rtol=1e-3, atol=2e-4)
    # Through the probe's fitting helper, with labels 1 and 3 of a 4-class benchmark: scores equal sklearn's.
    labels = torch.tensor(np.where(y == 1, 3, 1))
    ours, _ = linear_probe._fit_predict("torch", 1.0, torch.tensor(x), labels, torch.tensor(x[:20]), 4, "cpu")
    ref, _ = linear_probe._fit_predict("sklearn", 1.0, torch.tensor(x), labels, torch.tensor(x[:20]), 4, "cpu")
    assert np.isinf(ours[:, [0, 2]]).all() and np.isinf(ref[:, [0, 2]]).all()
    np.testing.assert_allclose(ours[:, [1, 3]], ref[:, [1, 3]], rtol=1e-3, atol=2e-4)


def test_linear_probe_equals_sklearn_backend(tiny_adapter, offline_benchmark):
    cache = FeatureCache()
    kwargs = {"fractions": (0.1, 1.0), "seeds": (0,), "c_grid": (0.1, 10.0), "cache": cache}
    ours = linear_probe.evaluate(tiny_adapter, offline_benchmark, backend="torch", **kwargs)
    ref = linear_probe.evaluate(tiny_adapter, offline_benchmark, backend="sklearn", **kwargs)
    for key in ("10%", "100%"):
        for run_ours, run_ref in zip(ours["fractions"][key]["runs"], ref["fractions"][key]["runs"]):
            assert run_ours["C"] == run_ref["C"]
            assert abs(run_ours["acc1"] - run_ref["acc1"]) <= 0.005
    assert ours["fractions"]["10%"]["num_train"] == 4 * 3  # 10% of 32 per class, rounded
    assert set(ours) >= {
        "acc1",
        "acc1_std",
        "acc1@10%",
        "acc1@100%_std",
        "balanced_accuracy",
        "per_class_recall",
        "confusion_matrix",
        "fractions",
    }
    # the second call reused every cached feature
    assert cache.misses == 3 and cache.hits >= 3


def test_linear_probe_without_validation_split_carves_one(tiny_adapter, offline_benchmark):
    import dataclasses

    data = dataclasses.replace(
        offline_benchmark, splits={k: v for k, v in offline_benchmark.splits.items() if k != "validation"}
    )
    result = linear_probe.evaluate(
        tiny_adapter, data, fractions=(1.0,), seeds=(0,), c_grid=(1.0, 100.0), cache=FeatureCache()
    )
    assert result["validation"] == "20% of train"
    assert result["fractions"]["100%"]["num_train"] == 128 - 4 * round(0.2 * 32)  # 80% of train

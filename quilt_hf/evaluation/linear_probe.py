"""Linear probing: logistic regression on frozen (cached) image embeddings.

For each training fraction (1%, 10%, 100% by default) and each seed, a stratified subset of the training
split is drawn (at least one image per class), the inverse regularisation strength ``C`` is chosen on the
validation split (or, without one, on a stratified 20% carved out of the training split), and the chosen
model is scored on the test split. Mean and standard deviation over seeds are reported.

The solver minimises scikit-learn's objective, ``C * sum(log_loss) + ||W||^2 / 2`` (intercept not penalised),
with full-batch L-BFGS in torch, so it runs on the GPU when the model does; ``backend="sklearn"`` uses
``sklearn.linear_model.LogisticRegression`` itself (the default on CPU). Both fit the same model: multinomial
(one weight vector per class) for three classes or more, and, as scikit-learn does, a single weight vector
(binary logistic loss) when the training subset holds two classes, so binary benchmarks (MHIST, PCam) tune the
same objective on GPU and CPU. Classes absent from a training subset are left out of the fit and never predicted.
Features are L2-normalised.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from quilt_hf.errors import UserFacingError
from quilt_hf.evaluation.features import FeatureCache, image_features, normalize
from quilt_hf.evaluation.metrics import classification_metrics, topk_accuracy

logger = logging.getLogger(__name__)

TASK = "linear_probe"
DEFAULT_FRACTIONS = (0.01, 0.1, 1.0)
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_C_GRID = tuple(float(c) for c in np.logspace(-2, 5, 8))
#: Unsplit data (a plain folder of class subfolders): the share held out as the test split, and its seed.
UNSPLIT_TEST_FRACTION = 0.2
UNSPLIT_SEED = 0


class LogisticRegressionTorch:
    """L2 logistic regression with scikit-learn's objective, solved by L-BFGS in torch.

    With ``num_classes == 2`` it fits one weight vector and one intercept (the score of class 1 against class 0),
    as ``sklearn.linear_model.LogisticRegression`` does; with more, one vector per class (multinomial).

    Args:
        C (`float`): inverse regularisation strength, as in scikit-learn.
        max_iter (`int`): L-BFGS iterations.
        device (`str` or `torch.device`): where to solve.
    """

    def __init__(self, C: float = 1.0, *, max_iter: int = 500, device: str | torch.device = "cpu"):
        self.C = C
        self.max_iter = max_iter
        self.device = torch.device(device)
        self.weight: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None

    def fit(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        num_classes: int,
        init: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> LogisticRegressionTorch:
        """Fit on ``(n, dim)`` features and ``(n,)`` labels in ``[0, num_classes)``; ``init`` warm-starts from
        a previous fit's ``(weight, bias)`` (shapes ``(rows, dim)`` and ``(rows,)``, one row when binary)."""
        dtype = torch.float64 if self.device.type == "cpu" else torch.float32
        x = features.to(self.device, dtype)
        y = labels.to(self.device, torch.long)
        n, dim = x.shape
        self.binary = num_classes == 2
        rows = 1 if self.binary else num_classes
        if init is not None and init[0].shape == (rows, dim):
            weight, bias = (t.detach().clone().to(self.device, dtype) for t in init)
        else:
            weight = torch.zeros(rows, dim, device=self.device, dtype=dtype)
            bias = torch.zeros(rows, device=self.device, dtype=dtype)
        weight.requires_grad_(True)
        bias.requires_grad_(True)
        strength = 1.0 / (self.C * n)  # the objective divided by C * n: mean loss + strength / 2 * ||W||^2
        optimizer = torch.optim.LBFGS(
            [weight, bias],
            lr=1.0,
            max_iter=self.max_iter,
            history_size=20,
            tolerance_grad=1e-6,
            tolerance_change=1e-10,
            line_search_fn="strong_wolfe",
        )

        def closure():
            weight.grad = bias.grad = None  # optimizer.zero_grad() goes through torch._dynamo: slow per call
            logits = x @ weight.T + bias
            if self.binary:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], y.to(dtype))
            else:
                loss = torch.nn.functional.cross_entropy(logits, y)
            loss = loss + 0.5 * strength * (weight * weight).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
        self.weight, self.bias = weight.detach(), bias.detach()
        return self

    def decision_function(self, features: torch.Tensor) -> torch.Tensor:
        """``(n, num_classes)`` scores; for a binary model ``[0, score of class 1]`` per row."""
        x = features.to(self.device, self.weight.dtype)
        scores = (x @ self.weight.T + self.bias).float().cpu()
        if self.binary:
            scores = torch.cat([torch.zeros_like(scores), scores], dim=1)
        return scores


def _fit_predict(backend: str, C: float, x_train, y_train, x_eval, num_classes: int, device, init=None):
    if backend == "sklearn":
        from sklearn.linear_model import LogisticRegression

        classifier = LogisticRegression(C=C, max_iter=5000, tol=1e-8)
        classifier.fit(x_train.numpy(), y_train.numpy())
        scores = np.full((len(x_eval), num_classes), -np.inf)
        raw = classifier.decision_function(x_eval.numpy())
        if raw.ndim == 1:  # two classes: one column, the score of classes_[1] against classes_[0]
            raw = np.stack([np.zeros_like(raw), raw], axis=1)
        scores[:, classifier.classes_] = raw
        return scores, None
    if len(torch.unique(y_train)) < 2:
        scores = np.full((len(x_eval), num_classes), -np.inf)
        scores[:, int(y_train[0])] = 0.0
        return scores, None
    # As scikit-learn: fit the classes present in this subset only (binary when there are two).
    present, y_local = torch.unique(y_train, return_inverse=True)
    model = LogisticRegressionTorch(C, device=device).fit(x_train, y_local, len(present), init=init)
    scores = np.full((len(x_eval), num_classes), -np.inf)
    scores[:, present.numpy()] = model.decision_function(x_eval).numpy()
    return scores, (model.weight, model.bias)


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a stratified ``fraction`` of ``labels``, at least one per class, sorted."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = max(1, round(fraction * len(members)))
        chosen.append(rng.choice(members, size=min(count, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded, stratified ``(train, held_out)`` split of ``labels``'s indices.

    Each class with at least two members gives ``round(fraction * n)`` of them (at least one, never all) to the
    held-out side; a class with a single member stays in training.
    """
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            continue
        count = min(len(members) - 1, max(1, round(fraction * len(members))))
        held.append(rng.choice(members, size=count, replace=False))
    held_out = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    return np.setdiff1d(np.arange(len(labels)), held_out), held_out


def select_C(
    x_train,
    y_train,
    x_val,
    y_val,
    num_classes: int,
    c_grid: Sequence[float],
    *,
    backend: str = "torch",
    device="cpu",
) -> tuple[float, dict[float, float]]:
    """The ``C`` of ``c_grid`` with the best validation accuracy (ties: the smaller C); all accuracies."""
    accuracies: dict[float, float] = {}
    init = None
    for C in sorted(c_grid):
        scores, init = _fit_predict(backend, C, x_train, y_train, x_val, num_classes, device, init)
        accuracies[C] = topk_accuracy(scores, y_val.numpy(), 1)  # the tie rule of every reported metric
    best = max(sorted(accuracies), key=lambda c: (accuracies[c], -c))
    return best, accuracies


def _split_features(model, dataset, role: str, batch_size: int, cache) -> tuple[torch.Tensor, torch.Tensor]:
    benchmark = dataset.benchmark
    data = dataset.split(role)
    features = image_features(
        model,
        data,
        column=benchmark.image_column,
        batch_size=batch_size,
        cache=cache,
        desc=f"{benchmark.name}/{role}",
    )
    return normalize(features), torch.as_tensor(np.asarray(data[benchmark.label_column]), dtype=torch.long)


def _fraction_key(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def evaluate(
    model,
    dataset,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    backend: str = "auto",
    batch_size: int = 64,
    cache: FeatureCache | None = None,
    device: str | None = None,
) -> dict:
    """Linear probe on a benchmark's train split, ``C`` chosen on validation, scored on test.

    Args:
        model (`DualEncoderAdapter`): from `load_model`.
        dataset (`BenchmarkData`): a classification benchmark with train and test splits, or unsplit data (one
            set, e.g. a folder of class subfolders): then a stratified ``UNSPLIT_TEST_FRACTION`` of it, drawn
            with seed ``UNSPLIT_SEED``, is the test split, the rest the training split; the results say so in
            ``split_note``.
        fractions (`Sequence[float]`): training fractions (0-1].
        seeds (`Sequence[int]`): one run per seed and fraction.
        c_grid (`Sequence[float]`): candidate inverse regularisation strengths.
        backend (`str`): ``"torch"`` (L-BFGS in torch), ``"sklearn"``, or ``"auto"``: torch when the solve runs
            on a GPU, scikit-learn on CPU (faster there for small problems).
        batch_size (`int`): images per forward pass.
        cache (`FeatureCache`, *optional*): feature cache shared between tasks.
        device (`str`, *optional*): where to solve; default the model's device.

    Returns:
        `dict`: ``acc1`` / ``acc1_std`` / ``balanced_accuracy`` / ``balanced_accuracy_std`` at the largest
        fraction, ``acc1@<p>%`` and ``acc1@<p>%_std`` per fraction, ``fractions`` (per-fraction means,
        spreads and runs with their chosen ``C``), ``per_class_recall`` and ``confusion_matrix`` of the
        largest fraction's first seed, ``class_names``, ``seeds``, ``c_grid``.
    """
    benchmark = dataset.benchmark
    if not benchmark.classes:
        raise UserFacingError(f"{benchmark.pretty_name} has no classes: linear probing does not apply")
    if backend not in ("auto", "torch", "sklearn"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'sklearn', not {backend!r}")
    device = device or str(getattr(model, "device", "cpu"))
    if backend == "auto":
        backend = "sklearn" if torch.device(device).type == "cpu" else "torch"
    num_classes = len(benchmark.classes)
    split_note = None
    if getattr(dataset, "unsplit", False):
        x_all, y_all = _split_features(model, dataset, dataset.ALL, batch_size, cache)
        train_rows, test_rows = stratified_holdout(y_all.numpy(), UNSPLIT_TEST_FRACTION, UNSPLIT_SEED)
        if len(test_rows) == 0:
            raise UserFacingError(
                f"{benchmark.pretty_name}: every class has a single image; the linear probe needs at least two "
                "images of some class to hold one out for testing"
            )
        x_train_all, y_train_all = x_all[train_rows], y_all[train_rows]
        x_test, y_test = x_all[test_rows], y_all[test_rows]
        split_note = (
            f"no train/test split in the data: stratified {1 - UNSPLIT_TEST_FRACTION:.0%}/{UNSPLIT_TEST_FRACTION:.0%} "
            f"train/test split drawn with seed {UNSPLIT_SEED} ({len(train_rows)} train, {len(test_rows)} test images)"
        )
        logger.info("%s linear probe: %s", benchmark.name, split_note)
    else:
        x_train_all, y_train_all = _split_features(model, dataset, "train", batch_size, cache)
        x_test, y_test = _split_features(model, dataset, "test", batch_size, cache)
    has_val = "validation" in dataset.splits
    if has_val:
        x_val, y_val = _split_features(model, dataset, "validation", batch_size, cache)
    result: dict = {"fractions": {}}
    for fraction in sorted(fractions):
        runs = []
        for seed in seeds:
            if has_val:
                pool = np.arange(len(y_train_all))
                xv, yv = x_val, y_val
            else:  # carve a stratified 20% validation split out of train, per seed
                held = stratified_subset(y_train_all.numpy(), 0.2, seed + 10_000)
                pool = np.setdiff1d(np.arange(len(y_train_all)), held)
                xv, yv = x_train_all[held], y_train_all[held]
            subset = pool[stratified_subset(y_train_all.numpy()[pool], fraction, seed)]
            x_train, y_train = x_train_all[subset], y_train_all[subset]
            best_c, val_accuracies = select_C(
                x_train, y_train, xv, yv, num_classes, c_grid, backend=backend, device=device
            )
            scores, _ = _fit_predict(backend, best_c, x_train, y_train, x_test, num_classes, device)
            metrics = classification_metrics(scores, y_test.numpy(), benchmark.class_names)
            runs.append(
                {
                    "seed": int(seed),
                    "C": best_c,
                    "num_train": len(subset),
                    "validation_accuracy": val_accuracies[best_c],
                    "acc1": metrics["acc1"],
                    "balanced_accuracy": metrics["balanced_accuracy"],
                    "metrics": metrics,
                }
            )
        acc = np.array([r["acc1"] for r in runs])
        bal = np.array([r["balanced_accuracy"] for r in runs])
        key = _fraction_key(fraction)
        result["fractions"][key] = {
            "fraction": float(fraction),
            "acc1_mean": float(acc.mean()),
            "acc1_std": float(acc.std()),
            "balanced_accuracy_mean": float(bal.mean()),
            "balanced_accuracy_std": float(bal.std()),
            "num_train": runs[0]["num_train"],
            "runs": [{k: v for k, v in run.items() if k != "metrics"} for run in runs],
        }
        result[f"acc1@{key}"] = float(acc.mean())
        result[f"acc1@{key}_std"] = float(acc.std())
        logger.info("%s linear probe %s: acc1 %.4f +- %.4f", benchmark.name, key, acc.mean(), acc.std())
        last_runs = runs
    top = result["fractions"][_fraction_key(max(fractions))]
    first = last_runs[0]["metrics"]
    result.update(
        acc1=top["acc1_mean"],
        acc1_std=top["acc1_std"],
        balanced_accuracy=top["balanced_accuracy_mean"],
        balanced_accuracy_std=top["balanced_accuracy_std"],
        mean_per_class_recall=top["balanced_accuracy_mean"],
        per_class_recall=first["per_class_recall"],
        confusion_matrix=first["confusion_matrix"],
        class_names=benchmark.class_names,
        num_classes=num_classes,
        num_samples=len(y_test),
        seeds=[int(s) for s in seeds],
        c_grid=[float(c) for c in c_grid],
        backend=backend,
        validation="validation split" if has_val else "20% of train",
    )
    if split_note:
        result.update(split_note=split_note, test_fraction=UNSPLIT_TEST_FRACTION, split_seed=UNSPLIT_SEED)
    return result

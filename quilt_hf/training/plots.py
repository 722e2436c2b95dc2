"""Training curves from a Trainer's ``trainer_state.json`` (loss, held-out recall), as a PNG."""

from __future__ import annotations

import json
from pathlib import Path


def plot_training_curves(trainer_state: str | Path, path: str | Path) -> Path | None:
    """Plot the training loss and the held-out recall@k logged in ``trainer_state``; None if nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = json.loads(Path(trainer_state).read_text()).get("log_history", [])
    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [h for h in history if any(k.startswith("eval_") and "recall" in k for k in h)]
    if not train and not evals:
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    if train:
        left.plot(*zip(*train), marker=".", label="training loss")
    held_out = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    if held_out:
        left.plot(*zip(*held_out), marker="o", label="held-out loss")
    left.set_xlabel("step")
    left.set_ylabel("contrastive loss")
    left.legend()
    recall_keys = sorted({k for h in evals for k in h if k.startswith("eval_mean_recall@")}, key=lambda k: int(k.split("@")[1]))
    for key in recall_keys:
        points = [(h["step"], h[key]) for h in evals if key in h]
        right.plot(*zip(*points), marker="o", label=key.removeprefix("eval_").replace("_", " "))
    right.set_xlabel("step")
    right.set_ylabel("held-out retrieval recall")
    right.set_ylim(0, 1.02)
    if recall_keys:
        right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return Path(path)

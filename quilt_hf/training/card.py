"""The QuiltNet model card, filled from the template ``model_cards/quiltnet_model_card.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quilt_hf.cards import template_path

TEMPLATE = "quiltnet_model_card.md"
RECALL_PREFIXES = ("image_retrieval_recall@", "text_retrieval_recall@")


def build_model_card(
    *,
    model_name: str,
    architecture: str,
    base_model: str | None = None,
    dataset_name: str | None = None,
    hyperparameters: dict[str, Any] | None = None,
    results: dict[str, float] | None = None,
    num_train_pairs: int | None = None,
    num_eval_pairs: int | None = None,
    caption_column: str = "caption",
    loss_type: str = "clip",
    repo_id: str | None = None,
    license: str = "mit",
):
    """A ``huggingface_hub.ModelCard`` for a trained contrastive model.

    Args:
        model_name (`str`): the card's title and model-index name.
        architecture (`str`): the model class (``CLIPModel``, ``VisionTextDualEncoderModel``, ...).
        base_model (`str`, *optional*): the Hub name (or folder) training started from.
        dataset_name (`str`, *optional*): the training data's Hub name or folder.
        hyperparameters (`dict`, *optional*): what to list in the training table.
        results (`dict`, *optional*): held-out metrics, keys as logged (``eval_`` prefix optional); retrieval
            recalls also go into the ``model-index`` metadata.

    Returns:
        `huggingface_hub.ModelCard`.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    results = {key.removeprefix("eval_"): value for key, value in (results or {}).items()}
    results = {k: round(float(v), 4) for k, v in results.items() if isinstance(v, (int, float))}
    dataset_id = dataset_name if dataset_name and not Path(dataset_name).exists() else None
    eval_results = [
        EvalResult(
            task_type="zero-shot-retrieval",
            task_name="Image-text retrieval (held-out split)",
            dataset_type=dataset_id or "local",
            dataset_name=(dataset_name and Path(dataset_name).name) or "held-out pairs",
            dataset_split="held-out",
            metric_type=key,
            metric_name=key,
            metric_value=value,
        )
        for key, value in results.items()
        if key.startswith(RECALL_PREFIXES)
    ]
    base_id = base_model if base_model and not Path(base_model).exists() else None
    card_data = ModelCardData(
        model_name=model_name,
        base_model=base_id,
        datasets=[dataset_id] if dataset_id else None,
        license=license,
        library_name="transformers",
        pipeline_tag="zero-shot-image-classification",
        tags=["histopathology", "pathology", "clip", "quilt", "contrastive-learning", "quilt_hf"],
        eval_results=eval_results or None,
        metrics=["recall"] if eval_results else None,
    )
    loss = "symmetric InfoNCE with a learnable temperature (CLIP)" if loss_type == "clip" else (
        "pairwise sigmoid loss (SigLIP)"
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path(TEMPLATE)),
        model_name=model_name,
        architecture=architecture,
        base_model=base_model,
        dataset_name=dataset_name,
        num_train_pairs=num_train_pairs if num_train_pairs is not None else "?",
        num_eval_pairs=num_eval_pairs,
        caption_column=caption_column,
        hyperparameters=hyperparameters or {},
        results=results,
        loss_description=loss,
        repo_id=repo_id or model_name,
        license=license.upper() if license == "mit" else license,
    )

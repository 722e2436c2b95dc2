"""Card templates (dataset card, QuiltNet model card) shipped with the package.

The templates live in ``quilt_hf/model_cards/`` (the repository's top-level ``model_cards/`` links there)
and ship inside the wheel as package data. Fill them with
``huggingface_hub.ModelCard.from_template`` / ``DatasetCard.from_template``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def template_path(name: str) -> Path:
    """Path of the card template ``name`` (for example ``"quiltnet_model_card.md"``)."""
    path = Path(str(resources.files("quilt_hf.model_cards").joinpath(name)))
    if not path.is_file():
        available = sorted(p.name for p in path.parent.glob("*.md"))
        raise FileNotFoundError(f"no card template {name!r}; available: {available}")
    return path

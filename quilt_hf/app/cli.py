"""``quilt app``: configuration and runner."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass
class AppConfig:
    """Start the web app on a pairs dataset: Browse (grid, filters, detail), Search (words; meaning with a model),
    Flag (reviewer flags saved beside the dataset), Try a model (zero-shot), Leaderboard (quilt eval results,
    model-index, the paper's published figures). Works offline on `quilt demo`'s outputs:
    quilt app --dataset outputs/demo/dataset --model outputs/demo/model --results outputs/demo/eval"""

    dataset: str = field(metadata={"help": "Pairs dataset: a `quilt publish` folder, a `quilt curate` pairs folder, "
                                           "or a Hub dataset name org/name."})
    model: list[str] = field(default_factory=list, metadata={"help": "Model folders or Hub names (CLIP-like dual "
                                                                     "encoders) for search by meaning and zero-shot."})
    results: list[str] = field(default_factory=list, metadata={"help": "`quilt eval` output folders for the "
                                                                       "leaderboard."})
    flags: str | None = field(default=None, metadata={"help": "Flags file (default: <dataset>.flags.jsonl)."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where search indexes and embeddings are cached "
                                                                  "(default: <dataset>.quilt-app-cache)."})
    host: str = field(default="127.0.0.1", metadata={"help": "Address to serve on (0.0.0.0 for a Space / LAN)."})
    port: int = field(default=7860, metadata={"help": "Port to serve on."})
    device: str | None = field(default=None, metadata={"help": "Device for models (cpu, cuda); default cpu."})


def run_app(config: AppConfig) -> int:
    from quilt_hf.app.backend import AppBackend
    from quilt_hf.app.ui import build_app

    backend = AppBackend(config.dataset, config.model, config.results, config.flags, config.cache_dir,
                         config.device)
    app = build_app(backend)
    logger.info("serving on http://%s:%d", config.host, config.port)
    app.queue().launch(server_name=config.host, server_port=config.port, share=False, show_error=True)
    return 0

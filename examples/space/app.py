"""A Hugging Face Space running `quilt app` (copy this folder into a Space repository with sdk: gradio).

Settings come from the Space's variables: QUILT_DATASET (a Hub dataset written by `quilt publish`, or a folder in
the Space), QUILT_MODELS (space-separated model names or folders), QUILT_RESULTS (folders of `quilt eval` output
committed to the Space). Flags are written to QUILT_FLAGS (default flags.jsonl): a Space's disk is wiped on restart
unless persistent storage is enabled (then use /data/flags.jsonl).
"""

import os

from quilt_hf.app.backend import AppBackend
from quilt_hf.app.ui import build_app

backend = AppBackend(
    os.environ.get("QUILT_DATASET", "outputs/demo/dataset"),
    models=os.environ.get("QUILT_MODELS", "").split(),
    results=os.environ.get("QUILT_RESULTS", "").split(),
    flags=os.environ.get("QUILT_FLAGS", "flags.jsonl"),
)
demo = build_app(backend)

if __name__ == "__main__":
    demo.queue().launch(server_name="0.0.0.0", server_port=int(os.environ.get("PORT", 7860)))

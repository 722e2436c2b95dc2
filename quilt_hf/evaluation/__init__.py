"""Evaluation: zero-shot classification, linear probing and cross-modal retrieval.

Typical use::

    from quilt_hf.evaluation import load_benchmark, load_model, zero_shot

    model = load_model("path/to/quiltnet")          # or a Hub name, or "open_clip:ViT-B-32/openai"
    data = load_benchmark("quilt_offline_patches")  # or nct_crc, a folder, a Hub dataset name
    metrics = zero_shot.evaluate(model, data)       # {"acc1": ..., "balanced_accuracy": ..., ...}

Every task module (``zero_shot``, ``linear_probe``, ``retrieval``) has ``evaluate(model, dataset, ...) -> dict``;
image features are cached per model and dataset, so the second task on the same data skips the forward pass.
``quilt eval`` (`quilt_hf.evaluation.cli.run_eval`) runs them and writes JSON, Markdown, plots and model-index.
"""

from quilt_hf.evaluation.adapters import DualEncoderAdapter, OpenClipAdapter, TransformersAdapter, load_model
from quilt_hf.evaluation.features import FeatureCache
from quilt_hf.evaluation.registry import (
    BENCHMARKS,
    Benchmark,
    BenchmarkData,
    ClassSpec,
    load_benchmark,
    register_benchmark,
)

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "BenchmarkData",
    "ClassSpec",
    "DualEncoderAdapter",
    "FeatureCache",
    "OpenClipAdapter",
    "TransformersAdapter",
    "load_benchmark",
    "load_model",
    "register_benchmark",
]

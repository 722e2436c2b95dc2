"""quilt_hf: Quilt-1M curation, QuiltNet training and histopathology benchmarks on the Hugging Face stack."""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

# Our model classes (quilt_hf.modeling) join transformers' Auto classes when those are first used.
from quilt_hf.modeling.auto import install as _install_auto_classes  # noqa: E402

_install_auto_classes()

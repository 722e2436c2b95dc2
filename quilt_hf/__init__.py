"""quilt_hf: Quilt-1M curation, QuiltNet training and histopathology benchmarks on the Hugging Face stack."""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

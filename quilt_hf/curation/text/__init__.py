"""Text stage: ASR term correction, medical / ROI text, sub-pathology, magnification and entity extraction.

Entry point: `build_text_processor` (``processor.py``). Backends: the lexicon corrector + rules (default,
offline), a local transformers chat model, or an OpenAI-compatible endpoint.
"""

from quilt_hf.curation.text.lexicon import Concept, Lexicon, load_lexicon
from quilt_hf.curation.text.processor import BACKENDS, OUTPUT_COLUMNS, TextProcessor, build_text_processor

__all__ = [
    "BACKENDS",
    "OUTPUT_COLUMNS",
    "Concept",
    "Lexicon",
    "TextProcessor",
    "build_text_processor",
    "load_lexicon",
]

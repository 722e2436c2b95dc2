"""Options of the text stage, as dataclass fields the ``quilt curate`` config merges in.

``TextStageOptions.build()`` turns them into a `TextProcessor`; ``--text_backend lexicon|transformers|openai``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quilt_hf.curation.text.processor import TextProcessor, build_text_processor


@dataclass
class TextStageOptions:
    text_backend: str = field(
        default="lexicon",
        metadata={
            "help": "Text stage backend: lexicon (offline, default), transformers (local chat LLM), "
            "openai (OpenAI-compatible HTTP endpoint), or none (no correction or extraction).",
            "choices": ["lexicon", "transformers", "openai", "none"],
        },
    )
    text_model: str | None = field(
        default=None,
        metadata={
            "help": "Chat model: Hub name or local folder (transformers), or the server's model name (openai). "
            "Empty: the llm role default (HuggingFaceTB/SmolLM2-1.7B-Instruct, offline stand-in)."
        },
    )
    text_gguf_file: str | None = field(
        default=None, metadata={"help": "GGUF file inside --text_model to load with transformers (optional)."}
    )
    text_url: str | None = field(
        default=None,
        metadata={"help": "Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1."},
    )
    text_api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "Environment variable holding the API token for --text_url (never logged)."},
    )
    text_concurrency: int = field(default=4, metadata={"help": "Requests in flight to --text_url."})
    text_request_timeout: float = field(default=60.0, metadata={"help": "Seconds per LLM HTTP request (openai)."})
    text_max_retries: int = field(
        default=2, metadata={"help": "Retries per request on timeouts, 429 and 5xx; then the row falls back."}
    )
    text_batch_size: int = field(default=8, metadata={"help": "Prompts per generate call (transformers)."})
    text_max_new_tokens: int = field(default=512, metadata={"help": "Longest LLM answer in tokens."})
    lexicon: str | None = field(
        default=None,
        metadata={
            "help": "Extra lexicon TSV (concept_id, term, synonyms, sub_pathology, kind, source), e.g. a "
            "UMLS export; merged over the shipped histopathology lexicon."
        },
    )
    text_correction_threshold: float = field(
        default=0.86, metadata={"help": "Lowest confidence (0-1) of a lexicon correction that is applied."}
    )

    def build(self) -> TextProcessor:
        """The `TextProcessor` these options describe."""
        options: dict = {"lexicon": self.lexicon, "threshold": self.text_correction_threshold}
        if self.text_backend == "transformers":
            options.update(
                gguf_file=self.text_gguf_file,
                batch_size=self.text_batch_size,
                max_new_tokens=self.text_max_new_tokens,
            )
        elif self.text_backend == "openai":
            options.update(
                api_key_env=self.text_api_key_env,
                concurrency=self.text_concurrency,
                timeout=self.text_request_timeout,
                max_retries=self.text_max_retries,
                max_tokens=self.text_max_new_tokens,
            )
        return build_text_processor(self.text_backend, model=self.text_model, url=self.text_url, **options)

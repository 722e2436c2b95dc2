"""LLM backends behind one interface: ``generate(list of chat message lists) -> list of answers``.

- `TransformersChatLLM`: any local or Hub chat model through ``AutoModelForCausalLM`` (by name or folder,
  GGUF files through ``gguf_file=``), batched greedy decoding with left padding.
- `OpenAIChatLLM`: any OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, TGI, llama.cpp server,
  Ollama, hosted APIs) with a bounded thread pool, per-request timeouts and bounded retries with backoff.
  The API token is read from an environment variable and never logged or stored in the provenance name.

An answer is a string, or None when the request failed for good; the caller falls back for that row.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from quilt_hf.curation import limits

logger = logging.getLogger(__name__)

Messages = list[dict]


class ChatLLM(Protocol):
    """What the text processor needs from an LLM backend."""

    name: str
    stats: Counter

    def generate(self, batch: list[Messages]) -> list[str | None]: ...


def _plain_prompt(messages: Messages) -> str:
    """A readable prompt for tokenizers without a chat template."""
    lines = [f"{m['role'].upper()}: {m['content']}" for m in messages]
    return "\n\n".join(lines) + "\n\nASSISTANT: "


class TransformersChatLLM:
    """A local transformers causal LM used as a chat model.

    Args:
        model (`str`, *optional*): Hub name or local folder; None picks the ``llm`` role default
            (``quilt_hf.models.resolve_model``).
        gguf_file (`str`, *optional*): a GGUF file name inside ``model`` (dequantised by transformers).
        batch_size (`int`, *optional*, defaults to 8): prompts per ``generate`` call.
        max_new_tokens (`int`, *optional*, defaults to 512).
        max_input_tokens (`int`, *optional*, defaults to 3072): longer prompts are not sent (answer None).
        device (`str`, *optional*): ``cpu``, ``cuda``...; default: cuda when available.
        dtype (`str`, *optional*): ``float32``, ``bfloat16``, ``float16`` or ``auto``.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        gguf_file: str | None = None,
        batch_size: int = 8,
        max_new_tokens: int = 512,
        max_input_tokens: int = 3072,
        device: str | None = None,
        dtype: str | None = None,
    ):
        from quilt_hf.models import resolve_model

        self.model_name = resolve_model(model, "llm")
        self.gguf_file = gguf_file
        self.batch_size = max(1, int(batch_size))
        self.max_new_tokens = int(max_new_tokens)
        self.max_input_tokens = int(max_input_tokens)
        self.device = device
        self.dtype = dtype
        self.name = f"transformers:{self.model_name}" + (f"/{gguf_file}" if gguf_file else "")
        self.stats: Counter = Counter()
        self._model = None
        self._tokenizer = None

    def load(self) -> None:
        """Load the model now (once); raise :class:`~quilt_hf.errors.ModelLoadError` when it cannot be."""
        from quilt_hf.errors import ModelLoadError, UserFacingError

        try:
            self._load()
        except UserFacingError:
            raise
        except Exception as error:  # from_pretrained raises many kinds
            folder = Path(self.model_name).expanduser()
            if folder.is_dir() and not (folder / "config.json").is_file() and not self.gguf_file:
                reason = "no transformers model in that folder (no config.json)"
            else:
                reason = f"the model cannot be loaded ({type(error).__name__}: {error})"
            raise ModelLoadError("--text_model", self.model_name, reason,
                                 "give a causal LM (Hub name or folder), or --text_backend lexicon") from error

    def _load(self):
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs = {"trust_remote_code": False}
        if self.gguf_file:
            kwargs["gguf_file"] = self.gguf_file
        tokenizer = AutoTokenizer.from_pretrained(self.model_name, **kwargs)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model_kwargs = dict(kwargs)
        if self.dtype and self.dtype != "auto":
            model_kwargs["dtype"] = getattr(torch, self.dtype)
        elif self.dtype == "auto":
            model_kwargs["dtype"] = "auto"
        model = AutoModelForCausalLM.from_pretrained(self.model_name, **model_kwargs).to(device).eval()
        if model.generation_config.pad_token_id is None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
        self._tokenizer, self._model, self._device = tokenizer, model, device
        logger.info("loaded LLM %s on %s", self.name, device)

    def _prompt(self, messages: Messages) -> str:
        if getattr(self._tokenizer, "chat_template", None):
            return self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return _plain_prompt(messages)

    def generate(self, batch: list[Messages]) -> list[str | None]:
        import torch

        if not batch:
            return []
        self._load()
        tok = self._tokenizer
        prompts = [self._prompt(m) for m in batch]
        lengths = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        answers: list[str | None] = [None] * len(batch)
        todo = [i for i, n in enumerate(lengths) if n <= self.max_input_tokens]
        self.stats["llm_too_long"] += len(batch) - len(todo)
        for offset in range(0, len(todo), self.batch_size):
            index = todo[offset : offset + self.batch_size]
            enc = tok(
                [prompts[i] for i in index], return_tensors="pt", padding=True, add_special_tokens=False
            )
            enc = {k: enc[k].to(self._device) for k in ("input_ids", "attention_mask")}
            limits.check()  # the video's time limit (the pipeline's text step) is spent: stop here
            left = limits.remaining()
            try:
                with torch.inference_mode():
                    out = self._model.generate(
                        **enc,
                        max_new_tokens=self.max_new_tokens,
                        do_sample=False,
                        pad_token_id=tok.pad_token_id,
                        **({"max_time": max(left, 0.01)} if left is not None else {}),
                    )
            except (RuntimeError, ValueError) as error:  # e.g. out of memory: these rows fall back
                logger.warning("LLM generation failed for %d prompts: %s", len(index), error)
                self.stats["llm_generation_errors"] += len(index)
                continue
            limits.check()  # an answer cut by max_time is not an answer
            new_tokens = out[:, enc["input_ids"].shape[1] :]
            for i, text in zip(index, tok.batch_decode(new_tokens, skip_special_tokens=True)):
                answers[i] = text
            self.stats["llm_requests"] += len(index)
        return answers


class _Retryable(Exception):
    pass


class OpenAIChatLLM:
    """An OpenAI-compatible chat completions endpoint.

    Args:
        url (`str`): base URL (``http://127.0.0.1:8000/v1``) or the full ``.../chat/completions`` URL.
        model (`str`): model name the server expects.
        api_key_env (`str`, *optional*, defaults to ``"OPENAI_API_KEY"``): environment variable holding the
            token; unset means no ``Authorization`` header (local servers).
        concurrency (`int`, *optional*, defaults to 4): requests in flight.
        timeout (`float`, *optional*, defaults to 60): seconds per request.
        max_retries (`int`, *optional*, defaults to 2): retries after the first try, on timeouts, connection
            errors, 429 and 5xx (never on other 4xx).
        backoff (`float`, *optional*, defaults to 0.5): first retry delay in seconds, doubled each retry.
        max_tokens (`int`, *optional*, defaults to 512), temperature (`float`, *optional*, defaults to 0).
        json_mode (`bool`, *optional*, defaults to False): send ``response_format={"type": "json_object"}``.
    """

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key_env: str | None = "OPENAI_API_KEY",
        concurrency: int = 4,
        timeout: float = 60.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        max_tokens: int = 512,
        temperature: float = 0.0,
        json_mode: bool = False,
    ):
        if not url:
            raise ValueError("the openai text backend needs --text_url (e.g. http://127.0.0.1:8000/v1)")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"text_url must be http(s), got {parts.scheme!r}")
        path = parts.path.rstrip("/")
        if not path.endswith("/chat/completions"):
            path += "/chat/completions"
        self.endpoint = urllib.parse.urlunsplit(parts._replace(path=path))
        self.model = model or "default"
        self.api_key_env = api_key_env
        self.concurrency = max(1, int(concurrency))
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        self.backoff = float(backoff)
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)
        self.json_mode = json_mode
        safe = parts._replace(
            netloc=parts.hostname + (f":{parts.port}" if parts.port else ""), query="", fragment=""
        )
        self.name = f"openai:{self.model}@{urllib.parse.urlunsplit(safe)}"
        self.stats: Counter = Counter()

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        token = os.environ.get(self.api_key_env) if self.api_key_env else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _post(self, body: bytes) -> str:
        request = urllib.request.Request(self.endpoint, data=body, headers=self._headers(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            self.stats[f"llm_http_{error.code}"] += 1
            if error.code == 429 or error.code >= 500:
                raise _Retryable(f"HTTP {error.code}") from None
            raise RuntimeError(f"HTTP {error.code}") from None
        except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as error:
            self.stats["llm_timeouts" if "timed out" in str(error) else "llm_connection_errors"] += 1
            raise _Retryable(type(error).__name__) from None
        try:
            data = json.loads(payload)
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            self.stats["llm_bad_envelope"] += 1
            raise RuntimeError("response is not a chat completion") from None
        if not isinstance(content, str):
            raise RuntimeError("message content is not text")
        return content

    def _one(self, messages: Messages) -> str | None:
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.json_mode:
            body["response_format"] = {"type": "json_object"}
        data = json.dumps(body).encode("utf-8")
        delay = self.backoff
        for attempt in range(self.max_retries + 1):
            self.stats["llm_requests"] += 1
            try:
                return self._post(data)
            except _Retryable as error:
                if attempt == self.max_retries:
                    logger.warning(
                        "LLM request to %s failed after %d tries: %s", self.name, attempt + 1, error
                    )
                    self.stats["llm_gave_up"] += 1
                    return None
                self.stats["llm_retries"] += 1
                time.sleep(delay)
                delay *= 2
            except RuntimeError as error:
                logger.warning("LLM request to %s failed: %s", self.name, error)
                self.stats["llm_gave_up"] += 1
                return None
        return None

    def generate(self, batch: list[Messages]) -> list[str | None]:
        if not batch:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batch))) as pool:
            return list(pool.map(self._one, batch))

"""What the app does, without the user interface: browse, search, flag, zero-shot, leaderboard.

:class:`AppBackend` holds the dataset store, the lazily built search indexes and loaded models; the Gradio
interface (:mod:`quilt_hf.app.ui`) only wires its methods to components, so everything here is testable without a
browser.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from quilt_hf.app import leaderboard
from quilt_hf.app.store import MAGNIFICATION_NAMES, TEXT_COLUMNS, Filters, PairStore, decode_image
from quilt_hf.errors import UserFacingError
from quilt_hf.flags import FLAG_REASONS, add_flag, default_flags_path, load_flags, pair_key

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "a histopathology image of {}."


def magnification_value(label: str) -> int | None:
    """The magnification class of a filter label ("" or "any" -> None)."""
    for value, name in MAGNIFICATION_NAMES.items():
        if label == name:
            return value
    return None


class AppBackend:
    """State and actions of ``quilt app``.

    Args:
        dataset (`str`): pairs dataset (folder or Hub name), see :class:`~quilt_hf.app.store.PairStore`.
        models (`list[str]`): model folders or Hub names for search by meaning and zero-shot.
        results (`list[str]`): ``quilt eval`` output folders for the leaderboard.
        flags (`str`, *optional*): flags file; default beside the dataset (:func:`quilt_hf.flags.default_flags_path`).
        cache_dir (`str`, *optional*): where indexes and embeddings are cached.
        device (`str`, *optional*): device for models.
    """

    def __init__(
        self,
        dataset: str,
        models: list[str] = (),
        results: list[str] = (),
        flags: str | None = None,
        cache_dir: str | None = None,
        device: str | None = None,
    ):
        self.store = PairStore(dataset, cache_dir=cache_dir)
        self.models = list(models)
        self.results = list(results)
        if flags:
            self.flags_path = Path(flags)
        elif self.store.folder is not None:
            self.flags_path = default_flags_path(self.store.folder)
        else:
            self.flags_path = self.store.cache_dir / "flags.jsonl"
        self.device = device
        self._lock = threading.Lock()
        self._text_index = None
        self._adapters: dict = {}
        self._embeddings: dict = {}
        self._pipelines: dict = {}
        self.entries = leaderboard.collect(self.models, self.results)

    # ---- browse ------------------------------------------------------------------------------------------
    def filters(self, subset: str = "", split: str = "", pathology: str = "", magnification: str = "",
                video_id: str = "") -> Filters:
        return Filters(subset or "", split or "", pathology or "", magnification_value(magnification or ""),
                       video_id or "")

    def gallery(self, rows: list[int]) -> list[tuple]:
        """(image, caption) items for a gallery, in the order of ``rows``."""
        records = self.store.take(rows, columns=[c for c in ("image", "caption") if c in self.store.columns])
        return [(decode_image(r.get("image")), (r.get("caption") or "")[:160]) for r in records]

    def page(self, filters: Filters, page: int, page_size: int = 24) -> tuple[list[tuple], list[int], int]:
        """Gallery items, their row numbers and the number of matching pairs."""
        selection = self.store.select(filters)
        start = max(0, page) * page_size
        rows = selection[start : start + page_size].tolist()
        return self.gallery(rows), rows, len(selection)

    def detail(self, row: int) -> tuple[str, list[tuple], str]:
        """A pair's detail view: Markdown of every text column and its provenance, the images of its chunk, and the
        Markdown of its flags."""
        record = self.store.row(row)
        lines = [f"### Pair {row}: `{record.get('image_id', '')}`", ""]
        for column in TEXT_COLUMNS:
            if column in record:
                lines += [f"**{column}**", "", (record[column] or "_(empty)_"), ""]
        video = record.get("video_id", "")
        lines.append(
            f"**video** `{video}`: image shown {record.get('start', 0):.1f}-{record.get('end', 0):.1f} s, "
            f"text window {record.get('text_start', 0):.1f}-{record.get('text_end', 0):.1f} s "
            f"(chunk {record.get('chunk_id', '')}, video length {record.get('video_duration', 0):.1f} s)"
        )
        location = self.store.video_location(video, float(record.get("start") or 0))
        if location:
            lines.append(f"**watch** {location}")
        score = self.store.histology_score(record)
        lines.append(f"**histology score** {score:.3f}" if score is not None else "**histology score** not recorded")
        magnification = record.get("magnification")
        lines.append(f"**magnification** {MAGNIFICATION_NAMES.get(magnification, magnification)}")
        for column in ("pathology", "med_umls_ids", "subset", "split", "source", "asr_model", "text_backend"):
            value = record.get(column)
            if value not in (None, "", []):
                lines.append(f"**{column}** {', '.join(map(str, value)) if isinstance(value, list) else value}")
        entities = record.get("entities") or []
        if entities:
            lines.append("**entities** " + "; ".join(f"{e.get('text')} ({e.get('concept_id')})" for e in entities))
        edits = record.get("text_edits") or []
        if edits:
            lines.append("**ASR corrections** " + "; ".join(f"{e.get('original')} → {e.get('replacement')}"
                                                              for e in edits))
        chunk_rows = self.store.same_chunk(row)
        return "\n\n".join(lines), self.gallery(chunk_rows), self.flags_markdown(row, record)

    def flags_markdown(self, row: int, record: dict | None = None) -> str:
        record = record or self.store.take([row], columns=["image_id", "caption"])[0]
        key = pair_key(record.get("image_id", ""), record.get("caption", ""))
        flags = [f for f in load_flags(self.flags_path) if f["pair_key"] == key]
        if not flags:
            return "No flags on this pair."
        return "\n".join(f"- **{f['reason']}** {f.get('note', '')} ({f.get('reviewer') or 'anonymous'}, "
                         f"{f.get('created', '')})" for f in flags)

    # ---- search ------------------------------------------------------------------------------------------
    def search_words(self, text: str, limit: int = 48) -> list[int]:
        """Rows whose text contains every word of ``text`` (FTS5, BM25 order)."""
        with self._lock:
            if self._text_index is None:
                from quilt_hf.app.search import TextIndex

                self._text_index = TextIndex(self.store)
        return self._text_index.search(text, limit=limit)

    def adapter(self, model: str):
        if model not in self.models:
            raise UserFacingError(f"model {model!r} was not given to quilt app (--model)")
        with self._lock:
            if model not in self._adapters:
                from quilt_hf.evaluation.adapters import load_model

                self._adapters[model] = load_model(model, device=self.device)
        return self._adapters[model]

    def embeddings(self, model: str):
        adapter = self.adapter(model)
        with self._lock:
            if model not in self._embeddings:
                from quilt_hf.app.search import EmbeddingIndex

                self._embeddings[model] = EmbeddingIndex(self.store, adapter)
        return self._embeddings[model]

    def search_meaning(self, model: str, text: str = "", image=None, limit: int = 24):
        """Rows ranked by meaning: images for a text query, or images and captions for an image query.

        Returns:
            `tuple[list[tuple[int, float]], list[tuple[int, float]]]`: image hits and caption hits (row, cosine).
        """
        index = self.embeddings(model)
        if image is not None:
            return index.images_for_image(image, limit), index.captions_for_image(image, 10)
        if text.strip():
            return index.images_for_text(text, limit), []
        return [], []

    def captions(self, rows: list[int]) -> list[str]:
        return [r.get("caption", "") for r in self.store.take(rows, columns=["caption"])]

    # ---- flag --------------------------------------------------------------------------------------------
    def flag(self, row: int, reason: str, note: str = "", reviewer: str = "") -> dict:
        """Save a flag on a pair (appended to the flags file; the dataset is never edited)."""
        if reason not in FLAG_REASONS:
            raise UserFacingError(f"choose a reason: {', '.join(FLAG_REASONS)}")
        columns = [c for c in ("image_id", "caption", "video_id", "chunk_id") if c in self.store.columns]
        record = self.store.take([int(row)], columns=columns)[0]
        return add_flag(
            self.flags_path,
            image_id=record.get("image_id") or f"row-{row}",
            caption=record.get("caption", ""),
            reason=reason,
            note=note,
            reviewer=reviewer,
            video_id=record.get("video_id", ""),
            chunk_id=record.get("chunk_id"),
        )

    def flags_table(self):
        import pandas as pd

        columns = ["created", "reason", "note", "reviewer", "image_id", "video_id", "caption"]
        flags = load_flags(self.flags_path)
        return pd.DataFrame([{c: f.get(c, "") for c in columns} for f in flags], columns=columns)

    # ---- try a model -------------------------------------------------------------------------------------
    def zero_shot(self, model: str, image, class_names: list[str], template: str = DEFAULT_TEMPLATE) -> dict:
        """Zero-shot scores of ``image`` against ``class_names`` with the transformers pipeline."""
        names = [c.strip() for c in class_names if c.strip()]
        if len(names) < 2:
            raise UserFacingError("type at least two class names, separated by commas or new lines")
        if image is None:
            raise UserFacingError("upload an image first")
        if model not in self.models:
            raise UserFacingError(f"model {model!r} was not given to quilt app (--model)")
        with self._lock:
            if model not in self._pipelines:
                from transformers import pipeline

                from quilt_hf.models import resolve_model

                self._pipelines[model] = pipeline(
                    "zero-shot-image-classification", model=resolve_model(model, "clip"), device=self.device or "cpu"
                )
        outputs = self._pipelines[model](image.convert("RGB"), candidate_labels=names,
                                         hypothesis_template=template or DEFAULT_TEMPLATE)
        return {o["label"]: float(o["score"]) for o in outputs}

    # ---- leaderboard -------------------------------------------------------------------------------------
    def leaderboard_names(self) -> list[str]:
        return leaderboard.table_names(self.entries)

    def leaderboard_table(self, name: str):
        return leaderboard.table(self.entries, name)

"""Search a pairs dataset: by words (SQLite FTS5) and by meaning (model embeddings in a faiss index).

Both indexes are built once and cached in the store's cache folder (beside the dataset), keyed by the dataset's
fingerprint (and, for embeddings, the model's): a restart of the app reuses them.

- :class:`TextIndex`: an SQLite FTS5 full-text index (Python's own ``sqlite3``) over the caption, medical / ROI
  text, corrected transcript, sub-pathology labels and concept ids; ranked by BM25.
- :class:`EmbeddingIndex`: image and caption embeddings of every pair computed with a dual encoder
  (:func:`quilt_hf.evaluation.adapters.load_model`), L2-normalised, saved as safetensors, searched with faiss
  (exact inner product below ``ANN_MIN_ROWS`` rows, an IVF index with 8-bit scalar quantisation above).
"""

from __future__ import annotations

import logging
import math
import re
import sqlite3
from pathlib import Path

import numpy as np

from quilt_hf.errors import UserFacingError

logger = logging.getLogger(__name__)

SEARCH_COLUMNS = ("caption", "medical_text", "roi_text", "corrected_text", "pathology", "med_umls_ids")
ANN_MIN_ROWS = 50_000
#: Word search ranks (BM25) at most this many matches, the first ones in row order.
MAX_RANKED = 5_000
_WORD = re.compile(r"[\w\-]+", re.UNICODE)


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def fts_query(text: str) -> str:
    """An FTS5 query matching rows that contain every word of ``text`` (a word ending in ``*`` matches prefixes)."""
    terms = []
    for token in text.split():
        words = _WORD.findall(token)
        for i, word in enumerate(words):
            star = "*" if token.endswith("*") and i == len(words) - 1 else ""
            terms.append(f'"{word}"{star}')
    return " ".join(terms)


class TextIndex:
    """Full-text search over a :class:`~quilt_hf.app.store.PairStore`.

    Args:
        store (`PairStore`): the dataset.
        rebuild (`bool`): build again even when a cached index exists.
    """

    def __init__(self, store, rebuild: bool = False):
        self.store = store
        self.path = Path(store.cache_dir) / f"text-{store.fingerprint}.sqlite"
        self.build_seconds = 0.0
        if rebuild or not self.path.is_file():
            self._build()
        self.connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)

    def _build(self) -> None:
        import time

        from tqdm.auto import tqdm

        start = time.perf_counter()
        columns = [c for c in SEARCH_COLUMNS if c in self.store.columns]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        connection = sqlite3.connect(partial)
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute(f"CREATE VIRTUAL TABLE pairs USING fts5({', '.join(columns)}, tokenize='porter unicode61')")
        row = 0
        with tqdm(total=self.store.num_rows, desc="Building the word index", unit="pair") as bar:
            for batch in self.store.iter_batches(columns, batch_size=4096):
                data = batch.to_pydict()
                values = [
                    (row + i, *(_cell_text(data[c][i]) for c in columns)) for i in range(batch.num_rows)
                ]
                connection.executemany(
                    f"INSERT INTO pairs(rowid, {', '.join(columns)}) VALUES ({', '.join('?' * (len(columns) + 1))})",
                    values,
                )
                row += batch.num_rows
                bar.update(batch.num_rows)
        connection.commit()
        connection.close()
        partial.replace(self.path)  # a crash mid-build never leaves an index that looks complete
        self.build_seconds = time.perf_counter() - start
        logger.info("word index of %d pairs built in %.1f s: %s", row, self.build_seconds, self.path)

    def search(self, text: str, limit: int = 48) -> list[int]:
        """Row numbers of the pairs containing every word of ``text``, best BM25 match first.

        Ranking is done among the first :data:`MAX_RANKED` matches (in row order): ranking every match of a common
        word on a million captions costs seconds, while FTS5 yields matches in row order almost for free.
        """
        query = fts_query(text)
        if not query:
            return []
        cursor = self.connection.execute(
            "SELECT rowid FROM (SELECT rowid, rank FROM pairs WHERE pairs MATCH ? LIMIT ?) ORDER BY rank LIMIT ?",
            (query, MAX_RANKED, int(limit)),
        )
        return [r[0] for r in cursor.fetchall()]


def build_faiss_index(vectors: np.ndarray, exact: bool | None = None):
    """A faiss inner-product index over L2-normalised ``vectors`` (cosine similarity).

    Below :data:`ANN_MIN_ROWS` rows (or with ``exact=True``) the index is exact (``IndexFlatIP``). Above, an
    ``IVF{2*sqrt(n)},SQ8`` index: k-means coarse lists (trained on 40 rows per list, 10 iterations) holding 8-bit
    scalar-quantised vectors, a quarter of the memory of the float32 vectors; 64 lists probed per query.
    """
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if exact or (exact is None and n < ANN_MIN_ROWS):
        index = faiss.IndexFlatIP(dim)
    else:
        lists = int(2 * math.sqrt(n))
        index = faiss.index_factory(dim, f"IVF{lists},SQ8", faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.niter = 10
        rng = np.random.default_rng(0)
        sample = vectors[np.sort(rng.choice(n, size=min(n, 40 * lists), replace=False))]
        index.train(sample)
        ivf.nprobe = 64
    index.add(vectors)
    return index


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class EmbeddingIndex:
    """Search by meaning with a dual encoder.

    Embeddings are computed once per (dataset, model) and cached as
    ``embeddings-<dataset fingerprint>-<model fingerprint>.safetensors`` (tensors ``image`` and ``text``) in the
    store's cache folder.

    Args:
        store (`PairStore`): the dataset.
        model (`DualEncoderAdapter`): from :func:`quilt_hf.evaluation.adapters.load_model`.
        batch_size (`int`): images per forward pass when computing embeddings.
    """

    def __init__(self, store, model, batch_size: int = 64):
        self.store = store
        self.model = model
        self.path = Path(store.cache_dir) / f"embeddings-{store.fingerprint}-{model.fingerprint}.safetensors"
        if self.path.is_file():
            from safetensors.numpy import load_file

            tensors = load_file(str(self.path))
            image, text = tensors["image"], tensors["text"]
        else:
            image, text = self._compute(batch_size)
        if len(image) != store.num_rows:
            raise UserFacingError(f"{self.path}: {len(image)} embeddings for {store.num_rows} pairs; delete it")
        self.image_index = self._cached_index(image, "image")
        self.text_index = self._cached_index(text, "text")

    def _cached_index(self, vectors: np.ndarray, name: str):
        """The faiss index of ``vectors``, read from beside the embeddings when built before (an IVF build on a
        million rows takes minutes)."""
        import faiss

        path = self.path.with_name(f"{self.path.stem}.{name}.faiss")
        if path.is_file():
            index = faiss.read_index(str(path))
            if index.ntotal == len(vectors):
                if "IVF" in type(index).__name__:
                    faiss.extract_index_ivf(index).nprobe = 64
                return index
        index = build_faiss_index(vectors)
        partial = path.with_suffix(".partial")
        faiss.write_index(index, str(partial))
        partial.replace(path)
        return index

    def _compute(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        from safetensors.numpy import save_file
        from tqdm.auto import tqdm

        from quilt_hf.app.store import decode_image

        images, texts = [], []
        with tqdm(total=self.store.num_rows, desc=f"Embedding pairs with {self.model.name}", unit="pair") as bar:
            for batch in self.store.iter_batches(["image", "caption"], batch_size=batch_size):
                data = batch.to_pydict()
                pictures = [decode_image(cell) for cell in data["image"]]
                if any(p is None for p in pictures):
                    raise UserFacingError("a pair without a readable image: the dataset needs embedded images")
                images.append(self.model.encode_images(pictures).cpu().numpy())
                texts.append(self.model.encode_texts([c or "" for c in data["caption"]]).cpu().numpy())
                bar.update(batch.num_rows)
        image, text = _normalise(np.concatenate(images)), _normalise(np.concatenate(texts))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        save_file({"image": image, "text": text}, str(partial), metadata={"model": self.model.name})
        partial.replace(self.path)
        logger.info("embeddings of %d pairs cached in %s", len(image), self.path)
        return image, text

    def _search(self, index, query: np.ndarray, limit: int) -> list[tuple[int, float]]:
        scores, rows = index.search(_normalise(query), int(limit))
        return [(int(r), float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]

    def images_for_text(self, text: str, limit: int = 24) -> list[tuple[int, float]]:
        """Rows whose image best matches ``text``, with cosine similarities."""
        return self._search(self.image_index, self.model.encode_texts([text]).cpu().numpy(), limit)

    def images_for_image(self, image, limit: int = 24) -> list[tuple[int, float]]:
        """Rows whose image is nearest to ``image``."""
        return self._search(self.image_index, self.model.encode_images([image]).cpu().numpy(), limit)

    def captions_for_image(self, image, limit: int = 10) -> list[tuple[int, float]]:
        """Rows whose caption best matches ``image``."""
        return self._search(self.text_index, self.model.encode_images([image]).cpu().numpy(), limit)

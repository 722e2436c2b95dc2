"""Benchmark: `quilt app` page loads and searches on a generated dataset of a million pairs.

Data: ``--rows`` generated pairs written as Hub-layout parquet shards (row groups of 10,000) with the project's
columns (video, chunk, image id, caption of 8-30 words from a 3,000-word vocabulary with histology terms,
sub-pathology, magnification, subset, split) and one tiny placeholder PNG per row: the timing needs no real images
(a real dataset's page reads 24 images more, tens of KB each). Embeddings are random clustered unit vectors of
``--dim`` dimensions (no model runs; the index does not care where vectors come from).

Figures printed (median and max over the timed calls; goal: under 1 s per page and per search on 2 cores after
the index is built):

1. open: reading the facet columns once (``PairStore``);
2. page load, ours: ``PairStore.page`` (24 rows, images decoded) unfiltered, and with filters (first time a
   filter is seen, then paging on); peer: ``datasets.Dataset.from_parquet`` then ``.filter`` + ``.select`` for a
   page, what a user of ``datasets`` writes (its one-off conversion time printed apart);
3. word search, ours: SQLite FTS5 (``TextIndex``), build time and query latency; peer: a substring scan of the
   caption column with ``pyarrow.compute.match_substring`` (captions held in memory);
4. search by meaning, ours: faiss ``IVF,SQ8`` (``build_faiss_index``), build time, query latency and recall@10
   against exact search; peer: brute-force numpy (``vectors @ query`` + ``argpartition``).

Run: ``.venv/bin/python bench/bench_app.py [--rows 1000000] [--dim 256] [--smoke]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

TERMS = (
    "adenocarcinoma granuloma carcinoma lymphocytes eosinophils necrosis fibrosis mitoses nuclei stroma glands "
    "keratin melanoma osteoid cartilage hepatocytes steatosis cirrhosis metaplasia dysplasia hyperplasia "
    "hematoxylin eosin epithelium mucosa submucosa follicles sarcoma lipoma nevus psammoma"
).split()
PATHOLOGY = ("Dermatopathology", "Gastrointestinal", "Pulmonary", "Breast", "Renal", "Bone", "Neuropathology")


def _tiny_png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (230, 170, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_dataset(folder: Path, rows: int, seed: int = 0) -> list[Path]:
    """Hub-layout shards (``data/train-*.parquet``) of ``rows`` generated pairs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "si", "po", "de", "ga", "vi", "zu"]
    vocabulary = np.array(TERMS + ["".join(rng.choice(syllables, size=rng.integers(2, 5))) for _ in range(3000)])
    png = _tiny_png()
    (folder / "data").mkdir(parents=True)
    shard_rows, files = 100_000, []
    shards = -(-rows // shard_rows)
    for shard in range(shards):
        n = min(shard_rows, rows - shard * shard_rows)
        start = shard * shard_rows
        index = np.arange(start, start + n)
        lengths = rng.integers(8, 31, size=n)
        words = vocabulary[rng.zipf(1.3, size=int(lengths.sum())) % len(vocabulary)]
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        captions = [" ".join(words[bounds[i] : bounds[i + 1]]) for i in range(n)]
        video = index // 50
        table = pa.table(
            {
                "video_id": pa.array([f"video{v:06d}" for v in video]),
                "chunk_id": pa.array((index % 50) // 3, pa.int32()),
                "image_id": pa.array([f"video{v:06d}_{i % 50}" for v, i in zip(video, index)]),
                "image": pa.array([{"bytes": png, "path": None}] * n,
                                  pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                "caption": pa.array(captions),
                "pathology": pa.array([[PATHOLOGY[v % len(PATHOLOGY)]] for v in video], pa.list_(pa.string())),
                "magnification": pa.array(rng.integers(-1, 3, size=n), pa.int8()),
                "subset": pa.array(["quilt"] * n),
                "split": pa.array(np.where(video % 10 == 0, "validation", "train")),
            }
        )
        path = folder / "data" / f"train-{shard:05d}-of-{shards:05d}.parquet"
        pq.write_table(table, path, row_group_size=10_000)
        files.append(path)
    return files


def timed(function, repeats: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return times, result


def summary(times: list[float]) -> str:
    return f"median {1000 * statistics.median(times):8.1f} ms, max {1000 * max(times):8.1f} ms (n={len(times)})"


def clustered_vectors(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(256, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, 256, size=rows)]
    for start in range(0, rows, 50_000):  # in blocks: no float64 copy of the whole matrix
        block = vectors[start : start + 50_000]
        block += 0.6 * rng.standard_normal(size=block.shape, dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return vectors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=256, help="embedding size (ViT-B CLIP: 512, twice the memory)")
    parser.add_argument("--pages", type=int, default=20, help="timed page loads per setting")
    parser.add_argument("--queries", type=int, default=20, help="timed searches per index")
    parser.add_argument("--peer-pages", type=int, default=3, help="timed page loads of the datasets peer")
    parser.add_argument("--smoke", action="store_true", help="20,000 rows, 64 dimensions, few repeats (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.dim, args.pages, args.queries, args.peer_pages = 20_000, 64, 5, 5, 1

    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    from quilt_hf.app.search import ANN_MIN_ROWS, TextIndex, build_faiss_index
    from quilt_hf.app.store import Filters, PairStore, decode_image

    print(f"bench_app: {args.rows:,} rows, {args.dim}-d embeddings, {os.cpu_count()} CPUs "
          f"(timings on a shared machine are noisy)")
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory(prefix="bench_app_") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        files = write_dataset(tmp / "dataset", args.rows)
        print(f"generated dataset: {time.perf_counter() - start:.1f} s, "
              f"{sum(f.stat().st_size for f in files) / 1e6:.0f} MB parquet")

        # 1-2. Paging -------------------------------------------------------------------------------------
        start = time.perf_counter()
        store = PairStore(tmp / "dataset", cache_dir=tmp / "cache")
        print(f"open (facet columns read once): {time.perf_counter() - start:.2f} s")
        pages = max(1, args.rows // 24)

        def random_page(filters: Filters | None = None):
            filters = filters or Filters()
            items, total = store.page(filters, int(rng.integers(0, max(1, len(store.select(filters)) // 24))), 24)
            for item in items:
                decode_image(item["image"]).load()
            return total

        times, _ = timed(random_page, args.pages)
        ours_page = statistics.median(times)
        print(f"ours  page, no filter ({pages:,} pages):       {summary(times)}")
        filters = Filters(split="validation", pathology="Pulmonary")
        first, total = timed(lambda: random_page(filters), 1)
        print(f"ours  page, new filter (first time, {total:,} matches): {summary(first)}")
        times, _ = timed(lambda: random_page(filters), args.pages)
        print(f"ours  page, same filter, paging on:         {summary(times)}")

        from datasets import Dataset

        start = time.perf_counter()
        peer = Dataset.from_parquet([str(f) for f in files], cache_dir=str(tmp / "hf-cache"))
        print(f"peer  datasets.Dataset.from_parquet (one-off conversion): {time.perf_counter() - start:.1f} s")

        def peer_page():
            # A fresh filter each time, as with a new filter setting in a UI (datasets caches identical calls).
            magnification = int(rng.integers(0, 3))
            selected = peer.filter(
                lambda batch: [s == "validation" and "Pulmonary" in p and m >= magnification
                               for s, p, m in zip(batch["split"], batch["pathology"], batch["magnification"])],
                batched=True, batch_size=10_000, load_from_cache_file=False, keep_in_memory=True,
            )
            return selected.select(range(min(24, len(selected))))[:]

        times, _ = timed(peer_page, args.peer_pages)
        print(f"peer  page, new filter (datasets .filter + .select): {summary(times)}")
        ratio = statistics.median(times) / max(first[0], 1e-9)
        print(f"page with a new filter: ours {1000 * first[0]:.0f} ms vs peer {1000 * statistics.median(times):.0f} "
              f"ms: {ratio:.1f}x faster; unfiltered page {1000 * ours_page:.0f} ms (goal < 1000 ms)")
        peer = None  # free the table before the next part

        # 3. Word search ----------------------------------------------------------------------------------
        start = time.perf_counter()
        text_index = TextIndex(store)
        print(f"ours  word index build (FTS5): {time.perf_counter() - start:.1f} s, "
              f"{text_index.path.stat().st_size / 1e6:.0f} MB")
        queries = [" ".join(rng.choice(TERMS, size=int(rng.integers(1, 3)), replace=False))
                   for _ in range(args.queries)]
        iterator = iter(queries)
        times, _ = timed(lambda: text_index.search(next(iterator)), len(queries))
        ours_words = statistics.median(times)
        print(f"ours  word search (48 best by BM25):          {summary(times)}")
        captions = pads.dataset([str(f) for f in files]).to_table(columns=["caption"])["caption"]
        iterator = iter(queries)

        def peer_words():
            mask = None
            for word in next(iterator).split():
                hit = pc.match_substring(captions, word)
                mask = hit if mask is None else pc.and_(mask, hit)
            return np.flatnonzero(mask.to_numpy(zero_copy_only=False))[:48]

        times, _ = timed(peer_words, len(queries))
        print(f"peer  substring scan (pyarrow.compute):      {summary(times)}")
        print(f"word search: ours {1000 * ours_words:.1f} ms vs peer {1000 * statistics.median(times):.1f} ms: "
              f"{statistics.median(times) / max(ours_words, 1e-9):.1f}x faster (goal < 1000 ms)")
        captions = None

        # 4. Search by meaning ----------------------------------------------------------------------------
        vectors = clustered_vectors(args.rows, args.dim)
        start = time.perf_counter()
        index = build_faiss_index(vectors, exact=False if args.rows >= 10_000 else None)
        build = time.perf_counter() - start
        print(f"ours  vector index build ({type(index).__name__}, "
              f"{'IVF,SQ8' if args.rows >= ANN_MIN_ROWS or args.smoke else 'flat'}): {build:.1f} s")
        query_vectors = clustered_vectors(args.queries, args.dim, seed=7)
        found = []
        iterator = iter(query_vectors)
        times, _ = timed(lambda: found.append(index.search(next(iterator)[None], 10)[1][0]), args.queries)
        ours_vectors = statistics.median(times)
        print(f"ours  search by meaning (top 10):            {summary(times)}")
        exact = []
        iterator = iter(query_vectors)

        def brute_force():
            scores = vectors @ next(iterator)
            top = np.argpartition(-scores, 10)[:10]
            exact.append(top[np.argsort(-scores[top])])

        times, _ = timed(brute_force, args.queries)
        print(f"peer  numpy brute force (top 10):            {summary(times)}")
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)])
        print(f"search by meaning: ours {1000 * ours_vectors:.2f} ms vs peer {1000 * statistics.median(times):.1f} ms:"
              f" {statistics.median(times) / max(ours_vectors, 1e-9):.1f}x faster, recall@10 vs exact {recall:.3f} "
              f"(goal < 1000 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

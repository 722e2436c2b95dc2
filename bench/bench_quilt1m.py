"""Quilt-1M release handling: import and publish throughput and memory, and near-duplicate detection quality.

Figures (goals from issue 11):
- ``quilt import --format quilt1m`` on a generated ``quilt_1M_lookup.csv`` (release columns, Python-literal list
  cells, many-to-many image names) without images: rows/s (goal >= 20,000 on 2 cores) and peak memory at N and
  N/10 rows (goal: flat);
- ``quilt publish`` of that table (merge, splits, per-subset configs, stats, plots, card): rows/s and peak memory;
- import + publish with images: a zip part of real-ish images (tiles of the demo corpus's histology frames plus
  synthetic H&E-like fields) read in place, rows/s;
- duplicates: planted copies (exact, re-encoded q=60, resized 1/2, cropped 2-3 px, colour-jittered) of some
  images among distinct ones: recall (goal >= 0.98) and false merges among distinct images (goal 0), with the
  exact search and with the faiss HNSW graph (``method="ann"``);
- near-duplicate search scaling: synthetic 16x16 fingerprints (random fields with a natural-image 1/f spectrum,
  plus planted copies at cosine 0.86-0.995) at 2K and larger N: seconds (wall and CPU) of the exact search and
  of the HNSW graph, and the graph's recall of the exact search's pairs (it cannot add a pair: scores are exact);
- optional embedding similarity (``--dedup_model``, default the offline QuiltNet demo model when present): per
  kind of planted copy the lowest copy-to-original cosine, the highest cosine between distinct images, and
  recall / false merges at the default threshold: whether the model separates copies from distinct images.

Peers, measured in the same run on the same files: for import, what a user would otherwise write
(``pandas.read_csv`` + ``ast.literal_eval`` on the list columns, then ``DataFrame.to_parquet``); for duplicates,
``imagehash.phash`` (64-bit DCT hash) at Hamming distance <= 10 (when imagehash is installed); for the search,
the exact search (numpy blocks, the reference) run on the same fingerprints.

Each measured step runs in its own process so its peak resident memory is its own. Timings on a shared machine
are noisy.

Run: ``.venv/bin/python bench/bench_quilt1m.py [--rows 1000000] [--images 2000] [--scale_sizes 2000 50000 200000]
[--dedup_model M|none]``; ``--smoke`` for a tiny run; ``--only_dedup`` skips the import/publish figures.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HEADER = ["", "caption", "image_path", "subset", "split", "pathology", "roi_text", "noisy_text", "corrected_text",
          "med_umls_ids", "magnification", "height", "width"]
SUBSETS = ("quilt", "openpath", "pubmed", "laion")
PATHOLOGIES = ("Breast", "Renal", "Dermatopathology", "Gastrointestinal", "Pulmonary")


def image_name(i: int) -> str:
    return f"v{i % 997:010d}_image_{i:08x}-0000-0000-0000-000000000000.jpg" if i % 4 == 0 else f"fig_{i:08d}.jpg"


def write_lookup(path: Path, rows: int, images: int) -> None:
    """Release-shaped rows: about 1.5 rows per image (many-to-many), list cells as Python literals."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for i in range(rows):
            image = i % images
            subset = "quilt" if image % 4 == 0 else SUBSETS[1 + image % 3]
            writer.writerow([
                i, f"caption {i}: a field of {PATHOLOGIES[i % 5].lower()} tissue with atypical nuclei, 20x",
                image_name(image), subset, "train" if i % 10 else "val",
                repr([PATHOLOGIES[i % 5]] + ([PATHOLOGIES[(i + 1) % 5]] if i % 3 == 0 else [])),
                repr(["roi sentence one", "roi sentence two"]) if subset == "quilt" else "",
                "noisy transcript text" if subset == "quilt" else "", "corrected transcript text" if subset == "quilt" else "",
                repr([f"C{i % 9999:07d}", "C0006826"]), str(i % 3) if subset == "quilt" else "", "512", "512",
            ])


def memory(run: dict) -> str:
    return f"peak RSS {run['peak_mb']} MB (anonymous {run['peak_anon_mb']} MB)"


def rate(rows: int, run: dict) -> str:
    """Rows per wall second and per CPU second (the second does not depend on what else the machine runs)."""
    return f"{rows / run['seconds']:,.0f} rows/s wall, {rows / max(run['cpu_seconds'], 1e-9):,.0f} rows/CPU-s"


# Peak RSS counts the pages of memory-mapped Arrow files that were read (page cache the kernel can drop); the
# anonymous part (RssAnon, sampled every 20 ms) is the memory the process really holds.
_ANON_SAMPLER = """
import threading as _t
_peak, _stop = [0], _t.Event()
def _sample():
    while not _stop.is_set():
        with open('/proc/self/status') as _f:
            for _line in _f:
                if _line.startswith('RssAnon:'):
                    _peak[0] = max(_peak[0], int(_line.split()[1]))
        _stop.wait(0.02)
_t.Thread(target=_sample, daemon=True).start()
"""


_PEAKS = (
    "import resource as _r\n"
    "def _peaks():\n"
    "    return {'peak_mb': _r.getrusage(_r.RUSAGE_SELF).ru_maxrss // 1024, 'peak_anon_mb': _peak[0] // 1024}\n"
)


def run_child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line; peak RSS (MB) is added unless ``code`` put
    it in ``RESULT`` itself (taken before a check that should not count, with ``_peaks()``)."""
    wrapped = (
        _ANON_SAMPLER + _PEAKS + code + "\nimport json as _j\n_stop.set()\n"
        "print(_j.dumps({**_peaks(), **RESULT}))"
    )
    out = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, cwd=REPO)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_import(lookup: Path, output: Path, images: list[Path] | None = None) -> dict:
    return run_child(
        "import time, logging; logging.disable(logging.INFO)\n"
        "from quilt_hf.publishing.importers import ImportConfig, run_import\n"
        "t, p = time.perf_counter(), time.process_time()\n"
        f"r = run_import(ImportConfig(format='quilt1m', lookup={str(lookup)!r}, output={str(output)!r}, "
        f"images={[str(p) for p in images or []]!r}, overwrite=True))\n"
        "RESULT = {'seconds': time.perf_counter() - t, 'cpu_seconds': time.process_time() - p, 'rows_in': r.rows_in, 'rows_out': r.rows_out, "
        "'drops': sum(r.drops.values()), 'orphans': r.orphan_images}"
    )


def time_publish(table: Path, output: Path) -> dict:
    return run_child(
        "import time, logging, os; logging.disable(logging.INFO)\n"
        "os.environ['HF_DATASETS_CACHE'] = " + repr(str(output) + ".cache") + "\n"
        "from quilt_hf.publishing.publish import PublishConfig, run_publish\n"
        "from datasets import load_dataset\n"
        "t, p = time.perf_counter(), time.process_time()\n"
        f"run_publish(PublishConfig(dataset=[{str(table)!r}], output={str(output)!r}, overwrite=True, keep_release_split=True))\n"
        "seconds, cpu = time.perf_counter() - t, time.process_time() - p\n"
        "peaks = _peaks()  # before the check below, which loads the whole output with `datasets`\n"
        "import json, pathlib\n"
        f"merge = json.loads(pathlib.Path({str(output)!r}, 'stats.json').read_text())['merge']\n"
        f"d = load_dataset({str(output)!r}, cache_dir={str(output) + '.cache'!r})\n"
        "RESULT = {'seconds': seconds, 'cpu_seconds': cpu, 'rows_out': sum(len(s) for s in d.values()), "
        "'dropped': merge['dropped_rows'], **peaks}"
    )


def time_pandas_peer(lookup: Path, output: Path) -> dict:
    return run_child(
        "import time, ast, pandas as pd\n"
        "t, p = time.perf_counter(), time.process_time()\n"
        f"df = pd.read_csv({str(lookup)!r}, index_col=0)\n"
        "for c in ('pathology', 'med_umls_ids'):\n"
        "    df[c] = df[c].map(lambda s: ast.literal_eval(s) if isinstance(s, str) and s.startswith('[') else [])\n"
        f"df.to_parquet({str(output)!r})\n"
        "RESULT = {'seconds': time.perf_counter() - t, 'cpu_seconds': time.process_time() - p, 'rows_out': len(df)}"
    )


# -- images ------------------------------------------------------------------------------------------------------
def realish_images(count: int, seed: int = 0) -> list[np.ndarray]:
    """Non-overlapping 128 px tiles of one mid-video frame per demo-corpus video (textured ones only), then
    synthetic H&E-like fields (random nuclei on eosin) to reach ``count``."""
    import av

    tiles: list[np.ndarray] = []
    for video in sorted((REPO / "demo_corpus").glob("*.mp4")):
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            middle = float(stream.duration * stream.time_base) / 2 if stream.duration else 5.0
            container.seek(int(middle / stream.time_base), stream=stream)
            frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
        for y in range(0, frame.shape[0] - 127, 128):
            for x in range(0, frame.shape[1] - 127, 128):
                tile = frame[y : y + 128, x : x + 128]
                if tile.std() > 20:
                    tiles.append(np.ascontiguousarray(tile))
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:128, 0:128]
    while len(tiles) < count:
        image = np.empty((128, 128, 3), np.float32)
        image[:] = (232, 170, 200)
        image += rng.normal(0, 12, image.shape)
        for _ in range(110):
            cy, cx, r = rng.integers(0, 128), rng.integers(0, 128), rng.integers(2, 5)
            image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = (90, 50, 140)
        tiles.append(np.clip(image, 0, 255).astype(np.uint8))
    return tiles[:count]


def jpeg(image, quality: int = 92) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def planted_copies(image: np.ndarray) -> dict[str, bytes]:
    from PIL import Image, ImageEnhance

    pil = Image.fromarray(image)
    w, h = pil.size
    return {
        "exact": jpeg(pil),
        "reencoded": jpeg(pil, 60),
        "resized": jpeg(pil.resize((w // 2, h // 2))),
        "cropped": jpeg(pil.crop((3, 2, w - 2, h - 3))),
        "jittered": jpeg(ImageEnhance.Color(ImageEnhance.Brightness(pil).enhance(1.1)).enhance(0.85)),
    }


def dedup_quality(images: list[np.ndarray], planted: int, embedder=None) -> dict:
    from quilt_hf.publishing.dedup import fingerprint, near_duplicate_groups

    blobs, truth, kinds = [], [], []
    for index, image in enumerate(images):
        blobs.append(jpeg(image))
        truth.append(index)
        kinds.append("original")
        if index < planted:
            for kind, data in planted_copies(image).items():
                blobs.append(data)
                truth.append(index)
                kinds.append(kind)
    truth = np.array(truth)

    def score(groups: np.ndarray) -> dict:
        copies = [i for i, k in enumerate(kinds) if k != "original"]
        found = sum(groups[i] == groups[truth.tolist().index(truth[i])] for i in copies)
        per_kind = {}
        for kind in ("exact", "reencoded", "resized", "cropped", "jittered"):
            members = [i for i in copies if kinds[i] == kind]
            per_kind[kind] = sum(groups[i] == groups[truth.tolist().index(truth[i])] for i in members) / len(members)
        originals = [i for i, k in enumerate(kinds) if k == "original"]
        false_merges = len(originals) - len({int(groups[i]) for i in originals})
        return {"recall": found / len(copies), "per_kind": per_kind, "false_merges": false_merges}

    started = time.perf_counter()
    prints = [fingerprint(b) for b in blobs]
    ours = score(near_duplicate_groups(prints, method="exact"))
    ours["seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    ann = score(near_duplicate_groups(prints, method="ann"))
    ann["seconds"] = time.perf_counter() - started
    result = {"ours": ours, "ours_ann": ann, "images": len(images), "copies": len(blobs) - len(images)}
    if embedder is not None:
        result["embedding"] = embedding_quality(blobs, truth, kinds, embedder, score)
    try:
        import imagehash
        from PIL import Image

        from quilt_hf.publishing.dedup import UnionFind

        started = time.perf_counter()
        hashes = np.array([int(str(imagehash.phash(Image.open(io.BytesIO(b)))), 16) for b in blobs], dtype=np.uint64)
        union = UnionFind(len(blobs))
        for i in range(len(blobs)):
            distances = np.array([bin(int(v)).count("1") for v in (hashes[i + 1 :] ^ hashes[i])])
            for j in np.nonzero(distances <= 10)[0].tolist():
                union.union(i, i + 1 + j)
        peer = score(np.array([union.find(i) for i in range(len(blobs))]))
        peer["seconds"] = time.perf_counter() - started
        result["imagehash_phash_le10"] = peer
    except ImportError:
        result["imagehash_phash_le10"] = "not installed (pip install imagehash)"
    return result


def embedding_quality(blobs: list[bytes], truth: np.ndarray, kinds: list[str], embedder, score) -> dict:
    """What ``--dedup_model`` gives on the planted set: copy vs distinct cosines, and groups at the default
    threshold (exact search)."""
    from quilt_hf.publishing.dedup import near_duplicate_groups
    from quilt_hf.publishing.embedding_dedup import DEFAULT_EMBEDDING_THRESHOLD

    started, cpu = time.perf_counter(), time.process_time()
    vectors: list = []
    for start in range(0, len(blobs), embedder.batch_size):
        vectors += embedder.embed(blobs[start : start + embedder.batch_size])
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    matrix = np.stack(vectors)
    original = {int(t): i for i, (t, k) in enumerate(zip(truth, kinds)) if k == "original"}
    lowest = {}
    for kind in ("exact", "reencoded", "resized", "cropped", "jittered"):
        members = [i for i, k in enumerate(kinds) if k == kind]
        lowest[kind] = float(min(matrix[i] @ matrix[original[int(truth[i])]] for i in members))
    rows = np.array(sorted(original.values()))
    distinct = matrix[rows] @ matrix[rows].T
    np.fill_diagonal(distinct, -1.0)
    at_default = score(near_duplicate_groups(vectors, DEFAULT_EMBEDDING_THRESHOLD, method="exact"))
    return {"model": embedder.model, "seconds": seconds, "cpu_seconds": cpu, "images_per_second": len(blobs) / seconds,
            "lowest_copy_cosine": lowest, "highest_distinct_cosine": float(distinct.max()),
            "separable": min(lowest.values()) > float(distinct.max()),
            "threshold": DEFAULT_EMBEDDING_THRESHOLD, "at_threshold": at_default}


def synthetic_fingerprints(distinct: int, copies: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``distinct`` random 16x16 fields with a 1/f amplitude spectrum (as natural images have), each minus its
    mean and unit length like :func:`~quilt_hf.publishing.dedup.fingerprint`, then ``copies`` copies of the first
    ones at a cosine drawn uniformly in [0.86, 0.995] to their original. Returns the vectors and, per copy, its
    original's row."""
    rng = np.random.default_rng(seed)
    frequency = np.fft.fftfreq(16)
    radius = np.hypot(frequency[:, None], frequency[None, :])
    radius[0, 0] = 1.0

    def fields(count: int) -> np.ndarray:
        out = np.empty((count, 256), np.float32)
        for start in range(0, count, 50_000):
            n = min(50_000, count - start)
            spectrum = (rng.normal(size=(n, 16, 16)) + 1j * rng.normal(size=(n, 16, 16))) / radius
            x = np.fft.ifft2(spectrum).real.reshape(n, 256)
            x -= x.mean(axis=1, keepdims=True)
            out[start : start + n] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    base = fields(distinct)
    source = np.arange(copies) % distinct
    noise = fields(copies)
    noise -= (noise * base[source]).sum(axis=1, keepdims=True) * base[source]  # orthogonal to the original
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    cosine = rng.uniform(0.86, 0.995, (copies, 1)).astype(np.float32)
    copy = cosine * base[source] + np.sqrt(1 - cosine**2) * noise
    return np.concatenate([base, copy.astype(np.float32)]), source


def search_scaling(size: int, run_exact: bool) -> dict:
    """Exact search vs the HNSW graph on ``size`` synthetic fingerprints (5% of them planted copies)."""
    from quilt_hf.publishing.similarity import ann_pairs, exact_pairs

    copies = max(1, size // 20)
    vectors, source = synthetic_fingerprints(size - copies, copies)
    result: dict = {"size": size, "planted": copies}

    def timed(function) -> tuple[set, float, float]:
        started, cpu = time.perf_counter(), time.process_time()
        first, second = function(vectors, 0.85)
        return set(zip(first.tolist(), second.tolist())), time.perf_counter() - started, time.process_time() - cpu

    planted = {(int(s), size - copies + k) for k, s in enumerate(source.tolist())}
    ann, result["ann_seconds"], result["ann_cpu_seconds"] = timed(ann_pairs)
    result["ann_planted_recall"] = len(ann & planted) / len(planted)
    if run_exact:
        exact, result["exact_seconds"], result["exact_cpu_seconds"] = timed(exact_pairs)
        result["exact_pairs"] = len(exact)
        result["exact_planted_recall"] = len(exact & planted) / len(planted)
        result["ann_recall_of_exact"] = len(ann & exact) / max(1, len(exact))
        result["ann_pairs_not_in_exact"] = len(ann - exact)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="lookup rows for the text-only import/publish")
    parser.add_argument("--images", type=int, default=2000, help="distinct real-ish images for the image runs")
    parser.add_argument("--planted", type=int, default=200, help="images that get 5 planted copies each")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one table size: well under a minute")
    parser.add_argument("--json", default=None, help="also write every figure to this JSON file")
    parser.add_argument("--scale_sizes", type=int, nargs="+", default=[2000, 50_000, 200_000],
                        help="synthetic fingerprint counts for the exact-vs-index search timing")
    parser.add_argument("--exact_max", type=int, default=60_000, help="largest size the exact search is timed at")
    parser.add_argument("--dedup_model", default=None,
                        help="CLIP-like model for the embedding-similarity figures (default: the offline QuiltNet "
                             "demo model when present); 'none' to skip")
    parser.add_argument("--only_dedup", action="store_true", help="only the duplicate and search figures")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.images, args.planted, args.scale_sizes = 5_000, 40, 10, [2000, 5000]
    results: dict = {}
    if not args.only_dedup:  # first: a child's peak RSS counts its parent's at the fork (Linux), so no model yet
        release_figures(args, results)
    dedup_figures(args, results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


def dedup_figures(args, results: dict) -> None:
    import torch

    from quilt_hf.models import offline_model_path
    from quilt_hf.publishing.embedding_dedup import ImageEmbedder

    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = args.dedup_model or (str(offline_model_path("clip") or "") or None)
    embedder = ImageEmbedder(model).load() if model and model != "none" else None
    quality = dedup_quality(realish_images(args.images, seed=1), args.planted, embedder)
    for label, figures in (("exact search", quality["ours"]), ("faiss HNSW graph", quality["ours_ann"])):
        print(f"[dedup, {quality['images']} distinct images + {quality['copies']} planted copies] ours, {label}: "
              f"recall {figures['recall']:.3f} ({', '.join(f'{k} {v:.2f}' for k, v in figures['per_kind'].items())}), "
              f"false merges {figures['false_merges']}, {figures['seconds']:.1f} s", flush=True)
    peer = quality["imagehash_phash_le10"]
    if isinstance(peer, dict):
        print(f"  peer imagehash.phash <= 10 bits: recall {peer['recall']:.3f} "
              f"({', '.join(f'{k} {v:.2f}' for k, v in peer['per_kind'].items())}), false merges "
              f"{peer['false_merges']}, {peer['seconds']:.1f} s")
    else:
        print(f"  peer imagehash: {peer}")
    if "embedding" in quality:
        e = quality["embedding"]
        print(f"[embedding similarity, {e['model']}] {e['images_per_second']:.1f} images/s wall "
              f"({e['cpu_seconds']:.1f} CPU-s); lowest copy cosine "
              f"{', '.join(f'{k} {v:.4f}' for k, v in e['lowest_copy_cosine'].items())}; highest distinct cosine "
              f"{e['highest_distinct_cosine']:.4f}: {'separable' if e['separable'] else 'NOT separable by any threshold'}; "
              f"at threshold {e['threshold']}: recall {e['at_threshold']['recall']:.3f}, false merges "
              f"{e['at_threshold']['false_merges']}", flush=True)
    results["dedup"] = quality
    results["search_scaling"] = []
    for size in args.scale_sizes:
        figures = search_scaling(size, size <= args.exact_max)
        results["search_scaling"].append(figures)
        line = (f"[near-duplicate search, {size:,} synthetic fingerprints, {figures['planted']:,} planted copies] "
                f"faiss HNSW: {figures['ann_seconds']:.1f} s wall, {figures['ann_cpu_seconds']:.1f} CPU-s, planted "
                f"recall {figures['ann_planted_recall']:.4f}")
        if "exact_seconds" in figures:
            line += (f"; exact: {figures['exact_seconds']:.1f} s wall, {figures['exact_cpu_seconds']:.1f} CPU-s, "
                     f"planted recall {figures['exact_planted_recall']:.4f}; graph/exact: pair recall "
                     f"{figures['ann_recall_of_exact']:.4f}, pairs not in exact {figures['ann_pairs_not_in_exact']}, "
                     f"speed-up {figures['exact_seconds'] / figures['ann_seconds']:.1f}x wall")
        else:
            line += " (exact not run at this size: quadratic)"
        print(line, flush=True)


def release_figures(args, results: dict) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_quilt1m_") as tmp:
        tmp = Path(tmp)
        small = max(1000, args.rows // 10)
        for rows in (args.rows,) if args.smoke else (small, args.rows):
            lookup = tmp / f"lookup_{rows}.csv"
            write_lookup(lookup, rows, max(1, int(rows / 1.5)))
            imported = time_import(lookup, tmp / f"imported_{rows}")
            published = time_publish(tmp / f"imported_{rows}", tmp / f"hub_{rows}")
            results[f"text_only_{rows}"] = {"import": imported, "publish": published}
            print(f"[{rows} rows, no images] import {rate(rows, imported)}, {memory(imported)} "
                  f"({imported['rows_out']} out + {imported['drops']} drops of {imported['rows_in']}); publish "
                  f"{rate(rows, published)}, {memory(published)} ({published['rows_out']} out + "
                  f"{published['dropped']} drops)", flush=True)
        if not args.smoke:
            for step in ("import", "publish"):
                small_run, large_run = (results[f"text_only_{n}"][step] for n in (small, args.rows))
                results[f"{step}_memory_ratio"] = {
                    "rss": large_run["peak_mb"] / small_run["peak_mb"],
                    "anonymous": large_run["peak_anon_mb"] / small_run["peak_anon_mb"],
                }
                print(f"[{step} memory, {args.rows} vs {small} rows] peak RSS {large_run['peak_mb']} / "
                      f"{small_run['peak_mb']} MB = {results[f'{step}_memory_ratio']['rss']:.2f}x; anonymous "
                      f"{large_run['peak_anon_mb']} / {small_run['peak_anon_mb']} MB = "
                      f"{results[f'{step}_memory_ratio']['anonymous']:.2f}x (goal: flat, <= 1.2x)", flush=True)
        peer = time_pandas_peer(tmp / f"lookup_{args.rows}.csv", tmp / "peer.parquet")
        ours = results[f"text_only_{args.rows}"]["import"]
        print(f"[{args.rows} rows] peer pandas.read_csv + ast.literal_eval + to_parquet: {rate(args.rows, peer)}, "
              f"{memory(peer)}; ours/peer speed {peer['seconds'] / ours['seconds']:.2f}x wall, "
              f"{peer['cpu_seconds'] / ours['cpu_seconds']:.2f}x CPU; memory {ours['peak_mb'] / peer['peak_mb']:.2f}x",
              flush=True)
        results["peer_pandas"] = peer

        images = realish_images(args.images)
        with zipfile.ZipFile(tmp / "images_part0.zip", "w") as archive:
            for index, image in enumerate(images):
                archive.writestr(f"images/{image_name(index)}", jpeg(image))
        image_rows = int(len(images) * 1.5)
        lookup = tmp / "lookup_images.csv"
        write_lookup(lookup, image_rows, len(images))
        imported = time_import(lookup, tmp / "imported_images", [tmp / "images_part0.zip"])
        published = time_publish(tmp / "imported_images", tmp / "hub_images")
        print(f"[{image_rows} rows, {len(images)} images in a zip part] import {rate(image_rows, imported)} "
              f"({memory(imported)}); publish with dedup {rate(image_rows, published)} "
              f"({memory(published)}); rows out {published['rows_out']} + drops "
              f"{published['dropped'] + imported['drops']} of {image_rows}", flush=True)
        results["with_images"] = {"import": imported, "publish": published}


if __name__ == "__main__":
    raise SystemExit(main())

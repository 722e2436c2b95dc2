"""Statistics of a published dataset: tables (``stats.json`` and Markdown for the card) and PNG plots.

Figures: pairs per subset and split, caption length (words), images per video, sub-pathology labels and
magnification classes.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quilt_hf.schema import MAGNIFICATION_CLASSES

logger = logging.getLogger(__name__)

PLOTS = {
    "pairs_per_subset": "Pairs per subset",
    "caption_length": "Caption length (words)",
    "images_per_video": "Images per video",
    "pathology": "Sub-pathology labels",
    "magnification": "Magnification",
}


def compute_stats(table: pa.Table) -> dict:
    """The figures the card shows, from the published table (vectorised: fast on a million rows)."""
    accumulator = StatsAccumulator()
    accumulator.add(table)
    return accumulator.result()


class StatsAccumulator:
    """:func:`compute_stats` over a table that comes a batch at a time: per batch only counts are kept (and, per
    row with a video, the 64-bit hashes of its video and image ids, to count distinct images per video)."""

    def __init__(self):
        self.rows = 0
        self.per_subset: dict[str, Counter] = {}
        self.word_counts = np.zeros(0, np.int64)  # word_counts[k]: captions of k words
        self.video_images: list[np.ndarray] = []
        self.pathology: Counter = Counter()
        self.magnification: Counter = Counter()

    def add(self, table: pa.Table) -> None:
        """Count one batch (a table with the pairs columns)."""
        from quilt_hf.publishing.hashing import string_hashes

        if not len(table):
            return
        self.rows += len(table)
        counted = table.select(["subset", "split"]).group_by(["subset", "split"]).aggregate([([], "count_all")])
        for subset, split, count in zip(*(counted.column(c).to_pylist() for c in ("subset", "split", "count_all"))):
            self.per_subset.setdefault(subset, Counter())[split] += count
        words = np.asarray(  # words = runs of non-space characters, counted without splitting
            pc.count_substring_regex(pc.fill_null(table.column("caption"), ""), r"\S+").to_numpy(zero_copy_only=False)
        )
        counts = np.bincount(words)
        if len(counts) > len(self.word_counts):
            counts[: len(self.word_counts)] += self.word_counts
            self.word_counts = counts
        else:
            self.word_counts[: len(counts)] += counts
        videos = string_hashes(table.column("video_id"), empty_is_missing=True)
        images = string_hashes(table.column("image_id"))
        has_video = videos != 0
        if has_video.any():
            pairs = np.unique(np.stack([videos[has_video], images[has_video]], axis=1), axis=0)
            self.video_images.append(pairs)
        if "pathology" in table.column_names:  # a bare pairs table (parquet, Hub layout) may have neither
            for value, count in zip(*_value_counts(pc.list_flatten(table.column("pathology")))):
                self.pathology[value] += count
        if "magnification" in table.column_names:
            for value, count in zip(*_value_counts(table.column("magnification"))):
                self.magnification[MAGNIFICATION_CLASSES.get(value, "not stated")] += count
        else:
            self.magnification["not stated"] += len(table)

    def num_rows(self, split: str) -> int:
        return sum(counts.get(split, 0) for counts in self.per_subset.values())

    def result(self) -> dict:
        """The figures, in the shape of :func:`compute_stats`."""
        if self.video_images:
            pairs = np.unique(np.concatenate(self.video_images), axis=0)
            per_video = np.unique(pairs[:, 0], return_counts=True)[1]
        else:
            per_video = np.zeros(0, np.int64)
        total = int(self.word_counts.sum())
        cumulative = np.cumsum(self.word_counts)

        def word_count_at(position: int) -> int:  # the position-th smallest caption length (0-based)
            return int(np.searchsorted(cumulative, position, side="right"))

        if total:
            mean = float((np.arange(len(self.word_counts)) * self.word_counts).sum() / total)
            median = (float(word_count_at(total // 2)) if total % 2 else
                      (word_count_at(total // 2 - 1) + word_count_at(total // 2)) / 2)
        else:
            mean = median = 0.0
        return {
            "rows": self.rows,
            "pairs_per_subset": {s: dict(c) for s, c in self.per_subset.items()},
            "caption_words": {
                "mean": mean,
                "median": median,
                "histogram": _histogram_of_counts(self.word_counts, [0, 5, 10, 20, 40, 80, 160, 10**9]),
            },
            "videos": len(per_video),
            "images_per_video": {
                "mean": float(per_video.mean()) if len(per_video) else 0.0,
                "histogram": _histogram(per_video, [1, 2, 5, 10, 20, 50, 100, 10**9]),
            },
            "pathology": dict(self.pathology.most_common()),
            "magnification": dict(self.magnification),
        }


def _histogram_of_counts(counts: np.ndarray, edges: list[int]) -> dict[str, int]:
    """:func:`_histogram` of values given as ``counts[value]``."""
    labels = [f"{lo}-{hi - 1}" if hi < 10**9 else f">={lo}" for lo, hi in zip(edges[:-1], edges[1:])]
    return {label: int(counts[lo:hi].sum()) for label, lo, hi in zip(labels, edges[:-1], edges[1:])}


def _value_counts(array) -> tuple[list, list]:
    if len(array) == 0:
        return [], []
    counts = pc.value_counts(array)
    return counts.field("values").to_pylist(), counts.field("counts").to_pylist()


def _histogram(values: np.ndarray, edges: list[int]) -> dict[str, int]:
    counts, _ = np.histogram(values, bins=edges) if len(values) else (np.zeros(len(edges) - 1, int), None)
    labels = [f"{lo}-{hi - 1}" if hi < 10**9 else f">={lo}" for lo, hi in zip(edges[:-1], edges[1:])]
    return {label: int(count) for label, count in zip(labels, counts)}


def write_plots(stats: dict, folder: Path) -> dict[str, str]:
    """PNG bar charts of :func:`compute_stats` in ``folder``; returns plot name -> file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    subsets = stats["pairs_per_subset"]
    series = {
        "pairs_per_subset": {s: sum(v.values()) for s, v in subsets.items()},
        "caption_length": stats["caption_words"]["histogram"],
        "images_per_video": stats["images_per_video"]["histogram"],
        "pathology": stats["pathology"] or {"none": 0},
        "magnification": stats["magnification"] or {"none": 0},
    }
    written = {}
    for name, values in series.items():
        figure, axis = plt.subplots(figsize=(6, 3.2), dpi=100)
        labels = [str(k) for k in values]
        axis.bar(range(len(values)), list(values.values()), color="#8c4a8c")
        axis.set_xticks(range(len(values)), labels, rotation=30 if len(labels) > 4 else 0, ha="right", fontsize=8)
        axis.set_title(PLOTS[name])
        axis.set_ylabel("count")
        figure.tight_layout()
        path = folder / f"{name}.png"
        figure.savefig(path)
        plt.close(figure)
        written[name] = path.name
    return written


def markdown_tables(stats: dict, report: dict) -> str:
    """The statistics as Markdown tables for the dataset card."""
    lines = ["| subset | " + " | ".join(("train", "validation", "test")) + " | total |", "|---|---|---|---|---|"]
    for subset, counts in sorted(stats["pairs_per_subset"].items()):
        cells = [str(counts.get(s, 0)) for s in ("train", "validation", "test")]
        lines.append(f"| {subset} | " + " | ".join(cells) + f" | {sum(counts.values())} |")
    lines += ["", f"Caption length: mean {stats['caption_words']['mean']:.1f} words, median "
              f"{stats['caption_words']['median']:.0f}. Videos: {stats['videos']}, "
              f"{stats['images_per_video']['mean']:.1f} images per video on average.", ""]
    if stats["pathology"]:
        lines += ["| sub-pathology | pairs |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in stats["pathology"].items()]
        lines.append("")
    lines += ["| magnification | pairs |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in stats["magnification"].items()]
    lines += ["", "| merge step | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in report.items() if not isinstance(v, dict)]
    for k, v in report.items():
        if isinstance(v, dict):
            lines += [f"| {k}: {name} | {count} |" for name, count in v.items()]
    return "\n".join(lines)

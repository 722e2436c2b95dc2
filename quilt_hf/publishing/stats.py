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
    per_subset: dict[str, dict[str, int]] = {}
    counted = table.select(["subset", "split"]).group_by(["subset", "split"]).aggregate([([], "count_all")])
    for subset, split, count in zip(*(counted.column(c).to_pylist() for c in ("subset", "split", "count_all"))):
        per_subset.setdefault(subset, {})[split] = count
    caption_words = np.asarray(  # words = runs of non-space characters, counted without splitting
        pc.count_substring_regex(pc.fill_null(table.column("caption"), ""), r"\S+").to_numpy(zero_copy_only=False)
    )
    video = table.column("video_id")
    has_video = pc.and_(pc.invert(pc.is_null(video)), pc.not_equal(video, ""))
    pairs = table.select(["video_id", "image_id"]).filter(has_video).group_by(["video_id", "image_id"]).aggregate([])
    per_video_table = pairs.group_by("video_id").aggregate([([], "count_all")])
    per_video = per_video_table.column("count_all").to_numpy() if len(per_video_table) else np.zeros(0, np.int64)
    pathology = Counter()
    flat = pc.list_flatten(table.column("pathology"))
    for value, count in zip(*_value_counts(flat)):
        pathology[value] = count
    magnification = Counter()
    for value, count in zip(*_value_counts(table.column("magnification"))):
        magnification[MAGNIFICATION_CLASSES.get(value, "not stated")] += count
    return {
        "rows": len(table),
        "pairs_per_subset": per_subset,
        "caption_words": {
            "mean": float(caption_words.mean()) if len(caption_words) else 0.0,
            "median": float(np.median(caption_words)) if len(caption_words) else 0.0,
            "histogram": _histogram(caption_words, [0, 5, 10, 20, 40, 80, 160, 10**9]),
        },
        "videos": len(per_video),
        "images_per_video": {
            "mean": float(per_video.mean()) if len(per_video) else 0.0,
            "histogram": _histogram(per_video, [1, 2, 5, 10, 20, 50, 100, 10**9]),
        },
        "pathology": dict(pathology.most_common()),
        "magnification": dict(magnification),
    }


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

"""A small learned histology filter: colour-texture features of a thumbnail and a tiny MLP, in numpy.

The weights are a JSON file of a few kilobytes (``quilt_hf/data/histology_mlp.json``), trained by
``dataset_scripts/train_histology_filter.py`` on generated positives and negatives (see that script). No torch,
no model download: a frame takes a few milliseconds on one CPU core.

Features (:func:`frame_features`, all computed on a 128-px thumbnail after trimming black letterbox bars):

- area: near-white, near-black and coloured shares;
- colour: a 12-bin hue histogram of the coloured pixels, saturation and value statistics, how concentrated
  the colours are (flat designs use a few colours, tissue thousands), optical densities of haematoxylin,
  eosin and DAB (colour deconvolution, Ruifrok & Johnston 2001);
- texture: local standard deviation quantiles at two scales, the textured and flat shares, edge density and
  the share of edge energy that is axis-aligned (text, slides, window chrome and diagrams are drawn on a grid,
  tissue is not), rows and columns of constant colour;
- layout: a 4x4 grid of tiles, each scored for "textured and stained", summarised (mean, max, min, spread,
  centre), so that tissue under viewer chrome or a webcam inset still reads as tissue.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "data" / "histology_mlp.json"
THUMB_SIZE = 128

# Ruifrok & Johnston stain vectors (optical density per RGB channel) for haematoxylin, eosin and DAB.
_HED_FROM_RGB = np.linalg.inv(
    np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], np.float64)
).astype(np.float32)


def trim_letterbox(rgb: np.ndarray, level: float = 0.06) -> np.ndarray:
    """Drop border rows and columns that are uniformly near-black (letterbox and pillarbox bars)."""
    dark = rgb.max(axis=-1) <= level
    rows = np.flatnonzero(~dark.all(axis=1))
    cols = np.flatnonzero(~dark.all(axis=0))
    if rows.size < 8 or cols.size < 8:
        return rgb
    return rgb[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _local_std(gray: np.ndarray, size: int = 5) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    return np.sqrt(np.maximum(uniform_filter(gray**2, size) - uniform_filter(gray, size) ** 2, 0))


def _thumbnail(image: np.ndarray, size: int = THUMB_SIZE) -> np.ndarray:
    from PIL import Image

    thumb = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
    factor = min(thumb.width, thumb.height) // size
    if factor > 1:  # box-average by an integer factor first: cheap for big frames
        thumb = thumb.reduce(factor)
    rgb = trim_letterbox(np.asarray(thumb, np.float32) / 255.0)
    thumb = Image.fromarray((rgb * 255).astype(np.uint8))
    thumb.thumbnail((size, size), Image.Resampling.BILINEAR)
    return np.asarray(thumb, np.float32) / 255.0


def _hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    maxc, minc = rgb.max(-1), rgb.min(-1)
    delta = maxc - minc
    sat = np.where(maxc > 0, delta / np.maximum(maxc, 1e-6), 0.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    d = np.maximum(delta, 1e-6)
    hue = np.where(maxc == r, (g - b) / d % 6, np.where(maxc == g, (b - r) / d + 2, (r - g) / d + 4)) * 60.0
    return np.where(delta > 0, hue, 0.0), sat, maxc


FEATURE_NAMES: list[str] = (
    ["white", "black", "coloured"]
    + [f"hue_{i * 30:03d}" for i in range(12)]
    + ["sat_mean", "sat_std", "val_mean", "val_std", "colour_top8", "colour_count"]
    + ["od_h", "od_e", "od_dab", "od_h_high", "he_textured", "dab_textured"]
    + ["std_q25", "std_q50", "std_q75", "std_q90", "textured", "flat", "textured_half", "flat_half"]
    + ["edges", "edges_axis", "const_rows", "const_cols"]
    + ["tile_mean", "tile_max", "tile_min", "tile_std", "tile_share", "tile_centre"]
)


def frame_features(image: np.ndarray) -> np.ndarray:
    """The learned filter's feature vector (``len(FEATURE_NAMES)`` floats) of an RGB uint8 image."""
    rgb = _thumbnail(image)
    hue, sat, val = _hsv(rgb)
    gray = rgb.mean(-1)
    white = (val > 0.92) & (sat < 0.08)
    black = val < 0.1
    coloured = (sat >= 0.12) & (val >= 0.2) & (val <= 0.98)
    area = max(float((~white).mean()), 0.05)
    nonwhite = ~white if (~white).any() else np.ones_like(white)

    hue_hist = np.bincount((hue[coloured] // 30).astype(int) % 12, minlength=12) / white.size / area

    quant = (rgb * 15.999).astype(np.int32)
    codes = quant[..., 0] * 256 + quant[..., 1] * 16 + quant[..., 2]
    counts = np.bincount(codes.ravel(), minlength=4096)
    top8 = float(np.sort(counts)[-8:].sum()) / codes.size
    colour_count = float((counts > 0).sum()) / 4096.0

    od = -np.log(np.clip(rgb, 1 / 255.0, 1.0))
    hed = np.maximum(od.reshape(-1, 3) @ _HED_FROM_RGB, 0).reshape(rgb.shape)
    hed_nw = hed[nonwhite]

    std = _local_std(gray)
    textured = std > 0.02
    flat = std < 0.006
    std_nw = std[nonwhite]
    half = gray[: gray.shape[0] // 2 * 2, : gray.shape[1] // 2 * 2]
    half = half.reshape(half.shape[0] // 2, 2, half.shape[1] // 2, 2).mean((1, 3))
    std_half = _local_std(half, 3)

    he = ((hue >= 250) | (hue <= 10)) & coloured
    dab = (hue > 10) & (hue <= 45) & (sat >= 0.3) & (val >= 0.2) & (val <= 0.85)

    gy, gx = np.gradient(gray)
    magnitude = np.hypot(gx, gy)
    strong = magnitude > 0.08
    axis = (np.abs(gx) < 0.15 * magnitude) | (np.abs(gy) < 0.15 * magnitude)
    edge_energy = float(magnitude[strong].sum())
    axis_share = float(magnitude[strong & axis].sum()) / edge_energy if edge_energy > 0 else 1.0
    const_rows = float((gray.std(axis=1) < 0.01).mean())
    const_cols = float((gray.std(axis=0) < 0.01).mean())

    # tissue-likeness of a 4x4 grid of tiles: textured pixels with any stain colour
    stained = textured & coloured & ~white
    h, w = stained.shape
    tiles = np.array(
        [
            stained[i * h // 4 : (i + 1) * h // 4, j * w // 4 : (j + 1) * w // 4].mean()
            for i in range(4)
            for j in range(4)
        ]
    )
    centre = tiles.reshape(4, 4)[1:3, 1:3].mean()

    features = [
        float(white.mean()), float(black.mean()), float(coloured.mean()),
        *hue_hist.tolist(),
        float(sat[nonwhite].mean()), float(sat[nonwhite].std()), float(val[nonwhite].mean()), float(val[nonwhite].std()),
        top8, colour_count,
        float(hed_nw[:, 0].mean()), float(hed_nw[:, 1].mean()), float(hed_nw[:, 2].mean()),
        float((hed_nw[:, 0] > 0.15).mean()),
        min(1.0, float((he & textured).mean()) / area), min(1.0, float((dab & textured).mean()) / area),
        *np.quantile(std_nw, [0.25, 0.5, 0.75, 0.9]).tolist(),
        min(1.0, float((textured & ~white).mean()) / area), float(flat.mean()),
        float((std_half > 0.03).mean()), float((std_half < 0.006).mean()),
        float(strong.mean()), axis_share, const_rows, const_cols,
        float(tiles.mean()), float(tiles.max()), float(tiles.min()), float(tiles.std()), float((tiles > 0.4).mean()),
        float(centre),
    ]
    return np.asarray(features, np.float32)


@dataclass
class MLPWeights:
    """Standardisation and dense layers of the learned filter (ReLU between layers, sigmoid at the end)."""

    mean: np.ndarray
    scale: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]]
    feature_names: list[str]
    meta: dict

    @classmethod
    def from_json(cls, path: str | Path) -> MLPWeights:
        data = json.loads(Path(path).read_text())
        if data.get("feature_names") != FEATURE_NAMES:
            raise ValueError(
                f"{path}: its features do not match this version of quilt_hf "
                "(retrain with dataset_scripts/train_histology_filter.py)"
            )
        layers = [(np.asarray(layer["weight"], np.float32), np.asarray(layer["bias"], np.float32)) for layer in data["layers"]]
        return cls(
            np.asarray(data["mean"], np.float32), np.asarray(data["scale"], np.float32), layers,
            data["feature_names"], data.get("meta", {}),
        )

    def to_json(self, path: str | Path) -> None:
        data = {
            "format": "quilt_hf-histology-mlp-1",
            "feature_names": self.feature_names,
            "mean": np.round(self.mean, 6).tolist(),
            "scale": np.round(self.scale, 6).tolist(),
            "layers": [{"weight": np.round(w, 6).tolist(), "bias": np.round(b, 6).tolist()} for w, b in self.layers],
            "meta": self.meta,
        }
        Path(path).write_text(json.dumps(data) + "\n")

    def __call__(self, features: np.ndarray) -> np.ndarray:
        x = (np.atleast_2d(features) - self.mean) / self.scale
        for index, (weight, bias) in enumerate(self.layers):
            x = x @ weight + bias
            if index < len(self.layers) - 1:
                x = np.maximum(x, 0)
        return 1.0 / (1.0 + np.exp(-x[:, 0]))


@dataclass
class LearnedHistologyClassifier:
    """The default offline histology filter: :func:`frame_features` and a small MLP (numpy, milliseconds/frame).

    Args:
        weights (`str` or `Path`, *optional*): a JSON written by ``dataset_scripts/train_histology_filter.py``;
            default: the weights shipped in ``quilt_hf/data/histology_mlp.json``.
        threshold (`float`): score at or above which a frame is histology.
    """

    weights: str | Path | None = None
    threshold: float = 0.5
    name: str = ""
    _mlp: MLPWeights | None = field(default=None, repr=False)

    def __post_init__(self):
        self.name = self.name or ("learned-mlp-v1" if self.weights is None else f"learned-mlp:{self.weights}")

    def load(self) -> LearnedHistologyClassifier:
        """Read the weights once; raises :class:`~quilt_hf.errors.ModelLoadError` when missing or incompatible."""
        if self._mlp is None:
            from quilt_hf.errors import ModelLoadError

            path = Path(self.weights_file)
            spec = "learned" if self.weights is None else f"learned:{self.weights}"
            if not path.is_file():
                raise ModelLoadError(
                    "--histology", spec, f"no weights at {path}",
                    "build them with `python dataset_scripts/train_histology_filter.py`",
                )
            try:
                self._mlp = MLPWeights.from_json(path)
            except (ValueError, KeyError) as error:
                raise ModelLoadError("--histology", spec, str(error), "retrain or use --histology heuristic") from error
        return self

    @property
    def weights_file(self) -> str:
        """The weights this filter computes with (its cache keys hold their digest)."""
        return str(Path(self.weights) if self.weights is not None else DEFAULT_WEIGHTS)

    def __getstate__(self):  # travels to worker processes (Ray) without its loaded weights: it loads there
        return {**self.__dict__, "_mlp": None}

    def scores(self, images: Sequence[np.ndarray]) -> np.ndarray:
        self.load()
        if not len(images):
            return np.zeros(0, np.float32)
        return self._mlp(np.stack([frame_features(np.asarray(image)) for image in images]))

    def predict(self, images: Sequence[np.ndarray]) -> list[tuple[bool, float]]:
        return [(bool(s >= self.threshold), float(s)) for s in self.scores(images)]

"""Data for contrastive training: loading pair tables, held-out splits, on-the-fly image transforms, collator.

Images are decoded and transformed in the collator, batch by batch (in the data loader's workers when
``dataloader_num_workers > 0``): no pixel tensor is ever written to disk.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from quilt_hf.errors import UserFacingError

logger = logging.getLogger(__name__)

EVAL_SPLIT_NAMES = ("validation", "valid", "val", "eval")
#: Never evaluated on during training (model selection on them would leak into the reported test figures).
TEST_SPLIT_NAMES = ("test",)
GROUP_LABEL = "pair_group"  # the collator's "label": which rows show the same image (for retrieval recall)


# ---------------------------------------------------------------------------------------------- loading
def load_pairs(name_or_path: str, *, split: str | None = None):
    """Load an image-text table: a ``save_to_disk`` folder, a Hub-layout folder or a Hub dataset name.

    Args:
        name_or_path (`str`): folder written by ``Dataset(Dict).save_to_disk`` (read with ``load_from_disk``),
            the same on an object store (``s3://bucket/prefix/pairs``, from ``quilt curate --output s3://...``),
            a Hub-layout folder (README with ``configs`` and parquet shards), or a Hub dataset name; the
            latter two are read with ``load_dataset``.
        split (`str`, *optional*): return only this split.

    Returns:
        `datasets.Dataset` or `datasets.DatasetDict`.
    """
    import datasets

    from quilt_hf import object_store
    from quilt_hf.atomic import read_set_ready

    if object_store.on_object_store(name_or_path):
        # a `quilt curate` output on an object store: s3://bucket/prefix/pairs is the current set's pairs table
        resolved = object_store.resolve(name_or_path)
        try:
            data = datasets.load_from_disk(resolved)  # downloads the table to a local temporary folder
        except FileNotFoundError as error:
            raise UserFacingError(
                f"{name_or_path}: no table there (expected the output of `quilt curate --output URL`, as URL/pairs; "
                f"resolved to {resolved}), or the set was replaced and removed while it was read (sets are kept "
                f"{object_store.RETENTION_S / 3600:g} h after they are replaced): run again") from error
    else:
        name_or_path = object_store.local_path(name_or_path)
        path = Path(name_or_path).expanduser()
        if path.parent.is_dir():
            read_set_ready(path.parent)  # a `quilt curate` output whose commit was interrupted: finish it first
        if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
            data = datasets.load_from_disk(str(path))
        elif path.exists() or name_or_path.startswith((".", "/", "~")):
            if not path.exists():
                raise UserFacingError(f"dataset folder {name_or_path} does not exist")
            data = datasets.load_dataset(str(path))
        else:
            data = datasets.load_dataset(name_or_path)
    if split is not None:
        if not isinstance(data, datasets.DatasetDict) or split not in data:
            available = list(data) if isinstance(data, datasets.DatasetDict) else ["(a single split)"]
            raise UserFacingError(f"{name_or_path} has no split {split!r}; it has {available}")
        data = data[split]
    return data


def _unit_hash(key: str, seed: int) -> float:
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def train_eval_split(data, *, eval_fraction: float = 0.1, group_column: str = "video_id", seed: int = 0):
    """The training and held-out evaluation sets of ``data``.

    A ``DatasetDict`` keeps its own ``train`` and validation split (``validation``, ``valid``, ``val`` or
    ``eval``); a table with a ``split`` column (the published pairs table) uses it likewise. A ``test`` split is
    never evaluated on during training (choosing checkpoints on it would leak into the test figures): with only
    train and test, the held-out set is carved out of train as below, and the test rows are left out (logged).
    Otherwise rows are split by ``group_column`` (whole videos go to one side, so no image of a held-out video
    leaks into training), or at random when that column is missing or holds a single value.

    Returns:
        `tuple`: ``(train, eval)``; ``eval`` is None when ``eval_fraction`` is 0 and no validation split exists.
    """
    import datasets

    if isinstance(data, datasets.DatasetDict):
        if "train" not in data:
            raise UserFacingError(f"the dataset has no 'train' split; it has {list(data)}")
        for name in EVAL_SPLIT_NAMES:
            if name in data:
                return data["train"], data[name]
        _log_test_split_unused([name for name in data if name in TEST_SPLIT_NAMES], eval_fraction)
        data = data["train"]
    if "split" in data.column_names:
        splits = set(data.unique("split"))
        held_out = next((name for name in EVAL_SPLIT_NAMES if name in splits), None)
        if "train" in splits and held_out is not None:
            train = data.filter(lambda s: s == "train", input_columns="split", desc="train split")
            return train, data.filter(lambda s: s == held_out, input_columns="split", desc=f"{held_out} split")
        if "train" in splits and splits & set(TEST_SPLIT_NAMES):
            _log_test_split_unused(sorted(splits & set(TEST_SPLIT_NAMES)), eval_fraction)
            data = data.filter(lambda s: s == "train", input_columns="split", desc="train split")
    if eval_fraction <= 0:
        return data, None
    if len(data) < 2:
        raise UserFacingError(f"{len(data)} pair(s) cannot be split into training and evaluation; set eval_fraction 0")
    groups = data.unique(group_column) if group_column in data.column_names else []
    if len(groups) >= 2:
        held = sorted(groups, key=lambda g: _unit_hash(str(g), seed))
        held = set(held[: max(1, min(len(held) - 1, round(eval_fraction * len(held))))])
        is_eval = [g in held for g in data[group_column]]
        eval_rows = [i for i, flag in enumerate(is_eval) if flag]
        train_rows = [i for i, flag in enumerate(is_eval) if not flag]
        logger.info("held out %d of %d %s groups (%d pairs) for evaluation", len(held), len(groups), group_column,
                    len(eval_rows))
        return data.select(train_rows), data.select(eval_rows)
    parts = data.train_test_split(test_size=max(1, math.ceil(eval_fraction * len(data))), seed=seed)
    return parts["train"], parts["test"]


def _log_test_split_unused(test_splits: list[str], eval_fraction: float) -> None:
    if not test_splits:
        return
    how = (
        f"{eval_fraction:.0%} of the training groups are held out for evaluation instead"
        if eval_fraction > 0
        else "no evaluation during training (eval_fraction 0)"
    )
    logger.warning(
        "the %s split is not used during training (score it afterwards with quilt eval); no validation split: %s",
        "/".join(test_splits),
        how,
    )


def check_columns(data, columns: list[str]) -> None:
    """Fail with the available columns when one of ``columns`` is missing."""
    missing = [c for c in columns if c not in data.column_names]
    if missing:
        raise UserFacingError(
            f"the dataset has no column(s) {missing}; it has {data.column_names}. Pick the image and text columns "
            "with --image_column / --caption_column"
        )


# ---------------------------------------------------------------------------------------------- images
def to_rgb_image(value: Any):
    """A PIL RGB image from what a datasets ``Image`` column holds (PIL, path, ``{"bytes", "path"}`` or array)."""
    import io

    from PIL import Image

    if isinstance(value, Image.Image):
        image = value
    elif isinstance(value, dict):
        image = Image.open(io.BytesIO(value["bytes"])) if value.get("bytes") else Image.open(value["path"])
    elif isinstance(value, (str, Path)):
        image = Image.open(value)
    elif isinstance(value, np.ndarray):
        image = Image.fromarray(value)
    else:
        raise TypeError(f"cannot read an image from {type(value).__name__}")
    return image.convert("RGB")


@dataclass
class ImageTransform:
    """Resize, crop, (augment) and normalise a PIL image into a ``(3, size, size)`` float tensor.

    Random draws come from the ``generator`` passed with each image (the collator seeds one per row and
    epoch, so augmentation does not depend on data-loader workers or prefetching, and resumes exactly).

    Args:
        size (`int`): output side in pixels.
        mean, std (`tuple[float, float, float]`): normalisation of the model's image processor.
        augmentation (`str`): ``none`` (resize shortest side + centre crop, as the image processor does),
            ``random_resized_crop`` (scale 0.9-1.0, ratio 3/4-4/3, as open_clip trains) or ``histology``
            (that crop plus random flips and 90-degree rotations).
    """

    size: int
    mean: tuple[float, float, float] = tuple(OPENAI_CLIP_MEAN)
    std: tuple[float, float, float] = tuple(OPENAI_CLIP_STD)
    augmentation: str = "none"
    scale: tuple[float, float] = (0.9, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    _mean: torch.Tensor = field(init=False, repr=False)
    _std: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self):
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)

    def _crop_box(self, width: int, height: int, generator: torch.Generator | None) -> tuple[int, int, int, int]:
        if self.augmentation == "none":
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            return left, top, left + side, top + side
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):  # torchvision's RandomResizedCrop
            target = area * float(torch.empty(1).uniform_(*self.scale, generator=generator))
            aspect = math.exp(float(torch.empty(1).uniform_(*log_ratio, generator=generator)))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
                left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
                return left, top, left + w, top + h
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return left, top, left + side, top + side

    def __call__(self, image, generator: torch.Generator | None = None) -> torch.Tensor:
        from PIL import Image

        box = self._crop_box(*image.size, generator)
        image = image.resize((self.size, self.size), Image.BICUBIC, box=box)
        array = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
        if self.augmentation == "histology":
            flips = torch.randint(0, 2, (2,), generator=generator)
            if flips[0]:
                array = array.flip(2)
            if flips[1]:
                array = array.flip(1)
            array = torch.rot90(array, int(torch.randint(0, 4, (1,), generator=generator)), dims=(1, 2))
        return (array.float() / 255.0 - self._mean) / self._std

    @classmethod
    def from_processor(cls, image_processor, *, size: int | None = None, augmentation: str = "none"):
        """The transform matching a transformers image processor's size and normalisation."""
        if size is None:
            for attr in ("crop_size", "size"):
                spec = getattr(image_processor, attr, None)
                if isinstance(spec, dict) and spec:
                    size = spec.get("height") or spec.get("shortest_edge") or next(iter(spec.values()))
                    break
                if hasattr(spec, "height") and spec.height:
                    size = spec.height
                    break
                if isinstance(spec, int):
                    size = spec
                    break
        if not size:
            raise ValueError(f"cannot tell the image size of {type(image_processor).__name__}; pass image_size")
        mean = tuple(getattr(image_processor, "image_mean", None) or cls.mean)
        std = tuple(getattr(image_processor, "image_std", None) or cls.std)
        return cls(size=int(size), mean=mean, std=std, augmentation=augmentation)


# ---------------------------------------------------------------------------------------------- collator
def group_id(key: Any) -> int:
    """A stable 63-bit id of ``key`` (rows with the same image share it)."""
    return int.from_bytes(hashlib.blake2b(str(key).encode(), digest_size=8).digest(), "little") >> 1


@dataclass
class ImageTextCollator:
    """Turn rows ``{image, caption, ...}`` into a model batch: ``pixel_values``, tokenised text and
    ``pair_group`` (the id of each row's image, used to score retrieval when images repeat).

    Args:
        tokenizer: the text tower's tokenizer.
        transform (`ImageTransform`): image decoding pipeline (augmenting or not).
        image_column, text_column (`str`): the columns to read.
        group_column (`str`, *optional*): column identifying the image; rows without it are their own group
            (their text is used as the key).
        max_length (`int`, *optional*): truncate texts to this many tokens.
        padding (`str` or `bool`): ``True`` pads to the longest text of the batch; ``"max_length"`` pads every
            text to ``max_length`` (needed by text towers that pool from the last position with no attention
            mask, such as SigLIP's).
        seed (`int`): augmentation seed; each row's draws are seeded by (seed, epoch, row key), where
            ``epoch`` is set by the trainer at each epoch.
    """

    tokenizer: Any
    transform: ImageTransform
    image_column: str = "image"
    text_column: str = "caption"
    group_column: str | None = "image_id"
    max_length: int | None = None
    padding: str | bool = True
    seed: int = 0
    epoch: int = 0

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        texts = [row[self.text_column] or "" for row in rows]
        keys = [row.get(self.group_column) if self.group_column else None for row in rows]
        keys = [f"{key}\x00{text}" if key not in (None, "") else f"text:{text}" for key, text in zip(keys, texts)]
        images = []
        for row, key in zip(rows, keys):
            generator = None
            if self.transform.augmentation != "none":
                generator = torch.Generator().manual_seed(group_id(f"{self.seed}:{self.epoch}:{key}"))
            images.append(self.transform(to_rgb_image(row[self.image_column]), generator))
        pixel_values = torch.stack(images)
        tokens = self.tokenizer(
            texts, padding=self.padding, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        batch = {"pixel_values": pixel_values, **tokens}
        groups = [row.get(self.group_column) if self.group_column else None for row in rows]
        batch[GROUP_LABEL] = torch.tensor(
            [group_id(g if g not in (None, "") else f"text:{text}") for g, text in zip(groups, texts)],
            dtype=torch.long,
        )
        return batch

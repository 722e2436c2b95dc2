"""Errors whose message tells the user what to do next."""

from __future__ import annotations

__all__ = ["MissingDependencyError", "UserFacingError", "require"]


class UserFacingError(RuntimeError):
    """An error whose message tells the user what to do; the CLI prints it without a traceback."""


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

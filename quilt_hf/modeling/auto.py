"""Register our model classes with transformers' Auto classes, when those are first used.

``import quilt_hf`` calls ``install()``. Importing transformers' model code costs seconds (torch), and
``quilt --help`` must stay instant, so the registration waits: it runs once transformers has imported
``models.auto.configuration_auto`` (then the configuration is registered with ``AutoConfig``) and
``models.auto.modeling_auto`` (then the model with ``AutoModel`` and
``AutoModelForZeroShotImageClassification``) and no transformers import is half-way, or at once for what is
already imported. Nothing runs remote
code: the classes are ours, in this package.
"""

from __future__ import annotations

import importlib.abc
import logging
import sys
from collections.abc import Callable

logger = logging.getLogger(__name__)

CONFIG_MODULE = "transformers.models.auto.configuration_auto"
MODEL_MODULE = "transformers.models.auto.modeling_auto"


def register_configs() -> None:
    """Register our configurations with ``AutoConfig``."""
    from transformers import AutoConfig

    from quilt_hf.modeling.configuration_custom_text_clip import CustomTextCLIPConfig

    AutoConfig.register(CustomTextCLIPConfig.model_type, CustomTextCLIPConfig, exist_ok=True)


def register_models() -> None:
    """Register our models with ``AutoModel`` and ``AutoModelForZeroShotImageClassification``."""
    from transformers import AutoModel, AutoModelForZeroShotImageClassification

    from quilt_hf.modeling.configuration_custom_text_clip import CustomTextCLIPConfig
    from quilt_hf.modeling.modeling_custom_text_clip import CustomTextCLIPModel

    register_configs()
    AutoModel.register(CustomTextCLIPConfig, CustomTextCLIPModel, exist_ok=True)
    AutoModelForZeroShotImageClassification.register(CustomTextCLIPConfig, CustomTextCLIPModel, exist_ok=True)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs callbacks once given transformers modules are imported and no transformers module is half-imported.

    transformers' modules import each other mid-way (a configuration class's docstring decorator reads
    ``modeling_auto``), so "right after module X" can still be inside another import; registering there would
    import half-initialised modules. The finder wraps the loading of every ``transformers`` module while
    callbacks wait, and runs them when the outermost one finishes.
    """

    def __init__(self, triggers: dict[str, Callable[[], None]]):
        self.triggers = dict(triggers)
        self.ready: list[Callable[[], None]] = []

    def find_spec(self, fullname, path, target=None):
        if not fullname.startswith("transformers"):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            if fullname in self.triggers:
                self.ready.append(self.triggers.pop(fullname))
            self.flush(module)

        spec.loader.exec_module = exec_then_register
        return spec

    def flush(self, finishing=None) -> None:
        if not self.ready or _importing(skip=finishing):
            return
        callbacks, self.ready = self.ready, []
        if not self.triggers and self in sys.meta_path:
            sys.meta_path.remove(self)
        for callback in callbacks:
            _run(callback)


def _importing(skip=None) -> bool:
    """Whether a transformers module (other than ``skip``) or one of ours is being imported right now."""
    for name, module in list(sys.modules.items()):
        if module is skip or not name.startswith(("transformers", "quilt_hf.modeling")):
            continue
        if getattr(getattr(module, "__spec__", None), "_initializing", False):
            return True
    return False


def _run(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception as error:  # never break the user's transformers import
        logger.warning("could not register quilt_hf's model classes with transformers: %s", error, exc_info=True)


def install() -> None:
    """Register now what transformers has already imported; arrange the rest for when it is imported."""
    pending = {}
    for module, callback in ((CONFIG_MODULE, register_configs), (MODEL_MODULE, register_models)):
        if module in sys.modules:
            _run(callback)
        else:
            pending[module] = callback
    if pending and not any(isinstance(finder, _AfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(pending))

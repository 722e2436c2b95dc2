"""Model classes of our own, for what transformers has no class for (registered with the Auto classes).

``import quilt_hf`` arranges for the registration to happen as soon as transformers' Auto classes are used
(see ``quilt_hf.modeling.auto``), so ``AutoModel.from_pretrained`` and the zero-shot pipeline load these
models without ``trust_remote_code``.
"""

"""Moved to :mod:`quilt_hf.publishing.hub`; this name stays importable for code written against it."""

from quilt_hf.publishing.hub import *  # noqa: F401,F403
from quilt_hf.publishing.hub import push_folder_to_hub, write_hub_folder  # noqa: F401

"""Moved to :mod:`quilt_hf.publishing.publish`; this name stays importable for code written against it."""

from quilt_hf.publishing.publish import *  # noqa: F401,F403
from quilt_hf.publishing.publish import PublishConfig, run_publish, split_by_video  # noqa: F401

"""Converters from other model formats to transformers folders (used to build the offline models)."""

"""Evaluation: zero-shot classification, linear probing and cross-modal retrieval."""

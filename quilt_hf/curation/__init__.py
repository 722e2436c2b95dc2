"""Curation: narrated histopathology videos to aligned image-text pairs, as ``datasets`` transforms."""

"""Card templates (Markdown with YAML front matter), shipped as package data."""

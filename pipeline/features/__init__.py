"""Frozen features on disk: per-dataset image encodings and per-backbone dump files."""

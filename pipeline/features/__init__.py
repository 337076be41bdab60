"""Frozen features on disk: per-dataset image encodings and per-run feature files (what the heads read)."""

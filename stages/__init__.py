"""Thin DVC stage entry points: read a params section, call `pipeline`, write artifacts."""

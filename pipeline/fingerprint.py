"""Stable short hashes of parameter dictionaries and of the files a result is built from, stored in artifact attrs."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable


def fingerprint(obj) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (a checkpoint, a mask store): the same name with new content is a new input."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def stat_digest(root: str | Path, relpaths: Iterable[str]) -> str:
    """Hash of each file's path, size and modification time: cheap (no reads), changes when a file is replaced."""
    h = hashlib.sha256()
    for rel in relpaths:
        try:
            st = os.stat(Path(root) / rel)
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8"))
        except FileNotFoundError:
            h.update(f"{rel}\0missing\n".encode("utf-8"))
    return h.hexdigest()[:16]

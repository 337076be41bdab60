"""Write artifacts so a killed process never leaves a file DVC would accept."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Iterator


def partial_path(path: str | Path) -> Path:
    """The sibling path an artifact is built at before it is renamed."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


@contextlib.contextmanager
def atomic_path(path: str | Path, keep_partial: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `path` on success.

    With keep_partial the temporary file survives an exception, so a
    resumable writer can continue from it next time.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        yield tmp
    except BaseException:
        if not keep_partial:
            _remove(tmp)
        raise
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a directory at a temporary path; swap it in when complete."""
    path = Path(path)
    with atomic_path(path) as tmp:
        _remove(tmp)
        tmp.mkdir(parents=True)
        yield tmp


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()

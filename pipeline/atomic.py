"""Write artifacts so a killed process never leaves a file DVC would accept."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator


class OutputWriteError(OSError):
    """An artifact cannot be written: its folder is read-only, or the disk (or the file size limit) is full."""


_NO_ROOM = {
    errno.ENOSPC: "the disk is full",
    errno.EFBIG: "the file size limit is reached",
    errno.EDQUOT: "the disk quota is used up",
}
_NO_ACCESS = (errno.EACCES, errno.EPERM, errno.EROFS)


def write_failure(path: str | Path, err: BaseException, folder: str | Path | None = None) -> OutputWriteError | None:
    """The one-line error for a write to `path` that failed for lack of room or access; None for any other error.

    Besides OSError's errno, HDF5 and torch report the system error inside
    their message ("errno = 28", "No space left on device").
    """
    folder = Path(folder or Path(path).parent)
    if isinstance(err, OSError) and err.errno is not None:
        if err.filename and not Path(err.filename).resolve().is_relative_to(folder.resolve()):
            return None  # reading an input failed, not writing here
        code = err.errno
    elif isinstance(err, (OSError, RuntimeError)):
        text = str(err)
        found = re.search(r"errno = (\d+)", text)  # how HDF5 reports the system error
        code = int(found.group(1)) if found else None
        if code is None and isinstance(err, RuntimeError):  # torch's writer gives only the system message
            code = next((c for c in (*_NO_ROOM, *_NO_ACCESS) if os.strerror(c) in text), None)
    else:
        return None
    if code in _NO_ROOM:
        return OutputWriteError(
            f"cannot write {path}: {_NO_ROOM[code]}; free space on {folder} and re-run "
            "(a resumable stage keeps what it finished)"
        )
    if code in _NO_ACCESS:
        return OutputWriteError(
            f"cannot write {path}: {folder} is not writable ({os.strerror(code)}); "
            "make it writable, or run from a writable copy of the project"
        )
    return None


def check_writable(folder: str | Path) -> None:
    """Create `folder` and a scratch file in it, so a read-only output fails before any work is done."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise write_failure(folder, err, folder) or err from None


@contextlib.contextmanager
def hdf5_writes(path: str | Path) -> Iterator[None]:
    """Turn a failed HDF5 write to `path` (disk full, read-only) into one OutputWriteError.

    h5py also prints a traceback for each open handle it then cannot close
    (through the except and unraisable hooks); those repeats are dropped
    while the error says it once.
    """
    hooks = sys.excepthook, sys.unraisablehook

    def drop_failed_closes(kind, value, tb) -> None:
        if "file write failed" not in str(value):
            hooks[0](kind, value, tb)

    def drop_hdf5_unraisable(unraisable) -> None:
        if "h5py" not in repr(unraisable.object):
            hooks[1](unraisable)

    sys.excepthook, sys.unraisablehook = drop_failed_closes, drop_hdf5_unraisable
    try:
        yield
    except (OSError, RuntimeError) as err:
        failure = write_failure(path, err)
        if failure is None:
            raise
        raise failure from None
    finally:
        sys.excepthook, sys.unraisablehook = hooks


def close_quietly(f) -> None:
    """Close an HDF5 file after a failure; a close that fails too adds nothing to the error already raised."""
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        f.close()
    except Exception:
        pass
    finally:
        sys.unraisablehook = hook


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
    check_writable(path.parent)
    tmp = partial_path(path)
    try:
        yield tmp
    except BaseException as err:
        if not keep_partial:
            _remove(tmp)
        failure = write_failure(path, err)
        if failure:
            raise failure from None
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

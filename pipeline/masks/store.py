"""One HDF5 file of foreground masks per dataset, keyed by the manifest's image path.

Masks are resized (nearest) to a fixed shorter side, keeping the image's
aspect ratio, and bit-packed into one flat array with per-image offsets.
The area ratio is measured on the full-resolution mask before resizing.
Writing is resumable: rows are committed in batches (`n_committed` attr),
and a restarted writer truncates anything after the last commit.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from ..atomic import check_writable, close_quietly, hdf5_writes, partial_path

SCHEMA = 1
OK, EMPTY, FULL, MISSING = 0, 1, 2, 3
FLAG_NAMES = {OK: "ok", EMPTY: "empty", FULL: "full", MISSING: "missing"}
ROW_DATASETS = ("impath", "shape", "offset", "area", "flag", "stretched")


class MaskStoreError(ValueError):
    pass


def resize_shorter(mask: np.ndarray, size: int) -> np.ndarray:
    h, w = mask.shape
    if min(h, w) == size:
        return mask
    scale = size / min(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(new, Image.NEAREST)) > 127


def flag_of(mask: np.ndarray) -> int:
    if not mask.any():
        return EMPTY
    if mask.all():
        return FULL
    return OK


class MaskStoreWriter:
    """Append masks to `<path>.partial`; `finish()` renames it onto `path`."""

    def __init__(self, path: str | Path, size: int, attrs: dict) -> None:
        self.path, self.size = Path(path), size
        self.tmp = partial_path(self.path)
        check_writable(self.path.parent)
        with hdf5_writes(self.tmp):
            self.file = self._open_or_resume(attrs)
        self.done = set(self.file["impath"].asstr()[: self.n])

    @property
    def n(self) -> int:
        return int(self.file.attrs["n_committed"])

    def _open_or_resume(self, attrs: dict) -> h5py.File:
        if self.tmp.exists():
            try:
                f = h5py.File(self.tmp, "a")
                if (
                    f.attrs.get("fingerprint") == attrs.get("fingerprint")
                    and f.attrs.get("store_size") == self.size
                    and "stretched" in f
                ):
                    n = int(f.attrs["n_committed"])
                    for name in ROW_DATASETS:
                        f[name].resize((n,) + f[name].shape[1:])
                    end = int(f["offset"][n - 1] + np.ceil(np.prod(f["shape"][n - 1]) / 8)) if n else 0
                    f["packed"].resize((end,))
                    return f
                f.close()
            except (OSError, KeyError):
                pass  # unreadable or foreign partial file: start over
            self.tmp.unlink()
        f = h5py.File(self.tmp, "w")
        f.attrs.update({**attrs, "schema": SCHEMA, "store_size": self.size, "n_committed": 0})
        # Fletcher-32 checksums make a flipped byte fail the read instead of changing a mask (strings cannot carry one).
        f.create_dataset("packed", (0,), np.uint8, maxshape=(None,), chunks=(1 << 16,), fletcher32=True)
        f.create_dataset("impath", (0,), h5py.string_dtype(), maxshape=(None,), chunks=(1024,))
        f.create_dataset("shape", (0, 2), np.int32, maxshape=(None, 2), chunks=(1024, 2), fletcher32=True)
        f.create_dataset("offset", (0,), np.int64, maxshape=(None,), chunks=(1024,), fletcher32=True)
        f.create_dataset("area", (0,), np.float32, maxshape=(None,), chunks=(1024,), fletcher32=True)
        f.create_dataset("flag", (0,), np.uint8, maxshape=(None,), chunks=(1024,), fletcher32=True)
        f.create_dataset("stretched", (0,), np.uint8, maxshape=(None,), chunks=(1024,), fletcher32=True)
        return f

    def add_batch(self, rows: list[tuple[str, np.ndarray, float, int]]) -> None:
        """Rows of (impath, stored-size bool mask, area ratio, flag[, stretched]); committed together."""
        if not rows:
            return
        with hdf5_writes(self.tmp):
            self._append(rows)
        self.done.update(r[0] for r in rows)

    def _append(self, rows: list[tuple[str, np.ndarray, float, int]]) -> None:
        f, n = self.file, self.n
        start = f["packed"].shape[0]
        packed = [np.packbits(row[1].ravel()) for row in rows]
        offsets = start + np.concatenate([[0], np.cumsum([len(p) for p in packed])[:-1]])
        f["packed"].resize((start + sum(len(p) for p in packed),))
        f["packed"][start:] = np.concatenate(packed)
        for name, values in (
            ("impath", [r[0] for r in rows]),
            ("shape", [r[1].shape for r in rows]),
            ("offset", offsets),
            ("area", [r[2] for r in rows]),
            ("flag", [r[3] for r in rows]),
            ("stretched", [bool(r[4]) if len(r) > 4 else False for r in rows]),
        ):
            ds = f[name]
            ds.resize((n + len(rows),) + ds.shape[1:])
            ds[n:] = np.asarray(values, dtype=object if name == "impath" else ds.dtype)
        f.attrs["n_committed"] = n + len(rows)
        f.flush()

    def finish(self, extra_attrs: dict | None = None) -> Path:
        with hdf5_writes(self.tmp):
            self.file.attrs.update(extra_attrs or {})
            self.file.close()
        os.replace(self.tmp, self.path)
        return self.path

    def close(self) -> None:
        """Stop without finishing (the committed rows stay for the next run); quiet if a failed write broke the file."""
        close_quietly(self.file)


class MaskStore:
    """Read-only, in-memory view of a finished mask store (safe to pass to DataLoader workers)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path} not found: run the masks stage (`dvc repro masks`) first")
        try:
            self._read()
        except (OSError, KeyError) as err:  # truncated, bit-flipped (checksum) or not a mask store at all
            raise MaskStoreError(
                f"{self.path} is not a readable mask store ({err}); delete it and re-run the masks stage"
            ) from err
        if not np.isfinite(self.areas).all():
            raise MaskStoreError(
                f"{self.path}: {int((~np.isfinite(self.areas)).sum())} mask areas are not finite; "
                "delete it and re-run the masks stage"
            )
        self.index = {p: i for i, p in enumerate(self.impaths)}

    def _read(self) -> None:
        with h5py.File(self.path, "r") as f:
            if f.attrs.get("schema") != SCHEMA:
                raise MaskStoreError(
                    f"{self.path}: mask store schema {f.attrs.get('schema')} != {SCHEMA}; re-run the masks stage"
                )
            self.attrs = dict(f.attrs)
            n = int(f.attrs["n_committed"])
            self.impaths = list(f["impath"].asstr()[:n])
            self.shapes = f["shape"][:n]
            self.offsets = f["offset"][:n]
            self.areas = f["area"][:n]
            self.flags = f["flag"][:n]
            self.stretched = f["stretched"][:n].astype(bool) if "stretched" in f else np.zeros(n, bool)
            self.packed = f["packed"][:]

    def __len__(self) -> int:
        return len(self.impaths)

    def __contains__(self, impath: str) -> bool:
        return impath in self.index

    def _row(self, impath: str) -> int:
        if impath not in self.index:
            raise KeyError(
                f"{self.path} has no mask for {impath}; re-run the masks stage for the current seeds/settings"
            )
        return self.index[impath]

    def mask(self, impath: str) -> np.ndarray:
        i = self._row(impath)
        h, w = self.shapes[i]
        n = h * w
        bits = np.unpackbits(self.packed[self.offsets[i] : self.offsets[i] + (n + 7) // 8])[:n]
        return bits.reshape(h, w).astype(bool)

    def area(self, impath: str) -> float:
        return float(self.areas[self._row(impath)])

    def flag(self, impath: str) -> str:
        return FLAG_NAMES[int(self.flags[self._row(impath)])]

"""What every cached feature file shares: its errors, checksums, finiteness checks and checked reads."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


class FeatureFileError(ValueError):
    """A feature file is missing, truncated, or from another schema."""


class NonFiniteFeaturesError(FeatureFileError):
    """NaN or infinite values where features (or areas) must be finite numbers."""


# Every numeric dataset carries a Fletcher-32 checksum per chunk, so flipped
# bytes fail the read instead of changing a result (strings cannot carry one).
CHECKSUM = {"fletcher32": True}


def nonfinite_rows(key: str, values: np.ndarray) -> int:
    """How many rows (images, or classes for text) of `key` hold a NaN or inf; train arrays are [V, N, ...]."""
    if values.dtype.kind != "f":
        return 0
    bad = ~np.isfinite(values)
    row_axis = 1 if key.startswith("train/") and values.ndim >= 2 else 0
    other = tuple(a for a in range(values.ndim) if a != row_axis)
    return int(bad.any(axis=other).sum()) if other else int(bad.sum())


def check_finite(path: Path, arrays: dict[str, np.ndarray], fix: str) -> None:
    """Raise naming each dataset of `path` with non-finite rows; a test area is NaN by design where has_fg is false."""
    counts = {}
    for key, values in arrays.items():
        if key.endswith("test/area") and key.replace("area", "has_fg") in arrays:
            values = values[np.asarray(arrays[key.replace("area", "has_fg")], bool)]
        n = nonfinite_rows(key, np.asarray(values))
        if n:
            counts[key] = f"{n} of {values.shape[1 if key.startswith('train/') and values.ndim >= 2 else 0]} rows"
    if counts:
        found = ", ".join(f"{k} ({v})" for k, v in counts.items())
        raise NonFiniteFeaturesError(f"{path}: non-finite values (NaN or inf) in {found}; {fix}")


def read_checked(f: h5py.File, key: str, path: Path, stage: str) -> np.ndarray:
    """Read one dataset whole; a checksum mismatch or truncation names the file, the dataset and the fix."""
    try:
        return f[key][:]
    except (OSError, KeyError) as err:
        raise FeatureFileError(
            f"{path}: cannot read {key} (corrupt or truncated file: {err}); delete it and re-run the {stage} stage"
        ) from err


def open_readable(path: Path, stage: str) -> h5py.File:
    """Open an HDF5 file for reading; a truncated or foreign file names itself and the stage that rewrites it."""
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise FeatureFileError(
            f"{path} is not a readable HDF5 file (truncated or corrupt: {err}); delete it and re-run the {stage} stage"
        ) from err


def check_schema(f: h5py.File, path: Path, schema: int) -> None:
    found = f.attrs.get("schema")
    if found != schema:
        raise FeatureFileError(
            f"{path}: schema version {found}, this pipeline reads {schema}; re-run the stage that wrote it"
        )

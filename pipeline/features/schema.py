"""What every cached feature file shares: its error type and the schema check."""

from __future__ import annotations

from pathlib import Path

import h5py


class FeatureFileError(ValueError):
    """A feature file is missing, truncated, or from another schema."""


def check_schema(f: h5py.File, path: Path, schema: int) -> None:
    found = f.attrs.get("schema")
    if found != schema:
        raise FeatureFileError(f"{path}: schema version {found}, this pipeline reads {schema}; re-run the stage that wrote it")

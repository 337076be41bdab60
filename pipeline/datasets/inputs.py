"""A cheap fingerprint of a dataset folder, so DVC notices when files outside the repository change.

Images and precomputed masks live under `prepare.data_root` (or
`prepare.roots`), outside DVC's view. The `inputs` stage runs on every
`dvc repro` (it only lists and stats files, reading none) and writes this
fingerprint; `prepare` depends on it, and copies it into the prepared
folder so every stage after it re-runs when a file is added, removed,
replaced or edited.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def folder_fingerprint(root: str | Path) -> dict:
    """Count, total size and a hash of every file's relative path, size and mtime under `root` (hidden files
    skipped)."""
    root = Path(root)
    digest, files, size = hashlib.sha256(), 0, 0
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(n for n in names if not n.startswith(".")):
            path = Path(folder) / name
            st = path.stat()
            digest.update(f"{path.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8"))
            files, size = files + 1, size + st.st_size
    return {"root": str(root), "files": files, "bytes": size, "digest": digest.hexdigest()[:16]}


def dataset_inputs(dataset: str, data_root: str | Path, root_override: str | Path | None = None) -> dict:
    """What `prepare` reads from outside the repository; the built-in benchmark has nothing there (params
    describe it)."""
    from . import DatasetLayoutError, dataset_root, is_synthetic

    if is_synthetic(dataset):
        return {"dataset": dataset, "external": False}
    root = dataset_root(dataset, data_root, root_override)
    if not root.is_dir():
        raise DatasetLayoutError(
            f"{dataset}: dataset folder {root} does not exist. Set prepare.data_root to your CoOp "
            f"DATA folder or prepare.roots.{dataset} to the dataset folder itself."
        )
    return {"dataset": dataset, "external": True, **folder_fingerprint(root)}


class StaleInputsError(ValueError):
    """A stage's inputs file was written for other settings than the params file now gives."""


def stage_inputs(fingerprint: dict | None, settings: dict, seeds: list[int]) -> dict:
    """The content of a dataset's `data/inputs/<dataset>/<stage>.json`: what DVC tracks for that stage."""
    return {**({"inputs": fingerprint} if fingerprint is not None else {}), "settings": settings, "seeds": seeds}


def check_stage_inputs(path: Path, settings: dict, seeds: list[int]) -> dict | None:
    """The stage's tracked inputs file, after refusing to run a stage whose file disagrees with the params: DVC
    would record the run against settings it did not use. None without a file (a stage run by hand, outside
    DVC)."""
    import json

    if not path.is_file():
        return None
    recorded = json.loads(path.read_text())
    if recorded.get("settings") != settings or recorded.get("seeds") != seeds:
        raise StaleInputsError(
            f"{path} was written for other settings than the params file gives now; run `fvgpt inputs "
            f"{path.parent.name}` first (`dvc repro` does)"
        )
    return recorded

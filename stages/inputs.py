"""inputs: the fingerprint of a dataset's folder outside the repository (DVC re-runs `prepare` when it changes)."""

from __future__ import annotations

from pathlib import Path

from pipeline.atomic import write_json
from pipeline.datasets.inputs import dataset_inputs
from pipeline.paths import inputs_path

from ._common import start


def run(dataset: str, params_file: str = "params.yaml") -> Path:
    cfg = start(params_file).prepare
    fingerprint = dataset_inputs(dataset, cfg.data_root, cfg.roots.get(dataset))
    out = inputs_path(dataset)
    write_json(out, fingerprint)
    if fingerprint["external"]:
        print(
            f"inputs of {dataset}: {fingerprint['files']} files, {fingerprint['bytes'] / 1e6:.1f} MB under "
            f"{fingerprint['root']} (fingerprint {fingerprint['digest']})"
        )
    return out

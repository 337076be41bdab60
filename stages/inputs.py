"""inputs: the fingerprint of a dataset's folder outside the repository (DVC re-runs `prepare` when it changes)."""

from __future__ import annotations

from pathlib import Path

from pipeline.atomic import write_json
from pipeline.datasets import DatasetLayoutError, dataset_root
from pipeline.datasets.inputs import folder_fingerprint

from ._common import DATA, load_params, section


def inputs_path(dataset: str) -> Path:
    return DATA / "inputs" / f"{dataset}.json"


def dataset_inputs(dataset: str, cfg: dict) -> dict:
    """What `prepare` reads from outside the repository; the built-in benchmark has nothing there (params describe it)."""
    if dataset == "synthetic":
        return {"dataset": dataset, "external": False}
    root = dataset_root(dataset, cfg.get("data_root", "data/DATA"), (cfg.get("roots") or {}).get(dataset))
    if not root.is_dir():
        raise DatasetLayoutError(f"{dataset}: dataset folder {root} does not exist. Set prepare.data_root to your CoOp "
                                 f"DATA folder or prepare.roots.{dataset} to the dataset folder itself.")
    return {"dataset": dataset, "external": True, **folder_fingerprint(root)}


def run(dataset: str, params_file: str = "params.yaml") -> Path:
    fingerprint = dataset_inputs(dataset, section(load_params(params_file), "prepare"))
    out = inputs_path(dataset)
    write_json(out, fingerprint)
    if fingerprint["external"]:
        print(f"inputs of {dataset}: {fingerprint['files']} files, {fingerprint['bytes'] / 1e6:.1f} MB under "
              f"{fingerprint['root']} (fingerprint {fingerprint['digest']})")
    return out

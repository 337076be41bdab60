"""inputs: what each dataset's prepare and masks stages depend on besides code, one small file each, for every
dataset in one process (a stage process per dataset would cost seconds on every repro, this stage runs on each).

`prepare.json` holds the fingerprint of the dataset's folder outside the repository and the dataset's
effective prepare settings; `masks.json` its effective masks settings. DVC tracks these files instead of
the whole `prepare` and `masks` sections, so an override for one dataset re-runs that dataset alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from pipeline.atomic import write_json
from pipeline.datasets.inputs import dataset_inputs, stage_inputs
from pipeline.paths import masks_inputs_path, prepare_inputs_path

from ._common import start


def run(datasets: Sequence[str] | str = (), params_file: str = "params.yaml") -> None:
    """Every dataset of `datasets` (all of params' `datasets` when empty)."""
    params = start(params_file)
    for dataset in [datasets] if isinstance(datasets, str) else list(datasets) or params.datasets:
        write_inputs(params, dataset)


def write_inputs(params, dataset: str) -> Path:
    cfg = params.prepare.for_dataset(dataset)
    seeds = list(params.seeds)
    fingerprint = dataset_inputs(dataset, cfg.data_root, cfg.roots.get(dataset))
    write_json(prepare_inputs_path(dataset), stage_inputs(fingerprint, params.prepare.inputs(dataset), seeds))
    write_json(masks_inputs_path(dataset), stage_inputs(None, params.masks.inputs(dataset), seeds))
    if fingerprint["external"]:
        print(
            f"inputs of {dataset}: {fingerprint['files']} files, {fingerprint['bytes'] / 1e6:.1f} MB under "
            f"{fingerprint['root']} (fingerprint {fingerprint['digest']})"
        )
    return prepare_inputs_path(dataset).parent

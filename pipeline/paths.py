"""Where every artifact lives, written once: stages, the report and the tests use these; dvc.yaml repeats them
(a test checks that dvc.yaml's outs are exactly these paths)."""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")
REPORTS = Path("reports")


def inputs_path(dataset: str) -> Path:
    return DATA / "inputs" / f"{dataset}.json"


def prepared_dir(dataset: str) -> Path:
    return DATA / "prepared" / dataset


def masks_path(dataset: str) -> Path:
    return DATA / "masks" / f"{dataset}.h5"


def masks_report_dir(dataset: str) -> Path:
    return DATA / "masks" / f"{dataset}.report"


def model_checkpoint(model: str) -> Path:
    return DATA / "models" / f"{model}.pt"


def model_card(model: str) -> Path:
    return DATA / "models" / f"{model}.json"


def encoded_path(dataset: str) -> Path:
    return DATA / "encoded" / f"{dataset}.h5"


def backbone_dir(dataset: str, backbone: str, seed: int) -> Path:
    return DATA / "backbones" / dataset / backbone / f"seed{seed}"


def features_path(dataset: str, backbone: str, seed: int) -> Path:
    return DATA / "features" / dataset / backbone / f"seed{seed}.h5"


def heads_dir(dataset: str, backbone: str, seed: int) -> Path:
    return DATA / "heads" / dataset / backbone / f"seed{seed}"


def metrics_path(dataset: str, backbone: str, seed: int) -> Path:
    return DATA / "metrics" / dataset / backbone / f"seed{seed}.json"


def results_dir() -> Path:
    return REPORTS / "results"


def sweeps_dir() -> Path:
    return REPORTS / "sweeps"

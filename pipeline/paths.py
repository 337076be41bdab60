"""Where every artifact lives, written once: stages, the report and the tests use these; dvc.yaml repeats them
(a test checks that dvc.yaml's outs are exactly these paths).

Two homes, by how they are versioned. `data/` holds what DVC caches (git ignores the folder): models,
masks, encodings, features, trained heads, and the report's figures (under reports/figures). `reports/`
holds the small text results git versions (`cache: false` in dvc.yaml): the metrics of every run, the
summary, the tables and the data of the plots. So `dvc exp show`, `dvc metrics diff` and `dvc plots diff`
read any commit or experiment from git alone, and `dvc checkout` restores the large files from the cache
without re-running a stage.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")
REPORTS = Path("reports")


# --- cached by DVC (data/) -----------------------------------------------------------------------------------
def inputs_dir(dataset: str) -> Path:
    """What a dataset's prepare and masks stages depend on besides code: the external folder's fingerprint
    and each stage's effective settings (global keys merged with the dataset's overrides)."""
    return DATA / "inputs" / dataset


def prepare_inputs_path(dataset: str) -> Path:
    return inputs_dir(dataset) / "prepare.json"


def masks_inputs_path(dataset: str) -> Path:
    return inputs_dir(dataset) / "masks.json"


def prepared_dir(dataset: str) -> Path:
    return DATA / "prepared" / dataset


def masks_path(dataset: str) -> Path:
    return DATA / "masks" / f"{dataset}.h5"


def masks_figure_path(dataset: str) -> Path:
    return DATA / "masks" / f"{dataset}_area_hist.png"


def model_checkpoint(model: str) -> Path:
    return DATA / "models" / f"{model}.pt"


def encoded_path(dataset: str) -> Path:
    return DATA / "encoded" / f"{dataset}.h5"


def backbone_dir(dataset: str, backbone: str, seed: int) -> Path:
    return DATA / "backbones" / dataset / backbone / f"seed{seed}"


def features_dir(dataset: str, backbone: str) -> Path:
    return DATA / "features" / dataset / backbone


def features_path(dataset: str, backbone: str, seed: int) -> Path:
    return features_dir(dataset, backbone) / f"seed{seed}.h5"


def heads_dataset_dir(dataset: str) -> Path:
    """The heads of every backbone x seed of one dataset (one `heads` stage trains them all)."""
    return DATA / "heads" / dataset


def heads_dir(dataset: str, backbone: str, seed: int) -> Path:
    return heads_dataset_dir(dataset) / backbone / f"seed{seed}"


# --- versioned by git (reports/) -----------------------------------------------------------------------------
def model_card(model: str) -> Path:
    return REPORTS / "pretrain" / f"{model}.json"


def masks_quality_path(dataset: str) -> Path:
    return REPORTS / "masks" / f"{dataset}.json"


def metrics_dir(dataset: str) -> Path:
    """The metrics of every backbone of one dataset (one `evaluate` stage writes them all)."""
    return REPORTS / "metrics" / dataset


def metrics_path(dataset: str, backbone: str) -> Path:
    """Every seed's metrics of one dataset x backbone: {"seed<k>": {metric: value}}."""
    return metrics_dir(dataset) / f"{backbone}.json"


def summary_path() -> Path:
    return REPORTS / "summary.json"


def results_dir() -> Path:
    return REPORTS / "results"


def plots_dir() -> Path:
    return REPORTS / "plots"


def figures_dir() -> Path:
    """The report's PNG figures: under reports/ for the reader, but cached by DVC (dvc.yaml), not git."""
    return REPORTS / "figures"


def sweeps_dir() -> Path:
    return REPORTS / "sweeps"

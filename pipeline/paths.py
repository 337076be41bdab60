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
def inputs_root() -> Path:
    """The `inputs` stage's output: one folder per dataset (inputs_dir)."""
    return DATA / "inputs"


def inputs_dir(dataset: str) -> Path:
    """What a dataset's prepare and masks stages depend on besides code: the external folder's fingerprint
    and each stage's effective settings (global keys merged with the dataset's overrides)."""
    return inputs_root() / dataset


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


def masks_examples_path(dataset: str) -> Path:
    """A few-shot training image per class with its mask and foreground view."""
    return DATA / "masks" / f"{dataset}_examples.png"


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


# The cross-dataset protocol: everything tuned on one source lives under data/cross/<source>/.
def cross_backbone_dir(source: str, backbone: str, seed: int) -> Path:
    return DATA / "cross" / source / "backbones" / backbone / f"seed{seed}"


def cross_features_path(source: str, dataset: str, backbone: str, seed: int) -> Path:
    """A run's features on `dataset` (the source itself, or a target) through the encoders tuned on `source`."""
    return DATA / "cross" / source / "features" / dataset / backbone / f"seed{seed}.h5"


def cross_heads_dir(source: str) -> Path:
    """The heads of every backbone x seed trained on `source` (one `cross_heads` stage trains them all)."""
    return DATA / "cross" / source / "heads"


# --- versioned by git (reports/) -----------------------------------------------------------------------------
def model_card(model: str) -> Path:
    return REPORTS / "pretrain" / f"{model}.json"


def masks_quality_path(dataset: str) -> Path:
    return REPORTS / "masks" / f"{dataset}.json"


def metrics_dir(dataset: str) -> Path:
    """The metrics of every backbone of one dataset (one `heads` stage writes them all)."""
    return REPORTS / "metrics" / dataset


def metrics_path(dataset: str, backbone: str) -> Path:
    """Every seed's metrics of one dataset x backbone: {"seed<k>": {metric: value}}."""
    return metrics_dir(dataset) / f"{backbone}.json"


def training_log_path(dataset: str) -> Path:
    """Every base-to-new run's heads training log of one dataset in long form (the heads stage writes it)."""
    return REPORTS / "training" / f"{dataset}.csv"


def backbone_trend_path(dataset: str) -> Path:
    """Every base-to-new run's backbone accuracy and shift index per tuning epoch, in long form (heads stage)."""
    return REPORTS / "training" / f"{dataset}_backbone.csv"


def summary_path() -> Path:
    return REPORTS / "summary.json"


def results_dir() -> Path:
    return REPORTS / "results"


def plots_dir() -> Path:
    return REPORTS / "plots"


def figures_dir() -> Path:
    """The report's PNG figures: under reports/ for the reader, but cached by DVC (dvc.yaml), not git."""
    return REPORTS / "figures"


def attention_metrics_path(dataset: str) -> Path:
    """Every run's foreground share of Grad-CAM mass on one dataset's test images: {backbone: {"seed<k>": ...}}."""
    return REPORTS / "attention" / f"{dataset}.json"


def attention_figure_path(dataset: str) -> Path:
    """The Grad-CAM figure of one dataset: cached by DVC like the report's figures."""
    return REPORTS / "attention" / "figures" / f"{dataset}.png"


def cross_dir(source: str) -> Path:
    """The cross-dataset results of the runs tuned on `source`: metrics per tested dataset, summary, Table 2."""
    return REPORTS / "cross_dataset" / source


def cross_metrics_dir(source: str) -> Path:
    """The accuracy on the source and on every target of the runs tuned on `source` (one `cross_heads` stage
    writes them all)."""
    return cross_dir(source) / "metrics"


def cross_metrics_path(source: str, dataset: str) -> Path:
    """Every backbone x seed's accuracy on `dataset` (the source or a target) of the runs tuned on `source`:
    {backbone: {"seed<k>": {metric: value}}}."""
    return cross_metrics_dir(source) / f"{dataset}.json"


def cross_summary_path(source: str) -> Path:
    return cross_dir(source) / "summary.json"


def cross_results_dir(source: str) -> Path:
    return cross_dir(source) / "results"


def cross_figure_path(source: str) -> Path:
    """The Table 2 figure of `source`: cached by DVC like the report's figures, in one folder for `dvc plots`."""
    return REPORTS / "cross_dataset" / "figures" / f"{source}.png"


def sweeps_dir() -> Path:
    return REPORTS / "sweeps"

"""Plumbing shared by the stage modules: params, artifact paths, progress."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

DATA = Path("data")


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run from the project root or pass --params PATH")
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def section(params: dict, name: str) -> dict:
    if name not in params:
        raise KeyError(f"params.yaml has no '{name}' section")
    return params[name] or {}


def prepared_dir(dataset: str) -> Path:
    return DATA / "prepared" / dataset


def masks_path(dataset: str) -> Path:
    return DATA / "masks" / f"{dataset}.h5"


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


@contextlib.contextmanager
def progress_bar(description: str, total: int | None) -> Iterator:
    """Yield `advance(n)`; draws a rich bar on stderr."""
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def clip_from_params(params: dict, device):
    """The frozen CLIP that `clip.model` / `clip.pretrained` name."""
    from pipeline.models import load_clip

    cfg = section(params, "clip")
    return load_clip(cfg["model"], cfg.get("pretrained"), device=device,
                     allow_download=bool(cfg.get("allow_download", False)), cache_dir=cfg.get("cache_dir"))


def backbone_template(prepared, backbone: str) -> str:
    return prepared.classes["template_kgcoop" if backbone == "kgcoop" else "template"]

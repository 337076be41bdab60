"""The saved form of trained heads: weights, config and per-epoch log."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..atomic import atomic_path, write_json
from ..weights import read_weights
from .config import HeadsConfig
from .model import FVGPTHeads

WEIGHTS, CONFIG, LOG = "heads.pt", "config.json", "train_log.csv"


def save_heads(out_dir: Path, model: FVGPTHeads, log: list[dict], meta: dict) -> None:
    """A single-member model (K = 1) with its log."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / WEIGHTS) as tmp:
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, tmp)
    write_json(
        out_dir / CONFIG, {"config": model.configs[0].to_dict(), "keep_image_norm": model.keep_image_norm, **meta}
    )
    write_long_logs(out_dir / LOG, [({}, log)])


def write_long_logs(path: Path, runs: list[tuple[dict, list[dict]]]) -> None:
    """Training logs of many runs as one CSV: each run's labels (dataset, backbone, seed, run) then its log's
    columns, one row per epoch. Plain text, no pandas: the heads stage runs in every ablation."""
    rows = [{**labels, **row} for labels, log in runs for row in log]
    keys = list(dict.fromkeys(k for row in rows for k in row))

    def text(value) -> str:
        return "" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)

    with atomic_path(path) as tmp:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text("\n".join([",".join(keys)] + [",".join(text(r.get(k)) for k in keys) for r in rows]) + "\n")


def load_heads(out_dir: Path, dim: int, logit_scale: float, device="cpu") -> FVGPTHeads:
    path = Path(out_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the heads stage (`dvc repro heads`) first")
    saved = json.loads(path.read_text())
    model = FVGPTHeads([HeadsConfig.from_dict(saved["config"])], dim, logit_scale, saved.get("keep_image_norm", False))
    model.load_state_dict(read_weights(Path(out_dir) / WEIGHTS, "re-run the heads stage (`dvc repro heads`)"))
    return model.to(device).eval()

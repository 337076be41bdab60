"""Many head configurations on one cached feats, trained stacked in one process."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch

from ..features.run_features import RunFeatures
from ..report.tables import average_runs
from .config import HeadsConfig
from .evaluate import evaluate
from .train import stack_groups, train_heads

METRIC_COLUMNS = ["backbone.base", "backbone.new", "backbone.hm", "fvgpt.base", "fvgpt.new", "fvgpt.hm", "gain.hm"]


def grid_rows(spec: str) -> dict[str, dict]:
    """`"lambda_d=1,5,10 tau_d=1,2"` -> one row per combination."""
    axes = []
    for part in spec.split():
        key, _, values = part.partition("=")
        if not values:
            raise ValueError(f"grid item {part!r} is not KEY=V1,V2,...")
        axes.append([(key, _parse(v)) for v in values.split(",")])
    return {" ".join(f"{k}={v}" for k, v in combo): dict(combo) for combo in itertools.product(*axes)}


def _parse(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


@dataclass
class SweepResult:
    table: pd.DataFrame  # one row per (config, seed)
    seconds: float
    groups: int


def run_sweep(
    features_by_seed: dict[int, RunFeatures],
    base: HeadsConfig,
    rows: dict[str, dict],
    device="cpu",
    stacked: bool = True,
    advance: Callable[[int], None] | None = None,
) -> SweepResult:
    """Train every row x seed; rows sharing a structure train as one stacked model when `stacked`."""
    records = []
    groups = 0
    t0 = time.perf_counter()
    for seed, feats in features_by_seed.items():
        names, configs = list(rows), [base.with_(**changes, seed=seed) for changes in rows.values()]
        for members in stack_groups(configs) if stacked else [[i] for i in range(len(configs))]:
            groups += 1
            torch.manual_seed(seed)
            model, _ = train_heads(feats, [configs[i] for i in members], device)
            names_here = [names[i] for i in members]
            for name, metrics in zip(names_here, evaluate(model, feats)):
                records.append({"config": name, "seed": seed, **{k: metrics[k] for k in METRIC_COLUMNS}})
            if advance:
                advance(len(members))
    return SweepResult(pd.DataFrame(records), time.perf_counter() - t0, groups)


def summarise(table: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Mean over seeds per config with HM = HM(mean base, mean new) (the paper's convention), rows in `order`."""
    cols = [c for c in METRIC_COLUMNS if c != "gain.hm"] + ["gain.hm"]
    mean = average_runs(table, ["config"], cols, systems=("backbone", "fvgpt"))
    mean = mean[[*cols, "seeds"]]
    return mean.loc[[o for o in order if o in mean.index]].round(2)

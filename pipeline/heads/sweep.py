"""Many head configurations on one cached feats, trained stacked in one process."""

from __future__ import annotations

import difflib
import itertools
import time
from dataclasses import dataclass, fields
from typing import Callable

import pandas as pd
import torch

from ..config_reader import ConfigError, build
from ..features.run_features import RunFeatures
from ..fingerprint import fingerprint
from ..report.tables import average_runs
from .config import HeadsConfig
from .evaluate import evaluate
from .train import stack_groups, train_heads

METRIC_COLUMNS = ["backbone.base", "backbone.new", "backbone.hm", "fvgpt.base", "fvgpt.new", "fvgpt.hm", "gain.hm"]


# What a grid may vary: every heads parameter but the seed, which --seeds sets.
GRID_KEYS = [f.name for f in fields(HeadsConfig) if f.name != "seed"]


def grid_rows(spec: str) -> dict[str, dict]:
    """`"lambda_d=1,5,10 tau_d=1,2"` -> one row per combination; a key that is no heads parameter fails in one
    line naming it and the known keys (as params.yaml does)."""
    axes, keys = [], []
    for part in spec.split():
        key, _, values = part.partition("=")
        if not values:
            raise ConfigError(f"--grid: item {part!r} is not KEY=V1,V2,...")
        _check_grid_key(key, keys)
        keys.append(key)
        axes.append([(key, _parse(v)) for v in values.split(",")])
    return {" ".join(f"{k}={v}" for k, v in combo): dict(combo) for combo in itertools.product(*axes)}


def _check_grid_key(key: str, seen: list[str]) -> None:
    if key in seen:
        raise ConfigError(f"--grid: {key} is given twice; list all its values once, e.g. {key}=1,2")
    if key == "seed":
        raise ConfigError("--grid: seed is not a grid key; give the seeds with --seeds 1,2,3")
    if key not in GRID_KEYS:
        close = difflib.get_close_matches(key, GRID_KEYS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"--grid: unknown key {key!r}{hint}; known keys: {', '.join(GRID_KEYS)}")


def _parse(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def checked_rows(base: HeadsConfig, rows: dict[str, dict], option: str) -> dict[str, dict]:
    """Each row's changes read as params.yaml's `heads` section is (every value of its field's type, every rule of
    HeadsConfig), as the values that section would hold (an int for a float field becomes a float)."""
    checked = {}
    for name, changes in rows.items():
        try:
            config = build(HeadsConfig, {**base.to_dict(), **changes}, "heads")
        except ConfigError as err:
            raise ConfigError(f"{option} row {name!r}: {err}") from None
        checked[name] = {key: getattr(config, key) for key in changes}
    return checked


def row_config(base: HeadsConfig, changes: dict, seed: int) -> HeadsConfig:
    """The config one row trains for one seed."""
    return base.with_(**changes, seed=seed)


def sweep_name(dataset: str, backbone: str, label: str, base: HeadsConfig, rows: dict[str, dict], seeds) -> str:
    """`<dataset>_<backbone>_<label>-<8 hex>`: the hash of every row's resolved config and the seeds, so another
    grid, other seeds or other heads params never overwrite a sweep's files, and a re-run overwrites only its own."""
    configs = {name: [row_config(base, changes, s).to_dict() for s in seeds] for name, changes in rows.items()}
    return f"{dataset}_{backbone}_{label}-{fingerprint({'rows': configs, 'seeds': list(seeds)})[:8]}"


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
        names, configs = list(rows), [row_config(base, changes, seed) for changes in rows.values()]
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

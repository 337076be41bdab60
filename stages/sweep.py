"""sweep: many head configurations on cached features in one process (not a DVC stage; a helper)."""

from __future__ import annotations

from pathlib import Path

from pipeline.atomic import atomic_path, write_text
from pipeline.config_reader import build
from pipeline.device import pick_device
from pipeline.features.run_features import RunFeatures
from pipeline.heads.config import ABLATIONS, HeadsConfig
from pipeline.heads.sweep import grid_rows, run_sweep, summarise
from pipeline.paths import features_path, sweeps_dir

from ._common import progress_bar, start


def run(
    dataset: str,
    backbone: str,
    ablation: str | None,
    grid: str | None,
    seeds: list[int] | None,
    sequential: bool,
    params_file: str = "params.yaml",
) -> Path:
    params = start(params_file)
    if bool(ablation) == bool(grid):
        raise ValueError(f"give exactly one of --ablation ({', '.join(ABLATIONS)}) or --grid 'key=v1,v2 ...'")
    if ablation and ablation not in ABLATIONS:
        raise KeyError(f"unknown ablation {ablation!r}; known: {', '.join(ABLATIONS)}")
    rows = ABLATIONS[ablation] if ablation else grid_rows(grid)
    for name, changes in rows.items():  # a typo'd grid key fails like one in params.yaml
        build(HeadsConfig, {**params.heads.config.to_dict(), **changes}, f"--grid {name!r}: heads")
    seeds = seeds or list(params.seeds)
    device = pick_device(params.runtime.device)
    base = params.heads.for_run(dataset, backbone, seeds[0])
    features_by_seed = {s: RunFeatures(features_path(dataset, backbone, s), device) for s in seeds}
    with progress_bar("sweep configs", len(rows) * len(seeds)) as advance:
        result = run_sweep(features_by_seed, base, rows, device, stacked=not sequential, advance=advance)
    summary = summarise(result.table, list(rows))
    name = f"{dataset}_{backbone}_{ablation or 'grid'}"
    sweeps_dir().mkdir(parents=True, exist_ok=True)
    with atomic_path(sweeps_dir() / f"{name}.csv") as tmp:
        result.table.to_csv(tmp, index=False)
    write_text(sweeps_dir() / f"{name}.md", summary.to_markdown() + "\n")
    print(summary.to_string())
    print(
        f"{len(rows) * len(seeds)} configurations in {result.groups} training runs "
        f"({'sequential' if sequential else 'stacked'}): {result.seconds:.2f} s"
    )
    return sweeps_dir() / f"{name}.md"

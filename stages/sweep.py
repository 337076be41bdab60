"""sweep: many head configurations on cached features in one process (not a DVC stage; a helper)."""

from __future__ import annotations

from pathlib import Path

from pipeline.atomic import atomic_path, write_text
from pipeline.device import pick_device
from pipeline.features.dump import FeatureDump
from pipeline.heads.config import ABLATIONS
from pipeline.heads.sweep import grid_rows, run_sweep, summarise

from ._common import features_path, load_params, progress_bar
from .heads import heads_config

REPORTS = Path("reports") / "sweeps"


def run(dataset: str, backbone: str, ablation: str | None, grid: str | None, seeds: list[int] | None,
        sequential: bool, params_file: str = "params.yaml") -> Path:
    params = load_params(params_file)
    if bool(ablation) == bool(grid):
        raise ValueError(f"give exactly one of --ablation ({', '.join(ABLATIONS)}) or --grid 'key=v1,v2 ...'")
    if ablation and ablation not in ABLATIONS:
        raise KeyError(f"unknown ablation {ablation!r}; known: {', '.join(ABLATIONS)}")
    rows = ABLATIONS[ablation] if ablation else grid_rows(grid)
    seeds = seeds or [int(s) for s in params["seeds"]]
    device = pick_device(params["heads"].get("device", "auto"))
    base = heads_config(params, dataset, backbone, seeds[0])
    dumps = {s: FeatureDump(features_path(dataset, backbone, s), device) for s in seeds}
    with progress_bar("sweep configs", len(rows) * len(seeds)) as advance:
        result = run_sweep(dumps, base, rows, device, stacked=not sequential, advance=advance)
    summary = summarise(result.table, list(rows))
    name = f"{dataset}_{backbone}_{ablation or 'grid'}"
    REPORTS.mkdir(parents=True, exist_ok=True)
    with atomic_path(REPORTS / f"{name}.csv") as tmp:
        result.table.to_csv(tmp, index=False)
    write_text(REPORTS / f"{name}.md", summary.to_markdown() + "\n")
    print(summary.to_string())
    print(f"{len(rows) * len(seeds)} configurations in {result.groups} training runs "
          f"({'sequential' if sequential else 'stacked'}): {result.seconds:.2f} s")
    return REPORTS / f"{name}.md"

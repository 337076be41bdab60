"""sweep: many head configurations on cached features in one process (not a DVC stage; a helper).

Each sweep writes `reports/sweeps/<name>.csv|md` and `<name>.json`, the record of what it ran; `<name>` carries a
hash of every resolved config and the seeds (pipeline/heads/sweep.py: sweep_name), so sweeps never overwrite
each other's files.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from pipeline.atomic import atomic_path, write_json, write_text
from pipeline.config_reader import ConfigError
from pipeline.device import pick_device
from pipeline.features.run_features import load_run_features
from pipeline.fingerprint import file_digest
from pipeline.heads.config import ABLATIONS, HeadsConfig
from pipeline.heads.sweep import SweepResult, checked_rows, grid_rows, row_config, run_sweep, summarise, sweep_name
from pipeline.paths import features_path, sweeps_dir

from ._common import progress_bar, start


def run(
    dataset: str,
    backbone: str,
    ablation: str | None,
    grid: str | None,
    seeds: list[int] | str | None,
    sequential: bool,
    params_file: str = "params.yaml",
) -> Path:
    """Train every row of an ablation or a grid for each seed (default: params' `seeds`; a string is --seeds')."""
    started, t0 = datetime.now().astimezone(), time.perf_counter()
    params = start(params_file)
    seeds = list(dict.fromkeys(parse_seeds(seeds) or params.seeds))  # a seed given twice would train twice
    base = params.heads.for_run(dataset, backbone, seeds[0])
    rows = requested_rows(base, ablation, grid)
    name = sweep_name(dataset, backbone, ablation or "grid", base, rows, seeds)
    device = pick_device(params.runtime.device)
    memory = params.runtime.features_memory_mb
    features_by_seed = {s: load_run_features(features_path(dataset, backbone, s), device, memory) for s in seeds}
    features = [feature_file(seed, feats.path) for seed, feats in features_by_seed.items()]
    with progress_bar("sweep configs", len(rows) * len(seeds)) as advance:
        result = run_sweep(features_by_seed, base, rows, device, stacked=not sequential, advance=advance)
    summary = summarise(result.table, list(rows))
    print(summary.to_string())
    print(
        f"{len(rows) * len(seeds)} configurations in {result.groups} training runs "
        f"({'sequential' if sequential else 'stacked'}): {result.seconds:.2f} s"
    )
    record = {
        "name": name,
        "dataset": dataset,
        "backbone": backbone,
        "ablation": ablation,
        "grid": grid,
        "seeds": seeds,
        "params_file": params_file,
        "features": features,
        "rows": resolved_rows(base, rows, seeds),
        "mode": "sequential" if sequential else "stacked",
        "training_runs": result.groups,
        "training_seconds": round(result.seconds, 2),
        "started": started.isoformat(timespec="seconds"),
    }
    written = write_sweep(sweeps_dir(), name, result, summary, record, t0)
    for path in written:
        print(f"wrote {path}")
    return written[0]


def parse_seeds(seeds: list[int] | str | None) -> list[int] | None:
    """`--seeds 1,2,3` as integers (a list passes as it is); anything else fails in one line."""
    if not isinstance(seeds, str):
        return seeds
    try:
        return [int(s) for s in seeds.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds: expected comma-separated integers such as 1,2,3, got {seeds!r}") from None


def requested_rows(base: HeadsConfig, ablation: str | None, grid: str | None) -> dict[str, dict]:
    """The rows of the named ablation or of the grid, each checked as params.yaml's `heads` section is."""
    if bool(ablation) == bool(grid):
        raise ConfigError(f"give exactly one of --ablation ({', '.join(ABLATIONS)}) or --grid 'key=v1,v2 ...'")
    if ablation and ablation not in ABLATIONS:
        raise ConfigError(f"--ablation: unknown ablation {ablation!r}; known: {', '.join(ABLATIONS)}")
    if ablation:
        return checked_rows(base, ABLATIONS[ablation], f"--ablation {ablation}")
    return checked_rows(base, grid_rows(grid), "--grid")


def feature_file(seed: int, path: Path) -> dict:
    """A feature file a sweep read, named by its bytes' SHA-256 (pipeline.fingerprint.file_digest: the first 16 hex
    digits): a features stage re-run in between shows as another digest."""
    return {"seed": seed, "path": str(path), "sha256": file_digest(path)}


def resolved_rows(base: HeadsConfig, rows: dict[str, dict], seeds: list[int]) -> list[dict]:
    """Each row's changes and the full config it trained for each seed."""
    return [
        {"name": name, "changes": changes, "configs": [row_config(base, changes, s).to_dict() for s in seeds]}
        for name, changes in rows.items()
    ]


def write_sweep(folder: Path, name: str, result: SweepResult, summary, record: dict, t0: float) -> list[Path]:
    """The table (one row per config and seed), its summary, and last the record with the run's whole duration."""
    folder.mkdir(parents=True, exist_ok=True)
    table, markdown, record_path = (folder / f"{name}{suffix}" for suffix in (".csv", ".md", ".json"))
    with atomic_path(table) as tmp:
        result.table.to_csv(tmp, index=False)
    write_text(markdown, summary.to_markdown() + "\n")
    write_json(record_path, {**record, "seconds": round(time.perf_counter() - t0, 2)})
    return [markdown, table, record_path]

"""curve: a table and a figure across DVC experiments, against one params key (not a DVC stage; a helper).

Run the experiments first, one per value, e.g. the benchmark's background-shortcut strength:

    dvc exp run -S '++prepare.overrides.synthetic.synthetic.spurious=0.5' -n spurious-0.5

then `fvgpt curve prepare.synthetic.spurious`. Every experiment of the current commit (and the commit itself)
is one point: its params.yaml gives the key's value for the dataset (per-dataset overrides applied), its
`reports/results/runs.csv` the runs, both read from git, so the workspace is never touched. Writes
`reports/curves/<dataset>_<key>.md|csv|png`.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pandas as pd
import yaml

from pipeline.atomic import atomic_path, write_text
from pipeline.config_reader import ConfigError
from pipeline.paths import REPORTS, results_dir
from pipeline.report.curve import curve_figure, curve_markdown, curve_table, effective_value

CURVES = REPORTS / "curves"


def experiment_revs(revs: list[str] | None = None) -> list[tuple[str, str]]:
    """(git revision, name) of each commit `dvc exp show` lists (default: HEAD) and of each of its experiments."""
    import dvc.api

    rows = dvc.api.exp_show(revs=revs or None)
    found = []
    for row in rows:
        if row.get("rev") in (None, "workspace"):
            continue
        name = row.get("Experiment") or row["rev"]
        found.append((row["rev"], name))
    return found


def git_file(rev: str, path: str) -> str | None:
    """The text of `path` at git revision `rev`, or None when it is not there."""
    done = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def collect_points(key: str, dataset: str, revs: list[tuple[str, str]], read=git_file) -> list[tuple]:
    """(value, experiment name, runs) per revision whose params set `key` for `dataset` and that has results."""
    points, seen = [], {}
    runs_file = (results_dir() / "runs.csv").as_posix()
    for rev, name in revs:
        params_text, runs_text = read(rev, "params.yaml"), read(rev, runs_file)
        if params_text is None or runs_text is None:
            print(f"skipped {name}: no params.yaml or {runs_file} at {rev}")
            continue
        try:
            value = effective_value(yaml.safe_load(params_text), key, dataset)
        except KeyError:
            raise ConfigError(
                f"{key} is not a params key (at {name}); give a dotted key of params.yaml, e.g. "
                "prepare.synthetic.spurious or heads.lambda_d"
            ) from None
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key} is a section, not one value; give a key inside it")
        if value in seen:
            print(f"skipped {name}: {key} = {value} as in {seen[value]} (the newer experiment is kept)")
            continue
        seen[value] = name
        points.append((value, name, pd.read_csv(io.StringIO(runs_text))))
    return points


def run(key: str, dataset: str, revs: list[str] | None = None, params_file: str = "params.yaml") -> Path:
    """Write the curve of `dataset`'s runs against `key` over the experiments; returns the Markdown file.
    `params_file` only names the stage log's params (each point reads its own params.yaml from git)."""
    points = collect_points(key, dataset, experiment_revs(revs))
    table = curve_table(points, dataset)
    if table.empty:
        raise ConfigError(
            f"no experiment has results for {dataset} with a tuned backbone: run some first, e.g. "
            f"`dvc exp run -S {key}=<value>` (see `fvgpt curve --help`)"
        )
    # the key's dots stay in the name: build each file name whole (with_suffix would cut at the last dot)
    out = {kind: CURVES / f"{dataset}_{key}.{kind}" for kind in ("md", "csv", "png")}
    CURVES.mkdir(parents=True, exist_ok=True)
    with atomic_path(out["csv"]) as tmp:
        table.to_csv(tmp, index=False)
    text = curve_markdown(table, key, dataset)
    write_text(out["md"], text)
    curve_figure(table, key, dataset, out["png"])
    print(text)
    print(f"wrote {', '.join(map(str, out.values()))} ({table['value'].nunique()} values)")
    return out["md"]

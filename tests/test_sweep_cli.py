"""`fvgpt sweep` on small made-up feature files: its record, its file names, its one-line errors."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.config import load_params
from pipeline.heads.config import TABLE3
from pipeline.paths import features_path
from stages import sweep
from stages.cli import app
from tests.test_heads import make_features
from tests.tiny_project import write_params


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Tiny params (one heads epoch) and a feature file for seeds 1 and 2 of synthetic/coop; no other stage ran."""
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, **{"heads.epochs": 1})
    for seed in (1, 2):
        features_path("synthetic", "coop", seed).parent.mkdir(parents=True, exist_ok=True)
        make_features(features_path("synthetic", "coop", seed), seed=seed, views=2, m_test=12)
    return tmp_path


def fvgpt(*args: str):
    return CliRunner().invoke(app, list(args))


def test_a_sweep_records_what_it_ran_next_to_its_table(project):
    result = fvgpt("sweep", "synthetic", "coop", "--ablation", "table3", "--seeds", "1,2")
    assert result.exit_code == 0, result.output
    written = re.findall(r"^wrote (.*)$", result.stdout, re.M)
    assert [Path(p).suffix for p in written] == [".md", ".csv", ".json"]
    assert re.fullmatch(r"reports/sweeps/synthetic_coop_table3-[0-9a-f]{8}\.json", written[2])
    record = json.loads(Path(written[2]).read_text())
    assert (record["dataset"], record["backbone"], record["ablation"], record["grid"]) == (
        "synthetic",
        "coop",
        "table3",
        None,
    )
    assert record["seeds"] == [1, 2] and record["name"] == Path(written[2]).stem
    for seed, entry in zip((1, 2), record["features"]):
        path = features_path("synthetic", "coop", seed)
        assert entry == {"seed": seed, "path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16]}
    assert [row["name"] for row in record["rows"]] == list(TABLE3)
    fdc_only = record["rows"][0]["configs"]  # every field of each seed's config, as params.yaml resolves it
    heads = load_params("params.yaml").heads
    assert fdc_only == [heads.for_run("synthetic", "coop", s).with_(frg=False, pc=False).to_dict() for s in (1, 2)]
    assert [(c["frg"], c["pc"], c["epochs"], c["seed"]) for c in fdc_only] == [(False, False, 1, s) for s in (1, 2)]
    datetime.fromisoformat(record["started"])
    assert record["seconds"] >= record["training_seconds"] > 0


def test_sweeps_never_overwrite_each_other_and_a_rerun_overwrites_itself(project):
    def name(ablation=None, grid=None, seeds=(1,)):
        return sweep.run("synthetic", "coop", ablation, grid, list(seeds), sequential=False).stem

    first = name(grid="lambda_d=1,5")
    others = [
        name(grid="lambda_d=1,10"),
        name(grid="lambda_d=1,5", seeds=(1, 2)),
        name(grid="tau_d=1,2"),
        name(ablation="table3"),
        name(ablation="table3", seeds=(2,)),
    ]
    assert re.fullmatch(r"synthetic_coop_grid-[0-9a-f]{8}", first)
    assert len({first, *others}) == 6
    write_params(project, **{"heads.epochs": 2})  # other heads params: another table
    assert name(ablation="table3") not in others
    write_params(project, **{"heads.epochs": 1})
    assert name(grid="lambda_d=1,5") == first
    assert len(list(Path("reports/sweeps").glob("*.json"))) == 7


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--grid", "lambda_q=1,2"],
            "--grid: unknown key 'lambda_q' (did you mean lambda_d?); known keys: epochs, lr, batch_size, ",
        ),
        (["--grid", "lambda_d=abc"], "--grid row 'lambda_d=abc': heads.lambda_d: expected a number, got 'abc'"),
        (["--grid", "lambda_d=1 frg=1"], "--grid row 'lambda_d=1 frg=1': heads.frg: expected true or false, got 1"),
        (["--grid", "seed=1,2"], "--grid: seed is not a grid key; give the seeds with --seeds 1,2,3"),
        (["--grid", "lambda_d"], "--grid: item 'lambda_d' is not KEY=V1,V2,..."),
        (["--grid", "lambda_d=1", "--seeds", "1,x"], "--seeds: expected comma-separated integers"),
        (["--ablation", "table33"], "--ablation: unknown ablation 'table33'; known: table3, "),
    ],
)
def test_a_bad_sweep_request_fails_in_one_line_and_writes_nothing(project, args, message):
    result = fvgpt("sweep", "synthetic", "coop", *args)
    assert result.exit_code == 1, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith(f"fvgpt sweep: error: {message}")
    assert not Path("reports/sweeps").exists()
    if "unknown key" in message:
        assert line.endswith(", ".join(["frg_indicators", "brg_indicators", "shot_fraction"]))

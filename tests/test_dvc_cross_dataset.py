"""The cross-dataset protocol through DVC on tiny settings: Table 2 on a fresh repository, and re-running exactly
what a change touches (a new target, a heads key, the routing)."""

import json
import shutil

import pytest
import yaml

from tests.test_dvc_pipeline import ran, sh
from tests.tiny_project import dvc_project, edit_params

pytestmark = pytest.mark.slow

FAMILY = ["striped", "checkered"]
VARIANTS = {
    "synthetic_src": {"synthetic": {"seed": 1, "n_shapes": 2, "n_colours": 2, "textures": FAMILY}},
    "synthetic_t1": {"synthetic": {"seed": 2, "first_shape": 2, "n_shapes": 1, "n_colours": 2, "textures": FAMILY}},
    "synthetic_t2": {"synthetic": {"seed": 3, "n_shapes": 2, "n_colours": 2, "textures": ["noisy", "brick"]}},
}
SOURCE, T1, T2 = "synthetic_src", "synthetic_t1", "synthetic_t2"
INPUTS = {"inputs"}  # runs on every repro (a stat of each dataset); one stage for every dataset


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    if shutil.which("fvgpt") is None:
        pytest.skip("the fvgpt command is not installed (pip install -e .)")
    repo = tmp_path_factory.mktemp("cross")
    first = dvc_project(
        repo,
        datasets=[SOURCE, T1],
        base2new=[],
        **{
            "prepare.overrides": {SOURCE: VARIANTS[SOURCE], T1: VARIANTS[T1]},
            "cross_dataset.sources": [SOURCE],
            "cross_dataset.targets": [T1],
            "cross_dataset.backbone": {"epochs": 1},
            "cross_dataset.heads": {"epochs": 1},
        },
    )
    return repo, first


def test_a_fresh_repository_writes_table2(repo):
    path, first = repo
    stages = ran(first)
    assert {
        f"cross_backbone@{SOURCE}-coop-1",
        f"cross_source_features@{SOURCE}-coop",
        f"cross_target_features@{SOURCE}-{T1}-coop",
        f"cross_heads@{SOURCE}",
        f"cross_report@{SOURCE}",
    } <= stages
    assert not any(s.startswith(("backbone@", "features@", "heads@")) for s in stages)  # base2new: []
    summary = json.loads((path / f"reports/cross_dataset/{SOURCE}/summary.json").read_text())
    assert set(summary["coop"]) == {"source", "targets_average", T1}
    assert all(isinstance(summary["coop"]["source"][k], float) for k in ("clip", "backbone", "fvgpt", "gain"))
    table = (path / f"reports/cross_dataset/{SOURCE}/results/table2.md").read_text()
    assert f"| method | {SOURCE} (source) | average over targets | {T1} |" in table
    assert (path / f"reports/cross_dataset/figures/{SOURCE}.png").stat().st_size > 1000
    assert json.loads((path / "reports/summary.json").read_text()) == {}  # no base-to-new runs
    shown = json.loads(sh(path, "dvc", "metrics", "show", "--json"))
    assert any(f"reports/cross_dataset/{SOURCE}/summary.json" in str(v) for v in shown.values())


def test_a_new_target_runs_only_its_own_stages(repo):
    path, _ = repo
    params = yaml.safe_load((path / "params.yaml").read_text())
    edit_params(
        path,
        datasets=[SOURCE, T1, T2],
        **{
            "prepare.overrides": {**params["prepare"]["overrides"], T2: VARIANTS[T2]},
            "cross_dataset.targets": [T1, T2],
        },
    )
    out = sh(path, "dvc", "repro")
    assert ran(out) == INPUTS | {
        f"prepare@{T2}",
        f"masks@{T2}",
        f"encode@{T2}",
        f"cross_target_features@{SOURCE}-{T2}-zsclip",
        f"cross_target_features@{SOURCE}-{T2}-coop",
        f"cross_heads@{SOURCE}",  # evaluates every target: the heads re-train (seconds) rather than a stage more
        f"cross_report@{SOURCE}",
    }
    summary = json.loads((path / f"reports/cross_dataset/{SOURCE}/summary.json").read_text())
    assert set(summary["coop"]) == {"source", "targets_average", T1, T2}
    sh(path, "git", "add", "-A")
    sh(path, "git", "commit", "-qm", "a second target")


def test_a_heads_key_reruns_the_heads_and_every_evaluation_but_no_encoding(repo):
    path, _ = repo
    edit_params(path, **{"heads.lambda_d": 3.0})
    every = INPUTS
    assert ran(sh(path, "dvc", "repro")) == every | {f"cross_heads@{SOURCE}", f"cross_report@{SOURCE}"}
    edit_params(path, **{"cross_dataset.target_branch": "base"})
    assert ran(sh(path, "dvc", "repro")) == every | {f"cross_heads@{SOURCE}", f"cross_report@{SOURCE}"}
    sh(path, "git", "add", "-A")
    sh(path, "git", "commit", "-qm", "lambda_d 3, base branch on targets")

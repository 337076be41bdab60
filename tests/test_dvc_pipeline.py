"""The DVC pipeline end to end on tiny settings: caching, targeted re-runs, experiments."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.tiny_project import copy_project, dvc_project, edit_params, write_params

pytestmark = pytest.mark.slow


def sh(cwd, *args):
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, f"{' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


def sh_json(cwd, *args):
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, f"{' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return json.loads(out.stdout)


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def set_param(repo: Path, section: str, key: str, value) -> None:
    edit_params(repo, **{f"{section}.{key}" if key else section: value})


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    if shutil.which("fvgpt") is None:
        pytest.skip("the fvgpt command is not installed (pip install -e .)")
    repo = tmp_path_factory.mktemp("pipeline")
    # a ViT CLIP, so that backbones with their own image encoders (PromptSRC, MMRL) can join later
    deep = {"backbone.promptsrc": {"depth_text": 1, "depth_vision": 2, "epochs": 1}}
    deep["backbone.mmrl"] = {"rep_layers_from": 1, "epochs": 1}
    return repo, dvc_project(repo, **{"clip.model": "fvgpt-test-vit", **deep})


def test_first_run_builds_everything_and_second_run_nothing(repo):
    path, first = repo
    assert {"prepare@synthetic", "masks@synthetic", "encode@synthetic", "heads@synthetic", "report"} <= ran(first)
    metrics = json.loads((path / "reports/metrics/synthetic/coop.json").read_text())
    assert {"clip.hm", "backbone.hm", "fvgpt.hm"} <= set(metrics["seed1"])
    summary = json.loads((path / "reports/summary.json").read_text())
    assert isinstance(summary["synthetic"]["coop"]["fvgpt"]["hm"], float)
    assert ran(sh(path, "dvc", "repro")) == {"inputs"}  # always runs (a stat of the dataset); nothing after it


def _changed_stages(repo: Path) -> set[str]:
    """Stages `dvc status` reports, without `inputs` (always changed: it re-stats the dataset folder each run)."""
    out = subprocess.run(["dvc", "status", "--json"], cwd=repo, capture_output=True, text=True, check=True)
    return {name for name in json.loads(out.stdout) if name != "inputs"}


def _another(name: str, value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    return "cpu" if name == "device" else "/tmp/elsewhere"


def test_runtime_keys_never_invalidate_and_result_keys_mark_their_stages(repo):
    from dataclasses import fields

    from pipeline.config import RuntimeConfig

    path, _ = repo
    original = (path / "params.yaml").read_text()
    try:
        defaults = RuntimeConfig()
        for f in fields(RuntimeConfig):
            set_param(path, "runtime", f.name, _another(f.name, getattr(defaults, f.name)))
        sh(path, "dvc", "repro", "--single-item", "inputs")  # what DVC runs first in any repro
        for f in fields(RuntimeConfig):
            assert _changed_stages(path) == set(), f"runtime.{f.name} invalidated a stage"
        set_param(path, "encode", "seed", 7)
        assert _changed_stages(path) == {"encode@synthetic", "features@synthetic-zsclip", "features@synthetic-coop"}
        (path / "params.yaml").write_text(original)
        set_param(path, "masks", "overrides", {"synthetic": {"store_size": 24}})  # a per-dataset override
        sh(path, "dvc", "repro", "--single-item", "inputs")
        assert _changed_stages(path) == {"masks@synthetic"}
    finally:
        (path / "params.yaml").write_text(original)
    sh(path, "dvc", "repro", "--single-item", "inputs")
    assert _changed_stages(path) == set()


def test_heads_param_reruns_only_heads_attention_and_report(repo):
    path, _ = repo
    set_param(path, "heads", "lambda_d", 1.0)
    out = sh(path, "dvc", "repro")
    assert ran(out) == {"inputs", "heads@synthetic", "attention@synthetic", "report"}
    sh(path, "git", "add", "-A")
    sh(path, "git", "commit", "-qm", "lambda_d 1")


def test_new_backbones_reuse_masks_and_encodings(repo):
    """KgCoOp shares CLIP's image encoder; PromptSRC and MMRL (deep prompts, representation tokens) encode the
    same views through their own encoders in their features stages. None re-runs prepare, masks, encode or
    pretrain, and the other backbones' tuning and features are reused."""
    path, _ = repo
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["backbones"] = ["zsclip", "coop", "kgcoop", "promptsrc", "mmrl"]
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = sh(path, "dvc", "repro")
    stages = ran(out)
    for name in ("kgcoop", "promptsrc", "mmrl"):
        assert {f"backbone@synthetic-{name}-1", f"features@synthetic-{name}"} <= stages
    assert "heads@synthetic" in stages
    assert not any(s.startswith(("masks", "encode", "prepare", "pretrain")) for s in stages)
    assert not any("-coop" in s or "-zsclip" in s for s in stages)  # the other backbones' runs are reused
    assert {"kgcoop", "promptsrc", "mmrl"} <= set(json.loads((path / "reports/summary.json").read_text())["synthetic"])
    sh(path, "git", "add", "-A")
    sh(path, "git", "commit", "-qm", "kgcoop")


def _exp_rows(repo: Path) -> dict[str, dict]:
    """`dvc exp show --json` as {row name: flat metrics of reports/summary.json}: the baseline commit is
    "baseline", experiments under their names."""
    shown = sh_json(repo, "dvc", "exp", "show", "--json")
    rows = {}
    for entry in shown:
        if entry["rev"] == "workspace":
            continue
        rows["baseline"] = _summary_metrics(entry)
        for exp in entry.get("experiments") or []:
            for rev in exp.get("revs") or []:
                rows[rev.get("name") or rev["rev"]] = _summary_metrics(rev)
    return rows


def _summary_metrics(entry: dict) -> dict:
    data = (entry.get("data") or {}).get("metrics") or {}
    summary = (data.get("reports/summary.json") or {}).get("data") or {}
    runs = summary.get("synthetic", {})
    accuracies = {
        f"{backbone}.{system}.{split}": runs[backbone][system][split]
        for backbone in runs
        for system in ("clip", "backbone", "fvgpt")
        for split in ("base", "new", "hm")
    }
    shift = {f"{b}.{system}.shift": runs[b]["shift_index"][system] for b in runs for system in ("backbone", "fvgpt")}
    return {**accuracies, **shift}


def test_experiments_compare_and_restore_without_training(repo):
    """An ablation as an experiment: numbers for it and for the baseline in `dvc exp show`, a working
    `dvc metrics diff` and `dvc plots diff`, and going back and forth re-runs nothing."""
    path, _ = repo
    # On this tiny project (untrained test-size CLIP, 18 test images) accuracies sit at chance whatever the heads
    # do; + FVG-PT's foreground shift index is continuous and moves with any heads switch.
    out = sh(path, "dvc", "exp", "run", "-S", "heads.frg=false", "-n", "no-frg")
    assert "heads@synthetic" in ran(out) and not any(s.startswith(("encode", "features")) for s in ran(out))
    rows = _exp_rows(path)
    base, exp = rows["baseline"], rows["no-frg"]
    assert base and set(base) == set(exp) and all(isinstance(v, float) for v in [*base.values(), *exp.values()])
    assert all(base[k] == exp[k] for k in base if ".clip." in k or ".backbone." in k)  # heads-only switch
    assert all(base[k] != exp[k] for k in base if k.endswith(".fvgpt.shift"))
    diff = sh_json(path, "dvc", "metrics", "diff", "HEAD", "--json")
    assert any(v["diff"] for v in diff["reports/summary.json"].values() if v.get("diff") is not None)
    sh(path, "dvc", "plots", "diff", "HEAD", "-o", str(path / "dvc_plots"))
    assert (path / "dvc_plots/index.html").is_file()
    # back to the baseline: git's files and the cache's outputs, with nothing left to run
    sh(path, "git", "checkout", "--", ".")
    sh(path, "dvc", "checkout")
    assert ran(sh(path, "dvc", "repro")) == {"inputs"}
    sh(path, "dvc", "exp", "apply", "no-frg")
    assert ran(sh(path, "dvc", "repro")) == {"inputs"}
    applied = json.loads((path / "reports/summary.json").read_text())
    assert applied["synthetic"]["coop"]["shift_index"]["fvgpt"] == exp["coop.fvgpt.shift"]
    sh(path, "git", "checkout", "--", ".")
    sh(path, "dvc", "checkout")


def test_curve_finds_each_experiment_and_its_value_in_git(repo, monkeypatch):
    """`fvgpt curve`'s reading of experiments: the baseline and the no-frg experiment, each with its own value of
    the key and its own runs, read from git while the workspace holds the baseline."""
    from stages.curve import collect_points, experiment_revs

    path, _ = repo
    monkeypatch.chdir(path)
    found = collect_points("heads.frg", "synthetic", experiment_revs())
    values = {name: value for value, name, _ in found}
    assert values.pop("no-frg") is False and list(values.values()) == [True]  # the experiment and its baseline
    exp, base = (runs for value, _, runs in sorted(found, key=lambda point: point[0]))
    assert list(exp["seed"]) == list(base["seed"]) and len(exp) > 0
    assert (exp["shift.fvgpt.base"] != base["shift.fvgpt.base"]).all()
    assert (exp["shift.backbone.base"] == base["shift.backbone.base"]).all()


def test_a_changed_file_outside_the_repository_reruns_prepare(tmp_path):
    """An image folder under prepare.roots is no DVC dependency; its fingerprint stage makes it one."""
    import numpy as np
    from PIL import Image

    if shutil.which("fvgpt") is None:
        pytest.skip("the fvgpt command is not installed (pip install -e .)")
    images = tmp_path / "images"
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (images / split / name).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((8, 8, 3), 60 * i, np.uint8)).save(images / split / name / f"{i}.png")
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_project(repo)
    write_params(repo)
    set_param(repo, "datasets", None, ["imagefolder"])
    set_param(repo, "base2new", None, ["imagefolder"])
    set_param(repo, "prepare", "roots", {"imagefolder": str(images)})
    sh(repo, "git", "init", "-q")
    sh(repo, "dvc", "init", "-q")
    sh(repo, "dvc", "config", "core.analytics", "false")
    assert "prepare@imagefolder" in ran(sh(repo, "dvc", "repro", "prepare@imagefolder"))
    assert ran(sh(repo, "dvc", "repro", "prepare@imagefolder")) == {"inputs"}
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(images / "train" / "cat" / "0.png")  # an edited image
    assert ran(sh(repo, "dvc", "repro", "prepare@imagefolder")) == {"inputs", "prepare@imagefolder"}
    (images / "test" / "dog" / "2.png").write_bytes((images / "test" / "dog" / "1.png").read_bytes())  # a new image
    assert "prepare@imagefolder" in ran(sh(repo, "dvc", "repro", "prepare@imagefolder"))

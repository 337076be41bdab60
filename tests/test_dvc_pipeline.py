"""The DVC pipeline end to end on tiny settings: caching, targeted re-runs, experiments."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.tiny_project import ROOT, write_params

pytestmark = pytest.mark.slow


def sh(cwd, *args):
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, f"{' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def set_param(repo: Path, section: str, key: str, value) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    if key:
        params[section][key] = value
    else:
        params[section] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    if shutil.which("fvgpt") is None:
        pytest.skip("the fvgpt command is not installed (pip install -e .)")
    repo = tmp_path_factory.mktemp("pipeline")
    for name in ("pipeline", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    write_params(repo)
    (repo / ".gitignore").write_text("/data/\n/reports/\n")
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "config", "user.email", "t@example.com")
    sh(repo, "git", "config", "user.name", "t")
    sh(repo, "dvc", "init", "-q")
    sh(repo, "dvc", "config", "core.analytics", "false")
    first = sh(repo, "dvc", "repro")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "tiny pipeline")
    return repo, first


def test_first_run_builds_everything_and_second_run_nothing(repo):
    path, first = repo
    assert {"prepare@synthetic", "masks@synthetic", "encode@synthetic", "heads@synthetic-coop-1", "report"} <= ran(
        first
    )
    metrics = json.loads((path / "data/metrics/synthetic/coop/seed1.json").read_text())
    assert {"clip.hm", "backbone.hm", "fvgpt.hm"} <= set(metrics)
    assert (path / "reports/results/base_to_new.md").read_text().count("| synthetic |") == 2
    assert ran(sh(path, "dvc", "repro")) == {
        "inputs@synthetic"
    }  # always runs (a stat of the dataset); nothing after it


def _changed_stages(repo: Path) -> set[str]:
    """Stages `dvc status` reports, without `inputs` (always changed: it re-stats the dataset folder each run)."""
    out = subprocess.run(["dvc", "status", "--json"], cwd=repo, capture_output=True, text=True, check=True)
    return {name for name in json.loads(out.stdout) if not name.startswith("inputs@")}


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
            assert _changed_stages(path) == set(), f"runtime.{f.name} invalidated a stage"
        set_param(path, "encode", "seed", 7)
        assert _changed_stages(path) == {"encode@synthetic", "features@synthetic-zsclip-1", "features@synthetic-coop-1"}
        (path / "params.yaml").write_text(original)
        set_param(path, "masks", "store_size", 24)
        assert _changed_stages(path) == {"masks@synthetic"}
    finally:
        (path / "params.yaml").write_text(original)
    assert _changed_stages(path) == set()


def test_heads_param_reruns_only_heads_evaluate_report(repo):
    path, _ = repo
    set_param(path, "heads", "lambda_d", 1.0)
    out = sh(path, "dvc", "repro")
    assert ran(out) == {
        "inputs@synthetic",
        "heads@synthetic-zsclip-1",
        "heads@synthetic-coop-1",
        "evaluate@synthetic-zsclip-1",
        "evaluate@synthetic-coop-1",
        "report",
    }
    sh(path, "git", "commit", "-qam", "lambda_d 1")


def test_new_backbone_reuses_masks_and_encodings(repo):
    path, _ = repo
    params = yaml.safe_load((path / "params.yaml").read_text())
    params["backbones"] = ["zsclip", "coop", "kgcoop"]
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = sh(path, "dvc", "repro")
    stages = ran(out)
    assert {"backbone@synthetic-kgcoop-1", "features@synthetic-kgcoop-1", "heads@synthetic-kgcoop-1"} <= stages
    assert not any(s.startswith(("masks", "encode", "prepare", "pretrain")) for s in stages)
    assert not any("coop-1" in s and "kgcoop" not in s for s in stages if not s.startswith("report"))
    sh(path, "git", "add", "-A")
    sh(path, "git", "commit", "-qm", "kgcoop")


def test_experiment_with_a_heads_switch(repo):
    path, _ = repo
    out = sh(path, "dvc", "exp", "run", "-S", "heads.frg=false", "-n", "no-frg")
    assert "heads@synthetic-coop-1" in ran(out) and not any(s.startswith("encode") for s in ran(out))
    shown = sh(path, "dvc", "exp", "show", "--no-pager", "--csv")
    assert "no-frg" in shown and "fvgpt.hm" in shown


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
    for name in ("pipeline", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    write_params(repo)
    set_param(repo, "datasets", None, ["imagefolder"])
    set_param(repo, "prepare", "roots", {"imagefolder": str(images)})
    sh(repo, "git", "init", "-q")
    sh(repo, "dvc", "init", "-q")
    sh(repo, "dvc", "config", "core.analytics", "false")
    assert "prepare@imagefolder" in ran(sh(repo, "dvc", "repro", "prepare@imagefolder"))
    assert ran(sh(repo, "dvc", "repro", "prepare@imagefolder")) == {"inputs@imagefolder"}
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(images / "train" / "cat" / "0.png")  # an edited image
    assert ran(sh(repo, "dvc", "repro", "prepare@imagefolder")) == {"inputs@imagefolder", "prepare@imagefolder"}
    (images / "test" / "dog" / "2.png").write_bytes((images / "test" / "dog" / "1.png").read_bytes())  # a new image
    assert "prepare@imagefolder" in ran(sh(repo, "dvc", "repro", "prepare@imagefolder"))

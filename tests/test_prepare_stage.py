"""The prepare stage and the CLI as a user runs them."""

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.manifest import read_prepared
from stages.cli import app

TINY = {
    "seeds": [1, 2],
    "prepare": {
        "shots": 2,
        "synthetic": {
            "image_size": 32,
            "train_per_class": 4,
            "val_per_class": 2,
            "test_per_class": 2,
            "n_shapes": 2,
            "n_colours": 3,
        },
    },
}


def test_help_lists_every_stage():
    out = CliRunner().invoke(app, ["--help"]).output
    for name in ("prepare", "masks", "pretrain", "backbone", "features", "heads", "report"):
        assert name in out


def test_prepare_synthetic_writes_manifest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY))
    result = CliRunner().invoke(app, ["prepare", "synthetic"])
    assert result.exit_code == 0, result.output
    prep = read_prepared(tmp_path / "data/prepared/synthetic")
    assert prep.classes["base"] == [0, 1, 2] and prep.classes["new"] == [3, 4, 5]
    for seed in (1, 2):
        train = prep.fewshot_train(seed)
        assert len(train) == 3 * 2 and set(train.sublabel) == {0, 1, 2}
    assert (prep.root / prep.manifest.impath[0]).is_file()
    assert not list((tmp_path / "data/prepared").glob("*.partial"))


def test_prepare_missing_dataset_names_folder_and_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seeds": [1], "prepare": {"data_root": "nowhere"}}))
    result = CliRunner().invoke(app, ["prepare", "dtd"])
    assert result.exit_code == 1
    assert "nowhere/dtd" in result.output and "prepare.roots.dtd" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "data/prepared/dtd").exists()


def test_fewshot_union_covers_every_seed_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY))
    assert CliRunner().invoke(app, ["prepare", "synthetic"]).exit_code == 0
    prep = read_prepared(tmp_path / "data/prepared/synthetic")
    union = prep.fewshot_union([1, 2])
    expected = set(prep.fewshot_train(1, None).impath) | set(prep.fewshot_train(2, None).impath)
    assert set(union.impath) == expected and union.impath.is_unique
    with pytest.raises(KeyError, match="seed 9 was not prepared"):
        prep.fewshot_union([1, 9])


@pytest.fixture
def torch_threads():
    import torch

    before = torch.get_num_threads()
    yield torch
    torch.set_num_threads(before)


def test_stages_use_the_cores_they_may_run_on(tmp_path, monkeypatch, torch_threads):
    from stages import _common

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(_common.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(_common, "CGROUP_CPU_MAX", quota)
    quota.write_text("max 100000\n")
    assert _common.usable_cores() == 6  # the affinity mask, not the machine's core count
    quota.write_text("250000 100000\n")  # a container with --cpus 2.5
    assert _common.usable_cores() == 3
    _common.start(str(tmp_path / "params.yaml"))
    assert torch_threads.get_num_threads() == 3

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # set by the user: theirs to keep
    torch_threads.set_num_threads(1)
    _common.start(str(tmp_path / "params.yaml"))
    assert torch_threads.get_num_threads() == 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**TINY, "runtime": {"threads": 2}}))
    _common.start(str(tmp_path / "params.yaml"))  # runtime.threads wins over everything
    assert torch_threads.get_num_threads() == 2

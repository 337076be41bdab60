"""Per-dataset prepare and masks overrides: each dataset's stages see only their own settings."""

import json

import pytest
import yaml

from pipeline.config import ConfigError, parse_params
from pipeline.paths import masks_inputs_path, prepare_inputs_path
from tests.tiny_project import tiny_params


def _params(**sections):
    data = tiny_params()
    for section, overrides in sections.items():
        data[section]["overrides"] = overrides
    return data


def test_an_override_changes_its_dataset_only():
    data = _params(prepare={"eurosat": {"shots": 8}}, masks={"eurosat": {"grabcut": {"margin": 0.3}}})
    data["masks"]["grabcut"]["iterations"] = 2
    params = parse_params(data)
    assert params.prepare.for_dataset("eurosat").shots == 8 and params.prepare.for_dataset("dtd").shots == 2
    eurosat, dtd = params.masks.for_dataset("eurosat").grabcut, params.masks.for_dataset("dtd").grabcut
    assert (eurosat.margin, eurosat.iterations) == (0.3, 2)  # one nested key merges into the section's
    assert (dtd.margin, dtd.iterations) == (0.1, 2)


@pytest.mark.parametrize(
    "section, overrides, message",
    [
        ("prepare", {"eurosat": {"shot": 8}}, r"prepare\.overrides\.eurosat\.shot: unknown key; did you mean"),
        ("prepare", {"eurosat": {"shots": 0}}, r"prepare\.overrides\.eurosat: prepare\.shots must be at least 1"),
        ("masks", {"eurosatt": {"segmenter": "center"}}, r"masks\.overrides: unknown dataset 'eurosatt'"),
        ("masks", {"eurosat": {"segmenter": "sam"}}, r"masks\.segmenter: unknown segmenter 'sam'"),
    ],
)
def test_a_bad_override_names_its_key(section, overrides, message):
    with pytest.raises(ConfigError, match=message):
        parse_params(_params(**{section: overrides}))


def test_inputs_files_change_only_for_the_overridden_dataset(tmp_path, monkeypatch):
    """DVC tracks these files instead of the sections: another dataset's files must stay byte-equal."""
    from stages import inputs

    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    data = _params()
    data["datasets"] = ["synthetic", "imagefolder"]
    data["prepare"]["roots"] = {"imagefolder": str(tmp_path / "images")}

    def written(**sections):
        for section, overrides in sections.items():
            data[section]["overrides"] = overrides
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
        out = {}
        for dataset in data["datasets"]:
            inputs.run(dataset)
            out[dataset] = {p.name: p.read_text() for p in (prepare_inputs_path(dataset), masks_inputs_path(dataset))}
        return out

    before = written()
    after = written(masks={"imagefolder": {"segmenter": "center"}})
    assert after["synthetic"] == before["synthetic"]
    assert after["imagefolder"]["prepare.json"] == before["imagefolder"]["prepare.json"]
    assert json.loads(after["imagefolder"]["masks.json"])["settings"]["segmenter"] == "center"
    data["prepare"]["synthetic"]["spurious"] = 0.5
    data["prepare"]["overrides"].pop("synthetic", None)  # its own override would hide the section's value
    later = written()
    assert later["imagefolder"] == after["imagefolder"]  # the built-in benchmark's spec is not a real dataset's input
    assert json.loads(later["synthetic"]["prepare.json"])["settings"]["synthetic"]["spurious"] == 0.5


def test_a_stage_refuses_inputs_written_for_other_settings(tmp_path, monkeypatch):
    """Settings edited after `inputs` ran (a hand-run stage) would be recorded by DVC against the old file."""
    from stages import inputs, prepare

    monkeypatch.chdir(tmp_path)
    data = _params()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    inputs.run("synthetic")
    data["prepare"]["shots"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=r"data/inputs/synthetic/prepare\.json was written for other settings"):
        prepare.run("synthetic")
    assert not (tmp_path / "data/prepared/synthetic").exists()


def test_prepare_copies_the_tracked_fingerprint_without_walking_the_folder_again(tmp_path, monkeypatch):
    """At ImageNet scale the walk stats 1.3 M files: the inputs stage's walk is the one DVC tracks."""
    from stages import inputs, prepare

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_params()))
    inputs.run("synthetic")
    monkeypatch.setattr(prepare, "dataset_inputs", lambda *a: pytest.fail("walked the dataset folder again"))
    prepare.run("synthetic")
    recorded = json.loads(prepare_inputs_path("synthetic").read_text())["inputs"]
    assert json.loads((tmp_path / "data/prepared/synthetic/inputs.json").read_text()) == recorded

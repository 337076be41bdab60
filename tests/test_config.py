"""params.yaml is read by one strict, typed config: every key known, every value checked, defaults shown."""

import ast
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from pipeline import paths
from pipeline.config import Params, load_params, parse_params
from pipeline.config_reader import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_params_yaml_shows_every_default():
    assert Params().to_plain() == _params()


def test_paper_config_is_valid_and_differs_only_where_it_should():
    paper = load_params(ROOT / "configs/paper.yaml")
    assert paper.clip.model == "ViT-B-16" and len(paper.datasets) == 11 and paper.masks.segmenter == "precomputed"
    assert paper.heads.for_run("eurosat", "coop", 1).lr == 0.002 == paper.backbone.recipe("eurosat", "coop").lr


def _leaves(d, prefix=()):
    for k, v in d.items():
        if isinstance(v, dict) and v and k not in ("roots", "overrides"):
            yield from _leaves(v, prefix + (k,))
        else:
            yield prefix + (k,)


def _with_key_renamed(data, path, new):
    data = yaml.safe_load(yaml.safe_dump(data))
    node = data
    for k in path[:-1]:
        node = node[k]
    node[new] = node.pop(path[-1])
    return data


@pytest.mark.parametrize("path", list(_leaves(_params())), ids=".".join)
def test_a_typo_in_any_key_is_named_with_the_closest_key(path):
    typo = path[-1] + "x"
    with pytest.raises(ConfigError) as err:
        parse_params(_with_key_renamed(_params(), path, typo))
    message = str(err.value)
    assert ".".join(path[:-1] + (typo,)) in message and "\n" not in message
    assert f"did you mean {'.'.join(path)}?" in message or len(path) == 1


@pytest.mark.parametrize(
    "section,key,value,words",
    [
        ("heads", "lambda_d", "ten", ["heads.lambda_d", "number"]),
        ("prepare", "shots", -1, ["prepare.shots", "at least 1"]),
        ("prepare", "shots", 2.5, ["prepare.shots", "integer"]),
        ("masks", "segmenter", "segm", ["masks.segmenter", "grabcut"]),
        ("masks", "missing", "skip", ["masks.missing", "'fail'"]),
        ("encode", "fill", "white", ["encode.fill", "'mean'"]),
        ("heads", "frg", "yes", ["heads.frg", "true or false"]),
        ("heads", "adapters", "text", ["adapters", "both or visual"]),
        ("runtime", "device", "tpu", ["runtime.device", "auto"]),
        ("runtime", "encode_workers", -2, ["runtime.encode_workers", "-1 (auto)"]),
        ("runtime", "features_memory_mb", -1, ["runtime.features_memory_mb", ">= 0"]),
    ],
)
def test_a_wrong_value_names_the_key_and_the_allowed_values(section, key, value, words):
    data = _params()
    data[section][key] = value
    with pytest.raises(ConfigError) as err:
        parse_params(data)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize(
    "key,value,word",
    [("datasets", ["synthetc"], "synthetic"), ("backbones", ["cop"], "coop"), ("seeds", [1, 1], "twice")],
)
def test_the_run_matrix_is_checked(key, value, word):
    data = _params()
    data[key] = value
    with pytest.raises(ConfigError, match=word):
        parse_params(data)


def test_an_unknown_backbone_section_is_named():
    data = _params()
    data["backbone"]["kgcop"] = {}
    with pytest.raises(ConfigError, match=r"backbone\.kgcop: unknown key; did you mean backbone\.kgcoop\?"):
        parse_params(data)


def test_no_stage_declares_a_runtime_key_and_runtime_has_only_runtime_knobs():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    declared = {p for s in stages.values() for p in s.get("params", [])}
    assert not any(str(p).startswith("runtime") for p in declared)
    text = (ROOT / "params.yaml").read_text()
    result_sections = text[: text.index("\nruntime:")]
    assert not re.search(r"^\s+(device|workers|batch_images|cache_dir|allow_download):", result_sections, re.M)


def test_dvc_outs_are_the_paths_pipeline_writes():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    item = {"dataset": "synthetic", "backbone": "coop", "seed": "1", "source": "src", "target": "tgt"}
    expected = {
        "inputs": [paths.inputs_root()],
        "prepare": [paths.prepared_dir("synthetic")],
        "masks": [
            paths.masks_path("synthetic"),
            paths.masks_figure_path("synthetic"),
            paths.masks_examples_path("synthetic"),
            paths.masks_quality_path("synthetic"),
        ],
        "pretrain": [paths.model_checkpoint("fvgpt-tiny-rn"), paths.model_card("fvgpt-tiny-rn")],
        "backbone": [paths.backbone_dir("synthetic", "coop", 1)],
        "encode": [paths.encoded_path("synthetic")],
        "features": [paths.features_dir("synthetic", "coop")],
        "heads": [
            paths.heads_dataset_dir("synthetic"),
            paths.training_log_path("synthetic"),
            paths.backbone_trend_path("synthetic"),
            paths.metrics_dir("synthetic"),
        ],
        "report": [paths.summary_path(), paths.results_dir(), paths.plots_dir(), paths.figures_dir()],
        "attention": [paths.attention_metrics_path("synthetic"), paths.attention_figure_path("synthetic")],
        "cross_backbone": [paths.cross_backbone_dir("src", "coop", 1)],
        "cross_source_features": [paths.cross_features_path("src", "src", "coop", 1).parent],
        "cross_target_features": [paths.cross_features_path("src", "tgt", "coop", 1).parent],
        "cross_heads": [paths.cross_heads_dir("src"), paths.cross_metrics_dir("src")],
        "cross_report": [
            paths.cross_summary_path("src"),
            paths.cross_results_dir("src"),
            paths.cross_figure_path("src"),
        ],
    }
    assert set(stages) == set(expected)
    for name, stage in stages.items():
        outs = []
        for kind in ("outs", "metrics", "plots"):
            for out in stage.get(kind, []):
                outs.append(next(iter(out)) if isinstance(out, dict) else out)
        text = [
            re.sub(r"\$\{item\.(\w+)\}", lambda m: item[m.group(1)], o).replace("${pretrain.model}", "fvgpt-tiny-rn")
            for o in outs
        ]
        assert sorted(text) == sorted(str(p) for p in expected[name]), name


def test_no_stage_module_imports_another_stage():
    for path in (ROOT / "stages").glob("*.py"):
        if path.name in ("cli.py", "_common.py", "__init__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = ("." * node.level) + (node.module or "")
                assert module in (".", "._common") or not module.startswith(("stages", ".")), f"{path.name}: {module}"
                if node.level and not node.module:
                    assert False, f"{path.name} imports a stage module"


def test_fvgpt_check_names_a_typo_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from stages.cli import app

    good = CliRunner().invoke(app, ["check", "-p", str(ROOT / "params.yaml")])
    assert good.exit_code == 0 and "base-to-new: 1 datasets x 3 backbones x 3 seeds = 9 runs" in good.output
    assert "cross-dataset: 1 sources x 9 runs, each tested on 3 targets" in good.output
    bad = tmp_path / "params.yaml"
    bad.write_text((ROOT / "params.yaml").read_text().replace("  lambda_d: 10.0", "  lambda_dd: 10.0"))
    result = CliRunner().invoke(app, ["check", "-p", str(bad)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"fvgpt check: error: {bad}: heads.lambda_dd: unknown key; did you mean heads.lambda_d?"
    )


def test_dvc_lock_holds_only_the_stages_of_dvc_yaml():
    # DVC never drops a lock entry whose stage left dvc.yaml, and rewrites the whole lock after every stage it
    # runs: stale entries cost every experiment time (a 137-entry lock for 54 stages doubled that rewrite).
    listed = subprocess.run(
        ["dvc", "stage", "list", "--name-only"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    locked = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    assert set(locked) <= set(listed), sorted(set(locked) - set(listed))


def test_auto_encode_workers_leave_a_cpu_encoder_its_cores_and_feed_a_gpu(monkeypatch):
    import torch

    from stages import _common

    monkeypatch.setattr(_common, "usable_cores", lambda: 16)
    assert _common.encode_workers(-1, torch.device("cpu")) == 0
    assert _common.encode_workers(-1, torch.device("cuda")) == 8
    assert _common.encode_workers(3, torch.device("cuda")) == _common.encode_workers(3, torch.device("cpu")) == 3
    monkeypatch.setattr(_common, "usable_cores", lambda: 2)
    assert _common.encode_workers(-1, torch.device("cuda")) == 1

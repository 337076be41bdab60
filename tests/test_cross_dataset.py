"""The cross-dataset protocol (Table 2): the benchmark's variants, the settings, the routing, the report."""

import json

import numpy as np
import pytest
import yaml

from pipeline.config import parse_params
from pipeline.config_reader import ConfigError
from pipeline.datasets.synthetic import CROSS_DATASET_VARIANTS, TEXTURES, SyntheticSpec, generate
from pipeline.heads.config import HeadsConfig
from pipeline.heads.evaluate import evaluate_transfer
from pipeline.heads.train import train_heads
from pipeline.report.cross import AVERAGE, collect_cross, cross_summary, table2, table2_markdown
from tests.test_heads import make_features
from tests.tiny_project import ROOT, with_keys

SMALL = dict(image_size=16, train_per_class=2, val_per_class=0, test_per_class=1)


def _generated(tmp_path, name: str, **spec) -> tuple[set[str], set[str], dict]:
    root = generate(tmp_path / name, SyntheticSpec(**SMALL, **spec))
    split = json.loads((root / "split_zhou_Synthetic.json").read_text())
    classes = {row[2] for rows in split.values() for row in rows}
    textures = {tex for tex, _ in json.loads((root / "styles.json").read_text())["images"].values()}
    return classes, textures, split


def test_each_target_differs_from_the_source_in_its_one_declared_way(tmp_path):
    made = {name: _generated(tmp_path, name, **spec) for name, spec in CROSS_DATASET_VARIANTS.items()}
    source_classes, source_textures, _ = made["synthetic_source"]
    shapes = lambda classes: {c.split(" ")[1] for c in classes}  # noqa: E731
    colours = lambda classes: {c.split(" ")[0] for c in classes}  # noqa: E731
    assert len(source_classes) == 24 and source_textures <= {"striped", "checkered", "dotted", "wavy"}

    new_shapes, textures, _ = made["synthetic_new_shapes"]
    assert shapes(new_shapes) == {"hexagon", "ring"} and not shapes(new_shapes) & shapes(source_classes)
    assert colours(new_shapes) == colours(source_classes) and textures <= {"striped", "checkered", "dotted", "wavy"}

    new_colour, textures, _ = made["synthetic_new_colour"]
    assert colours(new_colour) == {"purple"} and shapes(new_colour) == shapes(source_classes)
    assert textures <= {"striped", "checkered", "dotted", "wavy"}

    same_classes, textures, _ = made["synthetic_textures"]
    assert same_classes == source_classes and textures and not textures & {"striped", "checkered", "dotted", "wavy"}


def test_the_default_spec_draws_the_same_benchmark_as_naming_every_texture(tmp_path):
    """The new keys at their defaults leave the base-to-new benchmark's images exactly as they were."""
    a = generate(tmp_path / "a", SyntheticSpec(**SMALL, n_shapes=2, n_colours=2))
    b = generate(tmp_path / "b", SyntheticSpec(**SMALL, n_shapes=2, n_colours=2, textures=TEXTURES))
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def _params(**changes) -> dict:
    return with_keys(yaml.safe_load((ROOT / "params.yaml").read_text()), **changes)


@pytest.mark.parametrize(
    "changes, words",
    [
        (
            {"cross_dataset.targets": ["synthetic_new_shapes", "oxford_pets"]},
            ["cross_dataset.targets", "oxford_pets", "datasets"],
        ),
        ({"base2new": ["synthetic", "synthetic_zoo"]}, ["base2new", "synthetic_zoo", "datasets"]),
        ({"cross_dataset.targets": ["synthetic_source"]}, ["synthetic_source", "both a source and a target"]),
        ({"cross_dataset.sources": []}, ["cross_dataset.targets", "source"]),
        ({"cross_dataset.heads": {"lamda_d": 5}}, ["cross_dataset.heads", "lamda_d"]),
        ({"cross_dataset.backbone": {"epochs": "five"}}, ["cross_dataset.backbone.epochs"]),
        ({"cross_dataset.target_branch": "fdc"}, ["cross_dataset.target_branch", "'new', 'base'"]),
        ({"datasets": ["synthetic", "synthetc_source"]}, ["synthetc_source", "unknown dataset"]),
    ],
)
def test_cross_dataset_settings_fail_in_one_line_naming_the_key(changes, words):
    with pytest.raises(ConfigError) as err:
        parse_params(_params(**changes))
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_a_source_run_uses_the_cross_dataset_recipes():
    params = parse_params(_params(**{"cross_dataset.heads": {"epochs": 3, "lambda_d": 5}}))
    recipe = params.cross_dataset.recipe(params.backbone.recipe("synthetic_source", "coop"))
    heads = params.cross_dataset.heads_config(params.heads.for_run("synthetic_source", "coop", 2))
    assert (recipe.epochs, recipe.lr) == (5, 0.0035) and params.backbone.recipe("synthetic", "coop").epochs == 10
    assert (heads.epochs, heads.lambda_d, heads.seed) == (3, 5.0, 2)


TRAINING = HeadsConfig(epochs=3, seed=1)


def test_transfer_accuracy_routes_every_class_through_the_chosen_branch(tmp_path):
    source = make_features(tmp_path / "source.h5", seed=1)
    target = make_features(tmp_path / "target.h5", seed=7, text_noise=2.0, clip_noise=0.0, m_test=60)
    model, _ = train_heads(source, [TRAINING])
    f, f_clip, g, g_clip = target.test_feat, target.test_clip, target.text_backbone, target.text_clip
    y = target.test_label
    want_new = float((model.new_logits(f, f_clip, g, g_clip)[0][0].argmax(-1) == y).float().mean() * 100)
    want_base = float((model.base_logits(f, g)[0].argmax(-1) == y).float().mean() * 100)
    assert want_new != want_base  # the two branches disagree here, so a swapped route would be caught
    new, base = evaluate_transfer(model, target, "new")[0], evaluate_transfer(model, target, "base")[0]
    assert new["fvgpt.acc"] == pytest.approx(want_new) and base["fvgpt.acc"] == pytest.approx(want_base)
    s = target.logit_scale
    assert new["clip.acc"] == pytest.approx(float(((s * f_clip @ g_clip.t()).argmax(-1) == y).float().mean() * 100))
    assert new["backbone.acc"] == pytest.approx(float(((f @ g.t()).argmax(-1) == y).float().mean() * 100))
    assert new["gain.acc"] == pytest.approx(new["fvgpt.acc"] - new["backbone.acc"])
    assert 0 < new["gate.b"] < 1 and "gate.b" not in base and new["shift.fvgpt"] >= 0
    with pytest.raises(ValueError, match="base or new"):
        evaluate_transfer(model, target, "fdc")


def _write_metrics(root, source, dataset, values: dict) -> None:
    """values: {(backbone, seed): (clip, backbone, fvgpt)}"""
    out = {}
    for (backbone, seed), (c, b, f) in values.items():
        out.setdefault(backbone, {})[f"seed{seed}"] = {
            "clip.acc": c,
            "backbone.acc": b,
            "fvgpt.acc": f,
            "gain.acc": f - b,
        }
    path = root / source / f"{dataset}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))


def test_table2_averages_the_targets_per_seed_and_lays_out_the_paper_rows(tmp_path):
    where = lambda source, dataset: tmp_path / source / f"{dataset}.json"  # noqa: E731
    _write_metrics(tmp_path, "src", "src", {("coop", 1): (50, 70, 72), ("coop", 2): (50, 74, 76)})
    _write_metrics(tmp_path, "src", "t1", {("coop", 1): (40, 30, 34), ("coop", 2): (40, 34, 36)})
    _write_metrics(tmp_path, "src", "t2", {("coop", 1): (60, 50, 56), ("coop", 2): (60, 58, 60)})
    runs = collect_cross(where, ["src"], ["t1", "t2"], ["coop"], [1, 2])
    assert len(runs) == 6 and set(runs.role) == {"source", "target"}
    table = table2(runs).set_index(["dataset", "backbone"])
    avg = table.loc[(AVERAGE, "coop")]
    # seed 1: (30 + 50) / 2 = 40, seed 2: (34 + 58) / 2 = 46 -> mean 43, std of (40, 46)
    assert avg["backbone.acc"] == pytest.approx(43.0) and avg["backbone.acc_std"] == pytest.approx(
        np.std([40, 46], ddof=1)
    )
    assert avg["fvgpt.acc"] == pytest.approx((45 + 48) / 2) and avg["seeds"] == 2
    assert table.loc[("src", "coop")]["fvgpt.acc"] == pytest.approx(74.0)
    text = table2_markdown(table2(runs))
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    assert header == f"| method | src (source) | {AVERAGE} | t1 | t2 |"
    rows = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows == ["| method", "| CLIP", "| CoOp", "| +FVG-PT"]
    assert "| CoOp | 72.00 ± 2.83 | 43.00 ± 4.24 | 32.00 ± 2.83 | 54.00 ± 5.66 |" in text
    summary = cross_summary(table2(runs))["src"]["coop"]
    assert summary["targets_average"]["gain"] == pytest.approx(46.5 - 43.0)
    assert summary["source"]["fvgpt"] == pytest.approx(74.0) and set(summary) == {
        "source",
        "targets_average",
        "t1",
        "t2",
    }

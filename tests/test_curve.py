"""Table 1's pattern check, its gain spread, and the curve over experiments (no DVC here: see test_dvc_pipeline)."""

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.config_reader import ConfigError
from pipeline.report.curve import curve_figure, curve_markdown, curve_table, effective_value
from pipeline.report.regime import regime, regime_markdown, regime_summary
from stages.curve import collect_points


def _runs(backbone_acc, fvgpt_acc, clip=(60.0, 70.0), seeds=3, dataset="synthetic", backbone="coop", jitter=None):
    """Runs of one backbone: per seed (base, new) of the backbone and + FVG-PT; `jitter[s]` is added to
    + FVG-PT's accuracies on seed s (a spread over seeds)."""
    rows = []
    for s in range(seeds):
        j = jitter[s] if jitter is not None else 0.0
        row = {"dataset": dataset, "backbone": backbone, "seed": s + 1}
        for system, (b, n) in (
            ("clip", clip),
            ("backbone", backbone_acc),
            ("fvgpt", (fvgpt_acc[0] + j, fvgpt_acc[1] + j)),
        ):
            row.update({f"{system}.base": b, f"{system}.new": n, f"{system}.hm": 2 * b * n / (b + n)})
        rows.append(row)
    return pd.DataFrame(rows)


def test_the_paper_pattern_holds_only_where_each_inequality_does():
    paper = regime(_runs(backbone_acc=(80.0, 65.0), fvgpt_acc=(82.0, 69.0))).iloc[0]
    assert paper[["base", "new", "hm", "clear_gain"]].tolist() == [True, True, True, True]
    below_clip = regime(_runs(backbone_acc=(55.0, 65.0), fvgpt_acc=(56.0, 69.0))).iloc[0]
    assert below_clip[["base", "new", "hm"]].tolist() == [False, True, True]  # tuning did not beat CLIP on base
    no_cost = regime(_runs(backbone_acc=(80.0, 72.0), fvgpt_acc=(82.0, 74.0))).iloc[0]
    assert no_cost[["base", "new"]].tolist() == [True, False]  # tuning cost nothing on new classes
    base_lost = regime(_runs(backbone_acc=(80.0, 65.0), fvgpt_acc=(79.0, 71.0))).iloc[0]
    assert base_lost[["base", "hm", "clear_gain"]].tolist() == [False, True, False]  # a gain paid with base


def test_a_clear_gain_needs_more_than_one_point_and_two_paired_stds():
    small = regime(_runs(backbone_acc=(80.0, 65.0), fvgpt_acc=(80.5, 66.0))).iloc[0]
    assert 0 < small["gain.hm"] < 1 and not small["clear_gain"]
    noisy = regime(_runs(backbone_acc=(80.0, 65.0), fvgpt_acc=(81.5, 67.0), jitter=[-4.0, 0.0, 4.0])).iloc[0]
    assert noisy["gain.hm"] > 1 and noisy["gain.hm_std"] > noisy["gain.hm"] / 2 and not noisy["clear_gain"]
    steady = regime(_runs(backbone_acc=(80.0, 65.0), fvgpt_acc=(81.5, 67.0), jitter=[-0.1, 0.0, 0.1])).iloc[0]
    assert steady["clear_gain"]
    # the spread is that of the paired per-seed gains: a backbone that varies with + FVG-PT adds none
    runs = _runs(backbone_acc=(80.0, 65.0), fvgpt_acc=(81.5, 67.0))
    shift = pd.Series([-3.0, 0.0, 3.0])
    for system in ("backbone", "fvgpt"):
        for split in ("base", "new"):
            runs[f"{system}.{split}"] += shift
        runs[f"{system}.hm"] = (
            2 * runs[f"{system}.base"] * runs[f"{system}.new"] / (runs[f"{system}.base"] + runs[f"{system}.new"])
        )
    paired = regime(runs).iloc[0]
    assert paired["gain.hm_std"] < 0.1 and paired["clear_gain"]


def test_zero_shot_clip_is_left_out_and_the_summary_names_every_check():
    runs = pd.concat([_runs((60.0, 70.0), (60.0, 70.0), backbone="zsclip"), _runs((80.0, 65.0), (82.0, 69.0))])
    table = regime(runs)
    assert table["backbone"].tolist() == ["coop"]
    entry = regime_summary(table)["synthetic"]["coop"]
    assert entry["base"] is True and set(entry["gain_std"]) == {"base", "new", "hm"}
    assert "| synthetic | coop |" in regime_markdown(table)


def test_effective_value_applies_the_datasets_override():
    params = yaml.safe_load(
        "prepare: {synthetic: {spurious: 0.9, seed: 0}, overrides: {synthetic: {synthetic: {spurious: 0.5}}}}\n"
        "heads: {lambda_d: 10.0}"
    )
    assert effective_value(params, "prepare.synthetic.spurious", "synthetic") == 0.5
    assert effective_value(params, "prepare.synthetic.spurious", "synthetic_source") == 0.9
    assert effective_value(params, "prepare.synthetic.seed", "synthetic") == 0
    assert effective_value(params, "heads.lambda_d", "synthetic") == 10.0
    with pytest.raises(KeyError):
        effective_value(params, "heads.lambda_x", "synthetic")


def _files(points: dict[str, tuple[float, pd.DataFrame]]):
    """A `read(rev, path)` serving, per revision, a params file with the shortcut strength and its runs.csv."""

    def read(rev, path):
        spurious, runs = points[rev]
        if path == "params.yaml":
            return yaml.safe_dump({"prepare": {"synthetic": {"spurious": spurious}}})
        return runs.to_csv(index=False)

    return read


def test_curve_reads_each_experiment_and_keeps_one_point_per_value(tmp_path):
    points = {
        "aaa": (0.9, _runs((70.0, 72.0), (70.5, 74.0), clip=(75.0, 78.0))),
        "bbb": (0.5, _runs((78.0, 66.0), (79.0, 70.0))),
        "ccc": (0.5, _runs((10.0, 10.0), (10.0, 10.0))),  # an older run of the same value: left out
    }
    revs = [("aaa", "baseline"), ("bbb", "spurious-0.5"), ("ccc", "old")]
    found = collect_points("prepare.synthetic.spurious", "synthetic", revs, read=_files(points))
    assert [(v, name) for v, name, _ in found] == [(0.9, "baseline"), (0.5, "spurious-0.5")]
    table = curve_table(found, "synthetic")
    assert table["value"].tolist() == [0.5, 0.9]  # sorted by value
    assert np.allclose(
        table["gain.hm"], [2 * 79 * 70 / 149 - 2 * 78 * 66 / 144, 2 * 70.5 * 74 / 144.5 - 2 * 70 * 72 / 142]
    )
    assert table["base"].tolist() == [True, False]
    text = curve_markdown(table, "prepare.synthetic.spurious", "synthetic")
    assert "spurious-0.5" in text and "base, new, hm" in text
    fig = curve_figure(table, "prepare.synthetic.spurious", "synthetic", tmp_path / "curve.png")
    assert (tmp_path / "curve.png").is_file() and len(fig.axes) == 2  # no attention columns: two panels
    with pytest.raises(ConfigError, match="not a params key"):
        collect_points("prepare.synthetic.sprious", "synthetic", revs, read=_files(points))


def test_curve_draws_the_foreground_share_when_the_runs_have_it(tmp_path):
    runs = _runs((78.0, 66.0), (79.0, 70.0))
    for system, share in (("clip", 0.24), ("backbone", 0.26), ("fvgpt", 0.30)):
        runs[f"attention.{system}"] = share
    table = curve_table([(0.5, "e", runs)], "synthetic")
    assert table[["attention.backbone", "attention.fvgpt"]].iloc[0].tolist() == pytest.approx([0.26, 0.30])
    assert "0.260 → 0.300" in curve_markdown(table, "k", "synthetic")
    assert len(curve_figure(table, "k", "synthetic", tmp_path / "c.png").axes) == 3

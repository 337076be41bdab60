"""Result tables: every average row is HM(mean base, mean new), the paper's convention."""

import json

import pandas as pd
import pytest

from pipeline.heads.evaluate import harmonic_mean
from pipeline.heads.sweep import summarise
from pipeline.report.tables import (
    average_over_datasets,
    base_to_new,
    markdown,
    results_markdown,
    seed_stats,
    summary,
    table1,
)


def _run(dataset, seed, base, new, backbone="coop"):
    row = {"dataset": dataset, "backbone": backbone, "seed": seed}
    for sys, shift in (("clip", -5.0), ("backbone", 0.0), ("fvgpt", 2.0)):
        row.update(
            {
                f"{sys}.base": base + shift,
                f"{sys}.new": new + shift,
                f"{sys}.hm": harmonic_mean(base + shift, new + shift),
            }
        )
    return row


def test_average_over_seeds_is_the_hm_of_the_means():
    runs = pd.DataFrame([_run("a", 1, 90.0, 50.0), _run("a", 2, 50.0, 90.0)])
    row = base_to_new(runs).iloc[0]
    assert row["backbone.base"] == 70.0 and row["backbone.new"] == 70.0
    assert row["backbone.hm"] == pytest.approx(70.0)  # the mean of the two per-seed HMs is 64.29
    assert row["backbone.hm_std"] == pytest.approx(0.0) and row["backbone.base_std"] == pytest.approx(28.28, abs=0.01)
    assert row["fvgpt.gain_hm"] == pytest.approx(2.0)


def test_average_over_datasets_is_the_hm_of_the_means():
    # The paper's CoOp average: base 80.94 and new 70.03 give HM 75.09, whatever the per-dataset HMs are.
    runs = pd.DataFrame([_run("a", 1, 95.0, 50.06), _run("b", 1, 66.88, 90.0)])
    avg = average_over_datasets(runs).iloc[0]
    assert avg["dataset"] == "average"
    assert avg["backbone.base"] == pytest.approx(80.94) and avg["backbone.new"] == pytest.approx(70.03)
    assert round(avg["backbone.hm"], 2) == 75.09
    per_dataset = base_to_new(runs)
    assert per_dataset["backbone.hm"].mean() < 75.0  # the other convention would report this


def test_sweep_summary_uses_the_same_convention():
    table = pd.DataFrame(
        [
            {"config": "x", "seed": s, **{k: v for k, v in _run("a", s, b, n).items() if "." in k}, "gain.hm": 0.0}
            for s, b, n in ((1, 90.0, 50.0), (2, 50.0, 90.0))
        ]
    )
    summary = summarise(table, ["x"])
    assert summary.loc["x", "fvgpt.hm"] == 72.0 and summary.loc["x", "backbone.hm"] == 70.0
    assert summary.loc["x", "gain.hm"] == 2.0


def test_markdown_states_the_convention():
    text = markdown(base_to_new(pd.DataFrame([_run("a", 1, 90.0, 50.0), _run("a", 2, 50.0, 90.0)])))
    assert "70.00 ± 28.28" in text and "harmonic mean of those means" in text


def _hand_run(dataset, seed, backbone_acc, fvgpt_acc, clip_acc=(85.0, 85.0), backbone="coop"):
    row = {"dataset": dataset, "backbone": backbone, "seed": seed}
    for sys, (base, new) in (("clip", clip_acc), ("backbone", backbone_acc), ("fvgpt", fvgpt_acc)):
        row.update({f"{sys}.base": base, f"{sys}.new": new, f"{sys}.hm": harmonic_mean(base, new)})
    return row


# Two datasets x two seeds whose per-seed HMs average to something other than the HM of the means.
HAND_RUNS = [
    _hand_run("a", 1, (90.0, 50.0), (92.0, 52.0)),
    _hand_run("a", 2, (50.0, 90.0), (52.0, 92.0)),
    _hand_run("b", 1, (80.0, 60.0), (82.0, 64.0)),
    _hand_run("b", 2, (60.0, 40.0), (62.0, 44.0)),
]


def test_summary_matches_a_hand_computation():
    s = summary(pd.DataFrame(HAND_RUNS))
    assert list(s) == ["a", "b", "average"]
    a, b, avg = s["a"]["coop"], s["b"]["coop"], s["average"]["coop"]
    # a: means 70 / 70 and 72 / 72 (the mean of the per-seed HMs would be 64.29)
    assert a["backbone"] == pytest.approx({"base": 70.0, "new": 70.0, "hm": 70.0})
    assert a["fvgpt"] == pytest.approx({"base": 72.0, "new": 72.0, "hm": 72.0})
    assert a["gain"] == pytest.approx({"base": 2.0, "new": 2.0, "hm": 2.0})
    assert a["clip"] == pytest.approx({"base": 85.0, "new": 85.0, "hm": 85.0}) and a["seeds"] == 2
    # b: backbone means 70 / 50, HM 2*70*50/120; + FVG-PT means 72 / 54, HM 2*72*54/126
    assert b["backbone"]["hm"] == pytest.approx(7000 / 120)
    assert b["fvgpt"]["hm"] == pytest.approx(7776 / 126)
    assert b["gain"] == pytest.approx({"base": 2.0, "new": 4.0, "hm": 7776 / 126 - 7000 / 120})
    # average: per seed over datasets (85 / 55 and 55 / 65), then over seeds: 70 / 60, HM 8400/130;
    # + FVG-PT: 87 / 58 and 57 / 68, then 72 / 63, HM 9072/135
    assert avg["backbone"] == pytest.approx({"base": 70.0, "new": 60.0, "hm": 8400 / 130})
    assert avg["fvgpt"] == pytest.approx({"base": 72.0, "new": 63.0, "hm": 9072 / 135})
    assert avg["gain"]["hm"] == pytest.approx(9072 / 135 - 8400 / 130) and avg["seeds"] == 2


def test_summary_reads_gain_first_and_is_plain_json():
    s = summary(pd.DataFrame(HAND_RUNS))
    entry = s["a"]["coop"]
    assert list(entry) == ["gain", "fvgpt", "backbone", "clip", "seeds"]
    assert json.loads(json.dumps(s)) == s  # plain floats and ints, full precision
    assert isinstance(entry["seeds"], int) and isinstance(entry["gain"]["hm"], float)


def test_summary_carries_the_mean_shift_index_when_runs_have_it():
    shifts = {("a", 1): (0.2, 0.1), ("a", 2): (0.4, 0.2), ("b", 1): (0.6, 0.3), ("b", 2): (0.8, 0.5)}
    runs = pd.DataFrame(
        [
            {
                **r,
                "shift.backbone.base": shifts[r["dataset"], r["seed"]][0],
                "shift.fvgpt.base": shifts[r["dataset"], r["seed"]][1],
            }
            for r in HAND_RUNS
        ]
    )
    s = summary(runs)
    assert s["a"]["coop"]["shift_index"] == pytest.approx({"backbone": 0.3, "fvgpt": 0.15})
    assert s["average"]["coop"]["shift_index"] == pytest.approx({"backbone": 0.5, "fvgpt": 0.275})
    assert "shift_index" not in summary(pd.DataFrame(HAND_RUNS))["a"]["coop"]


def test_summary_has_no_average_for_one_dataset():
    assert list(summary(pd.DataFrame(HAND_RUNS[:2]))) == ["a"]


def _two_backbones(clip_differs=False):
    runs = []
    for seed, (base, new) in ((1, (90.0, 50.0)), (2, (50.0, 90.0))):
        runs.append(_hand_run("a", seed, (base, new), (base + 2, new + 2), backbone="coop"))
        clip = (86.0, 85.0) if clip_differs else (85.0, 85.0)
        runs.append(_hand_run("a", seed, (base + 1, new), (base + 3, new + 2), clip_acc=clip, backbone="kgcoop"))
    return pd.DataFrame(runs)


def test_table1_lists_clip_once_when_every_backbone_shares_it():
    rows = table1(_two_backbones())
    assert list(rows["method"]) == ["CLIP", "CoOp", "+FVG-PT", "KgCoOp", "+FVG-PT"]
    assert list(rows["system"]) == ["clip", "backbone", "fvgpt", "backbone", "fvgpt"]


def test_table1_lists_clip_per_backbone_when_it_differs():
    rows = table1(_two_backbones(clip_differs=True))
    assert list(rows["method"]) == ["CLIP (CoOp)", "CoOp", "+FVG-PT", "CLIP (KgCoOp)", "KgCoOp", "+FVG-PT"]


def test_table1_puts_the_average_block_first_and_uses_hm_of_means():
    rows = table1(pd.DataFrame(HAND_RUNS))
    assert list(dict.fromkeys(rows["dataset"])) == ["average", "a", "b"]
    avg = rows[(rows["dataset"] == "average") & (rows["method"] == "CoOp")].iloc[0]
    assert avg["hm"] == pytest.approx(8400 / 130)


def test_table1_markdown_drops_a_zero_std_and_a_single_seed():
    text = results_markdown(_two_backbones())
    assert "| CLIP | 85.00 | 85.00 | 85.00 |" in text  # deterministic over two seeds
    # both per-seed HMs are 64.29, so the HM cell has no ±, though Base and New vary
    assert "| CoOp | 70.00 ± 28.28 | 70.00 ± 28.28 | 70.00 |" in text
    kgcoop = next(line for line in text.splitlines() if line.startswith("| KgCoOp |"))
    assert kgcoop.startswith("| KgCoOp | 71.00 ± 28.28 | 70.00 ± 28.28 | ") and kgcoop.count("±") == 3
    assert "**a** (mean ± std over 2 seeds)" in text and "harmonic mean of those means" in text
    one_seed = results_markdown(_two_backbones().query("seed == 1"))
    assert "±" not in one_seed.split("\n\n")[1]  # the table; the convention sentence below explains ±
    assert "| CoOp | 90.00 | 50.00 | 64.29 |" in one_seed


def test_table1_markdown_has_one_block_per_dataset_and_the_average():
    text = results_markdown(pd.DataFrame(HAND_RUNS))
    assert text.index("**Average over 2 datasets**") < text.index("**a**") < text.index("**b**")
    assert text.count("| Method | Base | New | HM |") == 3


def test_seed_stats_averages_per_seed_over_datasets_then_over_seeds():
    runs = pd.DataFrame(
        [
            {"dataset": d, "backbone": "coop", "seed": s, "shift.backbone.base": v}
            for d, s, v in (("a", 1, 0.1), ("a", 2, 0.3), ("b", 1, 0.5), ("b", 2, 0.9))
        ]
    )
    stats = seed_stats(runs, ["shift.backbone.base", "shift.fvgpt.base"]).set_index("dataset")
    assert stats.loc["a", "shift.backbone.base"] == pytest.approx(0.2) and stats.loc["a", "seeds"] == 2
    # seed 1: (0.1 + 0.5) / 2 = 0.3, seed 2: (0.3 + 0.9) / 2 = 0.6; the std is over those two, not the four runs
    assert stats.loc["average", "shift.backbone.base"] == pytest.approx(0.45)
    assert stats.loc["average", "shift.backbone.base_std"] == pytest.approx(0.2121, abs=1e-4)
    assert "shift.fvgpt.base" not in stats  # a metric no run has is left out


def test_every_registered_backbone_has_its_papers_name_in_the_tables():
    from pipeline.backbones.settings import SETTINGS
    from pipeline.report.tables import BACKBONE_NAMES

    assert set(BACKBONE_NAMES) == set(SETTINGS)
    assert (BACKBONE_NAMES["promptsrc"], BACKBONE_NAMES["mmrl"]) == ("PromptSRC", "MMRL")

"""Result tables: every average row is HM(mean base, mean new), the paper's convention."""

import pandas as pd
import pytest

from pipeline.heads.evaluate import harmonic_mean
from pipeline.heads.sweep import summarise
from pipeline.report.tables import average_over_datasets, base_to_new, markdown


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

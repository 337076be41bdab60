"""The report's figures cover every dataset, backbone and seed of a paper-sized run matrix (11 datasets x 4
backbones x 3 seeds): one row of panels per dataset (and the average), error bars over seeds, titles that say
what is shown, and all of it drawn in a few seconds."""

import time

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import ErrorbarContainer

from pipeline.masks.quality import example_views
from pipeline.report import figures
from pipeline.report.tables import base_to_new_and_average, seed_stats, with_paper_hm

DATASETS = [f"dataset{i}" for i in range(11)]
BACKBONES = ["zsclip", "coop", "kgcoop", "maple"]
SEEDS = [1, 2, 3]
EPOCHS = 10


def _runs(rng) -> pd.DataFrame:
    rows = []
    for d in DATASETS:
        for b in BACKBONES:
            for s in SEEDS:
                row = {"dataset": d, "backbone": b, "seed": s, "clip.base": 70.0, "clip.new": 72.0}
                for key in ("backbone.base", "backbone.new", "fvgpt.base", "fvgpt.new"):
                    row[key] = rng.uniform(60, 90)
                for key in (
                    "shift.backbone.base",
                    "shift.fvgpt.base",
                    "shift.backbone.new",
                    "gate.b_base",
                    "gate.b_new",
                ):
                    row[key] = rng.uniform(0, 1)
                rows.append(row)
    return with_paper_hm(pd.DataFrame(rows))


def _logs(rng) -> pd.DataFrame:
    frames = []
    for d in DATASETS:
        for b in BACKBONES:
            for s in SEEDS:
                terms = {t: rng.uniform(0, 1, EPOCHS) for t in [*figures.TRAINING_TERMS, *figures.TREND_TERMS]}
                frames.append(pd.DataFrame({"dataset": d, "backbone": b, "seed": s, "epoch": range(1, 11), **terms}))
    return pd.concat(frames, ignore_index=True)


def _tuning(rng) -> pd.DataFrame:
    """Per tuning epoch readings of every run but zero-shot CLIP's (nothing to tune)."""
    frames = []
    for d in DATASETS:
        for b in BACKBONES[1:]:
            for s in SEEDS:
                terms = {t: rng.uniform(0, 1, EPOCHS) for t in figures.TUNING_TERMS}
                frames.append(pd.DataFrame({"dataset": d, "backbone": b, "seed": s, "epoch": range(1, 11), **terms}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """Every figure of the report, drawn once; {name: (Figure, path)} and {name: the CPU seconds it took} (CPU
    time, not wall time, so that other processes on a shared machine do not count)."""
    rng = np.random.default_rng(0)
    runs, logs, out = _runs(rng), _logs(rng), tmp_path_factory.mktemp("figures")
    hists = {(d, b): rng.integers(0, 50, 10) for d in DATASETS for b in BACKBONES}
    shift = seed_stats(runs, [c for c in runs if c.startswith("shift.")])
    gates = seed_stats(runs, ["gate.b_base", "gate.b_new"])
    views = [(rng.uniform(0, 1, (16, 16, 3)), rng.uniform(0, 1, (16, 16)) > 0.5, rng.uniform(0, 1, (16, 16, 3)), "c")]
    calls = {
        "accuracy": lambda p: figures.accuracy_bars(base_to_new_and_average(runs), p),
        "shift": lambda p: figures.shift_index(shift, p),
        "gates": lambda p: figures.gate_scores(gates, hists, p),
        "training": lambda p: figures.training_curves(logs, p),
        "trends": lambda p: figures.epoch_trends(logs, runs, p, _tuning(rng)),
        "examples": lambda p: example_views(views * 6, p, "dataset0, seed 1"),
    }
    drawn, seconds = {}, {}
    for name, call in calls.items():
        start = time.process_time()
        drawn[name] = (call(out / f"{name}.png"), out / f"{name}.png")
        seconds[name] = time.process_time() - start
    return drawn, seconds


def _grid_shape(fig) -> tuple[int, int]:
    return fig.axes[0].get_subplotspec().get_gridspec().get_geometry()


def test_every_figure_is_a_png_drawn_in_reasonable_time(drawn):
    figs, seconds = drawn
    for name, (fig, path) in figs.items():
        assert fig is not None, name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    slow = {name: round(took, 1) for name, took in seconds.items() if took > 5}
    assert not slow, f"figures over 5 s of CPU at 11 datasets x 4 backbones x 3 seeds: {slow}"


def test_accuracy_is_a_grid_of_datasets_and_the_average_by_backbones(drawn):
    fig, _ = drawn[0]["accuracy"]
    assert _grid_shape(fig) == (len(DATASETS) + 1, len(BACKBONES)) and len(fig.axes) == 48
    assert fig.axes[-1].get_title() == "average / maple"
    assert fig.get_size_inches()[1] > 20  # the figure grows with its rows
    assert "mean ± std over 3 seeds" in fig.get_suptitle()


def test_accuracy_bars_carry_the_std_over_seeds(drawn):
    fig, _ = drawn[0]["accuracy"]
    for ax in fig.axes:
        bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert len(bars) == 1 and len(bars[0].lines[2][0].get_segments()) == 9  # 3 systems x base/new/HM


def test_shift_index_and_gates_have_a_row_per_dataset_and_the_average(drawn):
    for name in ("shift", "gates"):
        fig, _ = drawn[0][name]
        assert _grid_shape(fig) == (len(DATASETS) + 1, 2), name
        assert fig.axes[-2].get_title().startswith("average:"), name
        assert "mean ± std over 3 seeds" in fig.get_suptitle() and "average row: over datasets" in fig.get_suptitle()
        bars = [c for c in fig.axes[-1].containers if isinstance(c, ErrorbarContainer)]
        assert len(bars[0].lines[2][0].get_segments()) == 2 * len(BACKBONES), name


def test_training_curves_draw_every_run(drawn):
    fig, _ = drawn[0]["training"]
    assert _grid_shape(fig) == (len(DATASETS), len(figures.TRAINING_TERMS))
    for ax in fig.axes:
        assert len(ax.collections[0].get_segments()) == len(BACKBONES) * len(SEEDS)
    assert "11 datasets" in fig.get_suptitle() and "seeds 1, 2, 3" in fig.get_suptitle()
    assert "backbones zsclip, coop, kgcoop, maple" in fig.get_suptitle()


def test_epoch_trends_draw_tuning_then_heads_for_each_backbone_per_dataset(drawn):
    fig, _ = drawn[0]["trends"]
    columns = len(figures.TUNING_TERMS) + len(figures.TREND_TERMS)
    assert _grid_shape(fig) == (len(DATASETS), columns)
    for i, ax in enumerate(fig.axes):
        dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
        if i % columns < len(figures.TUNING_TERMS):  # the backbones' tuning: zero-shot CLIP has none
            assert len(ax.lines) == len(BACKBONES) - 1 and not dashed and ax.get_title().endswith("%)") == (i % 2 == 0)
        else:  # the heads, with each backbone's final value dashed
            assert len(ax.lines) == 2 * len(BACKBONES) and len(dashed) == len(BACKBONES)
        assert len(ax.collections) == len(ax.lines) - len(dashed)  # a min-max band per line over seeds
    assert "mean over seeds 1, 2, 3" in fig.get_suptitle() and "test split" in fig.get_suptitle()
    empty = pd.DataFrame({"dataset": [], "epoch": []})
    assert figures.epoch_trends(empty, pd.DataFrame(), drawn[0]["trends"][1]) is None


def test_example_views_say_which_dataset_and_seed(drawn):
    fig, _ = drawn[0]["examples"]
    assert _grid_shape(fig) == (3, 6)
    assert fig.get_suptitle() == "dataset0, seed 1"


def test_titles_mention_an_average_row_only_when_there_is_one(tmp_path):
    one_dataset = _runs(np.random.default_rng(0)).query("dataset == 'dataset0' and backbone == 'coop'")
    fig = figures.accuracy_bars(base_to_new_and_average(one_dataset), tmp_path / "accuracy.png")
    assert _grid_shape(fig) == (1, 1) and "average" not in fig.get_suptitle()

"""The report stage's outputs, from a small frame of runs and hand-written heads logs: summary.json, Table 1 as
Markdown and CSV, every run, and the long-form training log."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.paths import metrics_path, results_dir, summary_path, training_log_path
from pipeline.report.regime import regime, with_pattern
from pipeline.report.tables import results_markdown, summary, table1, with_paper_hm
from stages import masks, report


def _runs() -> pd.DataFrame:
    rows = []
    for d, b, s in [(d, b, s) for d in ("a", "b") for b in ("zsclip", "coop") for s in (1, 2)]:
        row = {"dataset": d, "backbone": b, "seed": s, "clip.base": 70.0, "clip.new": 75.0}
        row.update({"backbone.base": 60.0 + s, "backbone.new": 70.0 - s, "fvgpt.base": 63.0 + s, "fvgpt.new": 71.5})
        rows.append(row)
    return with_paper_hm(pd.DataFrame(rows))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the stage writes under reports/, relative to the project root
    return tmp_path


def test_write_tables_writes_the_summary_table1_and_every_run(in_tmp):
    runs = _runs()
    report.write_tables(runs)
    out = results_dir()
    written = json.loads(summary_path().read_text())
    assert written == with_pattern(summary(runs), regime(runs))
    assert written["a"]["coop"]["table1_pattern"]["base"] is False  # coop's base (61.5) is below CLIP's (70)
    assert set(written["a"]["coop"]["gain_std"]) == {"base", "new", "hm"}
    assert "| a | coop |" in (out / "regime.md").read_text()
    assert (out / "table1.md").read_text() == results_markdown(runs)
    rows = pd.read_csv(out / "table1.csv")
    expected = table1(runs)
    assert (
        list(rows["method"]) == list(expected["method"]) == ["CLIP", "zero-shot CLIP", "+FVG-PT", "CoOp", "+FVG-PT"] * 3
    )
    np.testing.assert_allclose(rows[["base", "new", "hm", "hm_std"]], expected[["base", "new", "hm", "hm_std"]])
    pd.testing.assert_frame_equal(pd.read_csv(out / "runs.csv"), runs)
    assert (out / "base_to_new.csv").is_file() and (out / "base_to_new.md").is_file()


def test_training_logs_gather_every_run_in_long_form(in_tmp):
    from pipeline.heads.io import write_long_logs

    log = [{"epoch": e, "loss": loss, "r": 0.5, "b": 0.25} for e, loss in ((1, 3.0), (2, 2.0), (3, 1.0))]
    runs = [("coop", 1), ("coop", 2), ("kgcoop", 2), ("zsclip", 1)]  # kgcoop seed 1 has no log
    labels = [{"dataset": "a", "backbone": b, "seed": s, "run": f"{b} seed{s}"} for b, s in runs]
    write_long_logs(training_log_path("a"), [(label, log) for label in labels])
    logs = report.training_logs(["a"], ["coop", "kgcoop"], [1, 2])  # zsclip is not asked for
    assert list(logs.columns) == ["dataset", "backbone", "seed", "run", "epoch", "loss", "r", "b"]
    assert list(dict.fromkeys(logs["run"])) == ["coop seed1", "coop seed2", "kgcoop seed2"]
    assert len(logs) == 9 and list(logs["loss"][:3]) == [3.0, 2.0, 1.0]
    assert report.training_logs(["b"], ["zsclip"], [1]).empty


def test_r_histograms_sum_the_seeds_of_each_dataset_and_backbone(in_tmp):
    path = metrics_path("a", "coop")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"seed1": {"gate.r_hist": [1] * 10}, "seed2": {"gate.r_hist": [2] * 10}}))
    hists = report.r_histograms(["a", "b"], ["coop"], [1, 2, 3])
    assert list(hists) == [("a", "coop")] and list(hists["a", "coop"]) == [3] * 10


def test_the_example_foreground_view_is_the_pipelines_black_fill_view():
    import torch

    from pipeline.views import foreground

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (12, 9, 3), dtype=np.uint8)
    mask = rng.random((12, 9)) > 0.5
    x = torch.from_numpy(img.astype(np.float32) / 255.0).permute(2, 0, 1)
    want = foreground(x, torch.from_numpy(mask), "black", (0, 0, 0), (1, 1, 1)).permute(1, 2, 0).numpy()
    assert np.array_equal(masks.black_foreground_view(img, mask.astype(np.uint8)), want)


def _attention_file(dataset: str, shares: dict) -> None:
    from pipeline.paths import attention_metrics_path

    path = attention_metrics_path(dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(shares))


def test_foreground_shares_join_the_runs_the_summary_and_their_table(in_tmp):
    from pipeline.report.tables import attention_table

    for d in ("a", "b"):
        _attention_file(
            d,
            {
                b: {
                    f"seed{s}": {
                        "clip.all": 0.2,
                        "backbone.all": 0.2 + 0.01 * s,
                        "fvgpt.all": 0.3 if b == "coop" else None,
                    }
                    for s in (1, 2)
                }
                for b in ("zsclip", "coop")
            },
        )
    runs = report.with_attention(_runs(), ["a", "b"])
    coop = runs[(runs.dataset == "a") & (runs.backbone == "coop")].sort_values("seed")
    assert coop["attention.backbone"].tolist() == pytest.approx([0.21, 0.22])
    assert runs[runs.backbone == "zsclip"]["attention.fvgpt"].isna().all()  # null: no map had any evidence
    shares = summary(runs)["a"]["coop"]["foreground_share"]
    assert shares == pytest.approx({"clip": 0.2, "backbone": 0.215, "fvgpt": 0.3})
    assert "foreground_share" not in summary(runs)["a"]["zsclip"]  # not a number: left out, not NaN
    table = attention_table(runs)
    assert "| a | coop | 0.200 | 0.215 ± 0.007 | 0.300 |" in table and "| a | zsclip |" not in table


def test_the_report_names_the_missing_attention_stage(in_tmp):
    with pytest.raises(FileNotFoundError, match="attention stage"):
        report.with_attention(_runs(), ["a"])

"""The README's results block is the report's Table 1, written by one function from the report's runs.csv."""

from pathlib import Path

import pandas as pd
import pytest

from pipeline.paths import results_dir
from pipeline.report import readme
from pipeline.report.tables import with_paper_hm
from stages import report

ROOT = Path(__file__).resolve().parents[1]


def _runs() -> pd.DataFrame:
    rows = []
    for d, b, s in [(d, b, s) for d in ("a", "b") for b in ("zsclip", "coop", "kgcoop") for s in (1, 2, 3)]:
        row = {"dataset": d, "backbone": b, "seed": s, "clip.base": 70.1, "clip.new": 74.9}
        row.update({"backbone.base": 60.0 + s / 3, "backbone.new": 70.0 - s / 7, "fvgpt.base": 63.0 + s / 9})
        row.update({"fvgpt.new": 71.0 + 0.1 * (d == "b"), "gate.b_base": 0.1 * s})
        rows.append(row)
    return with_paper_hm(pd.DataFrame(rows))


README = "# Project\n\nSome text.\n\n<!-- results:start -->\nold table\n<!-- results:end -->\n\nMore text.\n"


def test_readme_block_is_exactly_the_report_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report.write_tables(_runs())
    Path("README.md").write_text(README)
    readme.main([])  # the defaults: reports/results/runs.csv into README.md
    text = Path("README.md").read_text()
    table = (results_dir() / "table1.md").read_text()
    assert readme.block_of(text) == table
    assert f"{readme.START}\n\n{table}\n{readme.END}" in text  # blank lines keep the markers off the table
    assert text.startswith("# Project\n\nSome text.\n\n<!-- results:start -->\n") and text.endswith("\n\nMore text.\n")
    readme.main([])
    assert Path("README.md").read_text() == text  # a second run changes nothing


def test_readme_needs_its_markers(tmp_path):
    with pytest.raises(ValueError, match="results:start"):
        readme.replace_block("# no markers\n", "table\n")
    with pytest.raises(ValueError):
        readme.replace_block(README + README, "table\n")


def test_the_project_readme_has_one_results_block():
    text = (ROOT / "README.md").read_text()
    assert text.count(readme.START) == 1 and text.count(readme.END) == 1
    assert text.index(readme.START) < text.index(readme.END)

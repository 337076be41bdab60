"""Every `fvgpt <stage>` copies what it prints to data/logs/<stage>/<args>.log, and goes on when it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from stages.cli import app
from tests.tiny_project import write_params


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A params file whose `imagefolder` dataset is a folder with one file: `fvgpt inputs` prints one line."""
    (tmp_path / "ds" / "train" / "a").mkdir(parents=True)
    (tmp_path / "ds" / "train" / "a" / "0.png").write_bytes(b"not read, only listed")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seeds": [1], "prepare": {"roots": {"imagefolder": "ds"}}}))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def fvgpt(*args: str):
    return CliRunner().invoke(app, list(args))


def test_a_stage_logs_its_printed_lines_between_a_header_and_its_exit_status(project):
    fvgpt("inputs", "imagefolder")
    result = fvgpt("inputs", "imagefolder")  # overwrites the first run's log
    assert result.exit_code == 0, result.output
    printed = result.stdout.strip()
    assert printed.startswith("inputs of imagefolder: 1 files")
    header, *body, footer = Path("data/logs/inputs/imagefolder.log").read_text().splitlines()
    assert header.startswith("# fvgpt inputs imagefolder --params params.yaml | params params.yaml | started 20")
    assert body == [printed]
    assert footer.startswith("# exit status 0 after ")


def test_a_bad_input_error_line_lands_in_the_log(project):
    result = fvgpt("inputs", "cars")
    assert result.exit_code == 1
    error = result.stderr.strip()
    assert error.startswith("fvgpt inputs: error: cars: dataset folder ") and "\n" not in error
    lines = Path("data/logs/inputs/cars.log").read_text().splitlines()
    assert lines[1:] == [error, lines[-1]] and lines[-1].startswith("# exit status 1 after ")


def test_an_unwritable_log_folder_warns_once_and_the_stage_still_runs(project):
    Path("data").mkdir()
    Path("data/logs").write_text("a file where the log folder should be")
    result = fvgpt("inputs", "imagefolder")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("inputs of imagefolder: 1 files")
    [warning] = result.stderr.splitlines()
    assert warning.startswith("fvgpt inputs: warning: cannot write the log data/logs/inputs/imagefolder.log (")
    assert Path("data/inputs/imagefolder/prepare.json").is_file()


def test_a_progress_bar_leaves_one_line_in_the_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path)
    result = fvgpt("prepare", "synthetic")
    assert result.exit_code == 0, result.output
    log = Path("data/logs/prepare/synthetic.log").read_text()
    assert "\x1b" not in log and "\r" not in log  # no bar redraws
    [bar] = [line for line in log.splitlines() if line.startswith("synthetic images")]
    assert bar.startswith("synthetic images: 48/48 in ")
    assert "prepared synthetic: 48 rows" in log

"""`python -m pipeline.report.readme`: rewrite README.md's results block from the report's runs.csv.

The block between the marker comments is `results_markdown` of those runs, the function the report stage
writes reports/results/table1.md with, so the README shows exactly the report's table. Run it after
`dvc repro` (it is no DVC stage: the README is not a pipeline output).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ..atomic import write_text
from ..paths import results_dir
from .tables import results_markdown

START, END = "<!-- results:start -->", "<!-- results:end -->"


def read_runs(path: Path) -> pd.DataFrame:
    """The report's runs.csv, names kept as text (a dataset called "1" stays "1")."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the report stage first (dvc repro)")
    return pd.read_csv(path, dtype={"dataset": str, "backbone": str})


def replace_block(text: str, block: str) -> str:
    """`text` with what lies between the START and END markers replaced by `block`."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start or text.count(START) != 1 or text.count(END) != 1:
        raise ValueError(f"the README needs exactly one {START} followed by one {END}")
    return text[: start + len(START)] + "\n\n" + block.strip("\n") + "\n\n" + text[end:]


def block_of(text: str) -> str:
    """What lies between the markers, without the blank lines around it."""
    return text[text.index(START) + len(START) : text.index(END)].strip("\n") + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.report.readme", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=results_dir() / "runs.csv", help="the report's runs.csv")
    parser.add_argument("--readme", type=Path, default=Path("README.md"), help="the file to update")
    args = parser.parse_args(argv)
    text = replace_block(args.readme.read_text(encoding="utf-8"), results_markdown(read_runs(args.runs)))
    write_text(args.readme, text)
    print(f"{args.readme}: results block rewritten from {args.runs}")


if __name__ == "__main__":
    main()

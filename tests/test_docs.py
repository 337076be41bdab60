"""The method's docs ship with the code: the equation map points at real functions that name their equation,
and every document reference resolves inside the repository."""

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _equation_rows():
    text = (ROOT / "docs" / "method.md").read_text()
    table = text[text.index("## Equation map") :].split("\n\n")[1]
    for line in table.splitlines()[2:]:
        paper, _, where = [c.strip() for c in re.split(r"(?<!\|) \| (?!\|)", line.strip().strip("|"))]
        yield (
            paper,
            re.findall(r"`([\w/]+\.py): ([\w.]+)`", where)
            + [(None, name) for name in re.findall(r"(?<!: )`(\w+\.\w+)`", where)],
        )


@pytest.mark.parametrize("paper,targets", list(_equation_rows()), ids=lambda x: x if isinstance(x, str) else "")
def test_equation_map_points_at_functions_that_name_their_equation(paper, targets):
    assert targets, f"{paper}: no function named"
    last_module = None
    for path, name in targets:
        module = importlib.import_module(path[:-3].replace("/", ".")) if path else last_module
        last_module = module
        obj = module
        for part in name.split("."):
            obj = getattr(obj, part)
        for eq in re.findall(r"\((\d+)\)", paper.split("and")[0]) if paper.startswith("Eq.") else []:
            assert f"Eq. ({eq})" in (obj.__doc__ or ""), f"{path}: {name} does not name Eq. ({eq})"


def test_every_equation_of_the_paper_is_mapped():
    mapped = " ".join(paper for paper, _ in _equation_rows())
    for eq in (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15):
        assert f"({eq})" in mapped, f"Eq. ({eq}) is not in the equation map"


def test_document_references_resolve_inside_the_repository():
    texts = {
        p: p.read_text()
        for p in [
            ROOT / "README.md",
            *ROOT.glob("docs/*.md"),
            *ROOT.glob("pipeline/**/*.py"),
            *ROOT.glob("stages/*.py"),
        ]
    }
    for path, text in texts.items():
        assert "METHOD.md" not in text and "DESIGN.md" not in text and "../shared" not in text, path
        for ref in re.findall(r"\((docs/[\w.-]+\.md)\)|`(docs/[\w.-]+\.md)`", text):
            target = ROOT / (ref[0] or ref[1])
            assert target.is_file(), f"{path.relative_to(ROOT)} refers to {target.relative_to(ROOT)}, which is missing"

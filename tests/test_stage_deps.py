"""Each DVC stage declares every project file its command imports, so editing one re-runs the stage."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "stages")


def _module_file(name: str) -> Path | None:
    """The project file of a dotted module name (a package's __init__), or None outside the project."""
    if name.split(".")[0] not in PACKAGES:
        return None
    path = ROOT / Path(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


# Functions whose imports only check names against a registry (pipeline/config.py reads the whole params
# file in every stage); a stage that uses a backbone or segmenter imports it itself, and that import counts.
NAME_CHECKS_ONLY = {"_registries"}


def _nodes(tree: ast.AST):
    """Every node, without the bodies of NAME_CHECKS_ONLY functions."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.FunctionDef) and node.name in NAME_CHECKS_ONLY:
            continue
        todo.extend(ast.iter_child_nodes(node))


def _imports(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (function-level imports too), as absolute dotted names."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    if path.name == "__init__.py":
        package = ".".join(path.relative_to(ROOT).parts[:-1])
    names = set()
    for node in _nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return names


def project_files(entry: Path) -> set[Path]:
    """The project files `entry` imports, transitively, with the __init__ of every package on the way."""
    seen, todo = set(), [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
                found = _module_file(".".join(parts[:i]))
                if found is not None:
                    todo.append(found)
    return seen


def _stages():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage for name, stage in stages.items()}


@pytest.mark.parametrize("stage", list(_stages()))
def test_every_imported_project_file_is_a_declared_dependency(stage):
    spec = _stages()[stage]
    command = spec["cmd"].split()[1]  # `cross-<kind>` is a function of stages/<kind>.py, as the CLI routes it
    entry = ROOT / "stages" / f"{command.removeprefix('cross-')}.py"
    assert entry.is_file(), f"{stage}: `{spec['cmd']}` has no module {entry.relative_to(ROOT)}"
    deps = [ROOT / d for d in spec.get("deps", []) if isinstance(d, str) and "${" not in d]
    imported = project_files(entry) | project_files(ROOT / "stages" / "cli.py")
    undeclared = sorted(str(f.relative_to(ROOT)) for f in imported if not any(f == d or d in f.parents for d in deps))
    assert not undeclared, f"stage {stage} imports {undeclared} but dvc.yaml does not declare them as deps"


def test_the_import_walker_sees_function_level_and_relative_imports():
    files = {str(p.relative_to(ROOT)) for p in project_files(ROOT / "stages" / "heads.py")}
    assert "stages/_common.py" in files  # relative
    assert "pipeline/heads/model.py" in files and "pipeline/schedule.py" in files  # transitive
    assert "pipeline/features/run_features.py" in files
    files = {str(p.relative_to(ROOT)) for p in project_files(ROOT / "stages" / "backbone.py")}
    assert "pipeline/models/loading.py" in files
    files = {str(p.relative_to(ROOT)) for p in project_files(ROOT / "stages" / "masks.py")}
    assert "pipeline/masks/seem.py" in files  # imported only inside create_segmenter

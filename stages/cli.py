"""`fvgpt`: one command per pipeline stage; dvc.yaml calls only these."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="FVG-PT pipeline. Each command is one DVC stage and reads its section of params.yaml.",
)

PARAMS = typer.Option("params.yaml", "--params", "-p", help="Parameter file to read.")
DATASET = typer.Argument(..., help="Dataset name (a key of `datasets` in params.yaml), e.g. synthetic, oxford_pets.")
BACKBONE = typer.Argument(..., help="Backbone name (a key of `backbones` in params.yaml), e.g. zsclip, coop, kgcoop.")
SEED = typer.Argument(..., help="Few-shot seed (one of `seeds`).")


def _fail_clearly(run):
    """Run a stage; a bad params file stops it with one line naming the key (no traceback)."""
    from pipeline.config_reader import ConfigError

    try:
        return run()
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=2) from None


def _stage(name: str):
    try:
        return importlib.import_module(f"stages.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"stages.{name}":
            raise
        typer.echo(f"fvgpt {name}: this stage is not implemented in this version of the pipeline.", err=True)
        raise typer.Exit(code=2) from None


@app.command()
def prepare(dataset: str = DATASET, params: str = PARAMS) -> None:
    """Read a dataset (CoOp layout, ImageFolder, or generate `synthetic`) and write its manifest with few-shot columns."""
    _fail_clearly(lambda: _stage("prepare").run(dataset, params))


@app.command()
def masks(dataset: str = DATASET, params: str = PARAMS) -> None:
    """Segment the images a run needs into data/masks/<dataset>.h5 with the segmenter in `masks.segmenter`."""
    _fail_clearly(lambda: _stage("masks").run(dataset, params))


@app.command()
def encode(dataset: str = DATASET, params: str = PARAMS) -> None:
    """Encode every training view and test image once with CLIP's image encoder (shared by zsclip, coop, kgcoop)."""
    _fail_clearly(lambda: _stage("encode").run(dataset, params))


@app.command()
def pretrain(params: str = PARAMS) -> None:
    """Train the built-in benchmark's tiny CLIP on synthetic image-caption pairs (data/models/)."""
    _fail_clearly(lambda: _stage("pretrain").run(params))


@app.command()
def backbone(dataset: str = DATASET, backbone: str = BACKBONE, seed: int = SEED, params: str = PARAMS) -> None:
    """Tune a prompt backbone on the base classes of a seed's few-shot split."""
    _fail_clearly(lambda: _stage("backbone").run(dataset, backbone, seed, params))


@app.command()
def features(dataset: str = DATASET, backbone: str = BACKBONE, seed: int = SEED, params: str = PARAMS) -> None:
    """Write one feature file per run: the shared image encodings (or the backbone's own) plus its class text features."""
    _fail_clearly(lambda: _stage("features").run(dataset, backbone, seed, params))


@app.command()
def heads(dataset: str = DATASET, backbone: str = BACKBONE, seed: int = SEED, params: str = PARAMS) -> None:
    """Train the FVG-PT heads (FRG, FDC, PC/BRG) on the cached features."""
    _fail_clearly(lambda: _stage("heads").run(dataset, backbone, seed, params))


@app.command()
def evaluate(dataset: str = DATASET, backbone: str = BACKBONE, seed: int = SEED, params: str = PARAMS) -> None:
    """Base/new/HM accuracy of CLIP, the backbone and backbone + FVG-PT; shift index; gate statistics."""
    _fail_clearly(lambda: _stage("evaluate").run(dataset, backbone, seed, params))


@app.command()
def sweep(
    dataset: str = DATASET,
    backbone: str = BACKBONE,
    ablation: str = typer.Option(None, help="A named ablation: table3, table12, table6, table4, table5, table13, lambda_d, shots."),
    grid: str = typer.Option(None, help="A grid over heads params instead, e.g. 'lambda_d=1,5,10 tau_d=1,2'."),
    seeds: str = typer.Option(None, help="Comma-separated seeds (default: `seeds` in params.yaml)."),
    sequential: bool = typer.Option(False, help="Train configurations one by one instead of stacked (for comparison)."),
    params: str = PARAMS,
) -> None:
    """Train many head configurations on the cached features in one process; write reports/sweeps/*.md|csv."""
    seed_list = [int(s) for s in seeds.split(",")] if seeds else None
    _fail_clearly(lambda: _stage("sweep").run(dataset, backbone, ablation, grid, seed_list, sequential, params))


@app.command()
def report(params: str = PARAMS) -> None:
    """Aggregate every run into tables (CSV, Markdown) and figures under reports/."""
    _fail_clearly(lambda: _stage("report").run(params))


@app.command()
def check(params: str = PARAMS) -> None:
    """Check the whole params file: every key known, every value of the right type and range."""
    from pipeline.config import load_params

    loaded = _fail_clearly(lambda: load_params(params))
    n = len(loaded.datasets) * len(loaded.backbones) * len(loaded.seeds)
    typer.echo(f"{params}: OK ({len(loaded.datasets)} datasets x {len(loaded.backbones)} backbones x "
               f"{len(loaded.seeds)} seeds = {n} runs)")


if __name__ == "__main__":
    app()

"""`fvgpt`: one command per pipeline stage; dvc.yaml calls only these."""

from __future__ import annotations

import importlib
import os
import shlex
import sys
from pathlib import Path
from typing import Sequence

import typer

from pipeline.atomic import OutputWriteError

from ._common import stage_log

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="FVG-PT pipeline. Each command is one DVC stage and reads its section of params.yaml.",
)

PARAMS = typer.Option("params.yaml", "--params", "-p", help="Parameter file to read.")
DATASET = typer.Argument(..., help="Dataset name (a key of `datasets` in params.yaml), e.g. synthetic, oxford_pets.")
BACKBONE = typer.Argument(..., help="Backbone name (a key of `backbones` in params.yaml), e.g. zsclip, coop, kgcoop.")
SEED = typer.Argument(..., help="Few-shot seed (one of `seeds`).")


def _stage(name: str):
    try:
        return importlib.import_module(f"stages.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"stages.{name}":
            raise
        typer.echo(f"fvgpt {name}: this stage is not implemented in this version of the pipeline.", err=True)
        raise typer.Exit(code=2) from None


_OWN_CODE = (str(Path(__file__).resolve().parents[1] / "pipeline"), str(Path(__file__).resolve().parent))


def _is_bad_input(err: Exception) -> bool:
    """An error the pipeline raised on purpose, with a message naming the file or key and the fix.

    Those are the pipeline's own exception types, and the builtin ones raised
    by its own code (not from inside a library, where a traceback helps).
    """
    if type(err).__module__.split(".")[0] == "pipeline":
        return True
    if not isinstance(err, (KeyError, ValueError, FileNotFoundError, PermissionError)) or err.__traceback__ is None:
        return False
    if isinstance(err, KeyError) and " " not in str(err.args[0] if err.args else ""):
        return False  # a bare missing key is a lookup that failed, not a message
    tb = err.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(Path(tb.tb_frame.f_code.co_filename).resolve()).startswith(_OWN_CODE)


def _command_line(ctx: typer.Context) -> str:
    """The command as typed (arguments, then the options that have a value), for the head of the stage's log."""
    words = ["fvgpt", ctx.info_name]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.param_type_name == "argument":
            words += [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
        elif value is not None and value is not False:
            words += [param.opts[0]] + ([] if value is True else [str(value)])
    return shlex.join(words)


def _run(ctx: typer.Context, name: str, *args, log_parts: Sequence | None = None, function: str | None = None) -> None:
    """Run a stage, its output copied to data/logs/<name>/<log_parts, default: args but the params file>.log.
    A bad input ends it with one line on stderr (and in the log) and exit status 1 (FVGPT_TRACEBACK=1 shows the
    traceback). A cross-dataset stage `cross_<kind>` is the function `cross` of its kind's module; `function`
    names another function of the stage's module."""
    params_file = args[-1]
    module, _, default = (name[len("cross_") :], "", "cross") if name.startswith("cross_") else (name, "", "run")
    function = function or default
    with stage_log(name, args[:-1] if log_parts is None else log_parts, _command_line(ctx), params_file) as log:
        try:
            getattr(_stage(module), function)(*args)
        except Exception as err:
            if not _is_bad_input(err) or os.environ.get("FVGPT_TRACEBACK"):
                raise
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            typer.echo(f"fvgpt {name}: error: {message}", err=True)
            if isinstance(err, OutputWriteError):
                # HDF5's exit handler crashes on a file whose last write failed: leave before it runs.
                sys.stdout.flush()
                sys.stderr.flush()
                log.end(1)
                os._exit(1)
            raise typer.Exit(code=1) from None


@app.command()
def inputs(
    ctx: typer.Context,
    datasets: list[str] = typer.Argument(None, help="Datasets to do (default: every one of `datasets`)."),
    params: str = PARAMS,
) -> None:
    """Fingerprint the dataset's folder outside the repository (paths, sizes, mtimes) and write the dataset's
    effective prepare and masks settings, so DVC re-runs exactly what changed."""
    _run(ctx, "inputs", list(datasets or []), params, log_parts=list(datasets or []) or ["all"])


@app.command()
def prepare(ctx: typer.Context, dataset: str = DATASET, params: str = PARAMS) -> None:
    """Read a dataset (CoOp layout, ImageFolder, or generate `synthetic`); write its manifest with few-shot columns."""
    _run(ctx, "prepare", dataset, params)


@app.command()
def masks(ctx: typer.Context, dataset: str = DATASET, params: str = PARAMS) -> None:
    """Segment the images a run needs into data/masks/<dataset>.h5 with the segmenter in `masks.segmenter`."""
    _run(ctx, "masks", dataset, params)


@app.command()
def encode(ctx: typer.Context, dataset: str = DATASET, params: str = PARAMS) -> None:
    """Encode every training view and test image once with CLIP's image encoder (shared by zsclip, coop, kgcoop).
    Under torchrun (`torchrun --nproc-per-node N $(which fvgpt) encode DATASET`) each process encodes a shard and
    rank 0 joins them into the same file."""
    rank = os.environ.get("RANK") if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
    _run(ctx, "encode", dataset, params, log_parts=[dataset, f"rank{rank}" if rank else None])


@app.command()
def pretrain(ctx: typer.Context, params: str = PARAMS) -> None:
    """Train the built-in benchmark's tiny CLIP on synthetic image-caption pairs (data/models/)."""
    _run(ctx, "pretrain", params)


@app.command()
def backbone(
    ctx: typer.Context, dataset: str = DATASET, backbone: str = BACKBONE, seed: int = SEED, params: str = PARAMS
) -> None:
    """Tune a prompt backbone on the base classes of a seed's few-shot split."""
    _run(ctx, "backbone", dataset, backbone, seed, params)


ONE_SEED = typer.Option(None, "--seed", help="Only this seed (default: every seed of `seeds`).")


@app.command()
def features(
    ctx: typer.Context, dataset: str = DATASET, backbone: str = BACKBONE, seed: int = ONE_SEED, params: str = PARAMS
) -> None:
    """Write one feature file per run (each seed of `seeds`): its rows of the shared encodings (or its own) and
    its class text features."""
    _run(ctx, "features", dataset, backbone, seed, params)


@app.command()
def heads(ctx: typer.Context, dataset: str = DATASET, params: str = PARAMS) -> None:
    """Train the FVG-PT heads (FRG, FDC, PC/BRG) on the cached features for every backbone x seed of
    `backbones` x `seeds`, stacked in one process, and evaluate them: base/new/HM accuracy of CLIP, the backbone
    and backbone + FVG-PT, shift index, gate statistics (one metrics file per backbone)."""
    _run(ctx, "heads", dataset, params)


@app.command()
def attention(
    ctx: typer.Context,
    dataset: str = DATASET,
    image: list[str] = typer.Option(
        None, "--image", help="An image of your own (repeat the option); without one, the stage on the test split."
    ),
    backbone: str = typer.Option("coop", help="With --image: the backbone whose heads score the images."),
    seed: int = typer.Option(None, help="With --image: the run's seed (default: the first of `seeds`)."),
    subset: str = typer.Option("base", help="With --image: score over the dataset's base or new classes."),
    out: str = typer.Option("attention.png", help="With --image: the figure's path."),
    params: str = PARAMS,
) -> None:
    """Grad-CAM maps of CLIP, each backbone and + FVG-PT: on the test split, the foreground share of each map
    (reports/attention/<dataset>.json) and a figure of chosen cases; with --image, a figure of your images."""
    if image:
        args = (dataset, list(image), backbone, seed, subset, out, params)
        _run(ctx, "attention", *args, log_parts=[dataset, "images"], function="images")
        return
    _run(ctx, "attention", dataset, params)


@app.command()
def sweep(
    ctx: typer.Context,
    dataset: str = DATASET,
    backbone: str = BACKBONE,
    ablation: str = typer.Option(
        None, help="A named ablation: table3, table12, table6, table4, table5, table13, lambda_d, shots."
    ),
    grid: str = typer.Option(None, help="A grid over heads params instead, e.g. 'lambda_d=1,5,10 tau_d=1,2'."),
    seeds: str = typer.Option(None, help="Comma-separated seeds (default: `seeds` in params.yaml)."),
    sequential: bool = typer.Option(False, help="Train configurations one by one instead of stacked (for comparison)."),
    params: str = PARAMS,
) -> None:
    """Train many head configurations on the cached features in one process; write reports/sweeps/*.md|csv|json."""
    log_parts = [dataset, backbone, ablation or "grid", grid, seeds, "sequential" if sequential else None]
    _run(ctx, "sweep", dataset, backbone, ablation, grid, seeds, sequential, params, log_parts=log_parts)


@app.command()
def curve(
    ctx: typer.Context,
    key: str = typer.Argument(..., help="A dotted params key, e.g. prepare.synthetic.spurious or heads.lambda_d."),
    dataset: str = typer.Option("synthetic", help="The base-to-new dataset whose runs make the curve."),
    rev: list[str] = typer.Option(None, help="Commits whose experiments to read (default: HEAD); repeatable."),
    params: str = PARAMS,
) -> None:
    """A table and figure across DVC experiments against one params key: FVG-PT's HM gain (± std over seeds),
    accuracies, Table 1's pattern and the foreground share of Grad-CAM mass, one point per experiment, in
    reports/curves/. Run the experiments first, e.g. one per background-shortcut strength:
    dvc exp run -S '++prepare.overrides.synthetic.synthetic.spurious=0.5'"""
    _run(ctx, "curve", key, dataset, list(rev or []), params, log_parts=[dataset, key])


SOURCE = typer.Argument(..., help="Cross-dataset source (one of `cross_dataset.sources`), tuned on every class.")


@app.command("cross-backbone")
def cross_backbone(
    ctx: typer.Context, source: str = SOURCE, backbone: str = BACKBONE, seed: int = SEED, params: str = PARAMS
) -> None:
    """Cross-dataset: tune a prompt backbone on every class of the source (`cross_dataset.backbone` changes)."""
    _run(ctx, "cross_backbone", source, backbone, seed, params)


@app.command("cross-features")
def cross_features(
    ctx: typer.Context,
    source: str = SOURCE,
    dataset: str = typer.Argument(..., help="The source itself (training rows and its test split) or a target."),
    backbone: str = BACKBONE,
    seed: int = ONE_SEED,
    params: str = PARAMS,
) -> None:
    """Cross-dataset: the feature files (each seed of `seeds`) on the source or a target, through the encoders
    tuned on the source."""
    _run(ctx, "cross_features", source, dataset, backbone, seed, params)


@app.command("cross-heads")
def cross_heads(ctx: typer.Context, source: str = SOURCE, params: str = PARAMS) -> None:
    """Cross-dataset: train the heads of every backbone x seed on the source; test them on its test split and on
    every target's (accuracy of CLIP, each backbone and + FVG-PT)."""
    _run(ctx, "cross_heads", source, params)


@app.command("cross-report")
def cross_report(ctx: typer.Context, source: str = SOURCE, params: str = PARAMS) -> None:
    """Cross-dataset: Table 2 of one source (Markdown, CSV, figure) and its DVC metrics under reports/cross_dataset/."""
    _run(ctx, "cross_report", source, params)


@app.command()
def report(ctx: typer.Context, params: str = PARAMS) -> None:
    """Aggregate every run into tables (CSV, Markdown) and figures under reports/."""
    _run(ctx, "report", params)


@app.command()
def check(params: str = PARAMS) -> None:
    """Check the whole params file: every key known, every value of the right type and range (stages do the same)."""
    from pipeline.config import load_params
    from pipeline.config_reader import ConfigError

    try:
        loaded = load_params(params)
    except ConfigError as err:
        typer.echo(f"fvgpt check: error: {err}", err=True)
        raise typer.Exit(code=1) from None
    per_dataset = len(loaded.backbones) * len(loaded.seeds)
    cross = loaded.cross_dataset
    typer.echo(
        f"{params}: OK ({len(loaded.datasets)} datasets; base-to-new: {len(loaded.base2new)} datasets x "
        f"{len(loaded.backbones)} backbones x {len(loaded.seeds)} seeds = {len(loaded.base2new) * per_dataset} runs; "
        f"cross-dataset: {len(cross.sources)} sources x {per_dataset} runs, each tested on {len(cross.targets)} "
        "targets)"
    )


if __name__ == "__main__":
    app()

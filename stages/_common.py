"""Plumbing shared by the stage modules: the checked params, the runtime settings, progress bars."""

from __future__ import annotations

import contextlib
from typing import Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from pipeline.config import Params, load_params


def start(params_file: str) -> Params:
    """The stage's params, checked in full, with `runtime.threads` applied."""
    params = load_params(params_file)
    if params.runtime.threads:
        import torch

        torch.set_num_threads(params.runtime.threads)
    return params


@contextlib.contextmanager
def progress_bar(description: str, total: int | None) -> Iterator:
    """Yield `advance(n)`; draws a rich bar on stderr."""
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)

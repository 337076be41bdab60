"""Plumbing shared by the stage modules: the checked params, the runtime settings, progress bars, stage logs."""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import time
import traceback
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence, TextIO

import typer
from rich.console import Console
from rich.file_proxy import FileProxy
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pipeline.config import Params, load_params
from pipeline.paths import DATA

if TYPE_CHECKING:
    import torch

# Stage logs are deliberately not DVC outputs (dvc.yaml names none of them): they hold start times and
# durations, which must never change an output's hash or make DVC re-run anything.
LOGS = DATA / "logs"


def start(params_file: str) -> Params:
    """The stage's params, checked in full, with the thread count applied: `runtime.threads`, or else the
    cores this process may use, unless OMP_NUM_THREADS says otherwise."""
    params = load_params(params_file)
    # A stage that computes with torch imported it with its module; one that does not (report, inputs) should
    # not pay the import for a setting it never uses.
    if "torch" in sys.modules and (params.runtime.threads or "OMP_NUM_THREADS" not in os.environ):
        import torch

        torch.set_num_threads(params.runtime.threads or usable_cores())
    return params


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cores() -> int:
    """The CPU cores this process may run on: its affinity mask, capped by a cgroup v2 CPU quota (a container's
    `--cpus`). torch's default counts the machine's cores, and more threads than cores slows small-tensor
    work many times over."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return n


def encode_workers(setting: int, device: torch.device) -> int:
    """DataLoader workers that decode and augment while the encoder runs: `runtime.encode_workers` when >= 0;
    auto (-1): on CUDA the cores this stage may use but one, at most 8; on CPU none, since the encoder already
    runs on every core and workers would take those cores from it (docs/benchmarks.md, bench/bench_encode.py)."""
    if setting >= 0:
        return setting
    return max(1, min(8, usable_cores() - 1)) if device.type == "cuda" else 0


# --- progress bars ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def progress_bar(description: str, total: int | None) -> Iterator:
    """Yield `advance(n)`; draws a rich bar on stdout.

    In a logged run (`stage_log`) the bar draws on the console only (its redraws would fill the log), the lines
    printed meanwhile still reach both, and the log gets the bar's final state as one line.
    """
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    log = _active_log
    console = Console(file=log.console_out) if log else None
    with Progress(*columns, console=console, transient=False, redirect_stdout=not log, redirect_stderr=not log) as bar:
        task = bar.add_task(description, total=total)
        try:
            with log.printing_above(console) if log else contextlib.nullcontext():
                yield lambda n=1: bar.advance(task, n)
        finally:
            if log:  # also when the stage fails: how far it got
                log.write(_final_state(bar.tasks[0]))


def _final_state(task: Task) -> str:
    of = f"/{task.total:g}" if task.total is not None else ""
    return f"{task.description}: {task.completed:g}{of} in {task.elapsed or 0:.1f} s\n"


# --- stage logs ------------------------------------------------------------------------------------------------


def log_path(stage: str, parts: Sequence) -> Path:
    """data/logs/<stage>/<parts joined by _>.log (or <stage>.log without parts), one file name whatever the parts
    hold (a grid spec has spaces)."""
    name = "_".join(str(p) for p in parts if p is not None) or stage
    return LOGS / stage / (re.sub(r"[^\w.,=+-]", "-", name) + ".log")


class StageLog:
    """The log file of one stage run. If it cannot be written, one warning on stderr and the stage goes on."""

    def __init__(self, path: Path, stage: str, console_out: TextIO, console_err: TextIO) -> None:
        self.path, self.stage = path, stage
        self.console_out, self.console_err = console_out, console_err
        self._file: TextIO | None = None
        self._t0 = time.perf_counter()

    def open(self, header: str) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Line-buffered, so a killed stage leaves the lines it printed.
            self._file = open(self.path, "w", encoding="utf-8", errors="replace", buffering=1)
        except OSError as err:
            self._give_up(err)
        self.write(header)

    def write(self, text: str) -> None:
        if self._file is None:
            return
        try:
            self._file.write(text)
        except OSError as err:
            self._give_up(err)

    def flush(self) -> None:
        if self._file is None:
            return
        try:
            self._file.flush()
        except OSError as err:
            self._give_up(err)

    def end(self, status: int) -> None:
        """The footer line (exit status, duration), then close; a second call does nothing."""
        self.write(f"# exit status {status} after {time.perf_counter() - self._t0:.1f} s\n")
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def _give_up(self, err: OSError) -> None:
        """Stop logging after the first failed write: a full disk or a read-only data/ must not fail a stage."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        self._file = None
        print(
            f"fvgpt {self.stage}: warning: cannot write the log {self.path} ({err}); going on without it",
            file=self.console_err,
            flush=True,
        )

    @contextlib.contextmanager
    def printing_above(self, console: Console) -> Iterator[None]:
        """While a bar is live on a terminal, print the stage's lines above it (as rich does for a plain stdout)."""
        tees = [s for s in (sys.stdout, sys.stderr) if isinstance(s, _Tee)]
        if not console.is_terminal or not tees:
            yield
            return
        plain = [t.console for t in tees]
        for tee in tees:
            tee.console = FileProxy(console, tee.console)
        try:
            yield
        finally:
            for tee, stream in zip(tees, plain):
                tee.console.flush()
                tee.console = stream


class _Tee:
    """A text stream writing to a console stream and to a stage log; anything else is the console stream's."""

    def __init__(self, console: TextIO, log: StageLog) -> None:
        self.console, self.log = console, log

    def write(self, text: str) -> int:
        written = self.console.write(text)  # first: a bytes probe (click's) fails here, before the log
        self.log.write(text)
        return written

    def flush(self) -> None:
        self.console.flush()
        self.log.flush()

    def __getattr__(self, name: str):
        return getattr(self.console, name)


_active_log: StageLog | None = None


@contextlib.contextmanager
def stage_log(stage: str, parts: Sequence, command: str, params_file: str) -> Iterator[StageLog]:
    """Copy everything the stage prints on stdout and stderr to `log_path(stage, parts)`, overwritten per run,
    after a header line (command, params file, start time) and up to a footer line (exit status, duration)."""
    global _active_log
    log = StageLog(log_path(stage, parts), stage, sys.stdout, sys.stderr)
    started = datetime.now().astimezone()
    log.open(f"# {command} | params {params_file} | started {started.isoformat(timespec='seconds')}\n")
    sys.stdout, sys.stderr = _Tee(log.console_out, log), _Tee(log.console_err, log)
    _active_log, status = log, 0
    try:
        yield log
    except typer.Exit as err:  # the stage has said what went wrong
        status = err.exit_code
        raise
    except BaseException as err:
        status = 1
        log.write("".join(traceback.format_exception(err)))  # the console gets the traceback from Python
        raise
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr, _active_log = log.console_out, log.console_err, None
        log.end(status)

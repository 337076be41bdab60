"""Segment a list of images into a mask store, in parallel, resumably."""

from __future__ import annotations

import multiprocessing as mp
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from ..images import load_rgb
from . import create_segmenter
from .base import MaskRequest, MissingMaskError, StretchedMaskWarning
from .store import MISSING, MaskStoreWriter, flag_of, resize_shorter

_WORKER = {}


@dataclass
class SegmentResult:
    n_new: int = 0
    n_reused: int = 0
    missing: list[str] = field(default_factory=list)
    stretched: list[str] = field(default_factory=list)  # masks of another aspect ratio than their image


class SegmenterWorkerError(RuntimeError):
    """A worker process could not build the segmenter, or died while segmenting."""


def _init_worker(name: str, cfg: dict, size: int) -> None:
    # An exception here would make the pool start a fresh worker, fail again, forever:
    # keep the message and raise it from the first task instead.
    try:
        _WORKER.update(segmenter=create_segmenter(name, **cfg), size=size, error="")
    except Exception as err:
        _WORKER.update(segmenter=None, size=size, error=f"{type(err).__name__}: {err}")


def _segment_one(request: MaskRequest):
    """(impath, stored mask or None if missing, area, flag, why missing, whether the mask was stretched)."""
    if _WORKER.get("error"):
        raise SegmenterWorkerError(f"a masks worker could not build the segmenter: {_WORKER['error']}")
    image = np.asarray(load_rgb(request.path))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", StretchedMaskWarning)
            mask = _WORKER["segmenter"].segment(image, request)
    except MissingMaskError as err:
        return request.impath, None, 1.0, MISSING, str(err), False
    for w in caught:  # anything else is the caller's to see
        if not issubclass(w.category, StretchedMaskWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    stretched = any(issubclass(w.category, StretchedMaskWarning) for w in caught)
    mask = np.asarray(mask, bool)
    if mask.shape != image.shape[:2]:
        raise ValueError(
            f"segmenter {_WORKER['segmenter'].name} returned a {mask.shape} mask for {request.path} ({image.shape[:2]})"
        )
    return request.impath, resize_shorter(mask, _WORKER["size"]), float(mask.mean()), flag_of(mask), "", stretched


def segment_all(
    requests: Iterable[MaskRequest],
    writer: MaskStoreWriter,
    name: str,
    cfg: dict,
    missing_policy: str = "fail",
    workers: int = 1,
    batch: int = 64,
    advance: Callable[[int], None] | None = None,
) -> SegmentResult:
    """Fill `writer` with a mask per request not already in it.

    missing_policy: `fail` collects every missing mask file (the caller raises,
    naming them) or `full` stores a full-image mask flagged as missing.
    """
    if missing_policy not in ("fail", "full"):
        raise ValueError(f"masks.missing must be 'fail' or 'full', got {missing_policy!r}")
    todo = [r for r in requests if r.impath not in writer.done]
    by_path = {r.impath: r for r in todo}
    result = SegmentResult(n_reused=len(writer.done))
    if advance and result.n_reused:
        advance(result.n_reused)
    rows = []

    def consume(out) -> None:
        impath, mask, area, flag, why, stretched = out
        if stretched:
            result.stretched.append(impath)
        if mask is None:
            result.missing.append(why)
            if missing_policy == "fail":
                return
            w, h = load_rgb(by_path[impath].path).size
            mask = resize_shorter(np.ones((h, w), bool), writer.size)
            area, flag = 1.0, MISSING
        rows.append((impath, mask, area, flag, stretched))
        result.n_new += 1
        if len(rows) >= batch:
            writer.add_batch(rows)
            rows.clear()
        if advance:
            advance(1)

    segmenter = create_segmenter(name, **cfg)  # a bad name or setting fails here, once, before any worker starts
    if workers <= 1 or not segmenter.parallel or len(todo) <= 1:
        _WORKER.update(segmenter=segmenter, size=writer.size, error="")
        for r in todo:
            consume(_segment_one(r))
    else:
        for out in _in_workers(todo, workers, name, cfg, writer.size):
            consume(out)
    writer.add_batch(rows)
    return result


def _in_workers(todo: list[MaskRequest], workers: int, name: str, cfg: dict, size: int) -> Iterator:
    """`_segment_one` of each request in a process pool, in order; any worker failure stops it all."""
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(name, cfg, size))
    try:
        yield from pool.map(_segment_one, todo, chunksize=8)
    except BrokenProcessPool as err:
        raise SegmenterWorkerError(
            f"a masks worker process died ({err}); the masks done so far are kept, "
            "re-run to resume (fewer masks.workers if it ran out of memory)"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # workers finish their chunk, then let go of the files

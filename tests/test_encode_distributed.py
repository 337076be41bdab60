"""Encoding on several processes with torchrun: each rank a shard, rank 0 joins them into the one file."""

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from pipeline.features.encoded import EncodedViews
from pipeline.features.shards import shard_range
from stages import encode
from tests.tiny_project import ROOT, built_project


@pytest.mark.parametrize("n,batch,world", [(12, 4, 2), (13, 4, 3), (3, 4, 2), (0, 4, 2), (100, 7, 4), (5, 1, 8)])
def test_shards_are_whole_batches_covering_every_item_once(n, batch, world):
    ranges = [shard_range(n, batch, rank, world) for rank in range(world)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    for (_, stop), (start, _) in zip(ranges, ranges[1:]):
        assert stop == start  # contiguous, no overlap, in rank order
    for start, stop in ranges:
        assert start % batch == 0 and (stop == n or stop % batch == 0)  # a shard's batches are the run's batches


def _contents(path):
    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        attrs = dict(f.attrs)
    return found, attrs


def test_two_gloo_processes_write_the_one_process_file_bit_for_bit(tmp_path):
    # One thread in every process: a convolution's float sums may group differently with another thread count.
    with built_project(tmp_path, backbones=(), **{"runtime.threads": 1}) as root:
        encode.run("synthetic")
        path = root / "data/encoded/synthetic.h5"
        single, single_attrs = _contents(path)
        path.unlink()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
        done = subprocess.run(
            [*launch, "-m", "stages.cli", "encode", "synthetic"], cwd=root, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "joined 2 parts" in done.stdout
        joined, joined_attrs = _contents(path)
        assert not (root / "data/encoded/synthetic.h5.parts").exists()
        assert (root / "data/logs/encode/synthetic_rank1.log").is_file()  # each rank logs to its own file
    assert set(joined) == set(single)
    for name in single:
        assert single[name].dtype == joined[name].dtype and np.array_equal(single[name], joined[name]), name
    assert joined_attrs == single_attrs  # the one-process run's fingerprint: a later resume or check agrees
    assert len(EncodedViews(path).train_paths) == 12  # the reader accepts it

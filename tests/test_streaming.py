"""Streamed feature files: heads and evaluation read image features from disk batch by batch and block by block,
with the same weights and metrics as holding the file in memory, and memory that does not grow with the file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pipeline.features.run_features import RunFeatures, load_run_features, write_run_features
from pipeline.features.schema import FeatureFileError, NonFiniteFeaturesError
from pipeline.heads.config import HeadsConfig
from pipeline.heads.evaluate import (
    EpochReadings,
    backbone_epoch_readings,
    evaluate,
    evaluate_transfer,
    shift_index,
)
from pipeline.heads.train import train_heads

ROOT = Path(__file__).resolve().parents[1]
# members with their own tau_d, so a metric computed at the first member's tau for every member would show
CONFIGS = [HeadsConfig(epochs=3, batch_size=4, seed=1), HeadsConfig(epochs=3, batch_size=4, seed=1, tau_d=2.5)]


def write_features(path: Path, kind: str, seed: int = 0, n_cls: int = 6, shots: int = 5, views: int = 3, m: int = 23):
    """A float16 feature file: `shared` (CoOp-like: CLIP's image features are the backbone's) or `mmrl` (its own
    image path, CLIP's features stored apart, a representation feature mixed into the base branch)."""
    rng = np.random.default_rng(seed)
    d = 16
    proto = rng.normal(size=(n_cls, d))
    label = np.repeat(np.arange(n_cls // 2), shots)
    test_label = rng.integers(0, n_cls, m)

    def unit(*shape, around=None, noise=1.0):
        x = (0 if around is None else around) + noise * rng.normal(size=(*shape, d))
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    arrays = {
        "train/feat_full": unit(views, len(label), around=proto[label][None], noise=1.5),
        "train/feat_fg": unit(views, len(label), around=proto[label][None], noise=0.7),
        "train/area": rng.uniform(0.01, 0.9, (views, len(label))),
        "train/label": label,
        "test/feat": unit(m, around=proto[test_label], noise=1.5),
        "test/feat_fg": unit(m, around=proto[test_label]),
        "test/area": rng.uniform(0.1, 0.9, m),
        "test/has_fg": rng.random(m) > 0.2,
        "test/label": test_label,
        "test/subset": (test_label >= n_cls // 2).astype(np.int64),
        "text/backbone": unit(n_cls, around=proto, noise=0.3),
        "text/clip": unit(n_cls, around=proto, noise=0.5),
        "text/backbone_by_epoch": np.stack([unit(n_cls, around=proto, noise=0.6) for _ in range(2)]),
    }
    attrs = {
        "classnames": [f"c{i}" for i in range(n_cls)],
        "base": list(range(n_cls // 2)),
        "new": list(range(n_cls // 2, n_cls)),
        "logit_scale": 20.0,
        "shares_clip_image": kind == "shared",
    }
    if kind == "mmrl":
        arrays |= {
            "train/clip_full": unit(views, len(label), around=proto[label][None], noise=2.0),
            "test/clip": unit(m, around=proto[test_label], noise=2.0),
            "train/rep_full": unit(views, len(label), around=proto[label][None]),
            "train/rep_fg": unit(views, len(label), around=proto[label][None]),
            "test/rep": unit(m, around=proto[test_label]),
            "test/rep_fg": unit(m, around=proto[test_label]),
        }
        attrs["rep_weight"] = 0.3
    write_run_features(path, arrays, attrs)  # float16, as the features stage stores them
    return path


def _state(model) -> dict:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("kind", ["shared", "mmrl"])
def test_streamed_files_train_the_same_weights_and_evaluate_the_same(tmp_path, kind):
    """Two seeds' files x two configs stacked, as the heads stage trains them; blocks of 4 images (23 test and 15
    training images), so every block boundary is crossed and the last blocks are short."""
    paths = [write_features(tmp_path / f"s{s}.h5", kind, seed=s) for s in (1, 2)]
    held = [RunFeatures(p) for p in paths]
    streamed = [RunFeatures(p, stream=True, block_rows=4 * 3) for p in paths]  # 3 views: 4 training images
    files = lambda fs: [fs[0], fs[0], fs[1], fs[1]]  # noqa: E731
    model_a, logs_a = train_heads(files(held), CONFIGS * 2)
    model_b, logs_b = train_heads(files(streamed), CONFIGS * 2, epoch_readings=EpochReadings(files(streamed)))
    for name, value in _state(model_a).items():
        assert torch.equal(value, _state(model_b)[name]), name
    for a, b in zip(logs_a, logs_b):
        assert [row["loss"] for row in a] == [row["loss"] for row in b]
    for f_held, f_streamed in zip(held, streamed):
        want, got = evaluate(model_a, f_held), evaluate(model_b, f_streamed)
        for w, g in zip(want, got):
            assert w.keys() == g.keys()
            accuracies = lambda row: {k: v for k, v in row.items() if k.startswith(("clip.", "backbone.", "fvgpt."))}  # noqa: E731
            assert accuracies(g) == accuracies(w)
            assert g.pop("gate.r_hist") == w.pop("gate.r_hist")
            assert g == pytest.approx(w, rel=1e-5)
        for branch in ("base", "new"):
            _same_rows(evaluate_transfer(model_b, f_streamed, branch), evaluate_transfer(model_a, f_held, branch))
        _same_rows(backbone_epoch_readings(f_streamed, 1.0), backbone_epoch_readings(f_held, 1.0))
    # the readings read block by block equal the batched pass over files in memory
    _same_rows(EpochReadings(files(streamed))(model_b), EpochReadings(files(held))(model_a))


def _same_rows(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        assert g.keys() == w.keys() and g == pytest.approx(w, rel=1e-5)


def test_an_empty_test_split_evaluates_to_nan_in_either_mode(tmp_path):
    path = write_features(tmp_path / "f.h5", "shared", m=0)
    for feats in (RunFeatures(path), RunFeatures(path, stream=True)):
        model, _ = train_heads(feats, [HeadsConfig(epochs=1)], epoch_readings=EpochReadings([feats]))
        row = evaluate(model, feats)[0]
        assert np.isnan(row["fvgpt.base"]) and np.isnan(row["backbone.new"]) and "shift.backbone.base" not in row
        assert np.isnan(evaluate_transfer(model, feats, "new")[0]["fvgpt.acc"])


def test_a_file_with_its_own_image_features_but_not_clips_is_refused_on_open(tmp_path):
    path = write_features(tmp_path / "f.h5", "mmrl")
    with h5py.File(path, "a") as f:
        del f["test/clip"]
    for stream in (False, True):
        with pytest.raises(FeatureFileError, match=r"has its own image features but lacks CLIP's \['test/clip'\]"):
            RunFeatures(path, stream=stream)


def test_a_missing_file_names_the_stage_to_run(tmp_path):
    with pytest.raises(FeatureFileError, match="not found: run the features stage"):
        load_run_features(tmp_path / "absent.h5", memory_mb=1)


def test_a_streamed_file_keeps_no_image_features_in_memory(tmp_path):
    feats = RunFeatures(write_features(tmp_path / "f.h5", "mmrl"), stream=True)
    assert not hasattr(feats, "feat_full") and not hasattr(feats, "test_feat")
    assert (feats.views, feats.n_train, feats.width) == (3, 15, 16)


def test_load_streams_a_file_over_the_memory_setting(tmp_path):
    path = write_features(tmp_path / "f.h5", "shared")  # 3 x 15 x 16 x 2 + ... float32 values: about 0.01 MB
    assert not load_run_features(path, memory_mb=0).streamed
    assert not load_run_features(path, memory_mb=1).streamed
    assert load_run_features(path, memory_mb=0.001).streamed


def test_a_nan_met_while_streaming_names_the_file_and_dataset(tmp_path):
    path = write_features(tmp_path / "f.h5", "shared")
    with h5py.File(path, "a") as f:
        f["train/feat_fg"][1, 7, 3] = np.nan  # a valid checksum over a bad value
    feats = RunFeatures(path, stream=True)  # opening reads no image feature
    with pytest.raises(NonFiniteFeaturesError, match=r"f\.h5.*train/feat_fg"):
        train_heads(feats, [HeadsConfig(epochs=3)])


def test_a_corrupt_chunk_met_while_streaming_names_the_file_and_dataset(tmp_path):
    path = write_features(tmp_path / "f.h5", "shared")
    with h5py.File(path, "r") as f:
        offset = f["test/feat"].id.get_chunk_info(1).byte_offset
    with open(path, "r+b") as raw:
        raw.seek(offset + 3)
        byte = raw.read(1)
        raw.seek(offset + 3)
        raw.write(bytes([byte[0] ^ 0xFF]))
    feats = RunFeatures(path, stream=True)
    model, _ = train_heads(feats, [HeadsConfig(epochs=1)])  # training reads no test feature
    with pytest.raises(FeatureFileError, match=r"f\.h5: cannot read test/feat"):
        evaluate(model, feats)


def _probe(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "memory_probe.py"), *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out) if out.strip() else {}


def test_streamed_memory_does_not_grow_with_the_file(tmp_path):
    """Heads + evaluation on files of 20k and 80k training images (about 170 and 690 MB of image features as
    float32): held in memory, the peak over the imports follows the file; streamed, it stays below half of that
    and grows by less than a quarter as much (blocks of test images fill up, then nothing grows)."""
    peaks = {}
    for images in (20_000, 80_000):
        path = tmp_path / f"f{images}.h5"
        _probe("write", str(path), "--images", str(images))
        for stream in (True, False):
            r = _probe("run", str(path), *(["--stream"] if stream else []))
            peaks[images, stream] = r["rss_peak_mb"] - r["rss_imports_mb"]
        features_mb = r["features_mb"]
        path.unlink()
    assert peaks[80_000, False] > features_mb  # held: the whole file, as float32
    assert peaks[80_000, True] < 0.5 * peaks[80_000, False]
    assert peaks[80_000, True] - peaks[20_000, True] < 0.25 * (peaks[80_000, False] - peaks[20_000, False])


def test_the_new_classes_shift_index_of_an_own_encoder_file_is_the_class_tokens(tmp_path):
    """MMRL-like file: the backbone's shift index on new classes compares its class-token logits on full and
    foreground views (test/feat, test/feat_fg), not the fused base-branch features; checked against the stored
    arrays directly, in both modes."""
    path = write_features(tmp_path / "f.h5", "mmrl")
    with h5py.File(path, "r") as f:
        raw = {
            k: torch.nn.functional.normalize(torch.from_numpy(f[k][()]).float(), dim=-1)
            for k in ("test/feat", "test/feat_fg", "text/backbone")
        }
        keep = torch.from_numpy((f["test/subset"][()] == 1) & f["test/has_fg"][()])
    feats = RunFeatures(path)
    g = raw["text/backbone"][torch.tensor(feats.new)]
    z, z_fg = (feats.logit_scale * raw[k][keep] @ g.t() for k in ("test/feat", "test/feat_fg"))
    model, _ = train_heads(feats, [HeadsConfig(epochs=1, tau_d=2.0)])
    want = shift_index(z, z_fg, 2.0)
    for f in (feats, RunFeatures(path, stream=True, block_rows=5)):
        assert evaluate(model, f)[0]["shift.backbone.new"] == pytest.approx(want, rel=1e-4)

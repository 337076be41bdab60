"""Fault injection: bad inputs and broken files must fail early with one clear message, never reach a result.

Each test builds the fault on tiny data: a crafted pickle, a 16-bit image,
a truncated or bit-flipped HDF5 file, a NaN row, a junk checkpoint, a
read-only folder, a full disk, a killed process. README.md ("What the
fault tests guarantee") lists what they check.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from pipeline.datasets import load_dataset
from pipeline.datasets.fewshot import FewShotPickleError, select_fewshot
from pipeline.features.encoded import EncodedViews, FeatureFileError, NonFiniteFeaturesError, encode_views
from pipeline.features.run_features import RunFeatures
from pipeline.images import ImageReadError, load_rgb
from pipeline.manifest import read_prepared
from pipeline.masks import MaskRequest
from pipeline.masks.segment_all import SegmenterWorkerError, segment_all
from pipeline.masks.store import MaskStore, MaskStoreError, MaskStoreWriter
from pipeline.models import load_clip
from tests.test_datasets import make_pets
from tests.tiny_project import ROOT, built_project, write_params

# --- few-shot pickles: no code runs from a dataset file --------------------------------------------------------------


class _Exploit:
    """Unpickling this calls `target(arg)`: the shape of every pickle exploit."""

    def __init__(self, target, arg):
        self.target, self.arg = target, arg

    def __reduce__(self):
        return self.target, (self.arg,)


def _fake_dassl_datum(monkeypatch):
    """Dassl's Datum class under its real module name, so pickles reference it as Dassl's do."""
    mod = types.ModuleType("dassl.data.datasets.base_dataset")

    class Datum:
        def __init__(self, impath, label, classname):
            self._impath, self._label, self._classname, self._domain = impath, label, classname, 0

    Datum.__module__, Datum.__qualname__ = mod.__name__, "Datum"
    mod.Datum = Datum
    for name in ("dassl", "dassl.data", "dassl.data.datasets"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return Datum


def _write_fewshot_pickle(root, blob, protocol=pickle.HIGHEST_PROTOCOL, shots=1, seed=1):
    (root / "split_fewshot").mkdir(exist_ok=True)
    path = root / "split_fewshot" / f"shot_{shots}-seed_{seed}.pkl"
    path.write_bytes(pickle.dumps(blob, protocol=protocol))
    return path


@pytest.fixture
def pets(tmp_path):
    make_pets(tmp_path, n_classes=3, per_class=3)
    return load_dataset("oxford_pets", tmp_path)


def _one_per_class(Datum, data, split="train"):
    items = getattr(data, split)
    firsts = {}
    for it in items:
        firsts.setdefault(it.label, it)
    return [Datum(f"/home/author/DATA/oxford_pets/{it.impath}", it.label, it.classname) for it in firsts.values()]


@pytest.mark.parametrize(
    "target,arg",
    [
        (eval, "__import__('pathlib').Path('PWNED').touch()"),
        (exec, "import pathlib; pathlib.Path('PWNED').touch()"),
        (__import__, "os"),
        (getattr, "x"),
    ],
)
def test_malicious_fewshot_pickle_is_refused_and_runs_nothing(pets, monkeypatch, tmp_path, target, arg):
    monkeypatch.chdir(tmp_path)
    path = _write_fewshot_pickle(pets.root, {"train": [_Exploit(target, arg)], "val": []})
    with pytest.raises(FewShotPickleError, match=rf"refusing to load builtins\.{target.__name__}.*delete it") as caught:
        select_fewshot(pets, 1, 1)
    assert str(caught.value).startswith(str(path)) and not (tmp_path / "PWNED").exists()


def test_pickle_naming_another_module_is_refused(pets):
    import os

    _write_fewshot_pickle(pets.root, {"train": [_Exploit(os.system, "true")]})
    with pytest.raises(FewShotPickleError, match=r"refusing to load (posix|nt)\.system"):
        select_fewshot(pets, 1, 1)


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_genuine_dassl_pickle_loads_under_every_protocol(pets, monkeypatch, protocol):
    Datum = _fake_dassl_datum(monkeypatch)
    blob = {"train": _one_per_class(Datum, pets), "val": _one_per_class(Datum, pets, "val")}
    _write_fewshot_pickle(pets.root, blob, protocol)
    monkeypatch.undo()  # loading needs no Dassl
    train, val = select_fewshot(pets, 1, 1)
    assert [pets.train[i].label for i in train] == [0, 1, 2] and len(val) == 3


def test_empty_or_partial_selection_is_refused(pets, monkeypatch):
    Datum = _fake_dassl_datum(monkeypatch)
    _write_fewshot_pickle(pets.root, {"train": [], "val": []})
    with pytest.raises(FewShotPickleError, match="train selection is empty"):
        select_fewshot(pets, 1, 1)
    _write_fewshot_pickle(
        pets.root, {"train": _one_per_class(Datum, pets)[:2], "val": _one_per_class(Datum, pets, "val")}
    )
    with pytest.raises(FewShotPickleError, match=r"no image of 1 classes, e.g. \['breed_2'\]"):
        select_fewshot(pets, 1, 1)
    _write_fewshot_pickle(pets.root, ["not", "a", "selection"])
    with pytest.raises(FewShotPickleError, match="not a Dassl few-shot pickle"):
        select_fewshot(pets, 1, 1)
    (pets.root / "split_fewshot" / "shot_1-seed_1.pkl").write_bytes(b"\x80\x05garbage")
    with pytest.raises(FewShotPickleError, match="not a readable few-shot pickle"):
        select_fewshot(pets, 1, 1)


# --- image modes: every mode a dataset may hold reads as the picture it is ------------------------------------------


def _ramp_image(mode: str) -> Image.Image:
    """A 2x4 picture whose left half is dark (20 %) and right half bright (80 %), in `mode`."""
    level = np.array([[0.2, 0.2, 0.8, 0.8]] * 2)
    grey = Image.fromarray(np.round(level * 255).astype(np.uint8))
    if mode == "1":
        return Image.fromarray(level > 0.5)
    if mode == "P":
        im = Image.fromarray(np.round(level * 255).astype(np.uint8), "L").convert("P")
        im.putpalette([v for i in range(256) for v in (i, i, i)])
        return im
    if mode in ("LA", "RGBA"):
        base = grey if mode == "LA" else grey.convert("RGB")
        return Image.merge(mode, (*base.split(), Image.new("L", grey.size, 255)))
    if mode == "CMYK":
        zero = Image.new("L", grey.size, 0)
        return Image.merge("CMYK", (zero, zero, zero, Image.fromarray(255 - np.asarray(grey))))
    if mode == "I;16":
        return Image.fromarray(np.round(level * 65535).astype(np.uint16))
    if mode == "I":
        return Image.fromarray(np.round(level * 65535).astype(np.int32))
    if mode == "F":
        return Image.fromarray(level.astype(np.float32))
    return grey


@pytest.mark.parametrize(
    "mode,suffix",
    [
        ("1", ".png"),
        ("L", ".png"),
        ("LA", ".png"),
        ("P", ".png"),
        ("RGBA", ".png"),
        ("CMYK", ".tif"),
        ("I;16", ".png"),
        ("I", ".tif"),
        ("F", ".tif"),
    ],
)
def test_every_image_mode_reads_as_its_picture(tmp_path, mode, suffix):
    path = tmp_path / f"img{suffix}"
    _ramp_image(mode).save(path)
    with Image.open(path) as im:
        assert im.mode == mode  # the file really is in the mode under test
    rgb = np.asarray(load_rgb(path))
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 4, 3)
    dark, bright = rgb[:, :2].mean(), rgb[:, 2:].mean()
    expected = (0, 255) if mode == "1" else (51, 204)
    assert abs(dark - expected[0]) <= 2 and abs(bright - expected[1]) <= 2, (mode, dark, bright)


def test_wide_int_and_float_images_scale_by_their_range(tmp_path):
    Image.fromarray(np.array([[10, 200]], np.int32)).save(tmp_path / "i8.tif")  # 32-bit file, 8-bit values
    Image.fromarray(np.array([[0.0, 100.0]], np.float32)).save(tmp_path / "f.tif")  # float in 0..255
    assert np.asarray(load_rgb(tmp_path / "i8.tif"))[0, :, 0].tolist() == [10, 200]
    assert np.asarray(load_rgb(tmp_path / "f.tif"))[0, :, 0].tolist() == [0, 100]


def test_unreadable_image_is_one_error_naming_it(tmp_path):
    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(ImageReadError, match="cut.png"):
        load_rgb(tmp_path / "cut.png")


# --- masks: a segmenter that cannot be built, or a worker that dies, stops the stage -------------------------------


@contextlib.contextmanager
def deadline(seconds: int):
    """Turn a hang into a failure: raise TimeoutError in the main thread after `seconds`."""

    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _mask_requests(root, n=4):
    (root / "img").mkdir(exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), 12 * i, np.uint8)).save(root / "img" / f"{i}.png")
    return [MaskRequest(str(root), f"img/{i}.png", "c") for i in range(n)]


@pytest.mark.parametrize(
    "name,cfg,message",
    [("nope", {}, "unknown segmenter 'nope'"), ("seem", {}, "masks.seem.checkpoint and masks.seem.config must be set")],
)
def test_segmenter_that_cannot_be_built_fails_at_once_with_workers(tmp_path, name, cfg, message):
    writer = MaskStoreWriter(tmp_path / "m.h5", 8, {"fingerprint": "x"})
    with deadline(20), pytest.raises((KeyError, ValueError), match=message):
        segment_all(_mask_requests(tmp_path), writer, name, cfg, workers=2)
    writer.close()


def test_worker_that_cannot_build_the_segmenter_stops_the_stage(tmp_path, monkeypatch):
    import multiprocessing

    import pipeline.masks.segment_all as sa

    real = sa.create_segmenter

    def fails_in_workers(name, **cfg):
        if multiprocessing.parent_process() is not None:
            raise MemoryError("no room for the model in this worker")
        return real(name, **cfg)

    monkeypatch.setattr(sa, "create_segmenter", fails_in_workers)
    writer = MaskStoreWriter(tmp_path / "m.h5", 8, {"fingerprint": "x"})
    with deadline(20), pytest.raises(SegmenterWorkerError, match="MemoryError: no room for the model"):
        segment_all(_mask_requests(tmp_path), writer, "center", {}, workers=2)
    writer.close()


def test_killed_worker_stops_the_stage_and_a_rerun_completes(tmp_path, monkeypatch):
    import multiprocessing

    from pipeline.masks.center import CenterBox

    def dies_in_a_worker_on_the_last_image(self, image, request):
        if request.impath.endswith("19.png") and multiprocessing.parent_process() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        return np.ones(image.shape[:2], bool)

    requests = _mask_requests(tmp_path, 20)
    with monkeypatch.context() as m:
        m.setattr(CenterBox, "segment", dies_in_a_worker_on_the_last_image)
        writer = MaskStoreWriter(tmp_path / "m.h5", 8, {"fingerprint": "x"})
        with deadline(20), pytest.raises(SegmenterWorkerError, match="worker process died.*re-run to resume"):
            segment_all(requests, writer, "center", {}, workers=2, batch=1)
        writer.close()
    assert not (tmp_path / "m.h5").exists()
    writer = MaskStoreWriter(tmp_path / "m.h5", 8, {"fingerprint": "x"})
    segment_all(requests, writer, "center", {}, workers=2, batch=1)
    assert sorted(MaskStore(writer.finish()).impaths) == sorted(r.impath for r in requests)


# --- features: NaN rows, flipped bytes and truncation never reach a metric ------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """prepare, masks, backbone, encode and features of the tiny synthetic benchmark (zero-shot backbone)."""
    with built_project(tmp_path_factory.mktemp("faults"), with_features=True, **TINY) as root:
        yield root


# Smaller still than the other stage tests (one test image per class, no IoU comparison): encode runs often here.
TINY = {
    "heads.epochs": 1,
    "masks.compare": [],
    "prepare.synthetic": {
        "image_size": 32,
        "train_per_class": 4,
        "val_per_class": 1,
        "test_per_class": 1,
        "n_shapes": 2,
        "n_colours": 3,
    },
}
DUMP = "data/features/synthetic/zsclip/seed1.h5"
ENCODED = "data/encoded/synthetic.h5"
MASKS = "data/masks/synthetic.h5"


@pytest.fixture
def copy_of(project, tmp_path):
    """`copy_of(relative path)`: a scratch copy of one of the project's files to break."""

    def make(rel: str):
        dst = tmp_path / Path(rel).name
        shutil.copy(project / rel, dst)
        return dst

    return make


def _set_nan(path, key, index):
    with h5py.File(path, "a") as f:
        values = f[key][:]
        values[index] = np.nan
        f[key][...] = values


@pytest.mark.parametrize(
    "key,index,rows",
    [
        ("text/backbone", (0, 3), "1 of 6 rows"),
        ("test/feat", (4, 0), "1 of 6 rows"),
        ("train/feat_fg", (1, 2, 5), "1 of 6 rows"),
        ("train/area", (0, 1), "1 of 6 rows"),
    ],
)
def test_nan_in_a_feature_file_is_refused_naming_dataset_and_rows(copy_of, key, index, rows):
    path = copy_of(DUMP)
    _set_nan(path, key, index)
    with pytest.raises(NonFiniteFeaturesError, match=rf"{path.name}: non-finite .* in {key} \({rows}\)"):
        RunFeatures(path)


def test_nan_in_the_encodings_is_refused(copy_of):
    path = copy_of(ENCODED)
    _set_nan(path, "test/feat_fg", (2, 7))
    with pytest.raises(NonFiniteFeaturesError, match=r"test/feat_fg \(1 of 6 rows\)"):
        EncodedViews(path)


def test_test_area_is_nan_by_design_where_there_is_no_mask(copy_of):
    path = copy_of(DUMP)
    with h5py.File(path, "a") as f:
        f["test/has_fg"][0] = False
    _set_nan(path, "test/area", 0)
    assert not RunFeatures(path).test_has_fg[0]


def _flip_a_byte(path, key):
    """Flip the low (mantissa) byte of one stored value: a silent change, never a NaN."""
    with h5py.File(path, "r") as f:
        info = f[key].id.get_chunk_info(0)
    offset = info.byte_offset + (info.size // 2) // 4 * 4
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([byte ^ 0x01]))


@pytest.mark.parametrize(
    "rel,key,reader",
    [(DUMP, "test/feat", "features"), (DUMP, "text/backbone", "features"), (ENCODED, "train/feat_full", "encode")],
)
def test_flipped_byte_fails_the_checksum(copy_of, rel, key, reader):
    path = copy_of(rel)
    _flip_a_byte(path, key)
    with pytest.raises(FeatureFileError, match=rf"{path.name}: cannot read {key} \(corrupt.*re-run the {reader} stage"):
        RunFeatures(path) if reader == "features" else EncodedViews(path)


def test_flipped_byte_in_the_mask_store_fails_the_checksum(copy_of):
    path = copy_of(MASKS)
    _flip_a_byte(path, "packed")
    with pytest.raises(MaskStoreError, match=rf"{path.name} is not a readable mask store.*re-run the masks stage"):
        MaskStore(path)


@pytest.mark.parametrize("rel", [DUMP, ENCODED, MASKS])
def test_truncated_file_names_itself_and_the_stage(copy_of, rel):
    path = copy_of(rel)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    reader = {DUMP: RunFeatures, ENCODED: EncodedViews, MASKS: MaskStore}[rel]
    stage = {DUMP: "features", ENCODED: "encode", MASKS: "masks"}[rel]
    with pytest.raises(
        (FeatureFileError, MaskStoreError), match=rf"{path.name} is not a readable .*re-run the {stage} stage"
    ):
        reader(path)


def test_encoder_nan_is_never_committed(project, tmp_path):
    from pipeline.config import EncodeConfig
    from pipeline.features.views_dataset import view_sets

    prep = read_prepared(project / "data/prepared/synthetic")
    clip = load_clip("fvgpt-test-rn", "")
    train, test = view_sets(prep, MaskStore(project / MASKS), [1], EncodeConfig(views=2), 32, clip.mean, clip.std)
    calls = []

    def nan_on_second_batch(x):
        calls.append(len(x))
        out = torch.nn.functional.normalize(clip.model.encode_image(x), dim=-1)
        return out * float("nan") if len(calls) == 2 else out

    with pytest.raises(
        NonFiniteFeaturesError, match=r"a\.h5\.partial: the image encoder gave NaN or inf for 2 of 2 train"
    ):
        encode_views(
            tmp_path / "a.h5", train, test, nan_on_second_batch, 32, {"fingerprint": "f"}, "float32", batch_images=2
        )
    assert not (tmp_path / "a.h5").exists()
    with h5py.File(tmp_path / "a.h5.partial") as f:
        assert f.attrs["done_train"] == 2 and np.isfinite(f["train/feat_full"][:, :2]).all()


def test_diverging_heads_loss_stops_training(project, monkeypatch):
    from pipeline.heads.config import HeadsConfig
    from pipeline.heads.model import FVGPTHeads
    from pipeline.heads.train import NonFiniteLossError, train_heads

    real = FVGPTHeads.losses

    def overflowing(self, *args):
        loss, parts = real(self, *args)
        return loss, {**parts, "loss": parts["loss"] * float("inf")}

    monkeypatch.setattr(FVGPTHeads, "losses", overflowing)
    with pytest.raises(NonFiniteLossError, match=r"seed1\.h5: the heads' loss is inf at epoch 1 .*lower heads.lr"):
        train_heads(RunFeatures(project / DUMP), [HeadsConfig(epochs=2)])


def test_run_features_with_nan_text_features_are_never_written(project, tmp_path):
    from pipeline.features.run_features import write_run_features

    dump = RunFeatures(project / DUMP)
    with h5py.File(project / DUMP) as f:
        arrays = {
            k: f[k][:]
            for k in ("train/feat_full", "train/area", "test/feat", "test/area", "test/has_fg", "text/backbone")
        }
    arrays["text/backbone"][2, 0] = np.inf
    with pytest.raises(
        NonFiniteFeaturesError, match=r"out\.h5: non-finite .* in text/backbone \(1 of 6 rows\); nothing was written"
    ):
        write_run_features(tmp_path / "out.h5", arrays, dict(dump.attrs))
    assert not list(tmp_path.iterdir())


# --- kill -9 and resume: no half file at a final path; a resumed run equals a fresh one, even after inputs changed --


@pytest.fixture
def scratch(project, tmp_path, monkeypatch):
    """A private copy of the tiny project (its data and params) to kill stages in."""
    for rel in ("params.yaml", "data/prepared", "data/masks", "data/backbones", "data/encoded"):
        (shutil.copytree if (project / rel).is_dir() else shutil.copy)(project / rel, tmp_path / rel)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def kill_9_during(stage_call: str, patch: str) -> None:
    """Run `patch` then `stage_call` in a fresh interpreter that SIGKILLs itself where `patch` says."""
    code = f"import os, signal\nkill = lambda: os.kill(os.getpid(), signal.SIGKILL)\n{patch}\n{stage_call}\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


def h5_arrays(path) -> dict:
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same_content(a, b) -> None:
    x, y = h5_arrays(a), h5_arrays(b)
    assert x.keys() == y.keys()
    for key in x:
        assert np.array_equal(x[key], y[key], equal_nan=x[key].dtype.kind == "f"), key


def fresh_copy_of(path, rerun) -> Path:
    """Move `path` aside, build it again from scratch with `rerun()`, return the aside copy."""
    aside = path.with_name("resumed_" + path.name)
    shutil.move(path, aside)
    rerun()
    return aside


KILL_ENCODE_ON_THIRD_BATCH = """
import open_clip
real, calls = open_clip.CLIP.encode_image, []
def dying(self, x, *a, **k):
    calls.append(1)
    if len(calls) == 3:
        kill()
    return real(self, x, *a, **k)
open_clip.CLIP.encode_image = dying
"""


def _encode_killed_then(change=None, kill_9: bool = False) -> tuple[Path, int]:
    """Kill encode after two committed batches, apply `change`, resume; returns the file and its image count.

    kill_9 kills the process for real; otherwise an interrupt stops it in this
    process (quicker, and the same to the resume logic, which only sees files).
    """
    from stages import encode

    out = Path(ENCODED)
    out.unlink(missing_ok=True)
    if kill_9:
        kill_9_during("from stages import encode; encode.run('synthetic')", KILL_ENCODE_ON_THIRD_BATCH)
    else:
        _interrupt_encode_on_third_batch()
    assert not out.exists() and out.with_name(out.name + ".partial").exists()
    if change:
        change()
    with h5py.File(out.with_name(out.name + ".partial")) as f:
        assert f.attrs["done_train"] > 0  # rows that a resume could (wrongly) keep
    encode.run("synthetic")
    with h5py.File(out) as f:
        total = len(f["train/impath"]) + len(f["test/impath"])
    return out, total


def _interrupt_encode_on_third_batch() -> None:
    import open_clip

    from stages import encode

    real, calls = open_clip.CLIP.encode_image, []

    def interrupted(self, x, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, x, *a, **k)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(open_clip.CLIP, "encode_image", interrupted)
        with pytest.raises(KeyboardInterrupt):
            encode.run("synthetic")


def _images_encoded(output: str) -> int:
    return int(re.findall(r"views of (\d+) images", output)[-1])


def test_kill_9_during_encode_resumes_bit_identically(scratch, capsys):
    from stages import encode

    out, total = _encode_killed_then(kill_9=True)
    assert 0 < _images_encoded(capsys.readouterr().out) < total  # the committed batches were kept
    assert_same_content(fresh_copy_of(out, lambda: encode.run("synthetic")), out)


# After a change of input, a resumed run must encode every image again: a kept row would hold the old input.


def test_encode_resume_after_the_masks_changed_keeps_no_old_row(scratch, capsys):
    from stages import masks

    def new_masks():
        write_params(scratch, **TINY, **{"masks.segmenter": "center"})
        masks.run("synthetic")

    _, total = _encode_killed_then(new_masks)
    assert _images_encoded(capsys.readouterr().out) == total


def test_encode_resume_after_an_image_changed_keeps_no_old_row(scratch, capsys):
    def replace_an_image():
        prep = read_prepared("data/prepared/synthetic")
        image = prep.root / prep.fewshot_train(1).impath[0]
        os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))

    _, total = _encode_killed_then(replace_an_image)
    assert _images_encoded(capsys.readouterr().out) == total


def test_encode_resume_after_the_checkpoint_changed_keeps_no_old_row(scratch, capsys):
    import open_clip

    from pipeline.models import save_checkpoint

    ckpt = scratch / "data/models/clip.pt"

    def weights(seed):
        torch.manual_seed(seed)
        save_checkpoint(open_clip.create_model("fvgpt-test-rn"), ckpt, "fvgpt-test-rn")

    weights(1)
    write_params(scratch, **TINY, **{"clip.pretrained": str(ckpt)})
    _, total = _encode_killed_then(lambda: weights(2))  # same path, new bytes
    assert _images_encoded(capsys.readouterr().out) == total


def test_encode_partial_of_other_images_is_not_resumed(project, tmp_path):
    from pipeline.config import EncodeConfig
    from pipeline.features.views_dataset import view_sets

    prep = read_prepared(project / "data/prepared/synthetic")
    clip = load_clip("fvgpt-test-rn", "")
    train, test = view_sets(prep, MaskStore(project / MASKS), [1], EncodeConfig(views=2), 32, clip.mean, clip.std)
    encode = lambda x: torch.nn.functional.normalize(clip.model.encode_image(x), dim=-1)  # noqa: E731

    def dies_after_first_batch(x, calls=[]):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return encode(x)

    with pytest.raises(KeyboardInterrupt):
        encode_views(
            tmp_path / "a.h5", train, test, dies_after_first_batch, 32, {"fingerprint": "f"}, "float32", batch_images=2
        )
    train.impaths.reverse()  # same count, same settings, other order: the committed rows are other images
    stats = encode_views(tmp_path / "a.h5", train, test, encode, 32, {"fingerprint": "f"}, "float32", batch_images=2)
    assert stats.images == len(train) + len(test)  # nothing kept: every row holds the image its path names
    assert EncodedViews(tmp_path / "a.h5").train_paths == train.impaths


KILL_MASKS_AFTER_FIVE = """
import pipeline.masks.segment_all as sa
from pipeline.masks.precomputed import GroundTruth
sa.segment_all.__defaults__ = ("fail", 1, 2, None)  # commit every 2 masks
real, seen = GroundTruth.segment, []
def dying(self, image, request):
    seen.append(1)
    if len(seen) == 6:
        kill()
    return real(self, image, request)
GroundTruth.segment = dying
"""


def _masks_killed_then(change=None) -> dict:
    from stages import masks

    out = Path(MASKS)
    out.unlink()
    kill_9_during("from stages import masks; masks.run('synthetic')", KILL_MASKS_AFTER_FIVE)
    assert not out.exists() and out.with_name(out.name + ".partial").exists()
    if change:
        change()
    masks.run("synthetic")
    return json.loads(Path("reports/masks/synthetic.json").read_text())


def test_kill_9_during_masks_resumes_bit_identically(scratch):
    from stages import masks

    assert _masks_killed_then()["reused"] == 4
    assert_same_content(fresh_copy_of(Path(MASKS), lambda: masks.run("synthetic")), Path(MASKS))


def test_masks_resume_after_an_image_changed_reuses_nothing(scratch):
    with h5py.File(Path(MASKS + ".partial") if Path(MASKS + ".partial").exists() else MASKS) as f:
        first = f["impath"].asstr()[0]
    image = read_prepared("data/prepared/synthetic").root / first

    def replace_image():
        os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))

    assert _masks_killed_then(replace_image)["reused"] == 0


def test_kill_9_during_features_leaves_no_half_file(project, scratch):
    from stages import features

    out = Path(DUMP)
    kill_9_during(
        "from stages import features; features.run('synthetic', 'zsclip', 1)",
        """
import h5py
real, made = h5py.Group.create_dataset, []
def dying(self, *a, **k):
    made.append(1)
    if len(made) == 3:
        kill()
    return real(self, *a, **k)
h5py.Group.create_dataset = dying
""",
    )
    assert not out.exists() and out.with_name(out.name + ".partial").exists()
    features.run("synthetic", "zsclip", 1)
    assert_same_content(project / DUMP, out)  # the same as the feature file built without a kill


# --- checkpoints: junk and unsafe files name themselves and why ------------------------------------------------------


def _write_checkpoint(path, kind: str) -> None:
    import open_clip

    if kind == "text":
        path.write_text("this is a README, not weights\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "junk_safetensors":
        path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    elif kind == "truncated":
        torch.save(open_clip.create_model("fvgpt-test-rn").state_dict(), path)
        path.write_bytes(path.read_bytes()[:5000])
    elif kind == "code":
        torch.save({"state_dict": {}, "payload": _Exploit(os.system, "touch PWNED")}, path)


@pytest.mark.parametrize(
    "kind,suffix,message",
    [
        ("text", ".pt", r"is not a readable PyTorch checkpoint \(.*\); it may be truncated or another kind of file"),
        ("empty", ".pt", r"is not a readable PyTorch checkpoint"),
        ("truncated", ".pt", r"is not a readable PyTorch checkpoint"),
        ("junk_safetensors", ".safetensors", r"is not a readable safetensors file"),
        (
            "code",
            ".pt",
            r"is not a plain weights file: it pickles the Python object (posix|nt)\.system, which would run code",
        ),
    ],
)
def test_bad_clip_checkpoint_names_itself_and_why(tmp_path, monkeypatch, kind, suffix, message):
    from pipeline.models import CheckpointError

    monkeypatch.chdir(tmp_path)
    path = tmp_path / f"clip{suffix}"
    _write_checkpoint(path, kind)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))} {message}"):
        load_clip("fvgpt-test-rn", str(path))
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("kind", ["text", "code"])
def test_bad_backbone_and_heads_weights_name_the_stage_to_rerun(project, tmp_path, monkeypatch, kind):
    from pipeline.heads.io import load_heads
    from pipeline.weights import CheckpointError, read_weights

    monkeypatch.chdir(tmp_path)
    _write_checkpoint(tmp_path / "learnable.pt", kind)
    with pytest.raises(CheckpointError, match=r"learnable\.pt .*"):
        read_weights(tmp_path / "learnable.pt", "re-run the backbone stage")
    heads = tmp_path / "heads"
    heads.mkdir()
    (heads / "config.json").write_text(json.dumps({"config": {}}))
    _write_checkpoint(heads / "heads.pt", kind)
    with pytest.raises(
        CheckpointError, match=r"heads\.pt .*re-run the heads stage|heads\.pt is not a plain weights file"
    ):
        load_heads(heads, 32, 100.0)
    assert not (tmp_path / "PWNED").exists()


# --- outputs: a read-only folder or a full disk is one message and a clean stop --------------------------------------


@contextlib.contextmanager
def read_only(folder: Path):
    """Make `folder` unwritable: by its mode, or (as root, who ignores modes) by mounting a read-only tmpfs on it."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True
    ).returncode:
        pytest.skip("running as root without permission to mount a read-only folder")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_read_only_output_fails_before_any_work(tmp_path):
    from pipeline.atomic import OutputWriteError, atomic_path

    with read_only(tmp_path / "out"):
        with pytest.raises(
            OutputWriteError, match=rf"cannot write {tmp_path}/out: {tmp_path}/out is not writable .*make it writable"
        ):
            with atomic_path(tmp_path / "out" / "x.json"):
                raise AssertionError("the body ran")


def test_a_failed_read_is_not_blamed_on_the_output_folder(tmp_path):
    from pipeline.atomic import OutputWriteError, atomic_path, write_failure

    unreadable_input = PermissionError(13, "Permission denied", "/elsewhere/DATA/cat.jpg")
    with pytest.raises(PermissionError) as caught, atomic_path(tmp_path / "out" / "x.json"):
        raise unreadable_input
    assert caught.value is unreadable_input and not isinstance(caught.value, OutputWriteError)
    assert (
        write_failure(tmp_path / "x.json", ImageReadError("cannot read image a.png: [Errno 13] Permission denied"))
        is None
    )
    assert write_failure(
        tmp_path / "x.json", PermissionError(13, "Permission denied", str(tmp_path / "x.json.partial"))
    )


def test_heads_stage_checks_its_output_folder_before_training(scratch, monkeypatch):
    from pipeline.atomic import OutputWriteError
    from stages import features, heads

    params = yaml.safe_load((scratch / "params.yaml").read_text())
    (scratch / "params.yaml").write_text(yaml.safe_dump({**params, "backbones": ["zsclip"]}))  # the one tuned here
    features.run("synthetic", "zsclip", 1)
    monkeypatch.setattr(heads, "train_runs", lambda *a, **k: pytest.fail("trained before checking the output folder"))
    with read_only(scratch / "data/heads"):
        with pytest.raises(OutputWriteError, match=r"data/heads is not writable"):
            heads.run("synthetic")


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as on a full disk
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (12_000, 12_000))


def test_full_disk_during_encode_is_one_line_and_a_clean_exit(scratch):
    from stages import encode

    Path(ENCODED).unlink()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "stages.cli", "encode", "synthetic"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_file_size,
    )
    assert done.returncode == 1, done.stderr[-2000:]  # not -11: no crash in HDF5's exit handler
    errors = [line for line in done.stderr.splitlines() if not line.startswith("WARNING:root")]
    assert errors == [
        "fvgpt encode: error: cannot write data/encoded/synthetic.h5.partial: the file size limit is reached; "
        "free space on data/encoded and re-run (a resumable stage keeps what it finished)"
    ]
    *_, error, footer = Path("data/logs/encode/synthetic.log").read_text().splitlines()  # it left before cleanup
    assert error == errors[0] and footer.startswith("# exit status 1 after ")
    encode.run("synthetic")  # room again: it resumes and finishes (that a resume equals a fresh run is tested above)
    assert EncodedViews(ENCODED).train_paths


def test_cli_reports_a_bad_setting_in_one_line(scratch):
    from typer.testing import CliRunner

    from stages.cli import app

    write_params(scratch, **TINY, **{"masks.segmenter": "nope"})
    result = CliRunner().invoke(app, ["masks", "synthetic"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "fvgpt masks: error: params.yaml: masks.segmenter: unknown segmenter 'nope'; "
        "known: center, grabcut, precomputed, groundtruth, seem"
    )


# --- datasets: prepare refuses what later stages cannot run on, saying what and how to fix it ----------------------


def _image_folder(root: Path, classes: dict[str, int], test_per_class: int = 1) -> Path:
    """imagefolder layout: `classes` maps each class folder to its number of training images."""
    for name, n_train in classes.items():
        for split, n in (("train", n_train), ("test", test_per_class)):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(np.full((8, 8, 3), 30 * i, np.uint8)).save(root / split / name / f"{i}.png")
    return root


def _prepare(tmp_path, data_root: Path, shots=2):
    from typer.testing import CliRunner

    from stages.cli import app

    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"seeds": [1], "prepare": {"shots": shots, "roots": {"imagefolder": str(data_root)}}})
    )
    return CliRunner().invoke(app, ["prepare", "imagefolder"])


@pytest.mark.parametrize(
    "case,message",
    [
        ("fine", None),
        (
            "no_training_images",
            r"1 classes have no training image, e\.g\. \['c'\]; add training images or remove the class",
        ),
        ("one_class", r"1 class found, but base-to-new needs at least 2 \(one base, one new\); add classes"),
        ("same_name", r"'a b' and 'a_b' both name the class 'a b'.*rename one of each"),
        (
            "not_an_image",
            r"1 listed files are not images \(by their extension\), e\.g\. \['train/a/notes\.txt'\]; move them out",
        ),
        (
            "stray_file",
            r"train must hold only class folders, but has 1 files, e\.g\. \['README\.txt'\]; move them elsewhere",
        ),
        ("no_new_test_image", r"no test image of any new class; add test images"),
        ("zero_shots", r"prepare\.shots must be at least 1, got 0"),
    ],
)
def test_prepare_refuses_a_degenerate_dataset_in_one_line(tmp_path, monkeypatch, case, message):
    monkeypatch.chdir(tmp_path)
    root = _image_folder(tmp_path / "ds", {"a": 2, "b": 2, "c": 0 if case == "no_training_images" else 2})
    if case == "one_class":
        for split in ("train", "test"):
            shutil.rmtree(root / split / "b")
            shutil.rmtree(root / split / "c")
    elif case == "same_name":
        (root / "train" / "a").rename(root / "train" / "a_b")
        (root / "test" / "a").rename(root / "test" / "a_b")
        _image_folder(root, {"a b": 2})
    elif case == "not_an_image":
        (root / "train" / "a" / "notes.txt").write_text("shot on a Tuesday")
    elif case == "stray_file":
        (root / "train" / "README.txt").write_text("class folders below")
    elif case == "no_new_test_image":
        for name in ("b", "c"):  # base is {a, b}, new is {c}
            shutil.rmtree(root / "test" / name)
    result = _prepare(tmp_path, root, shots=0 if case == "zero_shots" else 2)
    if message is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 1, result.output
    assert re.fullmatch(rf"fvgpt prepare: error: .*{message}.*", result.stderr.strip()), result.stderr
    assert not (tmp_path / "data/prepared/imagefolder").exists()


# --- masks of another aspect ratio than their image are flagged, not silently stretched -----------------------------


def test_stretched_masks_are_counted_and_scaled_ones_are_not(tmp_path):
    requests = _mask_requests(tmp_path, 3)  # 8x8 images
    (tmp_path / "mask" / "img").mkdir(parents=True)
    for i, (w, h) in enumerate([(8, 8), (4, 4), (16, 8)]):  # same, half size (fine), twice as wide (stretched)
        Image.fromarray(np.full((h, w), 255, np.uint8)).save(tmp_path / "mask" / "img" / f"{i}.png")
    writer = MaskStoreWriter(tmp_path / "m.h5", 8, {"fingerprint": "x"})
    result = segment_all(requests, writer, "precomputed", {}, workers=1)
    store = MaskStore(writer.finish())
    assert result.stretched == ["img/2.png"]
    assert store.stretched.tolist() == [False, False, True]


def test_masks_stage_reports_stretched_masks(scratch, capsys):
    from stages import masks

    prep = read_prepared("data/prepared/synthetic")
    first = prep.fewshot_train(1).impath[0]
    mask_file = prep.root / "mask" / Path(first).relative_to("images")
    with Image.open(mask_file) as im:
        im.resize((im.width * 2, im.height)).save(mask_file)
    write_params(scratch, **TINY, **{"masks.segmenter": "precomputed", "masks.precomputed": {"threshold": 127}})
    masks.run("synthetic")
    quality = json.loads(Path("reports/masks/synthetic.json").read_text())
    assert quality["stretched"] == 1
    assert (
        f"warning: 1 of {quality['images']} masks have another aspect ratio than their image" in capsys.readouterr().out
    )


# --- external inputs: a changed dataset folder changes its fingerprint (and so what DVC re-runs) -------------------


def test_dataset_fingerprint_follows_every_file_change(tmp_path, monkeypatch):
    from pipeline.datasets.inputs import dataset_inputs

    root = _image_folder(tmp_path / "ds", {"a": 2, "b": 2})
    fingerprint = lambda: dataset_inputs("imagefolder", "unused", str(root))  # noqa: E731
    first = fingerprint()
    assert first["files"] == 6 and fingerprint() == first
    (root / ".DS_Store").write_text("hidden files are not data")
    assert fingerprint() == first
    seen = {first["digest"]}
    image = root / "train" / "a" / "0.png"
    for change in (
        lambda: os.utime(image, ns=(0, image.stat().st_mtime_ns + 1)),  # replaced or edited in place
        lambda: shutil.copy(image, root / "train" / "a" / "9.png"),  # added
        lambda: (root / "train" / "b" / "1.png").unlink(),
    ):  # removed
        change()
        digest = fingerprint()["digest"]
        assert digest not in seen
        seen.add(digest)
    monkeypatch.chdir(tmp_path)
    assert _prepare(tmp_path, root).exit_code == 0
    recorded = json.loads((tmp_path / "data/prepared/imagefolder/inputs.json").read_text())
    assert recorded == fingerprint()  # prepare's output changes with the folder

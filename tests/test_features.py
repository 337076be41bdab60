"""encode + features on the tiny model and tiny synthetic data."""

import contextlib
import logging
import re

import h5py
import numpy as np
import pytest
import torch

from pipeline.config import EncodeConfig
from pipeline.features.encoded import EncodedViews, FeatureFileError, encode_views
from pipeline.features.run_features import RunFeatures
from pipeline.features.views_dataset import view_sets
from pipeline.images import load_rgb
from pipeline.manifest import read_prepared
from pipeline.masks.store import MaskStore
from pipeline.models import load_clip
from pipeline.views import train_view, view_rng
from stages import backbone, encode, features
from tests.tiny_project import built_project

logging.getLogger().setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    with built_project(tmp_path_factory.mktemp("proj"), backbones=("zsclip", "coop")) as root:
        yield root


@pytest.fixture
def in_project(project, monkeypatch):
    monkeypatch.chdir(project)
    return project


def count_encodes(monkeypatch):
    import open_clip

    calls = []
    real = open_clip.CLIP.encode_image

    def counted(self, x, *a, **k):
        calls.append(len(x))
        return real(self, x, *a, **k)

    monkeypatch.setattr(open_clip.CLIP, "encode_image", counted)
    return calls


def test_shared_encoder_encodes_each_view_once(in_project, monkeypatch):
    calls = count_encodes(monkeypatch)
    encode.run("synthetic")
    n_encode = sum(calls)
    enc = EncodedViews("data/encoded/synthetic.h5")
    assert n_encode == 2 * (2 * len(enc.train_paths) + len(enc.test_paths))  # full + fg, V=2 train views
    calls.clear()
    features.run("synthetic", "zsclip", 1)
    features.run("synthetic", "coop", 1)
    assert sum(calls) == 0  # the second backbone re-encodes nothing
    a, b = RunFeatures("data/features/synthetic/zsclip/seed1.h5"), RunFeatures("data/features/synthetic/coop/seed1.h5")
    assert torch.equal(a.feat_full, b.feat_full) and not torch.equal(a.text_backbone, b.text_backbone)
    assert torch.equal(a.text_backbone, a.text_clip)  # zero-shot: the backbone is CLIP with the template


def test_shapes_dtypes_and_labels(in_project):
    d = RunFeatures("data/features/synthetic/coop/seed1.h5")
    prep = read_prepared("data/prepared/synthetic")
    n_train = len(prep.fewshot_train(1))
    assert d.feat_full.shape == (2, n_train, 32) and d.area.shape == (2, n_train)
    assert d.test_feat.shape == (len(prep.test()), 32) and d.text_backbone.shape == (6, 32)
    assert d.base == [0, 1, 2] and d.new == [3, 4, 5] and set(d.train_label.tolist()) == {0, 1, 2}
    assert torch.allclose(d.feat_full.norm(dim=-1), torch.ones(1), atol=1e-4)
    with h5py.File("data/features/synthetic/coop/seed1.h5") as f:
        assert f["train/feat_full"].dtype == np.float16 and f["train/label"].dtype == np.int64
    assert bool(d.test_has_fg.all())


def test_foreground_view_is_the_masked_image(in_project):
    enc = EncodedViews("data/encoded/synthetic.h5")
    prep = read_prepared("data/prepared/synthetic")
    store = MaskStore("data/masks/synthetic.h5")
    clip = load_clip("fvgpt-test-rn", "")
    path = enc.train_paths[0]
    image = load_rgb(prep.root / path)
    x, fg, area = train_view(image, store.mask(path), view_rng(0, 1, path), 32, clip.mean, clip.std, "mean")
    # direct computation: resize the stored mask, crop it with the same geometry, zero the background
    from PIL import Image
    from torchvision.transforms import functional as TF

    rng = view_rng(0, 1, path)
    from pipeline.views import sample_crop

    top, left, h, w = sample_crop(rng, image.size[1], image.size[0])
    flip = rng.random() < 0.5
    m = Image.fromarray(store.mask(path).astype(np.uint8) * 255).resize(image.size, Image.NEAREST)
    m = TF.resized_crop(m, top, left, h, w, [32, 32], TF.InterpolationMode.NEAREST)
    m = torch.from_numpy(np.asarray(TF.hflip(m) if flip else m) > 127)
    assert torch.equal(fg, x * m)
    assert area == pytest.approx(float(m.float().mean()))
    with torch.no_grad():
        feats = torch.nn.functional.normalize(clip.model.encode_image(torch.stack([x, fg])), dim=-1)
    row = enc.train_paths.index(path)
    assert np.allclose(enc.train["feat_full"][1, row], feats[0].numpy(), atol=2e-3)
    assert np.allclose(enc.train["feat_fg"][1, row], feats[1].numpy(), atol=2e-3)
    assert enc.train["area"][1, row] == pytest.approx(area)  # the stored A(m) is this view's own mask share


def _views(in_project):
    prep = read_prepared("data/prepared/synthetic")
    clip = load_clip("fvgpt-test-rn", "")
    train, test = view_sets(
        prep, MaskStore("data/masks/synthetic.h5"), [1], EncodeConfig(views=2), 32, clip.mean, clip.std
    )
    return clip, train, test


def test_resume_after_interruption_and_bitwise_repeatable(in_project, tmp_path):
    clip, train, test = _views(in_project)
    enc_fn = lambda x: torch.nn.functional.normalize(clip.model.encode_image(x), dim=-1)  # noqa: E731
    batches = []

    def dies(x):
        if len(batches) == 2:
            raise KeyboardInterrupt
        batches.append(len(x))
        return enc_fn(x)

    with pytest.raises(KeyboardInterrupt):
        encode_views(tmp_path / "a.h5", train, test, dies, 32, {"fingerprint": "f"}, "float32", batch_images=2)
    assert not (tmp_path / "a.h5").exists() and (tmp_path / "a.h5.partial").exists()
    done = []
    stats = encode_views(
        tmp_path / "a.h5",
        train,
        test,
        lambda x: (done.append(len(x)), enc_fn(x))[1],
        32,
        {"fingerprint": "f"},
        "float32",
        batch_images=2,
    )
    assert stats.images == len(train) + len(test) - 4  # the two committed batches of 2 images were kept
    encode_views(tmp_path / "b.h5", train, test, enc_fn, 32, {"fingerprint": "f"}, "float32", batch_images=2)
    a, b = EncodedViews(tmp_path / "a.h5"), EncodedViews(tmp_path / "b.h5")
    for key in a.train:
        assert np.array_equal(a.train[key], b.train[key]), key
    for key in a.test:
        assert np.array_equal(a.test[key], b.test[key]), key


def test_reader_rejects_truncated_and_wrong_schema(in_project, tmp_path):
    src = in_project / "data/features/synthetic/coop/seed1.h5"
    blob = src.read_bytes()
    (tmp_path / "cut.h5").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(FeatureFileError, match="cut.h5"):
        RunFeatures(tmp_path / "cut.h5")
    (tmp_path / "old.h5").write_bytes(blob)
    with h5py.File(tmp_path / "old.h5", "a") as f:
        f.attrs["schema"] = 99
    with pytest.raises(FeatureFileError, match="schema version 99"):
        RunFeatures(tmp_path / "old.h5")
    with pytest.raises(FeatureFileError, match="dvc repro features"):
        RunFeatures(tmp_path / "absent.h5")


def test_backbone_stage_is_deterministic_on_cpu(in_project):
    state = lambda: torch.load("data/backbones/synthetic/coop/seed1/learnable.pt", weights_only=True)["state"]["ctx"]  # noqa: E731
    first = state().clone()
    backbone.run("synthetic", "coop", 1)
    assert torch.equal(first, state())
    log = (in_project / "data/backbones/synthetic/coop/seed1/train_log.csv").read_text().splitlines()
    assert log[0] == "epoch,lr,loss,ce" and len(log) == 3


def test_backbone_bar_counts_steps_and_epochs_print_as_they_end(in_project, monkeypatch, capsys):
    bars, events = [], []

    @contextlib.contextmanager
    def recording_bar(description, total):
        bars.append({"description": description, "total": total, "done": 0})

        def advance(n=1):
            bars[-1]["done"] += n
            events.append("step")

        yield advance

    print_epoch = backbone.print_epoch
    monkeypatch.setattr(backbone, "progress_bar", recording_bar)
    monkeypatch.setattr(backbone, "print_epoch", lambda row: (events.append("epoch"), print_epoch(row)))
    backbone.run("synthetic", "coop", 1)
    backbone.run("synthetic", "zsclip", 1)
    [bar] = bars  # zero-shot CLIP trains nothing and draws no bar
    assert bar["description"] == "coop steps" and bar["done"] == bar["total"] == events.count("step")
    steps_per_epoch = bar["total"] // 2
    assert events == (["step"] * steps_per_epoch + ["epoch"]) * 2  # tiny params: 2 epochs
    out = capsys.readouterr().out
    assert "  epoch 2  lr " in out and "zsclip on synthetic seed 1: nothing to train" in out


def test_backbone_with_its_own_image_path_encodes_itself(in_project, monkeypatch):
    from pipeline.backbones.coop import CoOp

    encode.run("synthetic")
    monkeypatch.setattr(CoOp, "shares_clip_image_encoder", False)
    calls = count_encodes(monkeypatch)
    features.run("synthetic", "coop", 1)
    assert sum(calls) > 0  # it ran the (here: unchanged) image path itself
    d = RunFeatures("data/features/synthetic/coop/seed1.h5")
    assert d.attrs["shares_clip_image"] in (False, 0)
    with h5py.File("data/features/synthetic/coop/seed1.h5") as f:
        assert "train/clip_full" in f and "test/clip" in f
    # CoOp's image path is CLIP's, so its own encodings equal the shared ones up to storage precision
    assert torch.allclose(d.feat_full, d.train_clip_full, atol=2e-3)
    assert torch.allclose(d.test_feat, d.test_clip, atol=2e-3)
    monkeypatch.undo()
    features.run("synthetic", "coop", 1)  # leave the shared feature file for the other tests


def test_sweep_command_writes_its_table(in_project):
    from stages import sweep

    out = sweep.run("synthetic", "coop", "table3", None, [1], sequential=False)
    text = out.read_text()
    assert re.fullmatch(r"synthetic_coop_table3-[0-9a-f]{8}\.md", out.name) and text.count("\n") >= 7
    assert out.with_suffix(".json").is_file()
    for row in ("(1) FDC", "(2) PC", "(5) full"):
        assert row in text
    with pytest.raises(ValueError, match="exactly one"):
        sweep.run("synthetic", "coop", "table3", "lambda_d=1,2", [1], sequential=False)


def test_features_keep_the_class_features_of_every_tuning_epoch(in_project):
    from pipeline.backbones import tuning
    from pipeline.heads.config import HeadsConfig
    from pipeline.heads.evaluate import backbone_epoch_readings, evaluate
    from pipeline.heads.model import FVGPTHeads

    encode.run("synthetic")
    features.run("synthetic", "coop", 1)
    features.run("synthetic", "zsclip", 1)
    coop = RunFeatures("data/features/synthetic/coop/seed1.h5")
    states = tuning.load_epoch_states(in_project / "data/backbones/synthetic/coop/seed1")
    assert len(states) == 2 and coop.text_backbone_by_epoch.shape == (2, *coop.text_backbone.shape)
    # CoOp keeps its last epoch's prompts: the last row is the final class features.
    assert torch.allclose(coop.text_backbone_by_epoch[-1], coop.text_backbone, atol=1e-6)
    assert not torch.equal(coop.text_backbone_by_epoch[0], coop.text_backbone)  # epoch 1: before the last steps
    assert RunFeatures("data/features/synthetic/zsclip/seed1.h5").text_backbone_by_epoch is None  # nothing tuned
    tau = HeadsConfig().tau_d
    readings = backbone_epoch_readings(coop, tau)
    final = evaluate(FVGPTHeads([HeadsConfig()], coop.test_feat.shape[-1], coop.logit_scale), coop)[0]
    assert [r["epoch"] for r in readings] == [1, 2]
    assert readings[-1]["test.backbone.base"] == pytest.approx(final["backbone.base"])
    assert readings[-1]["test.shift.backbone.base"] == pytest.approx(final["shift.backbone.base"], rel=1e-5)
    # Each epoch is read from its own class features: other features for the first epoch, another reading.
    coop.text_backbone_by_epoch = torch.stack([-coop.text_backbone, coop.text_backbone])
    first, last = backbone_epoch_readings(coop, tau)
    assert last == readings[-1] and first["test.shift.backbone.base"] != pytest.approx(last["test.shift.backbone.base"])

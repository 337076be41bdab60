"""Segmenters, the mask store, and the masks stage's bad-input policies."""

import sys
import types

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.atomic import partial_path
from pipeline.masks import MaskRequest, MissingMaskError, create_segmenter
from pipeline.masks.quality import iou
from pipeline.masks.segment_all import segment_all
from pipeline.masks.store import EMPTY, FULL, MISSING, MaskStore, MaskStoreWriter, resize_shorter


def _scene(path, h=40, w=60, box=(6, 26, 8, 34)):
    """A blue rectangle on a noisy grey background; returns its true mask."""
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(128, 10, (h, w, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), bool)
    mask[box[0] : box[1], box[2] : box[3]] = True
    img[mask] = (30, 60, 220)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return mask


def test_center_box_and_grabcut(tmp_path):
    truth = _scene(tmp_path / "a.png")
    image = np.asarray(Image.open(tmp_path / "a.png"))
    req = MaskRequest(str(tmp_path), "a.png", "thing")
    center = create_segmenter("center", fraction=0.5).segment(image, req)
    assert center.shape == truth.shape and center.mean() == pytest.approx(0.25, abs=0.02)
    grab = create_segmenter("grabcut", margin=0.1).segment(image, req)
    assert iou(grab, truth) > 0.8 > iou(center, truth)


def test_precomputed_both_layouts_and_resize(tmp_path):
    truth = _scene(tmp_path / "images" / "cls" / "a.jpg")
    image = np.asarray(Image.open(tmp_path / "images" / "cls" / "a.jpg"))
    req = MaskRequest(str(tmp_path), "images/cls/a.jpg", "cls")
    # authors' layout: mask/<path inside the image folder>, same name and extension, half resolution
    small = Image.fromarray(truth.astype(np.uint8) * 255).resize((30, 20), Image.NEAREST)
    (tmp_path / "mask" / "cls").mkdir(parents=True)
    small.save(tmp_path / "mask" / "cls" / "a.jpg", quality=100)
    authors = create_segmenter("precomputed", image_dir="images")
    assert authors.segment(image, req).shape == truth.shape and iou(authors.segment(image, req), truth) > 0.9
    # a release that keeps the image folder and stores PNGs elsewhere
    (tmp_path / "seg" / "images" / "cls").mkdir(parents=True)
    Image.fromarray(truth.astype(np.uint8)).save(tmp_path / "seg" / "images" / "cls" / "a.png")
    other = create_segmenter(
        "precomputed", mask_dir="seg", image_dir="images", strip_image_dir=False, extension=".png", threshold=0
    )  # 0/1 label files
    assert iou(other.segment(image, req), truth) == 1.0
    with pytest.raises(MissingMaskError):
        authors.segment(image, MaskRequest(str(tmp_path), "images/cls/b.jpg", "cls"))


@pytest.mark.parametrize(
    "mode,values,expect",
    [
        ("L", [0, 100, 127, 128, 255], [0, 0, 0, 1, 1]),
        ("F", [0.0, 0.3, 0.5, 0.7, 1.0], [0, 0, 0, 1, 1]),
        ("I;16", [0, 20000, 32767, 40000, 65535], [0, 0, 0, 1, 1]),
        ("1", [0, 1, 0, 1, 1], [0, 1, 0, 1, 1]),
    ],
)
def test_masks_binarise_at_half_their_range(mode, values, expect):
    from pipeline.masks.precomputed import binarise

    dtype = {"L": np.uint8, "F": np.float32, "I;16": np.uint16, "1": bool}[mode]
    im = Image.fromarray(np.array([values], dtype=dtype)) if mode != "1" else Image.fromarray(np.array([values], bool))
    assert im.mode == mode
    assert binarise(im).astype(int).tolist() == [expect]
    assert binarise(im, 0).astype(int).tolist() == [[int(v > 0) for v in values]]


def test_groundtruth_only_on_synthetic(tmp_path):
    with pytest.raises(ValueError, match="synthetic"):
        create_segmenter("groundtruth").segment(
            np.zeros((4, 4, 3), np.uint8), MaskRequest(str(tmp_path), "x.png", "c", "dtd")
        )


def test_seem_adapter_with_a_fake_seem(monkeypatch):
    import torch

    calls = {}

    class FakeInner:
        def evaluate_grounding(self, batch, mode):
            calls["text"] = batch[0]["groundings"]["texts"][0]
            m = torch.zeros(1, batch[0]["height"], batch[0]["width"])
            m[0, :2] = 1.0
            return [{"grounding_mask": m}]

    class FakeBase:
        def __init__(self, opt, model):
            self.model = FakeInner()

        def from_pretrained(self, ckpt):
            calls["ckpt"] = ckpt
            return self

        def eval(self):
            return self

        def to(self, device):
            return self

    mods = {
        "modeling": types.SimpleNamespace(build_model=lambda opt: None),
        "modeling.BaseModel": types.SimpleNamespace(BaseModel=FakeBase),
        "utils.arguments": types.SimpleNamespace(load_opt_from_config_files=lambda files: {}),
    }
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    seem = create_segmenter("seem", checkpoint="seem.pt", config="seem.yaml", device="cpu")
    mask = seem.segment(np.zeros((4, 5, 3), np.uint8), MaskRequest("/r", "x.jpg", "Abyssinian", "oxford_pets"))
    assert calls == {"ckpt": "seem.pt", "text": "The pet in the middle."}
    assert mask.shape == (4, 5) and mask[:2].all() and not mask[2:].any()


def test_seem_missing_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "modeling", None)
    with pytest.raises(ImportError, match="PYTHONPATH"):
        create_segmenter("seem", checkpoint="a.pt", config="b.yaml")
    with pytest.raises(ValueError, match="masks.seem.checkpoint"):
        create_segmenter("seem")


def _requests(tmp_path, n=6):
    reqs = []
    for i in range(n):
        _scene(tmp_path / "img" / f"{i}.png", box=(5 + i, 30, 10, 40))
        reqs.append(MaskRequest(str(tmp_path), f"img/{i}.png", "c"))
    return reqs


def test_store_roundtrip_flags_and_aspect(tmp_path):
    w = MaskStoreWriter(tmp_path / "m.h5", 20, {"fingerprint": "x"})
    full, empty = np.ones((40, 60), bool), np.zeros((40, 60), bool)
    part = np.zeros((40, 60), bool)
    part[:, :30] = True
    w.add_batch(
        [
            ("a", resize_shorter(part, 20), 0.5, 0),
            ("b", resize_shorter(full, 20), 1.0, FULL),
            ("c", resize_shorter(empty, 20), 0.0, EMPTY),
        ]
    )
    store = MaskStore(w.finish())
    assert store.mask("a").shape == (20, 30) and store.mask("a")[:, :15].all() and not store.mask("a")[:, 15:].any()
    assert store.flag("b") == "full" and store.flag("c") == "empty" and store.area("a") == 0.5
    with pytest.raises(KeyError, match="re-run the masks stage"):
        store.mask("zzz")


def test_interrupted_run_resumes_without_redoing(tmp_path, monkeypatch):
    reqs = _requests(tmp_path)
    path = tmp_path / "m.h5"
    import pipeline.masks.segment_all as sa

    real = sa._segment_one
    seen = []

    def dies_after_four(r):
        if len(seen) == 4:
            raise KeyboardInterrupt
        seen.append(r.impath)
        return real(r)

    monkeypatch.setattr(sa, "_segment_one", dies_after_four)
    w = MaskStoreWriter(path, 16, {"fingerprint": "f"})
    with pytest.raises(KeyboardInterrupt):
        segment_all(reqs, w, "center", {}, batch=2)
    w.close()
    assert not path.exists() and partial_path(path).exists()
    seen.clear()
    monkeypatch.setattr(sa, "_segment_one", lambda r: (seen.append(r.impath), real(r))[1])
    w = MaskStoreWriter(path, 16, {"fingerprint": "f"})
    result = segment_all(reqs, w, "center", {}, batch=2)
    store = MaskStore(w.finish())
    assert result.n_reused == 4 and seen == ["img/4.png", "img/5.png"]
    assert sorted(store.impaths) == sorted(r.impath for r in reqs)
    # a different fingerprint (changed params) never reuses old rows
    w = MaskStoreWriter(tmp_path / "n.h5", 16, {"fingerprint": "f"})
    w.close()
    w = MaskStoreWriter(tmp_path / "n.h5", 16, {"fingerprint": "other"})
    assert w.n == 0 and not w.done
    w.close()


def test_missing_policy_fail_and_full(tmp_path):
    reqs = _requests(tmp_path, 3)
    (tmp_path / "mask" / "img").mkdir(parents=True)
    Image.fromarray(np.full((40, 60), 255, np.uint8)).save(tmp_path / "mask" / "img" / "0.png")
    w = MaskStoreWriter(tmp_path / "a.h5", 16, {"fingerprint": "1"})
    res = segment_all(reqs, w, "precomputed", {}, missing_policy="fail")
    w.close()
    assert len(res.missing) == 2 and "mask/img/1.png" in res.missing[0]
    w = MaskStoreWriter(tmp_path / "b.h5", 16, {"fingerprint": "1"})
    res = segment_all(reqs, w, "precomputed", {}, missing_policy="full")
    store = MaskStore(w.finish())
    assert len(store) == 3 and store.flag("img/1.png") == "missing" and store.mask("img/2.png").all()
    assert int((store.flags == MISSING).sum()) == 2


def test_unreadable_image_names_its_path(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    w = MaskStoreWriter(tmp_path / "m.h5", 16, {"fingerprint": "x"})
    with pytest.raises(OSError, match="bad.png"):
        segment_all([MaskRequest(str(tmp_path), "bad.png", "c")], w, "center", {})
    w.close()


def test_masks_stage_declares_only_its_own_params(project_root):
    stages = yaml.safe_load((project_root / "dvc.yaml").read_text())["stages"]
    assert "params" not in stages["masks"]  # its settings arrive through its dataset's inputs file
    deps = stages["masks"]["deps"]
    assert "data/inputs/${item.dataset}/masks.json" in deps
    assert not any(
        d.startswith(("data/backbones", "data/models", "pipeline/backbones", "pipeline/models"))
        or d == "pipeline/heads"
        for d in deps
    )


def test_segmenter_settings_are_checked_by_name():
    from pipeline.config_reader import ConfigError

    with pytest.raises(
        ConfigError, match=r"masks\.center\.fractoin: unknown key; did you mean masks\.center\.fraction\?"
    ):
        create_segmenter("center", fractoin=0.3)
    with pytest.raises(ConfigError, match=r"masks\.center\.fraction must be in \(0, 1\]"):
        create_segmenter("center", fraction=1.5)
    assert create_segmenter("center").fraction == 0.6  # the default lives in pipeline/config.py only

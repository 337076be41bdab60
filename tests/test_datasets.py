import json
import math
import pickle
import random
import sys
import types
import warnings

import numpy as np
import pytest
from PIL import Image

from pipeline.datasets import DatasetLayoutError, load_dataset
from pipeline.datasets.basenew import split_base_new
from pipeline.datasets.fewshot import dassl_fewshot, select_fewshot
from pipeline.manifest import build_manifest, read_prepared, write_prepared


def _png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)


def make_pets(root, n_classes=5, per_class=7, names=None):
    names = names or [f"breed_{i}" for i in range(n_classes)]
    split = {"train": [], "val": [], "test": []}
    for label, name in enumerate(names):
        for i in range(per_class):
            for s in split:
                rel = f"{name}_{s}_{i}.jpg"
                _png(root / "images" / rel)
                split[s].append([rel, label, name])
    (root / "split_zhou_OxfordPets.json").write_text(json.dumps(split), encoding="utf-8")
    return split


def reference_dassl(items, shots, seed, val_items=None):
    """Dassl's generate_fewshot_dataset, re-written from its description."""
    random.seed(seed)
    np.random.seed(seed)
    out = []
    for source, k in ((items, shots), (val_items, min(shots, 4))):
        if source is None:
            continue
        tracker = {}
        for it in source:
            tracker.setdefault(it.label, []).append(it)
        chosen = []
        for label, group in tracker.items():
            chosen.extend(random.sample(group, k) if len(group) >= k else group)
        out.append(chosen)
    return out


def test_oxford_pets_json_layout(tmp_path):
    make_pets(tmp_path)
    data = load_dataset("oxford_pets", tmp_path)
    assert len(data.train) == 35 and data.image_dir == "images"
    assert data.train[0].impath == "images/breed_0_train_0.jpg"
    assert data.classnames == [f"breed_{i}" for i in range(5)]


@pytest.mark.parametrize("seed,shots", [(1, 2), (2, 3), (3, 16)])
def test_fewshot_matches_dassl(tmp_path, seed, shots):
    make_pets(tmp_path, per_class=9)
    data = load_dataset("oxford_pets", tmp_path)
    # shuffle so first-appearance order differs from label order
    rng = random.Random(0)
    rng.shuffle(data.train)
    rng.shuffle(data.val)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_idx, val_idx = dassl_fewshot(data, shots, seed)
        ref_train, ref_val = reference_dassl(data.train, shots, seed, data.val)
    assert [data.train[i] for i in train_idx] == ref_train
    assert [data.val[i] for i in val_idx] == ref_val


def test_fewer_images_than_shots_warns_and_takes_all(tmp_path):
    make_pets(tmp_path, per_class=3)
    data = load_dataset("oxford_pets", tmp_path)
    with pytest.warns(UserWarning, match="fewer than 16"):
        train_idx, _ = dassl_fewshot(data, 16, 1)
    assert sorted(train_idx) == list(range(len(data.train)))


def test_fewshot_pickle_reused_without_dassl(tmp_path, monkeypatch):
    make_pets(tmp_path)
    data = load_dataset("oxford_pets", tmp_path)
    # a pickle as Dassl writes it: Datum objects from dassl's module, absolute paths
    Datum = _fake_dassl_datum(monkeypatch)
    picked = [data.train[i] for i in (3, 10, 20, 22, 30)]  # one or more of each class
    blob = {
        "train": [Datum(f"/home/author/DATA/oxford_pets/{it.impath}", it.label, it.classname) for it in picked],
        "val": [Datum(f"/x/oxford_pets/{data.val[0].impath}", 0, "breed_0")],
    }
    (tmp_path / "split_fewshot").mkdir()
    with open(tmp_path / "split_fewshot" / "shot_1-seed_7.pkl", "wb") as f:
        pickle.dump(blob, f)
    monkeypatch.undo()  # loading needs no Dassl module
    train_idx, val_idx = select_fewshot(data, 1, 7)
    assert train_idx == [3, 10, 20, 22, 30] and val_idx == [0]


def test_imagenet_layout(tmp_path):
    (tmp_path / "classnames.txt").write_text("n02\tzebra fish\nn01 tench\n".replace("\t", " "))
    for split in ("train", "val"):
        for wnid in ("n01", "n02"):
            for i in range(3):
                _png(tmp_path / "images" / split / wnid / f"{i}.JPEG")
    data = load_dataset("imagenet", tmp_path)
    assert data.classnames == ["tench", "zebra fish"]  # sorted folder order gives the labels
    assert data.train[0].impath == "images/train/n01/0.JPEG"
    assert data.val == data.test and not data.fewshot_val
    _, val_idx = dassl_fewshot(data, 2, 1)
    assert val_idx == []


def _fake_dassl_datum(monkeypatch):
    """Dassl's Datum class, registered under Dassl's module so pickles name it as Dassl's do."""
    mod = types.ModuleType("dassl.data.datasets.base_dataset")

    class Datum:
        def __init__(self, impath, label, classname):
            self._impath, self._label, self._classname, self._domain = impath, label, classname, 0

    Datum.__module__ = mod.__name__
    Datum.__qualname__ = "Datum"
    mod.Datum = Datum
    for name in ("dassl", "dassl.data", "dassl.data.datasets"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return Datum


def test_imagenet_order_comes_from_dassls_preprocessed_pickle(tmp_path, monkeypatch):
    (tmp_path / "classnames.txt").write_text("n01 tench\nn02 goldfish\n")
    for split in ("train", "val"):
        for wnid in ("n01", "n02"):
            for i in range(4):
                _png(tmp_path / "images" / split / wnid / f"{i}.JPEG")
    sorted_order = load_dataset("imagenet", tmp_path)
    Datum = _fake_dassl_datum(monkeypatch)
    listdir_order = [("n01", 2), ("n01", 0), ("n01", 3), ("n01", 1), ("n02", 1), ("n02", 3), ("n02", 0), ("n02", 2)]
    names = {"n01": "tench", "n02": "goldfish"}
    blob = {
        split: [
            Datum(f"/home/author/DATA/imagenet/images/{folder}/{w}/{i}.JPEG", int(w[-1]) - 1, names[w])
            for w, i in listdir_order
        ]
        for split, folder in (("train", "train"), ("test", "val"))
    }
    with open(tmp_path / "preprocessed.pkl", "wb") as f:
        pickle.dump(blob, f)
    data = load_dataset("imagenet", tmp_path)
    assert [it.impath for it in data.train] == [f"images/train/{w}/{i}.JPEG" for w, i in listdir_order]
    assert data.test[0] == type(data.test[0])("images/val/n01/2.JPEG", 0, "tench")
    # Dassl's sample depends on the order, so the picks follow the pickle, not the sorted listing
    picks = [data.train[i].impath for i in dassl_fewshot(data, 2, 1)[0]]
    assert picks != [sorted_order.train[i].impath for i in dassl_fewshot(sorted_order, 2, 1)[0]]


def test_classes_missing_from_train_are_dropped_as_coop_does(tmp_path):
    split = make_pets(tmp_path, n_classes=4, per_class=3)
    split["test"].append(["extra_0.jpg", 4, "extra"])
    split["val"].append(["extra_1.jpg", 4, "extra"])
    _png(tmp_path / "images" / "extra_0.jpg")
    _png(tmp_path / "images" / "extra_1.jpg")
    (tmp_path / "split_zhou_OxfordPets.json").write_text(json.dumps(split))
    data = load_dataset("oxford_pets", tmp_path)
    with pytest.warns(UserWarning, match="2 val/test images of 1 classes"):
        df, classes = build_manifest(data, 1, [1])
    assert 4 not in set(df.label) and classes["new"] == [2, 3] and (df.sublabel >= 0).all()
    assert df[df.split == "val"].fewshot_1.sum() == 4 and df[df.split == "train"].fewshot_1.sum() == 4


def test_fgvc_aircraft_layout(tmp_path):
    (tmp_path / "variants.txt").write_text("707-320\nA300 B4\n")
    for split in ("train", "val", "test"):
        (tmp_path / f"images_variant_{split}.txt").write_text(f"00{split[0]}1 707-320\n00{split[0]}2 A300 B4\n")
    data = load_dataset("fgvc_aircraft", tmp_path)
    assert data.test[1].impath == "images/00t2.jpg" and data.test[1].label == 1
    assert data.test[1].classname == "A300 B4"


def test_missing_root_names_layout(tmp_path):
    with pytest.raises(DatasetLayoutError, match="prepare.data_root"):
        load_dataset("dtd", tmp_path / "nope")
    (tmp_path / "dtd").mkdir()
    with pytest.raises(DatasetLayoutError, match="split_zhou_DescribableTextures.json"):
        load_dataset("dtd", tmp_path / "dtd")


@pytest.mark.parametrize("n", [1, 2, 5, 7, 100])
def test_base_new_split(n):
    labels = list(range(n))[::-1]
    base, new = split_base_new(labels)
    assert base == list(range(math.ceil(n / 2))) and new == list(range(math.ceil(n / 2), n))


def test_manifest_roundtrip_unicode(tmp_path):
    names = ["Café crème", "naïve", "日本", "z", "ä"]
    make_pets(tmp_path / "pets", names=names, per_class=4)
    data = load_dataset("oxford_pets", tmp_path / "pets")
    df, classes = build_manifest(data, 2, [1, 2])
    write_prepared(tmp_path / "out", df, classes)
    prep = read_prepared(tmp_path / "out")
    assert prep.classnames == names
    assert classes["base"] == [0, 1, 2] and classes["new"] == [3, 4]
    tr = prep.fewshot_train(1)
    assert len(tr) == 2 * 3 and set(tr.classname) == set(names[:3])
    assert sorted(set(prep.manifest[prep.manifest.subset == "new"].sublabel)) == [0, 1]
    val = prep.manifest[(prep.manifest.split == "val") & (prep.manifest.fewshot_1 == 1)]
    assert len(val) == 2 * 5
    assert classes["template"] == "a photo of a {}, a type of pet."

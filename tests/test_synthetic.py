import json

import numpy as np
from PIL import Image

from pipeline.datasets import load_dataset
from pipeline.datasets.synthetic import SyntheticSpec, class_names, generate

SPEC = SyntheticSpec(
    image_size=32, train_per_class=3, val_per_class=1, test_per_class=2, n_shapes=3, n_colours=2, spurious=1.0
)


def test_deterministic(tmp_path):
    a, b = generate(tmp_path / "a", SPEC), generate(tmp_path / "b", SPEC)
    split = json.loads((a / "split_zhou_Synthetic.json").read_text())
    for rel, _, _ in split["test"][:4] + split["train"][:4]:
        assert np.array_equal(np.asarray(Image.open(a / "images" / rel)), np.asarray(Image.open(b / "images" / rel)))
    c = generate(tmp_path / "c", SyntheticSpec(**{**SPEC.__dict__, "seed": 1}))
    rel = split["train"][0][0]
    assert not np.array_equal(np.asarray(Image.open(a / "images" / rel)), np.asarray(Image.open(c / "images" / rel)))


def test_mask_aligns_with_object_colour(tmp_path):
    root = generate(tmp_path, SPEC)
    data = load_dataset("synthetic", root)
    assert data.classnames == class_names(3, 2)
    colours = {"red": (215, 35, 35), "green": (35, 175, 60)}
    for item in data.train:
        img = np.asarray(Image.open(root / item.impath)).astype(float)
        mask = np.asarray(Image.open(root / "mask" / item.impath.removeprefix("images/"))) > 0
        assert 0.02 < mask.mean() < 0.6
        target = np.array(colours[item.classname.split()[0]])
        inside = np.abs(img[mask] - target).mean(1)
        outside = np.abs(img[~mask] - target).mean(1)
        assert np.median(inside) < 40 < np.median(outside)


def test_spurious_background_in_train_only(tmp_path):
    spec = SyntheticSpec(**{**SPEC.__dict__, "train_per_class": 6, "test_per_class": 6})
    root = generate(tmp_path, spec)
    styles = json.loads((root / "styles.json").read_text())
    own = styles["own"]
    assert len({tuple(v) for v in own.values()}) == len(own)  # one style per class
    split = json.loads((root / "split_zhou_Synthetic.json").read_text())
    for rel, _, cname in split["train"]:
        assert styles["images"][rel] == own[cname]
    off = sum(styles["images"][rel] != own[cname] for rel, _, cname in split["test"])
    assert off >= len(split["test"]) // 2

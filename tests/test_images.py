"""The backbones' image transforms equal Dassl's, computed by hand with PIL."""

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import transforms

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def _image(w=40, h=24):
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _normalised(im: Image.Image) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


def test_coop_training_transform_squashes_the_whole_image():
    im = _image()
    expect = _normalised(im.resize((16, 16), Image.BICUBIC))  # Dassl: Resize((16, 16)), no crop
    assert torch.allclose(transforms.train_transform("resize", 16, MEAN, STD)(im), expect, atol=1e-5)


def test_test_transform_resizes_the_short_side_and_centre_crops():
    im = _image()
    w = int(16 * 40 / 24)  # short side 24 -> 16; the long side scales with it (floored)
    wide = im.resize((w, 16), Image.BICUBIC)
    left = int(round((w - 16) / 2.0))
    expect = _normalised(wide.crop((left, 0, left + 16, 16)))
    assert torch.allclose(transforms.test_transform(16, MEAN, STD)(im), expect, atol=1e-5)


def test_random_resized_crop_flip_keeps_the_size():
    out = transforms.train_transform("crop_flip", 16, MEAN, STD)(_image())
    assert out.shape == (3, 16, 16)
    with pytest.raises(ValueError, match="crop_flip"):
        transforms.train_transform("center", 16, MEAN, STD)

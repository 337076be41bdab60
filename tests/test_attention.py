"""Grad-CAM on CLIP's image encoder, the foreground share, and the attention stage."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pipeline.attention import foreground_share, grad_cam, spatial_layer
from pipeline.models.loading import load_clip


class ChannelPool(torch.nn.Module):
    """A toy encoder: `layer4` passes the image's channels through, the features are their spatial means."""

    def __init__(self) -> None:
        super().__init__()
        self.layer4 = torch.nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.layer4.weight.copy_(torch.eye(3).view(3, 3, 1, 1))

    def forward(self, x):
        return self.layer4(x).mean((2, 3))

    def encode(self, x):
        """Normalised features, as the stage gives grad_cam."""
        return torch.nn.functional.normalize(self(x), dim=-1)


def left_half_image():
    x = torch.zeros(1, 3, 8, 8)
    x[0, 0, :, :4] = 1.0  # channel 0 lights the left half only
    x[0, 1] = 0.5  # channel 1 is uniform
    return x


def test_grad_cam_weighs_channels_by_their_gradient_and_keeps_the_positive_part():
    toy = ChannelPool()
    left = torch.zeros(1, 8, 8, dtype=torch.bool)
    left[0, :, :4] = True
    identity = torch.eye(3)
    cams, _ = grad_cam(
        toy.encode,
        toy,
        spatial_layer(toy),
        left_half_image(),
        {"ch0": lambda f: f @ identity, "against": lambda f: -(f @ identity)},
        {"ch0": torch.tensor([0]), "against": torch.tensor([0])},
    )
    # The score reads channel 0: the map is channel 0's activation (left half), scaled to a peak of 1.
    assert torch.allclose(cams["ch0"][0, :, :4], torch.ones(8, 4), atol=1e-6)
    assert float(cams["ch0"][0, :, 4:].abs().max()) < 1e-6
    assert float(foreground_share(cams["ch0"], left)) == pytest.approx(1.0)
    # A score that falls with channel 0 (features are normalised, so it rises with the other channels): its
    # positive evidence is where channel 0 is dark, and the left half, negative, is cut to zero.
    assert float(cams["against"][0, :, :4].abs().max()) == 0.0
    assert torch.allclose(cams["against"][0, :, 4:], torch.ones(8, 4), atol=1e-6)
    assert float(foreground_share(cams["against"], left)) == 0.0
    assert np.isnan(float(foreground_share(torch.zeros(1, 8, 8), left)))  # no evidence anywhere: no share


def test_grad_cam_reads_only_the_class_asked_for():
    toy = ChannelPool()
    mixing = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # class 0 <- channel 0, class 1 <- channel 1
    scores = {"a": lambda f: f @ mixing, "b": lambda f: f @ mixing}
    cams, _ = grad_cam(
        toy.encode, toy, spatial_layer(toy), left_half_image(), scores, {"a": torch.tensor([0]), "b": torch.tensor([1])}
    )
    # Class 0 rises with channel 0 (the left half); class 1 with channel 1 relative to channel 0 (the right half).
    assert torch.equal(cams["a"][0, :, :4] > 0.5, torch.ones(8, 4, dtype=torch.bool))
    assert float(cams["a"][0, :, 4:].max()) == 0.0
    assert float(cams["b"][0, :, :4].max()) == 0.0
    assert torch.allclose(cams["b"][0, :, 4:], torch.ones(8, 4), atol=1e-6)


def test_foreground_share_of_a_uniform_map_is_the_mask_area():
    mask = torch.zeros(2, 10, 10, dtype=torch.bool)
    mask[0, :3] = True
    mask[1, :, :5] = True
    share = foreground_share(torch.ones(2, 10, 10), mask)
    assert share.tolist() == pytest.approx([0.3, 0.5])


@pytest.mark.parametrize("name", ["fvgpt-test-rn", "fvgpt-test-vit"])
def test_grad_cam_on_open_clip_towers_gives_a_map_per_image(name):
    torch.manual_seed(0)
    clip = load_clip(name, "")
    for p in clip.model.parameters():
        p.requires_grad_(False)
    x = torch.randn(3, 3, clip.image_size, clip.image_size)
    g = torch.nn.functional.normalize(torch.randn(4, clip.embed_dim), dim=-1)
    cams, _ = grad_cam(
        lambda images: torch.nn.functional.normalize(clip.model.encode_image(images), dim=-1),
        clip.model.visual,
        spatial_layer(clip.model.visual),
        x,
        {"m": lambda f: f @ g.t()},
        {"m": torch.tensor([0, 1, 2])},
    )
    cam = cams["m"]
    assert cam.shape == (3, clip.image_size, clip.image_size) and bool(torch.isfinite(cam).all())
    assert float(cam.min()) >= 0 and float(cam.max()) <= 1 + 1e-6
    assert float(cam.max()) > 0.99  # evidence somewhere: a map with any is scaled to peak at 1
    assert all(p.grad is None for p in clip.model.parameters())  # read, never trained


def test_vit_tokens_become_the_patch_grid_row_by_row():
    from pipeline.attention import _as_grid

    visual = load_clip("fvgpt-test-vit", "").model.visual  # 32 px, patch 8: a 4 x 4 grid
    tokens = torch.zeros(1, 1 + 16, 5)
    tokens[0, 1 + 6, 2] = 1.0  # patch 6: row 1, column 2
    grid = _as_grid(tokens, visual)
    assert grid.shape == (1, 5, 4, 4) and grid[0, 2, 1, 2] == 1 and grid.sum() == 1


def test_unknown_layer_is_named():
    clip = load_clip("fvgpt-test-vit", "")
    with pytest.raises(ValueError, match="attention.layer"):
        spatial_layer(clip.model.visual, "layer9")


def test_base_and_new_scores_are_the_logits_with_a_graph():
    from pipeline.heads.config import HeadsConfig
    from pipeline.heads.model import FVGPTHeads

    torch.manual_seed(0)
    model = FVGPTHeads([HeadsConfig(seed=1)], 8, 20.0)
    f = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1).requires_grad_()
    g, g_clip = torch.randn(3, 8), torch.randn(3, 8)
    base, (new, _) = model.base_scores(f, g), model.new_scores(f, f, g, g_clip)
    assert base.requires_grad and new.requires_grad
    assert torch.equal(base.detach(), model.base_logits(f, g))
    assert torch.equal(new.detach(), model.new_logits(f, f, g, g_clip)[0])


@pytest.fixture(scope="module")
def trained_project(tmp_path_factory):
    from stages import heads
    from tests.tiny_project import built_project

    # The test-size CLIP's last stage is 1 x 1 on its 32-pixel images: its layer2 is 4 x 4.
    root = tmp_path_factory.mktemp("attention")
    with built_project(root, backbones=("zsclip", "coop"), with_features=True, **{"attention.layer": "layer2"}):
        heads.run("synthetic")
        yield root


def test_attention_stage_writes_shares_and_figure(trained_project, monkeypatch):
    from stages import attention

    monkeypatch.chdir(trained_project)
    attention.run("synthetic")
    metrics = json.loads((trained_project / "reports/attention/synthetic.json").read_text())
    assert set(metrics) == {"zsclip", "coop"} and set(metrics["coop"]) == {"seed1"}
    row = metrics["coop"]["seed1"]
    for model in ("clip", "backbone", "fvgpt"):
        for subset in ("base", "new", "all"):
            value = row[f"{model}.{subset}"]
            assert value is None or 0.0 <= value <= 1.0
        assert 0.0 <= row[f"{model}.with_evidence"] <= 1.0
    assert any(row[f"{m}.all"] is not None for m in ("clip", "backbone", "fvgpt"))
    assert 0 < row["mask_area"] < 1 and row["images"] == 18
    assert (trained_project / "reports/attention/figures/synthetic.png").stat().st_size > 1000


def test_attention_command_draws_a_users_images(trained_project, monkeypatch):
    from stages.cli import app

    monkeypatch.chdir(trained_project)
    Image.new("RGB", (40, 30), (200, 30, 30)).save(trained_project / "mine.png")
    result = CliRunner().invoke(
        app, ["attention", "synthetic", "--image", "mine.png", "--image", "mine.png", "--out", "maps.png"]
    )
    assert result.exit_code == 0, result.output
    assert (trained_project / "maps.png").stat().st_size > 1000
    result = CliRunner().invoke(app, ["attention", "synthetic", "--image", "mine.png", "--subset", "novel"])
    assert result.exit_code == 1 and "--subset must be base or new" in result.output
    result = CliRunner().invoke(app, ["attention", "synthetic", "--image", "mine.png", "--backbone", "kgcoop"])
    assert result.exit_code == 1 and "is not one of `backbones`" in result.output

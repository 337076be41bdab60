"""Prompt backbones on a tiny random CLIP."""

import logging

import pytest
import torch

from pipeline.backbones import BACKBONES, create_backbone, template_features, tuning
from pipeline.config import TrainSettings
from pipeline.models import load_clip
from pipeline.schedule import epoch_lr

logging.getLogger().setLevel(logging.ERROR)
NAMES = ["red circle", "blue big square", "green_star"]


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return load_clip("fvgpt-test-rn")


@pytest.fixture(scope="module")
def vit_clip(tmp_path_factory):
    """A test-size ViT CLIP as deep as ViT-B/16 (12 blocks per encoder), for backbones that prompt inside it."""
    import json

    import open_clip

    path = tmp_path_factory.mktemp("cfg") / "fvgpt-test-vit12.json"
    vision = {"image_size": 32, "layers": 12, "width": 32, "head_width": 16, "patch_size": 8}
    text = {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 12}
    path.write_text(json.dumps({"embed_dim": 32, "vision_cfg": vision, "text_cfg": text}))
    open_clip.add_model_config(path)
    return load_clip("fvgpt-test-vit12")


@pytest.mark.parametrize(
    "position,template", [("end", "a photo of a {}."), ("front", "{} a photo of a."), ("middle", "a photo {} of a.")]
)
def test_coop_context_from_words_reproduces_the_sentence(clip, position, template):
    coop = create_backbone("coop", clip, "unused", ctx_init="a photo of a", class_token_position=position)
    assert torch.allclose(coop.class_features(NAMES), template_features(clip, template, NAMES), atol=1e-5)


def test_coop_counts_context_words_and_ignores_csc_with_a_phrase(clip):
    # "photo-of" is three tokens: CoOp's code takes n_ctx = 3 words, learns the first 3 token embeddings and
    # keeps the rest of the phrase frozen in the prompt.
    with pytest.warns(UserWarning, match="csc is ignored"):
        coop = create_backbone("coop", clip, "unused", n_ctx=16, ctx_init="a photo-of a", csc=True, classnames=NAMES)
    assert coop.n_ctx == 3 and coop.ctx.shape == (3, 32)
    feats = coop.class_features(NAMES + ["unseen thing"])
    assert torch.allclose(feats, template_features(clip, "a photo-of a {}.", NAMES + ["unseen thing"]), atol=1e-5)


def test_coop_random_init_and_state_is_only_the_context(clip):
    torch.manual_seed(3)
    coop = create_backbone("coop", clip, "x", n_ctx=6, init_std=0.02)
    assert list(coop.state_dict()) == ["ctx"] and coop.ctx.shape == (6, 32)
    assert 0.01 < coop.ctx.std().item() < 0.03
    feats = coop.class_features(NAMES + ["unseen thing"])  # any class list, new ones included
    assert feats.shape == (4, 32) and torch.allclose(feats.norm(dim=-1), torch.ones(4))


def test_class_specific_context_refuses_unseen_classes(clip):
    coop = create_backbone("coop", clip, "x", csc=True, classnames=NAMES)
    assert coop.ctx.shape[0] == 3 and coop.class_features(NAMES[::-1]).shape == (3, 32)
    with pytest.raises(ValueError, match="unseen"):
        coop.class_features(["zebra"])


def test_kgcoop_penalty_is_zero_at_template_and_grows(clip):
    kg = create_backbone("kgcoop", clip, "a photo of a {}.", weight=2.0)
    img = torch.nn.functional.normalize(torch.randn(4, 32), dim=-1)
    y = torch.tensor([0, 1, 2, 0])
    _, parts = kg.loss(img, y, NAMES)
    assert parts["kg"] < 1e-5  # context initialised from the template's words
    with torch.no_grad():
        kg.ctx.add_(torch.randn_like(kg.ctx))
    loss, parts = kg.loss(img, y, NAMES)
    assert parts["kg"] > 1e-3 and loss.item() == pytest.approx(parts["ce"] + 2.0 * parts["kg"], rel=1e-5)


def test_kgcoop_frozen_template_features_are_fp32_under_autocast(clip):
    kg = create_backbone("kgcoop", clip, "a photo of a {}.", weight=2.0)
    img = torch.nn.functional.normalize(torch.randn(4, 32), dim=-1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kg.loss(img, torch.tensor([0, 1, 2, 0]), NAMES)
    frozen = kg._frozen_text[tuple(NAMES)]
    assert frozen.dtype == torch.float32
    assert torch.allclose(frozen, template_features(clip, "a photo of a {}.", NAMES), atol=1e-6)


def test_zero_shot_has_nothing_to_learn(clip):
    zs = create_backbone("zsclip", clip, "a photo of a {}.")
    assert not zs.needs_training and list(zs.state_dict()) == []
    assert set(BACKBONES) >= {"zsclip", "coop", "kgcoop"}


def test_training_reduces_loss_and_save_load_roundtrip(clip, tmp_path):
    torch.manual_seed(0)
    coop = create_backbone("coop", clip, "x")
    images = torch.randn(12, 3, 32, 32)
    labels = torch.arange(12) % 3
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=4)
    log = tuning.train(coop, loader, NAMES, TrainSettings(epochs=6, lr=0.5, warmup_epochs=0), torch.device("cpu"))
    assert log[-1]["loss"] < log[0]["loss"]
    tuning.save(tmp_path, coop, {"n_ctx": 4}, {"clip_model": clip.name}, log)
    again = tuning.load(tmp_path, clip, "x")
    assert torch.equal(again.ctx, coop.ctx)
    assert (tmp_path / "train_log.csv").read_text().startswith("epoch,lr,loss,ce")


def test_tuning_reports_each_epoch_as_it_ends_and_each_step_to_the_bar(clip):
    """`on_epoch` gets each log row before the next epoch's first step; `advance` counts optimiser steps."""
    coop = create_backbone("coop", clip, "x")
    data = torch.utils.data.TensorDataset(torch.randn(10, 3, 32, 32), torch.arange(10) % 3)
    loader = torch.utils.data.DataLoader(data, batch_size=4)  # 3 steps per epoch, the last one short
    events = []
    log = tuning.train(
        coop,
        loader,
        NAMES,
        TrainSettings(epochs=2, lr=0.1, warmup_epochs=0),
        torch.device("cpu"),
        advance=lambda n: events.append(("step", n)),
        on_epoch=lambda row: events.append(("epoch", row)),
    )
    assert events == [("step", 1)] * 3 + [("epoch", log[0])] + [("step", 1)] * 3 + [("epoch", log[1])]


def test_dassl_schedule():
    lrs = [epoch_lr(e, 0.0035, 10, 1, 1e-5) for e in range(11)]
    assert lrs[0] == 1e-5 and lrs[1] == pytest.approx(0.0035)
    assert all(a > b for a, b in zip(lrs[1:], lrs[2:]))


def test_gradients_reach_only_the_context(clip):
    kg = create_backbone("kgcoop", clip, "a photo of a {}.")
    img = torch.nn.functional.normalize(torch.randn(4, 32), dim=-1)
    loss, _ = kg.loss(img, torch.tensor([0, 1, 2, 0]), NAMES)
    loss.backward()
    assert kg.ctx.grad is not None and kg.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in clip.model.parameters())


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_registered_backbone_works_from_its_params_section(clip, vit_clip, name, tmp_path, project_root):
    """A new backbone is one file plus its registration; this test covers it for free."""
    import yaml

    clip = vit_clip if BACKBONES[name].needs_vit else clip
    from pipeline.backbones import backbone_template

    section = yaml.safe_load((project_root / "params.yaml").read_text())["backbone"][name]
    model = create_backbone(name, clip, backbone_template(name, "synthetic"), classnames=NAMES, **section)
    feats = model.class_features(NAMES + ["unseen thing"])
    assert feats.shape == (4, 32) and torch.allclose(feats.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert model.train_augment in ("resize", "crop_flip") and isinstance(model.shares_clip_image_encoder, bool)
    img = torch.nn.functional.normalize(torch.randn(3, 32), dim=-1)
    loss, parts = model.loss(img, torch.tensor([0, 1, 2]), NAMES)
    assert torch.isfinite(loss) and "ce" in parts
    tuning.save(tmp_path, model, section, {"clip_model": clip.name}, [])
    again = tuning.load(tmp_path, clip, backbone_template(name, "synthetic"))
    assert torch.allclose(again.class_features(NAMES), model.class_features(NAMES), atol=1e-6)
    with pytest.raises(Exception, match=f"backbone.{name}.n_ctxx"):
        create_backbone(name, clip, "a photo of a {}.", n_ctxx=3)


def test_every_registered_backbone_has_its_settings_in_the_light_table():
    from pipeline.backbones.settings import SETTINGS

    assert set(SETTINGS) == set(BACKBONES)
    for name, cls in BACKBONES.items():
        assert cls.Settings is SETTINGS[name], name


def test_checking_params_does_not_import_torch(project_root):
    import subprocess
    import sys

    code = (
        "import sys; from pipeline.config import load_params; load_params('params.yaml'); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=project_root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # so `fvgpt check` and every stage's first check stay fast


@pytest.mark.parametrize("name", [n for n, cls in BACKBONES.items() if cls.needs_vit])
def test_backbones_that_prompt_inside_a_vit_train_on_the_benchmark_vit_from_its_config(name, project_root):
    """configs/benchmark_vit.yaml's section on its tiny ViT (conv stem in place of the patch embedding)."""
    from pipeline.backbones import backbone_template
    from pipeline.config import load_params

    params = load_params(project_root / "configs/benchmark_vit.yaml")
    clip = load_clip(params.clip.model)
    section = params.backbone.settings_for(name, "synthetic")
    torch.manual_seed(0)
    model = create_backbone(name, clip, backbone_template(name, "synthetic"), classnames=NAMES, **section)
    images = torch.randn(2, 3, clip.image_size, clip.image_size)
    frozen = {k: v.clone() for k, v in clip.model.state_dict().items()}
    model.train()
    loss, parts = model.training_loss(images, torch.tensor([0, 2]), NAMES)
    loss.backward()
    learned = [p for p in model.parameters() if p.requires_grad]
    assert torch.isfinite(loss) and learned and all(p.grad is not None and p.grad.abs().sum() > 0 for p in learned)
    # CLIP stays frozen, the stem's batch-norm statistics included
    assert all(torch.equal(v, frozen[k]) for k, v in clip.model.state_dict().items())


@pytest.mark.parametrize("name", [name for name, cls in BACKBONES.items() if cls.needs_training])
def test_the_text_tower_stops_at_the_last_eot_and_gives_the_full_length_features(clip, vit_clip, name, monkeypatch):
    """Tuning runs the text tower over every class at every step; the padding after the last EOT is cut
    (causal mask: it cannot reach an EOT), which must leave the features equal."""
    from pipeline.backbones import _text

    clip = vit_clip if BACKBONES[name].needs_vit else clip
    torch.manual_seed(1)
    model = create_backbone(name, clip, "a photo of a {}.", classnames=NAMES)
    learned = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad():  # away from the initialisation, so every learned part is in play
        for p in learned:
            p.add_(torch.randn_like(p) * 0.1)
    last = clip.model.transformer.resblocks[-1]
    seen = []
    hook = last.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    try:
        short = model.class_features(NAMES)
        monkeypatch.setattr(_text, "trimmed_length", lambda model, tokens: tokens.shape[1])
        full = model.class_features(NAMES)
    finally:
        hook.remove()
    assert clip.model.transformer.batch_first
    assert seen[0] < seen[1], f"{name}'s text tower ran on {seen[0]} of {seen[1]} columns"
    assert torch.allclose(short, full, atol=1e-5)


@pytest.mark.parametrize("position", ["front", "middle"])
def test_the_cut_leaves_coops_other_class_positions_equal(clip, position, monkeypatch):
    from pipeline.backbones import _text

    torch.manual_seed(2)
    coop = create_backbone("coop", clip, "a photo of a {}.", class_token_position=position)
    names = NAMES + ["a much longer class name than the others"]
    short = coop.class_features(names)
    monkeypatch.setattr(_text, "trimmed_length", lambda model, tokens: tokens.shape[1])
    assert torch.allclose(short, coop.class_features(names), atol=1e-5)


def test_a_text_tower_pooled_otherwise_than_at_the_eot_is_refused(clip, monkeypatch):
    monkeypatch.setattr(clip.model, "text_pool_type", "eos")
    with pytest.raises(TypeError, match="pools by 'eos'"):
        create_backbone("coop", clip, "a photo of a {}.")


def test_a_text_tower_without_a_causal_mask_keeps_every_column(clip):
    from pipeline.backbones._text import trimmed_length

    tokens = clip.tokenizer(NAMES)
    assert trimmed_length(clip.model, tokens) == int(tokens.argmax(-1).max()) + 1 < tokens.shape[1]
    bidirectional = type("Tower", (), {"attn_mask": None})()
    assert trimmed_length(bidirectional, tokens) == tokens.shape[1]

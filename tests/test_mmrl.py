"""MMRL: its encoders against open_clip's own forward with the representation tokens put in by hooks, its loss
term by term, the per-dataset regularisation weight, the two image branches through the feature file and the
heads, and the pipeline running it on its own image encodings."""

import json

import pytest
import torch
import torch.nn.functional as F

from pipeline.backbones import create_backbone
from pipeline.backbones.base import template_features
from pipeline.backbones.settings import MMRLSettings
from pipeline.models.loading import load_clip

TEMPLATE = "a photo of a {}."
NAMES = ["red circle", "blue square", "green ring"]


def mmrl(clip, **settings):
    torch.manual_seed(0)
    model = create_backbone("mmrl", clip, TEMPLATE, **{"rep_layers_from": 2, "n_rep_tokens": 3, **settings})
    with torch.no_grad():  # far from the init (the per-block maps start equal), so a misplaced token shows
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    return model


def _inserting(block, tokens, first: bool, batch_first: bool, mask=None):
    """A forward pre-hook putting `tokens` [K, W] after the first token of the block's input (inserted when
    `first`, else replacing), and, given, passing `mask` as the block's attention mask."""

    def hook(_module, args, kwargs):
        x = args[0] if batch_first else args[0].transpose(0, 1)
        rest = x[:, 1:] if first else x[:, 1 + tokens.shape[0] :]
        x = torch.cat([x[:, :1], tokens.expand(x.shape[0], -1, -1), rest], 1)
        if mask is not None:
            kwargs = {**kwargs, "attn_mask": mask}
        return (x if batch_first else x.transpose(0, 1),) + args[1:], kwargs

    return block.register_forward_pre_hook(hook, with_kwargs=True)


def test_image_branches_are_open_clips_forward_with_the_tokens_inserted(deep_clip):
    model = mmrl(deep_clip)
    visual, k = deep_clip.model.visual, model.n_rep
    blocks, batch_first = visual.transformer.resblocks, visual.transformer.batch_first
    captured = {}

    def drop_tokens(_module, _inputs, out):  # CLIP's pooling then sees its own sequence
        x = out if batch_first else out.transpose(0, 1)
        captured["x"] = x
        x = torch.cat([x[:, :1], x[:, 1 + k :]], 1)
        return x if batch_first else x.transpose(0, 1)

    with torch.no_grad():
        hooks = [_inserting(blocks[i], model.to_vision[i - 1](model.rep), i == 1, batch_first) for i in (1, 2)] + [
            visual.transformer.register_forward_hook(drop_tokens)
        ]
        images = torch.randn(3, 3, 32, 32)
        try:
            cls = F.normalize(deep_clip.model.encode_image(images).float(), dim=-1)
        finally:
            for h in hooks:
                h.remove()
        rep = F.normalize(visual.ln_post(captured["x"][:, 1 : 1 + k]).mean(1) @ model.proj_rep, dim=-1)
        got_cls, got_rep = model.image_branches(images)
        assert torch.allclose(got_cls, cls, atol=1e-5) and torch.allclose(got_rep, rep, atol=1e-5)
        assert torch.equal(model.encode_image(images), got_cls)  # new classes: the class token alone
        assert torch.equal(model.encode_image_for_features(images), torch.cat([got_cls, got_rep], -1))
        plain = F.normalize(deep_clip.model.encode_image(images).float(), dim=-1)
        assert not torch.allclose(got_cls, plain, atol=1e-3)  # the tokens reach the class token through attention


def test_text_features_are_open_clips_forward_with_the_tokens_inserted_and_a_longer_causal_mask(deep_clip):
    model = mmrl(deep_clip)
    clip, k = deep_clip.model, model.n_rep
    tokens = deep_clip.tokenizer([TEMPLATE.format(n) for n in NAMES])
    length = tokens.shape[1] + k
    mask = torch.full((length, length), float("-inf")).triu_(1)
    blocks, batch_first = clip.transformer.resblocks, clip.transformer.batch_first
    with torch.no_grad():
        hooks = [_inserting(blocks[i], model.to_text[i - 1](model.rep), i == 1, batch_first, mask) for i in (1, 2)]
        try:
            x = clip.token_embedding(tokens) + clip.positional_embedding
            x = clip.transformer(x if batch_first else x.transpose(0, 1), attn_mask=clip.attn_mask)
        finally:
            for h in hooks:
                h.remove()
        x = clip.ln_final(x if batch_first else x.transpose(0, 1))
        x = x[torch.arange(len(NAMES)), tokens.argmax(-1) + k] @ clip.text_projection
        assert torch.allclose(model.class_features(NAMES), F.normalize(x, dim=-1), atol=1e-5)


def test_from_the_last_block_only_the_text_still_sees_the_tokens(deep_clip):
    """With the tokens entering only the last block, they change the features, and with no block after them
    left to carry them nothing else about CLIP's text path changes: a sanity check of the first index."""
    model = mmrl(deep_clip, rep_layers_from=3)
    assert len(model.to_text) == 1 and len(model.to_vision) == 1
    with torch.no_grad():
        plain = template_features(deep_clip, TEMPLATE, NAMES)
        assert not torch.allclose(model.class_features(NAMES), plain, atol=1e-3)


def test_loss_is_the_authors_terms_and_every_learned_part_gets_a_gradient(deep_clip):
    model = mmrl(deep_clip, alpha=0.7, reg_weight=2.0)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 1])
    loss, parts = model.training_loss(images, labels, NAMES)
    with torch.no_grad():
        text = model.class_features(NAMES)
        f_cls, f_rep = model.image_branches(images)
        frozen_image = F.normalize(deep_clip.model.encode_image(images).float(), dim=-1)
        frozen_text = template_features(deep_clip, TEMPLATE, NAMES)
        s = deep_clip.logit_scale
        expected = {
            "ce_cls": F.cross_entropy(s * f_cls @ text.t(), labels),
            "ce_rep": F.cross_entropy(s * f_rep @ text.t(), labels),
            "reg_image": 1 - (f_cls * frozen_image).sum(-1).mean(),
            "reg_text": 1 - (text * frozen_text).sum(-1).mean(),
        }
    for key, value in expected.items():
        assert parts[key] == pytest.approx(float(value), rel=1e-4, abs=1e-6), key
    total = 0.7 * expected["ce_cls"] + 0.3 * expected["ce_rep"] + 2.0 * (expected["reg_image"] + expected["reg_text"])
    assert float(loss.detach()) == pytest.approx(float(total), rel=1e-4)
    loss.backward()
    learned = [model.rep, model.proj_rep, *model.to_text.parameters(), *model.to_vision.parameters()]
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in learned)
    assert all(p.grad is None for p in deep_clip.model.parameters())


def test_each_block_has_its_own_map_starting_from_the_same_weights(deep_clip):
    torch.manual_seed(0)
    model = create_backbone("mmrl", deep_clip, TEMPLATE, rep_layers_from=1)
    assert len(model.to_vision) == 3 and model.to_vision[0].weight is not model.to_vision[1].weight
    assert all(torch.equal(m.weight, model.to_vision[0].weight) for m in model.to_vision)
    assert model.rep_weight == pytest.approx(0.3) and model.optimizer == "adamw"


def test_the_regularisation_weight_is_the_authors_for_the_dataset():
    settings = MMRLSettings()
    assert settings.for_dataset("stanford_cars").reg_weight == 7.0
    assert settings.for_dataset("eurosat").reg_weight == 0.01
    assert settings.for_dataset("synthetic").reg_weight == 1.0  # not in the table: reg_weight
    assert MMRLSettings(reg_weight=3.0, reg_weights={}).for_dataset("dtd").reg_weight == 3.0


def test_the_backbone_stage_gets_the_datasets_regularisation_weight(project_root):
    from pipeline.config import load_params, to_plain

    paper = load_params(project_root / "configs/paper.yaml")
    assert paper.backbone.settings_for("mmrl", "stanford_cars")["reg_weight"] == 7.0
    assert paper.backbone.settings_for("coop", "stanford_cars") == to_plain(paper.backbone.settings["coop"])


def test_a_resnet_clip_or_a_first_block_past_the_depth_is_refused():
    with pytest.raises(ValueError, match="needs a ViT image encoder"):
        create_backbone("mmrl", load_clip("fvgpt-test-rn", ""), TEMPLATE)
    with pytest.raises(ValueError, match="rep_layers_from 9"):
        create_backbone("mmrl", load_clip("fvgpt-test-vit", ""), TEMPLATE, rep_layers_from=9)


def test_the_heads_run_base_classes_on_the_fused_feature_and_pc_on_the_class_token(tmp_path):
    """A feature file with a representation feature: the base branch's features are (1 - w) f + w f_rep, the
    new branch's f alone; PC's terms move with the new branch's features and FDC's do not."""
    import numpy as np

    from pipeline.features.run_features import RunFeatures, write_run_features
    from pipeline.heads.config import HeadsConfig
    from pipeline.heads.model import FVGPTHeads

    rng = np.random.default_rng(0)
    v, n, m, d, c = 2, 6, 8, 16, 4
    unit = lambda *shape: (lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True))(rng.normal(size=shape))  # noqa: E731
    arrays = {
        "train/feat_full": unit(v, n, d), "train/feat_fg": unit(v, n, d), "train/area": np.full((v, n), 0.3),
        "train/label": np.arange(n) % 2, "test/feat": unit(m, d), "test/label": np.arange(m) % c,
        "test/subset": (np.arange(m) % c >= 2).astype(np.int64), "test/feat_fg": unit(m, d),
        "test/area": np.full(m, 0.3), "test/has_fg": np.ones(m, bool), "text/backbone": unit(c, d),
        "text/clip": unit(c, d), "train/clip_full": unit(v, n, d), "test/clip": unit(m, d),
        "train/rep_full": unit(v, n, d), "train/rep_fg": unit(v, n, d), "test/rep": unit(m, d),
        "test/rep_fg": unit(m, d),
    }  # fmt: skip
    attrs = {"classnames": list("abcd"), "base": [0, 1], "new": [2, 3], "logit_scale": 10.0}
    write_run_features(tmp_path / "f.h5", arrays, {**attrs, "shares_clip_image": False, "rep_weight": 0.3}, "float32")
    feats = RunFeatures(tmp_path / "f.h5")
    own, rep = (torch.from_numpy(arrays[k]).float() for k in ("train/feat_full", "train/rep_full"))
    assert torch.allclose(feats.feat_full, 0.7 * own + 0.3 * rep, atol=1e-6)
    assert torch.allclose(feats.feat_full_new, own, atol=1e-6)
    test_own, test_rep = (torch.from_numpy(arrays[k]).float() for k in ("test/feat", "test/rep"))
    assert torch.allclose(feats.test_feat, 0.7 * test_own + 0.3 * test_rep, atol=1e-6)
    assert torch.allclose(feats.test_feat_new, test_own, atol=1e-6)
    with pytest.raises(Exception, match="lacks"):
        del arrays["test/rep"]
        write_run_features(tmp_path / "g.h5", arrays, {**attrs, "shares_clip_image": False, "rep_weight": 0.3})
        RunFeatures(tmp_path / "g.h5")

    heads = FVGPTHeads([HeadsConfig(seed=1)], d, 10.0)
    g, g_clip = feats.text_backbone[:2], feats.text_clip[:2]
    batch = [x[0].unsqueeze(0) for x in (feats.feat_full, feats.feat_fg, feats.train_clip_full, feats.area)]
    y = feats.train_label.unsqueeze(0)
    _, fused = heads.losses(*batch, y, g, g_clip)
    _, split = heads.losses(*batch, y, g, g_clip, feats.feat_full_new[0].unsqueeze(0))
    for term in ("fdc_ce", "frg_bce", "fdc_dist"):
        assert torch.equal(fused[term], split[term]), term
    assert not torch.allclose(fused["pc_ce"], split["pc_ce"])

    # FDC starts at the backbone's fused logits only if its adapter keeps the (shorter) fused feature's length
    f = feats.test_feat.unsqueeze(0)
    assert float(feats.test_feat.norm(dim=-1).max()) < 0.99
    kept = FVGPTHeads([HeadsConfig(seed=1, adapter_init=0.0)], d, 10.0, keep_image_norm=True)
    assert torch.allclose(kept.fdc_logits(f, g), kept.frozen_logits(f, g), atol=1e-5)
    unit = FVGPTHeads([HeadsConfig(seed=1, adapter_init=0.0)], d, 10.0)
    assert not torch.allclose(unit.fdc_logits(f, g), unit.frozen_logits(f, g), atol=1e-2)


def test_heads_training_feeds_pc_the_class_token_features(tmp_path):
    """Two files with the same fused (base-branch) features and swapped class-token and representation
    features: FRG and FDC see the same inputs, PC does not, so only PC's terms differ in the first epoch."""
    import numpy as np

    from pipeline.features.run_features import RunFeatures, write_run_features
    from pipeline.heads.config import HeadsConfig
    from pipeline.heads.train import train_heads

    rng = np.random.default_rng(0)
    unit = lambda *shape: (lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True))(rng.normal(size=shape))  # noqa: E731
    x, y, test = unit(2, 6, 8), unit(2, 6, 8), unit(4, 8)
    common = {
        "train/feat_fg": unit(2, 6, 8), "train/area": np.full((2, 6), 0.3), "train/label": np.arange(6) % 2,
        "test/feat": test, "test/label": np.array([0, 1, 2, 3]), "test/subset": np.array([0, 0, 1, 1]),
        "test/feat_fg": test, "test/area": np.full(4, 0.3), "test/has_fg": np.ones(4, bool),
        "text/backbone": unit(4, 8), "text/clip": unit(4, 8), "train/clip_full": unit(2, 6, 8), "test/clip": test,
        "test/rep": test, "test/rep_fg": test,
    }  # fmt: skip
    attrs = {"classnames": list("abcd"), "base": [0, 1], "new": [2, 3], "logit_scale": 10.0}
    logs = []
    for name, own, rep in (("a", x, y), ("b", y, x)):
        arrays = {**common, "train/feat_full": own, "train/rep_full": rep, "train/rep_fg": common["train/feat_fg"]}
        write_run_features(tmp_path / f"{name}.h5", arrays, {**attrs, "shares_clip_image": False, "rep_weight": 0.5})
        logs.append(train_heads(RunFeatures(tmp_path / f"{name}.h5"), [HeadsConfig(seed=1, epochs=1)])[1][0][0])
    assert all(logs[0][k] == pytest.approx(logs[1][k], abs=1e-6) for k in ("fdc_ce", "frg_bce", "fdc_dist"))
    assert logs[0]["pc_ce"] != pytest.approx(logs[1]["pc_ce"], abs=1e-4)


def test_evaluation_scores_base_images_on_the_fused_feature_and_new_images_on_the_class_token(tmp_path):
    """Test images whose class-token feature is its class's text on new images and another class's on base
    images, and whose representation feature is the reverse: with rep_weight 0.6 only the right branch per
    subset is right every time."""
    import numpy as np

    from pipeline.features.run_features import RunFeatures, write_run_features
    from pipeline.heads.config import HeadsConfig
    from pipeline.heads.evaluate import evaluate
    from pipeline.heads.model import FVGPTHeads

    d, c = 8, 4
    text = np.eye(c, d)
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    subset = (labels >= 2).astype(np.int64)
    wrong = text[(labels + 1) % 2 + 2 * subset]  # another class of the same half
    own = np.where(subset[:, None] == 1, text[labels], wrong)
    rep = np.where(subset[:, None] == 1, wrong, text[labels])
    train = np.stack([text[[0, 1, 0, 1]]] * 2)  # [V, N, D]
    arrays = {
        "train/feat_full": train, "train/feat_fg": train, "train/area": np.full((2, 4), 0.3),
        "train/label": np.array([0, 1, 0, 1]), "test/feat": own, "test/label": labels, "test/subset": subset,
        "test/feat_fg": own, "test/area": np.full(8, 0.3), "test/has_fg": np.ones(8, bool), "text/backbone": text,
        "text/clip": text, "train/clip_full": train, "test/clip": own, "train/rep_full": train,
        "train/rep_fg": train, "test/rep": rep, "test/rep_fg": rep,
    }  # fmt: skip
    attrs = {"classnames": list("abcd"), "base": [0, 1], "new": [2, 3], "logit_scale": 10.0}
    write_run_features(tmp_path / "f.h5", arrays, {**attrs, "shares_clip_image": False, "rep_weight": 0.6}, "float32")
    row = evaluate(FVGPTHeads([HeadsConfig(seed=1)], d, 10.0), RunFeatures(tmp_path / "f.h5"))[0]
    assert row["backbone.base"] == 100.0 and row["backbone.new"] == 100.0


def test_the_pipeline_runs_mmrl_on_its_own_image_encodings(tmp_path):
    from tests.tiny_project import assert_attention_scores_as_the_evaluation, own_encoder_pipeline

    with own_encoder_pipeline(tmp_path, "mmrl", {"rep_layers_from": 1, "epochs": 2}) as (root, own, shared, metrics):
        assert_attention_scores_as_the_evaluation(root, "mmrl", metrics)
        meta = json.loads((root / "data/backbones/synthetic/mmrl/seed1/meta.json").read_text())
        assert meta["config"]["reg_weight"] == 1.0 and meta["config"]["reg_weights"] == {}  # resolved per dataset
        assert own.rep_weight == pytest.approx(0.3) and shared.rep_weight == 0.0
        assert torch.equal(own.test_clip, shared.test_feat)  # CLIP's encodings, from the shared encode stage
        assert not torch.allclose(own.test_feat, own.test_feat_new, atol=1e-3)  # two branches
        from pipeline.heads.io import load_heads

        heads = load_heads(root / "data/heads/synthetic/mmrl/seed1", own.test_feat.shape[-1], own.logit_scale)
        assert heads.keep_image_norm  # saved with the heads: FDC keeps the fused feature's length
        saved = torch.load(root / "data/backbones/synthetic/mmrl/seed1/learnable.pt", weights_only=True)
        assert "epoch_states" not in saved  # only a shared image encoder lets the features stage read them

        # the stored halves are the class token's and the representation's, in that order
        from pipeline.backbones import backbone_template, tuning
        from pipeline.images import load_rgb
        from pipeline.manifest import read_prepared
        from pipeline.views import test_view

        clip = load_clip("fvgpt-test-vit", "")
        model = tuning.load(root / "data/backbones/synthetic/mmrl/seed1", clip, backbone_template("mmrl", "synthetic"))
        prepared = read_prepared(root / "data/prepared/synthetic")
        image = load_rgb(prepared.root / prepared.test().impath.iloc[0])
        x, _, _ = test_view(image, None, clip.image_size, clip.mean, clip.std, "mean")
        with torch.no_grad():
            cls, rep = model.image_branches(x.unsqueeze(0))
        assert torch.allclose(own.test_feat_new[0], cls[0], atol=2e-3)
        assert torch.allclose(own.test_feat[0], 0.7 * cls[0] + 0.3 * rep[0], atol=2e-3)
        assert set(metrics["seed1"]) >= {"backbone.base", "fvgpt.hm", "clip.new"}

"""PromptSRC: its prompted encoders against open_clip's own forward with the tokens inserted by hooks, its
losses term by term, Gaussian prompt aggregation, and the pipeline running it on its own image encodings."""

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.backbones import create_backbone
from pipeline.backbones._text import encode_embeddings
from pipeline.backbones.base import template_features
from pipeline.backbones.promptsrc import ensemble_templates, gpa_weights
from pipeline.models.loading import load_clip

DEEP = {"depth_text": 3, "depth_vision": 3, "n_ctx_vision": 2}


def promptsrc(clip, **settings):
    torch.manual_seed(0)
    model = create_backbone("promptsrc", clip, "a photo of a {}.", **{**DEEP, **settings})
    with torch.no_grad():  # prompts far from their init, so a misplaced token shows
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    return model


def _replacing(block, start, prompts, batch_first):
    """A forward pre-hook on an open_clip block replacing tokens start .. start + n of its input."""

    def hook(_module, args, kwargs):
        x = args[0] if batch_first else args[0].transpose(0, 1)
        s = start if start >= 0 else x.shape[1] + start
        x = torch.cat([x[:, :s], prompts.expand(x.shape[0], -1, -1), x[:, s + prompts.shape[0] :]], 1)
        return (x if batch_first else x.transpose(0, 1),) + args[1:], kwargs

    return block.register_forward_pre_hook(hook, with_kwargs=True)


def test_prompted_image_features_are_open_clips_forward_with_the_tokens_inserted(deep_clip):
    model = promptsrc(deep_clip)
    visual = deep_clip.model.visual
    n = model.n_ctx_vision
    images = torch.randn(3, 3, 32, 32)
    appended = visual.patch_dropout.register_forward_hook(
        lambda _m, _i, out: torch.cat([out, model.ctx_vision.expand(out.shape[0], -1, -1)], 1)
    )
    hooks = [appended] + [
        _replacing(visual.transformer.resblocks[i], -n, model.deep_vision[i - 1], visual.transformer.batch_first)
        for i in (1, 2)
    ]
    try:
        reference = F.normalize(deep_clip.model.encode_image(images).float(), dim=-1)
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        assert torch.allclose(model.encode_image(images), reference, atol=1e-6)
        plain = F.normalize(deep_clip.model.encode_image(images).float(), dim=-1)
        assert not torch.allclose(model.encode_image(images), plain, atol=1e-3)  # the prompts matter


def test_prompted_text_features_are_open_clips_forward_with_the_tokens_inserted(deep_clip):
    model = promptsrc(deep_clip)
    names = ["red circle", "blue square"]
    emb, tokens = model.prompt_embeddings(names)
    text = deep_clip.model.transformer
    hooks = [_replacing(text.resblocks[i], 1, model.deep_text[i - 1], text.batch_first) for i in (1, 2)]
    try:
        reference = encode_embeddings(deep_clip.model, emb, tokens)
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        assert torch.allclose(model.class_features(names), reference, atol=1e-6)


def test_without_deep_prompts_the_text_side_is_clip_on_the_init_phrase(deep_clip):
    torch.manual_seed(0)
    model = create_backbone("promptsrc", deep_clip, "a photo of a {}.", depth_text=1, depth_vision=1)
    names = ["red circle", "blue square"]
    with torch.no_grad():
        expected = template_features(deep_clip, "a photo of a {}.", names)
        assert torch.allclose(model.class_features(names), expected, atol=1e-6)


def test_losses_are_the_authors_terms(deep_clip):
    model = promptsrc(deep_clip, text_weight=25.0, image_weight=10.0)
    names = ["red circle", "blue square", "green ring"]
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 1])
    loss, parts = model.training_loss(images, labels, names)
    with torch.no_grad():
        text, image = model.class_features(names), model.encode_image(images)
        frozen = F.normalize(deep_clip.model.encode_image(images).float(), dim=-1)
        teacher = []
        for template in ensemble_templates():
            tokens = deep_clip.tokenizer([template(n) for n in names])
            teacher.append(deep_clip.model.encode_text(tokens).float())
        teacher = F.normalize(torch.stack(teacher).mean(0), dim=-1)
        s = deep_clip.logit_scale
        p_frozen, p = (s * frozen @ teacher.t()).softmax(-1), (s * image @ text.t()).softmax(-1)
        kl = (p_frozen * (p_frozen.log() - p.log())).sum() / p.numel()
        expected = {
            "ce": F.cross_entropy(s * image @ text.t(), labels),
            "scl_text": 25.0 * (text - teacher).abs().mean(),
            "scl_image": 10.0 * (image - frozen).abs().mean(),
            "scl_logits": kl,
        }
    for key, value in expected.items():
        assert parts[key] == pytest.approx(float(value), rel=1e-4, abs=1e-6), key
    assert float(loss.detach()) == pytest.approx(sum(float(v) for v in expected.values()), rel=1e-4)
    loss.backward()
    learned = [model.ctx, model.ctx_vision, *model.deep_text, *model.deep_vision]
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in learned)  # both branches learn


def test_gaussian_prompt_aggregation():
    w = gpa_weights(20, 15.0, 1.0)
    assert sum(w) == pytest.approx(1.0) and max(range(20), key=w.__getitem__) == 14  # epoch 15
    assert w[13] == pytest.approx(w[15]) and w[13] / w[14] == pytest.approx(math.exp(-0.5))


def test_gpa_keeps_the_weighted_average_of_each_epochs_prompts(deep_clip):
    model = promptsrc(deep_clip, gpa_mean=0.5, gpa_std=0.25)
    epochs, states = 4, []
    for epoch in range(epochs):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p))
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        model.end_epoch(epoch, epochs)
    model.end_training()
    weights = gpa_weights(epochs, 2.0, 1.0)
    for key, value in model.state_dict().items():
        expected = sum(w * s[key] for w, s in zip(weights, states))
        assert torch.allclose(value, expected, atol=1e-6), key


def test_a_resnet_clip_is_refused_naming_the_fix():
    clip = load_clip("fvgpt-test-rn", "")
    with pytest.raises(ValueError, match="needs a ViT image encoder"):
        create_backbone("promptsrc", clip, "a photo of a {}.")


def test_the_pipeline_runs_promptsrc_on_its_own_image_encodings(tmp_path):
    from tests.tiny_project import assert_attention_scores_as_the_evaluation, own_encoder_pipeline

    settings = {"depth_text": 1, "depth_vision": 2, "epochs": 2}
    with own_encoder_pipeline(tmp_path, "promptsrc", settings) as (root, own, shared, metrics):
        assert not own.attrs["shares_clip_image"] and shared.attrs["shares_clip_image"]
        assert torch.equal(own.test_clip, shared.test_feat)  # CLIP's encodings, from the shared encode stage
        assert not torch.allclose(own.test_feat, shared.test_feat, atol=1e-3)  # its own, through its prompts
        assert set(metrics["seed1"]) >= {"backbone.base", "fvgpt.hm", "clip.new"}
        assert_attention_scores_as_the_evaluation(root, "promptsrc", metrics)


def test_grad_cam_reads_the_patch_tokens_between_the_class_token_and_the_prompts(deep_clip):
    """PromptSRC appends its vision prompts after the patches: the map must not read them as patches."""
    model = promptsrc(deep_clip)
    visual = deep_clip.model.visual
    last = visual.transformer.resblocks[-1]
    seen = []
    hook = last.ln_1.register_forward_hook(lambda m, args, out: seen.append(out))
    try:
        with torch.no_grad():
            model.encode_image(torch.randn(1, 3, deep_clip.image_size, deep_clip.image_size))
    finally:
        hook.remove()
    tokens = seen[-1][0]  # [L, W] of the one image
    n = visual.grid_size[0] * visual.grid_size[1]
    read = torch.arange(len(tokens))[model.patch_token_positions(n)].tolist()
    with torch.no_grad():
        prompts = last.ln_1(model.deep_vision[-1])  # what the last block's prompts look like after its ln_1
    at_prompts = [i for i in range(len(tokens)) if any(torch.allclose(tokens[i], p, atol=1e-5) for p in prompts)]
    assert len(read) == n and 0 not in read  # the patches, not the class token
    assert len(at_prompts) == DEEP["n_ctx_vision"] and not set(at_prompts) & set(read)

"""Loading CLIP weights offline, in every form `clip.pretrained` accepts."""

import logging
import time

import open_clip
import pytest
import torch

from pipeline.models import ModelNotFoundError, load_clip, save_checkpoint

logging.getLogger().setLevel(logging.ERROR)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_own_checkpoint_roundtrip(tmp_path):
    torch.manual_seed(0)
    clip = load_clip("fvgpt-test-rn")
    save_checkpoint(clip.model, tmp_path / "m.pt", "fvgpt-test-rn", {"note": "x"})
    again = load_clip("fvgpt-test-rn", str(tmp_path / "m.pt"))
    assert _same_weights(clip.model, again.model)
    assert again.image_size == 32 and again.embed_dim == 32
    assert not any(p.requires_grad for p in again.model.parameters())


def test_plain_state_dict_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    clip = load_clip("fvgpt-test-vit")
    torch.save(clip.model.state_dict(), tmp_path / "sd.bin")
    save_file({k: v.contiguous() for k, v in clip.model.state_dict().items()}, tmp_path / "w.safetensors")
    assert _same_weights(clip.model, load_clip("fvgpt-test-vit", str(tmp_path / "sd.bin")).model)
    assert _same_weights(clip.model, load_clip("fvgpt-test-vit", str(tmp_path / "w.safetensors")).model)


def test_openai_torchscript_archive(tmp_path):
    # OpenAI's release format: a traced CLIP whose head width is 64, rebuilt with QuickGELU.
    torch.manual_seed(2)
    model = open_clip.CLIP(
        embed_dim=32,
        vision_cfg={"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
        text_cfg={"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1},
        quick_gelu=True,
    ).eval()
    tokens = open_clip.tokenize(["a cat"], context_length=16)
    mask = model._buffers.pop("attn_mask")  # OpenAI's archives hold the causal mask as a constant, not a buffer
    model.attn_mask = mask
    traced = torch.jit.trace(model, (torch.randn(1, 3, 32, 32), tokens), check_trace=False)
    torch.jit.save(traced, tmp_path / "ViT-tiny.pt")
    clip = load_clip("ViT-B-16", str(tmp_path / "ViT-tiny.pt"))  # the archive decides the shapes
    x = torch.randn(2, 3, 32, 32)
    # open_clip rebuilds OpenAI models through fp16 weights, hence the tolerance.
    assert torch.allclose(clip.model.encode_image(x), model.encode_image(x), atol=3e-3)
    assert type(clip.model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"


def test_missing_file_and_uncached_tag_fail_fast():
    t0 = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="not found"):
        load_clip("fvgpt-test-rn", "weights/nowhere.pt")
    with pytest.raises(ModelNotFoundError, match="allow_download"):
        load_clip("ViT-B-16", "openai", cache_dir="/nonexistent-cache")
    with pytest.raises(ModelNotFoundError, match="laion2b_s34b_b88k"):
        load_clip("ViT-B-16", "no-such-tag")
    assert time.perf_counter() - t0 < 10


def test_unknown_architecture_names_examples():
    with pytest.raises(ValueError, match="fvgpt-tiny-rn"):
        load_clip("ViT-Q-99")


def test_checkpoint_of_another_architecture_names_the_tensor(tmp_path):
    from pipeline.models import CheckpointError

    other = load_clip("fvgpt-test-vit")
    save_checkpoint(other.model, tmp_path / "vit.pt", "fvgpt-test-vit")
    with pytest.raises(CheckpointError, match=r"not a fvgpt-test-rn checkpoint: size mismatch for visual.conv1.weight"):
        load_clip("fvgpt-test-rn", str(tmp_path / "vit.pt"))


def test_corrupt_checkpoint_says_so(tmp_path):
    from pipeline.models import CheckpointError

    good = load_clip("fvgpt-test-rn")
    save_checkpoint(good.model, tmp_path / "m.pt", "fvgpt-test-rn")
    blob = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[: len(blob) // 3])
    with pytest.raises(CheckpointError, match="cut.pt"):
        load_clip("fvgpt-test-rn", str(tmp_path / "cut.pt"))


def test_a_conv_stem_vit_round_trips_and_feeds_the_transformer_what_prompting_backbones_build_on(tmp_path, caplog):
    from pipeline.backbones._vision import patch_tokens
    from pipeline.models.stem import ConvStem

    clip = load_clip("fvgpt-tiny-vit")
    visual = clip.model.visual
    assert isinstance(visual.conv1, ConvStem)
    with torch.no_grad():  # running statistics away from their init, so a stem that is not loaded shows
        visual.conv1.layers[1].running_mean.normal_()
    save_checkpoint(clip.model, tmp_path / "vit.pt", "fvgpt-tiny-vit")
    with caplog.at_level(logging.WARNING):
        again = load_clip("fvgpt-tiny-vit", str(tmp_path / "vit.pt"))
    assert _same_weights(clip.model, again.model)
    assert "initialized randomly" not in caplog.text  # built first, then loaded: not random
    assert not logging.getLogger().filters  # the warning is dropped for that load only
    images = torch.randn(2, 3, 64, 64)
    seen = {}
    hook = visual.ln_pre.register_forward_hook(lambda _m, args, _out: seen.update(x=args[0]))
    try:
        out = clip.model.encode_image(images)
    finally:
        hook.remove()
    assert torch.allclose(patch_tokens(visual, images), seen["x"], atol=1e-6)  # PromptSRC's and MMRL's start
    assert torch.equal(again.model.encode_image(images), out)


def test_a_conv_stem_must_halve_the_image_once_per_patch_doubling():
    from pipeline.models.stem import ConvStem

    with pytest.raises(ValueError, match="log2"):
        ConvStem([32, 64], width=128, patch_size=8)
    assert ConvStem([16, 32, 64], width=128, patch_size=8)(torch.randn(1, 3, 64, 64)).shape == (1, 128, 8, 8)


def test_a_checkpoint_from_before_the_conv_stem_says_so(tmp_path):
    from pipeline.models import CheckpointError

    state = load_clip("fvgpt-tiny-vit").model.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("visual.conv1.")}
    state["visual.conv1.weight"] = torch.zeros(64, 3, 8, 8)  # open_clip's patch embedding
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="written before the stem; re-run `dvc repro pretrain`"):
        load_clip("fvgpt-tiny-vit", str(tmp_path / "old.pt"))

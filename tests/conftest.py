import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def deep_clip(tmp_path_factory):
    """A test-size ViT CLIP with 3 blocks in each encoder, so that prompts and tokens have blocks to go into.
    Random layer-norm affines: at their init (1, 0) a pre-norm block cannot tell a normalised token from a raw
    one, and a token inserted on the wrong side of a norm would go unseen."""
    import json

    import open_clip
    import torch

    from pipeline.models.loading import load_clip

    path = tmp_path_factory.mktemp("cfg") / "fvgpt-test-deep-vit.json"
    vision = {"image_size": 32, "layers": 3, "width": 32, "head_width": 16, "patch_size": 8}
    text = {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 3}
    path.write_text(json.dumps({"embed_dim": 32, "vision_cfg": vision, "text_cfg": text}))
    open_clip.add_model_config(path)
    clip = load_clip("fvgpt-test-deep-vit", "")
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in clip.model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=generator))
                module.bias.copy_(0.5 * torch.randn(module.bias.shape, generator=generator))
    return clip

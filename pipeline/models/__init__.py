"""CLIP models through open_clip: `load_clip(model, pretrained)` is the entry point.

The architectures this pipeline defines itself (the tiny models of the
built-in benchmark and the tests) are JSON configs in `configs/`,
registered with open_clip the way it registers its own.
"""

from pathlib import Path

import open_clip

open_clip.add_model_config(Path(__file__).parent / "configs")

from .loading import CheckpointError, ClipModel, ModelNotFoundError, load_clip, save_checkpoint  # noqa: E402


def clip_of(params, device):
    """The frozen CLIP that `clip.model` / `clip.pretrained` name, with the `runtime` cache and download settings."""
    return load_clip(
        params.clip.model,
        params.clip.pretrained,
        device=device,
        allow_download=params.runtime.allow_download,
        cache_dir=params.runtime.clip_cache_dir,
    )


__all__ = ["clip_of", "CheckpointError", "ClipModel", "ModelNotFoundError", "load_clip", "save_checkpoint"]

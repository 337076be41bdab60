"""Resolve `clip.model` + `clip.pretrained` to a frozen open_clip model, offline.

`pretrained` is one of: empty/"none" (random weights, for tests), a local
file (open_clip state dict or safetensors, an OpenAI TorchScript archive,
or a checkpoint this pipeline wrote), or an open_clip tag. A tag is used
only when its weights are already in the local cache unless downloads are
allowed: open_clip would otherwise retry a network that is not there.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from ..weights import CheckpointError, read_weights
from .stem import conv_stems, install_conv_stem

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


class ModelNotFoundError(FileNotFoundError):
    """The weights `clip.pretrained` names are not on this machine."""


@dataclass
class ClipModel:
    """A frozen CLIP with what the pipeline needs to feed it."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    pretrained: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[1])


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())


def _mismatch_summary(message: str) -> str:
    """The first mismatched tensor of a load_state_dict error, and how many keys differ."""
    size = re.search(r"size mismatch for ([\w.]+): (.*?)\.(\s|$)", message)
    missing = re.search(r"Missing key\(s\) in state_dict: (.*?)\.\s", message + " ")
    unexpected = re.search(r"Unexpected key\(s\) in state_dict: (.*?)\.\s", message + " ")
    parts = []
    if size:
        parts.append(f"size mismatch for {size.group(1)} ({size.group(2)})")
    for label, match in (("missing", missing), ("unexpected", unexpected)):
        if match:
            keys = re.findall(r'"([^"]+)"', match.group(1))
            parts.append(f"{len(keys)} {label} keys, e.g. {keys[0]}")
    return "; ".join(parts) or message[:300]


def _check_state_dict(path: Path) -> None:
    """Read the file the safe way before open_clip does, so a junk or unsafe file says what it is."""
    fix = "fetch the checkpoint again or fix clip.pretrained"
    weights = read_weights(path, fix)
    if isinstance(weights, dict) and isinstance(weights.get("state_dict"), dict):
        weights = weights["state_dict"]
    if not isinstance(weights, dict) or not weights or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors (found {type(weights).__name__}); {fix}")


def _looks_like_path(pretrained: str) -> bool:
    return os.sep in pretrained or "/" in pretrained or pretrained.endswith(CHECKPOINT_SUFFIXES)


def _cached_tag_file(cfg: dict, cache_dir: str | None) -> str | None:
    """The local file of an open_clip tag if a previous download left it, else None."""
    if "file" in cfg:
        return cfg["file"] if os.path.isfile(cfg["file"]) else None
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(cfg["hf_hub"])
        hit = try_to_load_from_cache(repo, filename or "open_clip_pytorch_model.bin", cache_dir=cache_dir)
        if isinstance(hit, str):
            return hit
    if cfg.get("url"):
        path = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(cfg["url"]))
        if os.path.isfile(path):
            return path
    return None


def _from_tag(name: str, tag: str, allow_download: bool, cache_dir: str | None):
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        known = open_clip.list_pretrained_tags_by_model(name)
        raise ModelNotFoundError(
            f"clip.pretrained={tag!r} is neither an existing file nor an open_clip tag of {name} "
            f"(tags: {', '.join(known) or 'none'}). Give a checkpoint path or one of those tags."
        )
    if not allow_download and _cached_tag_file(cfg, cache_dir) is None:
        source = cfg.get("hf_hub") or cfg.get("url") or "?"
        raise ModelNotFoundError(
            f"open_clip weights {name}/{tag} are not in the local cache and downloads are off "
            f"(looked for {source} in the open_clip/Hugging Face cache). Either set clip.allow_download: true "
            f"on a machine with network, or download the file elsewhere and set clip.pretrained to its path."
        )
    env = {} if allow_download else {"HF_HUB_OFFLINE": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return open_clip.create_model(name, pretrained=tag, cache_dir=cache_dir)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextmanager
def _quiet_random_init():
    """open_clip warns that a model built without weights is random; not true when the weights load next."""
    drop = _DropRandomInitWarning()
    logging.getLogger().addFilter(drop)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(drop)


def _build(name: str, pretrained: str, allow_download: bool, cache_dir: str | None) -> torch.nn.Module:
    if name not in open_clip.list_models():
        raise ValueError(f"clip.model={name!r} is not an open_clip architecture; e.g. ViT-B-16, fvgpt-tiny-rn")
    if pretrained.lower() in ("", "none", "random"):
        with torch.random.fork_rng():  # random weights, but the same ones in every stage
            torch.manual_seed(0)
            return install_conv_stem(open_clip.create_model(name, pretrained=None), name)
    path = Path(pretrained).expanduser()
    if path.is_file():
        torchscript = _is_torchscript(path)
        if not torchscript:
            _check_state_dict(path)
        try:
            if torchscript:
                return open_clip.load_openai_model(str(path), precision="fp32", device="cpu")
            if name in conv_stems():  # open_clip does not know the stem: build it, then load the weights
                with _quiet_random_init():
                    model = install_conv_stem(open_clip.create_model(name, pretrained=None), name)
                open_clip.load_checkpoint(model, str(path))
                return model
            return open_clip.create_model(name, pretrained=str(path))
        except RuntimeError as err:
            if "state_dict" in str(err):
                hint = (
                    " (a patch embedding where this model has a conv stem: written before the stem; re-run "
                    "`dvc repro pretrain`)"
                    if name in conv_stems() and "visual.conv1.weight" in str(err)
                    else ""
                )
                raise CheckpointError(
                    f"{path} is not a {name} checkpoint: {_mismatch_summary(str(err))}{hint}"
                ) from err
            raise CheckpointError(
                f"cannot read checkpoint {path} ({err}); the file may be truncated: fetch it again"
            ) from err
        except (EOFError, ValueError, OSError, pickle.UnpicklingError) as err:
            raise CheckpointError(
                f"cannot read checkpoint {path} ({err}); the file may be truncated: fetch it again"
            ) from err
    if _looks_like_path(pretrained):
        hint = (
            "run `dvc repro pretrain` (or `fvgpt pretrain`)"
            if "data/models" in pretrained
            else "put the checkpoint there or fix clip.pretrained"
        )
        raise ModelNotFoundError(f"clip.pretrained file {path} not found: {hint}.")
    return _from_tag(name, pretrained, allow_download, cache_dir)


def load_clip(
    name: str,
    pretrained: str | None = None,
    device: str | torch.device = "cpu",
    allow_download: bool = False,
    cache_dir: str | None = None,
) -> ClipModel:
    """A frozen, eval-mode CLIP on `device` with its tokenizer and preprocessing constants."""
    model = _build(name, str(pretrained or ""), allow_download, cache_dir)
    model = model.to(device).eval().requires_grad_(False)
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    mean = tuple(getattr(model.visual, "image_mean", None) or OPENAI_DATASET_MEAN)
    std = tuple(getattr(model.visual, "image_std", None) or OPENAI_DATASET_STD)
    return ClipModel(model, open_clip.get_tokenizer(name), name, str(pretrained or ""), size, mean, std)


def save_checkpoint(model: torch.nn.Module, path: str | Path, name: str, meta: dict | None = None) -> None:
    """A checkpoint `load_clip(name, path)` reads through open_clip's own loader."""
    from ..atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"state_dict": model.state_dict(), "fvgpt": {"model": name, **(meta or {})}}, tmp)

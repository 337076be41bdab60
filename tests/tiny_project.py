"""A tiny copy of the pipeline's params for stage tests: random test-size CLIP, 6 synthetic classes."""

from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path
from typing import Iterator

import yaml

ROOT = Path(__file__).resolve().parents[1]


def tiny_params(**overrides) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.update(datasets=["synthetic"], base2new=["synthetic"], backbones=["zsclip", "coop"], seeds=[1])
    params["cross_dataset"].update(sources=[], targets=[])  # tests/test_cross_dataset.py turns it on
    params["prepare"]["overrides"].pop("synthetic", None)  # the tiny benchmark is `prepare.synthetic` below, whole
    params["prepare"].update(
        shots=2,
        synthetic={
            "image_size": 32,
            "train_per_class": 4,
            "val_per_class": 1,
            "test_per_class": 3,
            "n_shapes": 2,
            "n_colours": 3,
        },
    )
    params["masks"].update(store_size=16, compare_images=10)
    params["runtime"].update(masks_workers=1, encode_batch_images=4, encode_batch_size=64)
    params["clip"].update(model="fvgpt-test-rn", pretrained="")
    params["pretrain"].update(
        model="fvgpt-test-rn", image_size=32, steps=2, batch_size=8, pool_size=16, warmup_steps=1, eval_per_class=1
    )
    params["backbone"]["train"].update(epochs=2)
    params["encode"].update(views=2, dtype="float32")
    params["heads"].update(epochs=2)
    return with_keys(params, **overrides)


def with_keys(params: dict, **changes) -> dict:
    """`params` with each change set in place: `"section.key"` sets a key of a section, `"key"` a top-level one."""
    for key, value in changes.items():
        section, _, name = key.partition(".")
        if name:
            params[section][name] = copy.deepcopy(value)
        else:
            params[section] = copy.deepcopy(value)
    return params


def copy_project(repo: Path) -> None:
    """What a clone of the project holds besides data: the code, dvc.yaml, .gitignore and the tracked
    placeholder files under reports/."""
    import shutil

    for name in ("pipeline", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in (
        "dvc.yaml",
        ".gitignore",
        "reports/metrics/README.md",
        "reports/training/README.md",
        "reports/attention/README.md",
    ):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, repo / name)


def init_repository(repo: Path) -> None:
    """git and DVC in `repo`, as a clone has them (the plot templates included)."""
    import shutil
    import subprocess

    for args in (
        ["git", "init", "-q"],
        ["git", "config", "user.email", "t@example.com"],
        ["git", "config", "user.name", "t"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
    ):
        subprocess.run(args, cwd=repo, check=True, capture_output=True)
    shutil.copytree(ROOT / ".dvc/plots", repo / ".dvc/plots")


def edit_params(repo: Path, **changes) -> None:
    """Change keys of `repo`'s params.yaml in place (`with_keys`' spelling)."""
    params = with_keys(yaml.safe_load((repo / "params.yaml").read_text()), **changes)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def dvc_project(repo: Path, **overrides) -> str:
    """A committed DVC repository of the tiny project in `repo` after a first `dvc repro`; returns its output."""
    import subprocess

    copy_project(repo)
    write_params(repo, **overrides)
    init_repository(repo)
    out = subprocess.run(["dvc", "repro"], cwd=repo, capture_output=True, text=True)
    assert out.returncode == 0, f"dvc repro failed:\n{out.stdout}\n{out.stderr}"
    for args in (["git", "add", "-A"], ["git", "commit", "-qm", "tiny pipeline"]):
        subprocess.run(args, cwd=repo, check=True, capture_output=True)
    return out.stdout + out.stderr


def write_params(directory: Path, **overrides) -> Path:
    path = Path(directory) / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params(**overrides), sort_keys=False))
    return path


@contextlib.contextmanager
def built_project(root: Path, backbones=("zsclip",), with_features: bool = False, **overrides) -> Iterator[Path]:
    """A tiny project in `root` as the working directory: params, prepare, masks and each backbone's seed-1
    tuning; with `with_features`, also encode and each backbone's features. Stages run in this process."""
    from stages import backbone, encode, features, masks, prepare

    cwd = os.getcwd()
    os.chdir(root)
    try:
        write_params(root, **overrides)
        prepare.run("synthetic")
        masks.run("synthetic")
        for name in backbones:
            backbone.run("synthetic", name, 1)
        if with_features:
            encode.run("synthetic")
            for name in backbones:
                features.run("synthetic", name, 1)
        yield root
    finally:
        os.chdir(cwd)


@contextlib.contextmanager
def own_encoder_pipeline(root: Path, backbone: str, settings: dict) -> Iterator[tuple]:
    """A tiny project on a test-size ViT where `backbone` (one with its own image encoder, `settings` its section's
    changes) is tuned, its feature file written next to zero-shot CLIP's and the heads trained and evaluated;
    yields (project root, its RunFeatures, zero-shot CLIP's, its metrics by seed)."""
    import json

    from pipeline.features.run_features import RunFeatures
    from stages import backbone as backbone_stage
    from stages import encode, features, heads

    with built_project(
        root, backbones=("zsclip",), **{"clip.model": "fvgpt-test-vit", f"backbone.{backbone}": settings}
    ):
        edit_params(root, backbones=["zsclip", backbone])
        backbone_stage.run("synthetic", backbone, 1)
        encode.run("synthetic")
        features.run("synthetic", "zsclip")
        features.run("synthetic", backbone)
        heads.run("synthetic")
        own = RunFeatures(root / f"data/features/synthetic/{backbone}/seed1.h5")
        shared = RunFeatures(root / "data/features/synthetic/zsclip/seed1.h5")
        yield root, own, shared, json.loads((root / f"reports/metrics/synthetic/{backbone}.json").read_text())


def assert_attention_scores_as_the_evaluation(root, backbone: str, metrics: dict) -> None:
    """The attention stage's maps of a backbone with its own image encoder are of the models the evaluation
    scores: on every test image, the predictions behind the maps give the evaluation's accuracies. The
    command draws them for other images too."""
    import json

    import pytest

    from stages import attention

    attention.run("synthetic")
    row = json.loads((root / "reports/attention/synthetic.json").read_text())[backbone]["seed1"]
    for model in ("clip", "backbone", "fvgpt"):
        for subset in ("base", "new"):
            assert row[f"accuracy.{model}.{subset}"] == pytest.approx(metrics["seed1"][f"{model}.{subset}"]), (
                model,
                subset,
            )
    assert row["backbone.all"] is not None and row["fvgpt.all"] is not None
    assert_attention_reads_the_backbones_encoder(root, backbone)
    # and `fvgpt attention --image` draws them for an image of one's own
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 30, 30)).save(root / "mine.png")
    attention.images("synthetic", [str(root / "mine.png")], backbone, 1, "new", str(root / "maps.png"))
    assert (root / "maps.png").stat().st_size > 1000


def assert_attention_reads_the_backbones_encoder(root, backbone: str) -> None:
    """The routing under the attention stage's maps of a backbone with its own image encoder: its features of
    the test views equal the stored ones (MMRL: fused on base classes, the class token's on new); FVG-PT's
    prior on new classes gets CLIP's features; the backbone's map is Grad-CAM on its encoder, read at its own
    patch-token positions."""
    import torch

    from pipeline.attention import grad_cam, patch_count, spatial_layer
    from pipeline.config import load_params
    from pipeline.features.run_features import RunFeatures
    from pipeline.heads.io import load_heads
    from pipeline.manifest import read_prepared
    from pipeline.masks.store import MaskStore
    from pipeline.models import clip_of
    from stages import attention

    params = load_params(root / "params.yaml")
    clip = clip_of(params, torch.device("cpu"))
    prepared = read_prepared(root / "data/prepared/synthetic")
    test = prepared.test().reset_index(drop=True)
    images, _ = attention._views(prepared, test, MaskStore(root / "data/masks/synthetic.h5"), clip, params.encode.fill)
    run = (backbone, 1)
    feats = RunFeatures(root / f"data/features/synthetic/{backbone}/seed1.h5")
    own = attention._own_encoders("synthetic", [run], clip, prepared)
    with torch.no_grad():
        for subset, stored in (("base", feats.test_feat), ("new", feats.test_feat_new)):
            assert torch.allclose(attention._encoder(own[run], feats, subset)(images), stored, atol=2e-3), (
                subset
            )  # float16 storage

    heads = {run: load_heads(root / f"data/heads/synthetic/{backbone}/seed1", feats.width, feats.logit_scale)}
    model_type, seen = type(heads[run]), {}
    real = model_type.new_scores

    def spy(self, f, f_clip, g, g_clip):
        seen["f_clip"] = f_clip
        return real(self, f, f_clip, g, g_clip)

    x, target = images[:2], torch.zeros(2, dtype=torch.long)
    visual = clip.model.visual
    layer = spatial_layer(visual, params.attention.layer)
    model_type.new_scores = spy
    try:
        cams, _ = attention._maps(clip, layer, x, "new", [run], {run: feats}, heads, own, {run: run}, target)
    finally:
        model_type.new_scores = real
    with torch.no_grad():
        f_clip = torch.nn.functional.normalize(clip.model.encode_image(x).float(), dim=-1)
    assert torch.allclose(seen["f_clip"], f_clip, atol=1e-6)
    g = feats.text_backbone[torch.tensor(feats.new)]
    reference, _ = grad_cam(
        attention._encoder(own[run], feats, "new"),
        visual,
        layer,
        x,
        {"backbone": lambda f: feats.logit_scale * f @ g.t()},
        {"backbone": target},
        own[run].patch_token_positions(patch_count(visual)),
    )
    assert torch.allclose(cams[(run, "backbone")], reference["backbone"], atol=1e-6)

"""attention: Grad-CAM maps of zero-shot CLIP, each backbone and backbone + FVG-PT on a dataset's test images;
the share of each map inside the foreground mask, per run (a DVC metrics file); the paper's figure of chosen
cases (image | CLIP | backbone | + FVG-PT, mask outlined, predictions printed).

Each test image is scored as the evaluation scores it: a base-class image over the base classes (FDC's
branch), a new-class image over the new classes (PC with BRG). A map is for the true class (the share) or the
predicted class (the figure). Each model's map is on the image encoder its features come from: CLIP's for
CLIP and for backbones that share it; a backbone's own (PromptSRC, MMRL) for it and its FVG-PT heads, whose
prior on new classes takes CLIP's features as they are (a constant for the map)."""

from __future__ import annotations

from itertools import product
from pathlib import Path

import numpy as np
import torch

from pipeline.atomic import atomic_path, write_json
from pipeline.attention import foreground_share, grad_cam, patch_count, spatial_layer
from pipeline.backbones import BACKBONES, backbone_template, tuning
from pipeline.device import pick_device
from pipeline.features.run_features import RunFeatures, base_branch
from pipeline.heads.io import load_heads
from pipeline.images import load_rgb
from pipeline.manifest import read_prepared
from pipeline.masks.store import MaskStore
from pipeline.models import clip_of
from pipeline.paths import (
    attention_figure_path,
    attention_metrics_path,
    backbone_dir,
    features_path,
    heads_dir,
    masks_path,
    prepared_dir,
)
from pipeline.report.attention import CASE_KINDS, attention_figure, case_kind
from pipeline.views import test_mask, test_view

from ._common import progress_bar, start

MODELS = ("clip", "backbone", "fvgpt")


def _scorers(feats: RunFeatures, heads, subset: str, f_clip: torch.Tensor | None = None) -> dict:
    """Each model's logits over the subset's classes as a function of the image features [B, D] of its encoder:
    CLIP's for "clip"; for "backbone" and "fvgpt" the backbone's, which are CLIP's unless `f_clip` (CLIP's
    features of the same images, for FVG-PT's prior on new classes) is given."""
    classes = torch.tensor(feats.base if subset == "base" else feats.new)
    g, g_clip, s = feats.text_backbone[classes], feats.text_clip[classes], feats.logit_scale
    if subset == "base":
        fvgpt = lambda f: heads.base_scores(f, g)[0]  # noqa: E731
    else:
        fvgpt = lambda f: heads.new_scores(f, f if f_clip is None else f_clip, g, g_clip)[0][0]  # noqa: E731
    return {"clip": lambda f: s * f @ g_clip.t(), "backbone": lambda f: s * f @ g.t(), "fvgpt": fvgpt}


def _own_encoders(dataset: str, runs, clip, prepared) -> dict:
    """For each run whose backbone has its own image encoder, that tuned backbone (on `clip`'s modules)."""
    encoders = {}
    for backbone, seed in runs:
        if not BACKBONES[backbone].shares_clip_image_encoder:
            template = backbone_template(backbone, prepared.classes["dataset"])
            model = tuning.load(backbone_dir(dataset, backbone, seed), clip, template)
            encoders[(backbone, seed)] = model.requires_grad_(False)  # read, not trained: no graph to its prompts
    return encoders


def _encoder(model, feats: RunFeatures, subset: str):
    """images -> the image features `model` (a backbone with its own image encoder) scores the subset's classes
    from, as the features stage stores them: MMRL's fused feature on base classes, its class token's on new."""

    def encode(images: torch.Tensor) -> torch.Tensor:
        blocks = model.encode_image_for_features(images).float().split(feats.width, dim=-1)
        return base_branch(blocks[0], blocks[-1], feats.rep_weight) if subset == "base" else blocks[0]

    return encode


def _maps(clip, layer, x, subset: str, runs, files, heads, encoders: dict, clip_key: dict, targets=None):
    """Grad-CAM maps [B, H, W] and predictions (indices into the subset's classes) [B] of every run's three
    models on the images x of one subset, both keyed (run, model). A map is for the classes `targets`: one
    tensor [B] for every model (the truth), a tensor per (run, model), or None for each model's predicted
    class. CLIP's encoder runs once for CLIP and every backbone that shares it (CLIP's map is made once per
    distinct CLIP text features, `clip_key`); a backbone with its own encoder (`encoders`) runs it for its two
    maps, FVG-PT's prior on new classes taking CLIP's features of x as a constant."""
    visual = clip.model.visual

    def clip_encode(images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(clip.model.encode_image(images).float(), dim=-1)

    f_clip = None
    if any(run in encoders for run in runs):
        with torch.no_grad():
            f_clip = clip_encode(x)
    passes: dict = {}  # encoder (None: CLIP's, else the run) -> {map key: score}
    wanted: dict = {}  # map key -> its target classes, or None for the prediction
    for run in runs:
        own = run in encoders
        for model, score in _scorers(files[run], heads[run], subset, f_clip if own else None).items():
            key = (clip_key[run], model) if model == "clip" else (run, model)
            passes.setdefault(run if own and model != "clip" else None, {})[key] = score
            wanted[key] = targets.get((run, model)) if isinstance(targets, dict) else targets
    cams, top = {}, {}
    for encoder, scores in passes.items():
        if encoder is None:
            encode, patches = clip_encode, None
        else:
            own = encoders[encoder]
            encode, patches = _encoder(own, files[encoder], subset), own.patch_token_positions(patch_count(visual))
        if any(wanted[key] is None for key in scores):  # the predictions first, to be the maps' targets
            with torch.no_grad():
                f = f_clip if encoder is None and f_clip is not None else encode(x)
                top.update({key: score(f).argmax(-1) for key, score in scores.items()})
        maps, f = grad_cam(
            encode, visual, layer, x, scores, {k: top[k] if wanted[k] is None else wanted[k] for k in scores}, patches
        )
        cams.update(maps)
        with torch.no_grad():
            top.update({key: score(f).argmax(-1) for key, score in scores.items()})
    keyed = {(run, m): (clip_key[run], m) if m == "clip" else (run, m) for run in runs for m in MODELS}
    return {k: cams[v] for k, v in keyed.items()}, {k: top[v] for k, v in keyed.items()}


def run(dataset: str, params_file: str = "params.yaml") -> None:
    params = start(params_file)
    cfg = params.attention
    device = pick_device(params.runtime.device)
    prepared = read_prepared(prepared_dir(dataset))
    clip = clip_of(params, device)  # frozen: no parameter requires a gradient
    layer = spatial_layer(clip.model.visual, cfg.layer)
    backbones = list(params.backbones)
    runs = list(product(backbones, params.seeds))

    test = prepared.test().reset_index(drop=True)
    if cfg.images and cfg.images < len(test):
        test = test.iloc[np.linspace(0, len(test) - 1, cfg.images).round().astype(int)].reset_index(drop=True)
    store = MaskStore(masks_path(dataset))
    images, masks = _views(prepared, test, store, clip, params.encode.fill)

    files = {run: RunFeatures(features_path(dataset, *run), stream=True) for run in runs}  # class features only
    heads = {run: load_heads(heads_dir(dataset, *run), f.width, f.logit_scale) for run, f in files.items()}
    encoders = _own_encoders(dataset, runs, clip, prepared)
    # Every run's CLIP text features are the frozen CLIP's on the same templates: runs that agree share one map.
    clip_key = {r: next(q for q in runs if torch.equal(files[q].text_clip, f.text_clip)) for r, f in files.items()}
    subsets = {name: np.flatnonzero((test.subset == name).to_numpy()) for name in ("base", "new")}
    share = {run: {m: np.full(len(test), np.nan) for m in MODELS} for run in runs}
    predicted = {run: {m: np.zeros(len(test), np.int64) for m in MODELS} for run in runs}
    batch = params.runtime.encode_batch_images
    with progress_bar(f"Grad-CAM ({len(runs)} runs x {len(MODELS)} models)", len(test)) as advance:
        for subset, rows in subsets.items():
            classes = files[runs[0]].base if subset == "base" else files[runs[0]].new
            local = {c: i for i, c in enumerate(classes)}
            for start_at in range(0, len(rows), batch):
                idx = rows[start_at : start_at + batch]
                x, m = images[idx].to(device), masks[idx].to(device)
                truth = torch.tensor([local[int(y)] for y in test.label.to_numpy()[idx]], device=device)
                cams, top = _maps(clip, layer, x, subset, runs, files, heads, encoders, clip_key, truth)
                for run in runs:
                    for model in MODELS:
                        predicted[run][model][idx] = [classes[int(k)] for k in top[(run, model)]]
                        share[run][model][idx] = foreground_share(cams[(run, model)], m).cpu().numpy()
                advance(len(idx))

    has_mask = masks.flatten(1).any(1).numpy()
    metrics: dict[str, dict] = {b: {} for b in backbones}
    for (backbone, seed), per_model in share.items():
        row = {"images": int(has_mask.sum()), "mask_area": float(masks.float().mean((1, 2))[has_mask].mean())}
        for model, values in per_model.items():
            for subset, rows in subsets.items():
                row[f"{model}.{subset}"] = _mean(values[rows[has_mask[rows]]])
            row[f"{model}.all"] = _mean(values[has_mask])
            # Images whose map is zero everywhere (no location raises the class's score) have no share.
            row[f"{model}.with_evidence"] = float(np.isfinite(values[has_mask]).mean()) if has_mask.any() else None
            # The accuracies of the predictions behind the maps: with every test image, the evaluation's but for
            # near-ties (features recomputed here in float32; the evaluation reads them stored, in float16).
            right = predicted[(backbone, seed)][model] == test.label.to_numpy()
            for subset, rows in subsets.items():
                row[f"accuracy.{model}.{subset}"] = float(right[rows].mean() * 100) if len(rows) else None
        metrics[backbone][f"seed{seed}"] = row
    write_json(attention_metrics_path(dataset), metrics)

    first = params.seeds[0]
    cases = _cases(test, predicted, backbones, first, cfg.cases)
    panels = []
    for backbone, kind, i in cases:
        run = (backbone, first)
        subset = test.subset[i]
        x = images[i : i + 1].to(device)
        classes = files[run].base if subset == "base" else files[run].new
        local = {c: k for k, c in enumerate(classes)}
        label = {m: int(predicted[run][m][i]) for m in MODELS}  # the predictions its kind of case was chosen by
        targets = {(run, m): torch.tensor([local[label[m]]], device=device) for m in MODELS}
        cams, _ = _maps(clip, layer, x, subset, [run], files, heads, encoders, {run: run}, targets)
        panels.append(
            {
                "image": _display(images[i], clip.mean, clip.std),
                "mask": masks[i].numpy(),
                "title": f"{backbone}: {kind}\ntrue: {prepared.classnames[int(test.label[i])]} ({subset} class)",
                "maps": {m: cams[(run, m)][0].cpu().numpy() for m in MODELS},
                "labels": {m: prepared.classnames[label[m]] for m in MODELS},
                "right": {m: label[m] == int(test.label[i]) for m in MODELS},
            }
        )
    title = (
        f"{dataset}: Grad-CAM on each model's image encoder ({clip.name}, layer {cfg.layer}) for its predicted "
        f"class,\nseed {first} of {list(params.seeds)}, the first {cfg.cases} test images of each kind of case; "
        "white: the foreground mask"
    )
    with atomic_path(attention_figure_path(dataset)) as tmp:
        attention_figure(panels, _share_lines(metrics), title, tmp)
    print(_share_lines(metrics))


def _views(prepared, test, store: MaskStore, clip, fill: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every test image's view (as the encode stage makes it) and its mask on the view's pixels (all False
    for an image without a mask)."""
    xs, ms = [], []
    for path in test.impath:
        image = load_rgb(prepared.root / path)
        mask = store.mask(path) if path in store else None
        x, _, _ = test_view(image, mask, clip.image_size, clip.mean, clip.std, fill)
        xs.append(x)
        ms.append(
            test_mask(mask, image.size, clip.image_size)
            if mask is not None
            else torch.zeros(x.shape[-2:], dtype=torch.bool)
        )
    return torch.stack(xs), torch.stack(ms)


def _cases(test, predicted, backbones, seed: int, per_kind: int) -> list[tuple[str, str, int]]:
    """(backbone, kind, test row) of the figure's rows: the first `per_kind` test images of each kind of case,
    in CASE_KINDS' order, for each backbone that is not zero-shot CLIP itself (all of them if none is)."""
    shown = [b for b in backbones if b != "zsclip"] or list(backbones)
    truth = test.label.to_numpy()
    chosen = []
    for backbone in shown:
        right = {m: predicted[(backbone, seed)][m] == truth for m in MODELS}
        kinds = [case_kind(right["clip"][i], right["backbone"][i], right["fvgpt"][i]) for i in range(len(test))]
        for kind in CASE_KINDS:
            chosen += [(backbone, kind, i) for i in [i for i, k in enumerate(kinds) if k == kind][:per_kind]]
    return chosen


def _mean(values: np.ndarray) -> float | None:
    """The mean over the images with a share; None (JSON null) if none has one."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else None


def _display(x: torch.Tensor, mean, std) -> np.ndarray:
    """A normalised view back to RGB in [0, 1], [H, W, 3]."""
    rgb = x * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    return rgb.clamp(0, 1).permute(1, 2, 0).numpy()


def _share_lines(metrics: dict) -> str:
    lines = ["foreground share of Grad-CAM mass (mean over seeds; chance = the mask's area):"]
    for backbone, per_seed in metrics.items():
        rows = list(per_seed.values())
        mean = {m: np.mean([np.nan if r[f"{m}.all"] is None else r[f"{m}.all"] for r in rows]) for m in MODELS}
        lines.append(
            f"  {backbone:8s} CLIP {mean['clip']:.3f}  backbone {mean['backbone']:.3f}  + FVG-PT {mean['fvgpt']:.3f}"
            f"  (mask area {rows[0]['mask_area']:.3f})"
        )
    return "\n".join(lines)


def images(
    dataset: str,
    paths: list[str],
    backbone: str,
    seed: int | None,
    subset: str,
    out: str,
    params_file: str = "params.yaml",
) -> None:
    """Grad-CAM of CLIP, `backbone` and + FVG-PT (its heads trained on `dataset`) on any images, scored over
    the dataset's `subset` classes, for each model's predicted class: one figure row per image at `out`."""
    params = start(params_file)
    if subset not in ("base", "new"):
        raise ValueError(f"--subset must be base or new, got {subset!r}")
    seed = params.seeds[0] if seed is None else seed
    device = pick_device(params.runtime.device)
    prepared = read_prepared(prepared_dir(dataset))
    clip = clip_of(params, device)
    if backbone not in params.backbones:
        raise ValueError(f"--backbone {backbone!r} is not one of `backbones` {list(params.backbones)} in {params_file}")
    layer = spatial_layer(clip.model.visual, params.attention.layer)
    run = (backbone, seed)
    files = {run: RunFeatures(features_path(dataset, backbone, seed), stream=True)}  # class features only
    heads = {run: load_heads(heads_dir(dataset, backbone, seed), files[run].width, files[run].logit_scale)}
    encoders = _own_encoders(dataset, [run], clip, prepared)
    classes = files[run].base if subset == "base" else files[run].new
    panels = []
    for path in paths:
        image = load_rgb(path)
        x, _, _ = test_view(image, None, clip.image_size, clip.mean, clip.std, params.encode.fill)
        x = x.unsqueeze(0).to(device)
        cams, top = _maps(clip, layer, x, subset, [run], files, heads, encoders, {run: run})
        cams, top = {m: cams[(run, m)] for m in MODELS}, {m: top[(run, m)] for m in MODELS}
        panels.append(
            {
                "image": _display(x[0].cpu(), clip.mean, clip.std),
                "mask": np.zeros(x.shape[-2:], bool),
                "title": Path(path).name,
                "maps": {m: cams[m][0].cpu().numpy() for m in MODELS},
                "labels": {m: prepared.classnames[classes[int(top[m])]] for m in MODELS},
                "right": {m: True for m in MODELS},
            }
        )
    title = (
        f"Grad-CAM on each model's image encoder ({clip.name}, layer {params.attention.layer}) for its predicted "
        "class among\n"
        f"{dataset}'s {subset} classes; {backbone} seed {seed} and its FVG-PT heads"
    )
    with atomic_path(out) as tmp:
        attention_figure(panels, "", title, tmp, marks=False)
    print(f"wrote {out}")

"""features: one feature file per (dataset, backbone, seed) with everything the FVG-PT heads need."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from pipeline.atomic import check_writable
from pipeline.backbones import backbone_template, template_features, tuning
from pipeline.config import to_plain
from pipeline.device import pick_device
from pipeline.features.encoded import EncodedViews, encode_views
from pipeline.features.encoder import image_encoder
from pipeline.features.run_features import write_run_features
from pipeline.features.views_dataset import view_sets
from pipeline.fingerprint import fingerprint
from pipeline.manifest import read_prepared
from pipeline.masks.store import MaskStore
from pipeline.models import clip_of
from pipeline.paths import (
    backbone_dir,
    cross_backbone_dir,
    cross_features_path,
    encoded_path,
    features_path,
    masks_path,
    prepared_dir,
)

from ._common import encode_workers, progress_bar, start


def _own_encodings(dataset, prepared, params, backbone, clip, device, seed: int) -> EncodedViews:
    """Encode the views of one seed's few-shot images and of the test images with the backbone's own image path
    (deep-prompt backbones). A view depends only on encode.seed, its index and its image path, so they are the
    views the shared encode stage makes of the same images."""
    cfg, runtime = params.encode, params.runtime
    train, test = view_sets(prepared, MaskStore(masks_path(dataset)), [seed], cfg, clip.image_size, clip.mean, clip.std)
    encode = image_encoder(
        backbone.encode_image_for_features, device, cfg.precision, cfg.channels_last, runtime.encode_batch_size
    )
    # a scratch file, gone once read (EncodedViews holds the encodings in memory)
    with (
        tempfile.TemporaryDirectory() as scratch,
        progress_bar(f"encode ({backbone.name})", len(train) + len(test)) as advance,
    ):
        path = Path(scratch) / "own.h5"
        encode_views(
            path,
            train,
            test,
            encode,
            clip.embed_dim * backbone.image_feature_blocks,
            {"fingerprint": "own"},
            "float32",
            runtime.encode_batch_images,
            encode_workers(runtime.encode_workers, device),
            advance,
            pin_memory=device.type == "cuda",
        )
        return EncodedViews(path)


def run(dataset: str, backbone: str, seed: int | None = None, params_file: str = "params.yaml") -> None:
    """Base-to-new: the backbone tuned on `dataset`'s base classes; its base-class few-shot images to train on.
    One file per seed of `seeds` (or `seed` alone), in one process: the stage runs once per dataset x backbone."""
    params = start(params_file)
    prepared = read_prepared(prepared_dir(dataset))
    test_new = (prepared.test().subset == "new").to_numpy()
    split = (prepared.classes["base"], prepared.classes["new"])
    seeds = _seeds(params, seed)
    shared = _Shared(params, dataset, prepared)
    for k in seeds:
        train = prepared.fewshot_train(k, "base")
        model_dir = backbone_dir(dataset, backbone, k)
        out = features_path(dataset, backbone, k)
        write_features(params, dataset, prepared, model_dir, out, k, train, train.sublabel, split, test_new, shared)


def cross(source: str, dataset: str, backbone: str, seed: int | None = None, params_file: str = "params.yaml") -> None:
    """Cross-dataset: the features on the source (its few-shot images of every class to train on, and its test
    split, every class a base class) or on a target (its test split only, every class a new class, unseen in
    tuning), through the encoders tuned on the source; one file per seed of `seeds` (or `seed` alone)."""
    params = start(params_file)
    prepared = read_prepared(prepared_dir(dataset))
    every_class = list(range(len(prepared.classnames)))
    n_test = len(prepared.test())
    seeds = _seeds(params, seed)
    shared = _Shared(params, dataset, prepared)
    for k in seeds:
        if dataset == source:
            train = prepared.fewshot_train(k, None)
            labels, split, test_new = train.label, (every_class, []), np.zeros(n_test, bool)
        else:
            train = prepared.fewshot_train(k, None).iloc[:0]
            labels, split, test_new = [], ([], every_class), np.ones(n_test, bool)
        model_dir = cross_backbone_dir(source, backbone, k)
        out = cross_features_path(source, dataset, backbone, k)
        write_features(
            params, dataset, prepared, model_dir, out, k, train, labels, split, test_new, shared, source=source
        )


def _seeds(params, seed: int | None) -> list[int]:
    if seed is None:
        return list(params.seeds)
    if seed not in params.seeds:
        raise ValueError(f"seed {seed} is not in `seeds` {list(params.seeds)} of the params file: add it there")
    return [seed]


class _Shared:
    """What every seed's file of one dataset reads the same, loaded once: the frozen CLIP, the shared
    encodings, and CLIP's class text features of the dataset's template."""

    def __init__(self, params, dataset: str, prepared) -> None:
        self.device = pick_device(params.runtime.device)
        self.clip = clip_of(params, self.device)
        self.views = EncodedViews(encoded_path(dataset))
        template = prepared.classes["template"]
        self.text_clip = template_features(self.clip, template, prepared.classnames).cpu().numpy()


def write_features(
    params,
    dataset,
    prepared,
    model_dir: Path,
    out: Path,
    seed: int,
    train,
    train_labels,
    split,
    test_new,
    shared: _Shared,
    **meta,
) -> None:
    """One run's feature file: the rows of `train` (labelled `train_labels`, indices into split[0], the base
    classes) and every test image (`test_new` marks those of split[1], the new classes), through the backbone
    saved in `model_dir`, with its and CLIP's text features of every class. `meta` goes into the attributes."""
    cfg = params.features
    check_writable(out.parent)  # before any encoding, not after
    clip, device = shared.clip, shared.device
    backbone = model_dir.parent.name
    model = tuning.load(model_dir, clip, backbone_template(backbone, prepared.classes["dataset"]))
    shares_image = model.shares_clip_image_encoder
    clip_views = shared.views
    views = clip_views if shares_image else _own_encodings(dataset, prepared, params, model, clip, device, seed)

    rows = views.train_rows(list(train.impath))
    test = prepared.test()
    test_index = {p: i for i, p in enumerate(views.test_paths)}
    test_rows = np.asarray([test_index[p] for p in test.impath], dtype=np.int64)
    classnames = prepared.classnames
    with torch.no_grad():
        text_backbone = model.class_features(classnames).float().cpu().numpy()
        # The class features after each tuning epoch, for the trend of paper Fig. 5 (the heads stage reads it):
        # with CLIP's image encoder shared, the cached test encodings are every epoch's image features.
        by_epoch = []
        for state in tuning.load_epoch_states(model_dir) if shares_image else []:
            model.load_learnable_state(state)
            by_epoch.append(model.class_features(classnames).float().cpu().numpy())
    arrays = {
        "train/feat_full": views.train["feat_full"][:, rows],
        "train/feat_fg": views.train["feat_fg"][:, rows],
        "train/area": views.train["area"][:, rows],
        "train/label": np.asarray(train_labels, dtype=np.int64),
        "test/feat": views.test["feat"][test_rows],
        "test/feat_fg": views.test["feat_fg"][test_rows],
        "test/area": views.test["area"][test_rows],
        "test/has_fg": views.test["has_fg"][test_rows],
        "test/label": test.label.to_numpy(np.int64),
        "test/subset": np.asarray(test_new, dtype=np.int64),
        "text/backbone": text_backbone,
        "text/clip": shared.text_clip,
    }
    if by_epoch:
        arrays["text/backbone_by_epoch"] = np.stack(by_epoch)
    if model.image_feature_blocks == 2:  # MMRL: class-token features, then the representation features
        d = arrays["text/backbone"].shape[1]
        for key, rep in (
            ("train/feat_full", "train/rep_full"),
            ("train/feat_fg", "train/rep_fg"),
            ("test/feat", "test/rep"),
            ("test/feat_fg", "test/rep_fg"),
        ):
            arrays[key], arrays[rep] = arrays[key][..., :d], arrays[key][..., d:]
    if not shares_image:
        clip_test_index = {p: i for i, p in enumerate(clip_views.test_paths)}
        arrays["train/clip_full"] = clip_views.train["feat_full"][:, clip_views.train_rows(list(train.impath))]
        arrays["test/clip"] = clip_views.test["feat"][[clip_test_index[p] for p in test.impath]]
    attrs = {
        "dataset": dataset,
        "backbone": backbone,
        "seed": seed,
        "classnames": classnames,
        "base": list(split[0]),
        "new": list(split[1]),
        "logit_scale": model.logit_scale,
        "clip_model": clip.name,
        "shares_clip_image": shares_image,
        "rep_weight": model.rep_weight,
        "encoded_fingerprint": clip_views.attrs["fingerprint"],
        "params_fingerprint": fingerprint({"clip": to_plain(params.clip), "features": to_plain(cfg)}),
        **meta,
    }
    write_run_features(out, arrays, attrs, cfg.dtype)
    v, n, d = arrays["train/feat_full"].shape
    print(
        f"dumped {dataset}/{backbone}/seed{seed}: {n} training images x {v} views, {len(test)} test images, "
        f"{len(classnames)} classes, D={d} -> {out}" + ("" if shares_image else " (own image encodings)")
    )

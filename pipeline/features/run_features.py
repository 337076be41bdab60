"""The per-(dataset, backbone, seed) feature file FVG-PT's heads train on.

Layout (docs/design.md): `train/feat_full|feat_fg [V, N, D]`, `train/area [V, N]`,
`train/label [N]` (base labels re-indexed 0..B-1); `test/feat [M, D]`,
`test/label [M]` (dataset labels), `test/subset [M]` (0 base, 1 new),
`test/feat_fg`, `test/area`, `test/has_fg`; `text/backbone [C, D]` and
`text/clip [C, D]` in dataset label order, and optionally `text/backbone_by_epoch
[E, C, D]` (after each tuning epoch). Zero-shot CLIP's image features
(`train/clip_full`, `test/clip`) are stored only when they differ from the
backbone's (`shares_clip_image` attr false). A backbone with a second image
feature for base classes (MMRL) adds `train/rep_full|rep_fg`, `test/rep|rep_fg`
and the attr `rep_weight` w: its base-class image feature is (1 - w) f + w f_rep
(so its logits are MMRL's fused ones), its new-class feature f alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import torch

from ..atomic import atomic_path, hdf5_writes
from .schema import CHECKSUM, FeatureFileError, check_finite, check_schema, open_readable, read_checked

SCHEMA = 1
IMAGE_FEATURES = ("train/feat", "test/feat", "train/clip", "test/clip", "train/rep", "test/rep")
REP = ("train/rep_full", "train/rep_fg", "test/rep", "test/rep_fg")
REQUIRED = (
    "train/feat_full",
    "train/feat_fg",
    "train/area",
    "train/label",
    "test/feat",
    "test/label",
    "test/subset",
    "test/feat_fg",
    "test/area",
    "test/has_fg",
    "text/backbone",
    "text/clip",
)


def write_run_features(path: str | Path, arrays: dict[str, np.ndarray], attrs: dict, dtype: str = "float16") -> None:
    stored = {}
    for key, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.kind == "f" and key.startswith(IMAGE_FEATURES):  # text features stay float32 (small)
            value = value.astype(dtype)
        stored[key] = value
    check_finite(Path(path), stored, "nothing was written; re-run the encode and backbone stages it is built from")
    with atomic_path(path) as tmp, hdf5_writes(tmp):
        with h5py.File(tmp, "w") as f:
            for key, value in stored.items():
                chunks = (1,) + value.shape[1:] if value.ndim == 3 and value.size else None
                f.create_dataset(key, data=value, chunks=chunks, **CHECKSUM)
            for key, value in attrs.items():
                f.attrs[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
            f.attrs["schema"] = SCHEMA


class RunFeatures:
    """Everything the heads and evaluation read, as float32 tensors, validated on open."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FeatureFileError(f"{self.path} not found: run the features stage (`dvc repro features`) first")
        with open_readable(self.path, "features") as f:
            check_schema(f, self.path, SCHEMA)
            absent = [k for k in REQUIRED if k not in f]
            if absent:
                raise FeatureFileError(f"{self.path} lacks {absent}; re-run the features stage")
            self.attrs = {k: (json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v) for k, v in f.attrs.items()}
            arrays = {
                k: read_checked(f, k, self.path, "features")
                for k in REQUIRED + ("train/clip_full", "test/clip", "text/backbone_by_epoch") + REP
                if k in f
            }
        check_finite(self.path, arrays, "delete it and re-run the features stage")
        t = {
            k: torch.from_numpy(v.astype(np.float32) if v.dtype.kind == "f" else v.astype(np.int64)).to(device)
            for k, v in arrays.items()
        }
        for k in t:
            if k.startswith(IMAGE_FEATURES) or k.startswith("text/"):
                t[k] = torch.nn.functional.normalize(t[k], dim=-1)  # undo float16 rounding of the unit norm
        # The new-class branch's image features (the backbone's own), then the base-class branch's: the same
        # tensors, or for MMRL each mixed with its representation feature.
        self.feat_full_new, self.test_feat_new = t["train/feat_full"], t["test/feat"]
        self.test_feat_fg_new = t["test/feat_fg"]
        self.rep_weight = float(self.attrs.get("rep_weight", 0.0))
        absent = [k for k in REP if k not in t]
        if self.rep_weight and absent:
            raise FeatureFileError(f"{self.path} has rep_weight {self.rep_weight} but lacks {absent}; re-run features")
        w = self.rep_weight

        def base_branch(key: str) -> torch.Tensor:  # train/feat_full -> train/rep_full, test/feat -> test/rep, ...
            return (1 - w) * t[key] + w * t[key.replace("feat", "rep")] if w else t[key]

        self.feat_full, self.feat_fg = base_branch("train/feat_full"), base_branch("train/feat_fg")
        self.area = t["train/area"]
        self.train_label = t["train/label"]
        self.test_feat, self.test_label, self.test_subset = base_branch("test/feat"), t["test/label"], t["test/subset"]
        self.test_feat_fg, self.test_area, self.test_has_fg = (
            base_branch("test/feat_fg"),
            t["test/area"],
            t["test/has_fg"].bool(),
        )
        self.text_backbone, self.text_clip = t["text/backbone"], t["text/clip"]
        # [E, C, D]: the backbone's class features after each tuning epoch (absent: no trend to draw)
        self.text_backbone_by_epoch = t.get("text/backbone_by_epoch")
        shared = bool(self.attrs.get("shares_clip_image", True))
        self.train_clip_full = self.feat_full if shared else t["train/clip_full"]
        self.test_clip = self.test_feat if shared else t["test/clip"]
        self.classnames: list[str] = self.attrs["classnames"]
        self.base: list[int] = self.attrs["base"]
        self.new: list[int] = self.attrs["new"]
        self.logit_scale = float(self.attrs["logit_scale"])
        self._validate()

    @property
    def views(self) -> int:
        return self.feat_full.shape[0]

    def _validate(self) -> None:
        v, n, d = self.feat_full.shape
        c = len(self.classnames)
        checks = [
            (self.feat_fg.shape == (v, n, d), f"train/feat_fg {tuple(self.feat_fg.shape)} != {(v, n, d)}"),
            (self.area.shape == (v, n), f"train/area {tuple(self.area.shape)} != {(v, n)}"),
            (self.train_label.shape == (n,), f"train/label {tuple(self.train_label.shape)} != {(n,)}"),
            (self.test_feat.shape[1:] == (d,), f"test/feat width {self.test_feat.shape[1:]} != {d}"),
            (
                self.text_backbone.shape == (c, d) and self.text_clip.shape == (c, d),
                f"text features are not [{c}, {d}]",
            ),
            (len(self.base) + len(self.new) == c, "base + new class lists do not cover the classes"),
            (n == 0 or int(self.train_label.max()) < len(self.base), "a training label is outside the base classes"),
        ]
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            raise FeatureFileError(f"{self.path} is inconsistent: {'; '.join(bad)}; re-run the features stage")

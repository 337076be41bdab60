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
from typing import Callable, Iterator

import h5py
import numpy as np
import torch

from ..atomic import atomic_path, hdf5_writes
from .schema import (
    CHECKSUM,
    FeatureFileError,
    NonFiniteFeaturesError,
    check_finite,
    check_schema,
    open_readable,
    read_checked,
)

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


# Image features are stored a few images per chunk, one view at a time, so the rows of a training batch or a
# block of test images read without the rest of the view, each chunk still under its Fletcher-32 checksum.
ROW_CHUNK = 16
AREA_CHUNK = 4096


def dataset_chunks(key: str, shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The HDF5 chunk shape of `key`: image features [V, N, D] -> (1, 16, D) and [M, D] -> (16, D), training
    areas [V, N] -> (1, 4096); None (h5py's choice) for the small arrays, which are read whole."""
    if not shape or 0 in shape:
        return None
    if key.startswith(IMAGE_FEATURES):
        return (1, min(shape[1], ROW_CHUNK), shape[2]) if len(shape) == 3 else (min(shape[0], ROW_CHUNK), shape[1])
    if key == "train/area":
        return (1, min(shape[1], AREA_CHUNK))
    return None


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
                f.create_dataset(key, data=value, chunks=dataset_chunks(key, value.shape), **CHECKSUM)
            for key, value in attrs.items():
                f.attrs[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
            f.attrs["schema"] = SCHEMA


# Read whole on open in either mode: per image a label, a subset flag and a test area (a few bytes), and the
# class features. Everything else (the image features, the training areas) is what streaming leaves on disk.
SMALL = ("train/label", "test/label", "test/subset", "test/area", "test/has_fg", "text/backbone", "text/clip")
OPTIONAL = ("train/clip_full", "test/clip", "text/backbone_by_epoch") + REP


def features_megabytes(path: str | Path) -> float:
    """What a feature file's image features and training areas take in memory as float32, in MB."""
    with open_readable(Path(path), "features") as f:
        keys: list[str] = []
        f.visit(lambda name: keys.append(name) if isinstance(f[name], h5py.Dataset) else None)
        return sum(f[k].size * 4 for k in keys if k not in SMALL and not k.startswith("text/")) / 2**20


def base_branch(f: torch.Tensor, f_rep: torch.Tensor | None, rep_weight: float) -> torch.Tensor:
    """A base-class image feature from the class-token feature f and the representation feature f_rep (MMRL):
    (1 - w) f + w f_rep, whose logits are MMRL's fused base logits; f itself when w is 0."""
    return (1 - rep_weight) * f + rep_weight * f_rep if rep_weight else f


class RunFeatures:
    """Everything the heads and evaluation read from one feature file, validated on open.

    In memory (the default) every array is read once, as float32 tensors (`feat_full`, `test_feat`, ...).
    Streamed (`stream=True`), only the per-image scalars (labels, subsets, test areas) and the class features
    are read on open; image features and training areas stay in the file and are read per training batch
    (`train_rows`) or per block of `block_rows` images (`test_blocks`, `train_blocks`), so memory is bounded
    whatever the file's size. Both modes give the same float32 values row for row (the same conversion,
    normalisation and MMRL mixing, applied per row), so the same weights and accuracies; a corrupt chunk or a
    non-finite value fails the read that meets it, naming the file and the dataset.
    """

    def __init__(
        self, path: str | Path, device: str | torch.device = "cpu", stream: bool = False, block_rows: int = 8192
    ) -> None:
        self.path = Path(path)
        self.device = torch.device(device)
        self.streamed = stream
        self.block_rows = block_rows
        if not self.path.is_file():
            raise FeatureFileError(f"{self.path} not found: run the features stage (`dvc repro features`) first")
        f = open_readable(self.path, "features")
        try:
            check_schema(f, self.path, SCHEMA)
            absent = [k for k in REQUIRED if k not in f]
            if absent:
                raise FeatureFileError(f"{self.path} lacks {absent}; re-run the features stage")
            self.attrs = {k: (json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v) for k, v in f.attrs.items()}
            present = [k for k in REQUIRED + OPTIONAL if k in f]
            self.shapes = {k: tuple(f[k].shape) for k in present}
            loaded = [k for k in present if not stream or k in SMALL or k == "text/backbone_by_epoch"]
            arrays = {k: read_checked(f, k, self.path, "features") for k in loaded}
        except BaseException:
            f.close()
            raise
        if stream:
            self._file = f  # kept open for the reads; closed with this object
            self._datasets: dict[str, h5py.Dataset] = {}
        else:
            f.close()
        check_finite(self.path, arrays, "delete it and re-run the features stage")
        t = {k: self._tensor(k, v) for k, v in arrays.items()}
        self.rep_weight = float(self.attrs.get("rep_weight", 0.0))
        absent = [k for k in REP if k not in self.shapes]
        if self.rep_weight and absent:
            raise FeatureFileError(f"{self.path} has rep_weight {self.rep_weight} but lacks {absent}; re-run features")
        self.shares_clip = bool(self.attrs.get("shares_clip_image", True))
        absent = [k for k in ("train/clip_full", "test/clip") if k not in self.shapes]
        if not self.shares_clip and absent:
            raise FeatureFileError(f"{self.path} has its own image features but lacks CLIP's {absent}; re-run features")
        self.train_label = t["train/label"]
        self.test_label, self.test_subset = t["test/label"], t["test/subset"]
        self.test_area, self.test_has_fg = t["test/area"], t["test/has_fg"].bool()
        self.text_backbone, self.text_clip = t["text/backbone"], t["text/clip"]
        # [E, C, D]: the backbone's class features after each tuning epoch (absent: no trend to draw)
        self.text_backbone_by_epoch = t.get("text/backbone_by_epoch")
        self.classnames: list[str] = self.attrs["classnames"]
        self.base: list[int] = self.attrs["base"]
        self.new: list[int] = self.attrs["new"]
        self.logit_scale = float(self.attrs["logit_scale"])
        if not stream:
            self._hold(t)
        self._validate()

    def _tensor(self, key: str, value: np.ndarray) -> torch.Tensor:
        """float32 (int64 for integers) on the device; image and class features back on the unit sphere."""
        x = torch.from_numpy(value.astype(np.float32) if value.dtype.kind == "f" else value.astype(np.int64))
        x = x.to(self.device)
        if key.startswith(IMAGE_FEATURES) or key.startswith("text/"):
            x = torch.nn.functional.normalize(x, dim=-1)  # undo float16 rounding of the unit norm
        return x

    def _mix(self, t: dict[str, torch.Tensor], key: str) -> torch.Tensor:
        """The base-class branch of image feature `key` (train/feat_full, test/feat, ...)."""
        return base_branch(t[key], t.get(key.replace("feat", "rep")), self.rep_weight)

    def _branches(self, get: Callable[[str], torch.Tensor], split: str, clip: bool = True) -> dict[str, torch.Tensor]:
        """One split's image features by branch, from `get(key)` (what is held, or a read of some rows): `full`,
        `fg` (the base-class branch's), `full_new`, `fg_new` (the new-class branch's: the backbone's own), and,
        with `clip`, `clip` (zero-shot CLIP's full view: the base branch's where they share an encoder)."""
        full_key, fg_key, clip_key = {
            "train": ("train/feat_full", "train/feat_fg", "train/clip_full"),
            "test": ("test/feat", "test/feat_fg", "test/clip"),
        }[split]
        keys = [full_key, fg_key]
        keys += [k.replace("feat", "rep") for k in keys] if self.rep_weight else []  # what `_mix` mixes in
        t = {k: get(k) for k in keys + ([clip_key] if clip and not self.shares_clip else [])}
        out = {"full": self._mix(t, full_key), "fg": self._mix(t, fg_key), "full_new": t[full_key], "fg_new": t[fg_key]}
        if clip:
            out["clip"] = out["full"] if self.shares_clip else t[clip_key]
        return out

    def _hold(self, t: dict[str, torch.Tensor]) -> None:
        """In memory: every image feature as a tensor attribute, by branch."""
        train, test = self._branches(t.__getitem__, "train"), self._branches(t.__getitem__, "test")
        self.feat_full, self.feat_fg, self.feat_full_new = train["full"], train["fg"], train["full_new"]
        self.train_clip_full, self.area = train["clip"], t["train/area"]
        self.test_feat, self.test_feat_fg, self.test_clip = test["full"], test["fg"], test["clip"]
        self.test_feat_new, self.test_feat_fg_new = test["full_new"], test["fg_new"]

    @property
    def layout(self) -> tuple:
        """What feature files trained together must share: views, training images, width, base classes, a second
        image feature (MMRL) or not, and storage (streamed or in memory)."""
        return (self.views, self.n_train, self.width, tuple(self.base), self.rep_weight > 0, self.streamed)

    @property
    def views(self) -> int:
        return self.shapes["train/feat_full"][0]

    @property
    def n_train(self) -> int:
        return self.shapes["train/feat_full"][1]

    @property
    def width(self) -> int:
        return self.shapes["train/feat_full"][2]

    # -- reads: the same rows in either mode --------------------------------------------------------------------

    def _read_numpy(self, key: str, index: tuple) -> np.ndarray:
        """`key`[index] from the file, its finiteness checked; a corrupt chunk names the file and the dataset."""
        try:
            if key not in self._datasets:
                self._datasets[key] = self._file[key]
            value = self._datasets[key][index]
        except (OSError, KeyError) as err:
            raise FeatureFileError(
                f"{self.path}: cannot read {key} (corrupt or truncated file: {err}); delete it and re-run the "
                "features stage"
            ) from err
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise NonFiniteFeaturesError(
                f"{self.path}: non-finite values (NaN or inf) in {key}; delete it and re-run the features stage"
            )
        return value

    def _read(self, key: str, index: tuple) -> torch.Tensor:
        """`key`[index] as a float32 tensor (normalised for features)."""
        return self._tensor(key, self._read_numpy(key, index))

    def _read_rows(self, key: str, v: int, rows: np.ndarray) -> torch.Tensor:
        """View v of the training images `rows` (sorted, distinct), read as runs of consecutive rows."""
        runs = np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1)
        parts = [self._read_numpy(key, (v, slice(int(r[0]), int(r[-1]) + 1))) for r in runs if len(r)]
        return self._tensor(key, np.concatenate(parts))

    def train_rows(self, v: int, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """View v of the training images `rows` ([R], sorted and distinct when streamed): `full` and `fg` (the
        base branch's), `new` (the new branch's full view), `clip` (zero-shot CLIP's full view), `area`."""
        if not self.streamed:
            return {
                "full": self.feat_full[v, rows],
                "fg": self.feat_fg[v, rows],
                "new": self.feat_full_new[v, rows],
                "clip": self.train_clip_full[v, rows],
                "area": self.area[v, rows],
            }
        rows_np = rows.cpu().numpy()
        read = self._branches(lambda k: self._read_rows(k, v, rows_np), "train")
        return {
            "full": read["full"],
            "fg": read["fg"],
            "new": read["full_new"],
            "clip": read["clip"],
            "area": self._read_rows("train/area", v, rows_np),
        }

    def test_blocks(self, rows: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
        """The test images in consecutive blocks of `rows` (default: all at once in memory, `block_rows` when
        streamed): `f`, `f_fg` (base branch), `f_new`, `f_fg_new` (new branch), `clip`, `label`, `subset`,
        `has_fg`."""
        m = len(self.test_label)
        rows = rows or (self.block_rows if self.streamed else max(m, 1))
        for s in range(0, max(m, 1), rows):  # one empty block for an empty split: its metrics are NaN
            e = min(m, s + rows)
            if self.streamed:
                read = self._branches(lambda k: self._read(k, (slice(s, e),)), "test")
            else:
                held = (self.test_feat, self.test_feat_fg, self.test_feat_new, self.test_feat_fg_new, self.test_clip)
                read = dict(zip(("full", "fg", "full_new", "fg_new", "clip"), (x[s:e] for x in held)))
            yield {
                "f": read["full"],
                "f_fg": read["fg"],
                "f_new": read["full_new"],
                "f_fg_new": read["fg_new"],
                "clip": read["clip"],
                "label": self.test_label[s:e],
                "subset": self.test_subset[s:e],
                "has_fg": self.test_has_fg[s:e],
            }

    def train_blocks(self, rows: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Every view of the training images in blocks of `rows` images (default: all at once in memory; when
        streamed, `block_rows` views' worth): base-branch full and foreground features [V, r, D], areas [V, r]."""
        n = self.n_train
        rows = rows or (max(1, self.block_rows // max(self.views, 1)) if self.streamed else max(n, 1))
        for s in range(0, max(n, 1), rows):
            e = min(n, s + rows)
            if not self.streamed:
                yield self.feat_full[:, s:e], self.feat_fg[:, s:e], self.area[:, s:e]
                continue
            index = (slice(None), slice(s, e))
            read = self._branches(lambda k: self._read(k, index), "train", clip=False)
            yield read["full"], read["fg"], self._read("train/area", index)

    def _validate(self) -> None:
        v, n, d = self.shapes["train/feat_full"]
        c = len(self.classnames)
        m = len(self.test_label)
        checks = [
            (self.shapes["train/feat_fg"] == (v, n, d), f"train/feat_fg {self.shapes['train/feat_fg']} != {(v, n, d)}"),
            (self.shapes["train/area"] == (v, n), f"train/area {self.shapes['train/area']} != {(v, n)}"),
            (tuple(self.train_label.shape) == (n,), f"train/label {tuple(self.train_label.shape)} != {(n,)}"),
            (self.shapes["test/feat"] == (m, d), f"test/feat {self.shapes['test/feat']} != {(m, d)}"),
            (self.shapes["test/feat_fg"] == (m, d), f"test/feat_fg {self.shapes['test/feat_fg']} != {(m, d)}"),
            (
                tuple(self.text_backbone.shape) == (c, d) and tuple(self.text_clip.shape) == (c, d),
                f"text features are not [{c}, {d}]",
            ),
            (len(self.base) + len(self.new) == c, "base + new class lists do not cover the classes"),
            (n == 0 or int(self.train_label.max()) < len(self.base), "a training label is outside the base classes"),
        ]
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            raise FeatureFileError(f"{self.path} is inconsistent: {'; '.join(bad)}; re-run the features stage")


def load_run_features(path: str | Path, device: str | torch.device = "cpu", memory_mb: float = 0) -> RunFeatures:
    """A feature file in memory, or streamed when its image features would take more than `memory_mb` MB as
    float32 (`runtime.features_memory_mb`; 0 = always in memory)."""
    stream = bool(memory_mb) and Path(path).is_file() and features_megabytes(path) > memory_mb
    return RunFeatures(path, device, stream=stream)

"""Few-shot selection identical to Dassl's for the same seed and shot count.

Dassl seeds python's `random` with the run seed, groups a split's items by
label in order of first appearance, and draws `random.sample(items, K)` per
label; the val split follows with min(K, 4) from the same generator state.
A fresh `random.Random(seed)` yields the same stream as the seeded global.
"""

from __future__ import annotations

import pickle
import random
import warnings
from pathlib import Path

from .base import DatasetSplits, Item


def _sample(items: list[Item], shots: int, rng: random.Random, split: str) -> list[int]:
    by_label: dict[int, list[int]] = {}
    for idx, item in enumerate(items):
        by_label.setdefault(item.label, []).append(idx)
    chosen: list[int] = []
    short = []
    for label, idxs in by_label.items():
        if len(idxs) >= shots:
            chosen.extend(rng.sample(idxs, shots))
        else:
            chosen.extend(idxs)
            short.append(label)
    if short:
        warnings.warn(f"{split}: {len(short)} classes have fewer than {shots} images; all of theirs are used (labels {short[:5]})")
    return chosen


def dassl_fewshot(data: DatasetSplits, shots: int, seed: int) -> tuple[list[int], list[int]]:
    """Indices into data.train and data.val that Dassl selects."""
    rng = random.Random(seed)
    train = _sample(data.train, shots, rng, "train")
    val = _sample(data.val, min(shots, 4), rng, "val") if data.fewshot_val else []
    return train, val


class _Datum:
    """Stands in for dassl's Datum so its pickles load without Dassl."""

    def __setstate__(self, state):
        self.__dict__.update(state)

    @property
    def impath(self) -> str:
        return self.__dict__.get("_impath", self.__dict__.get("impath", ""))

    @property
    def label(self) -> int:
        return int(self.__dict__.get("_label", self.__dict__.get("label", -1)))

    @property
    def classname(self) -> str:
        return str(self.__dict__.get("_classname", self.__dict__.get("classname", "")))


class _DatumUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if name == "Datum":
            return _Datum
        if module.startswith(("builtins", "collections", "copyreg", "_codecs")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a few-shot pickle")


def _match(items: list[Item], image_dir: str, data: list, pkl: Path) -> list[int]:
    # Pickled paths are absolute on the authors' machine: match by the
    # longest suffix that names one of our items.
    index = {}
    for i, item in enumerate(items):
        rel = item.impath
        if image_dir and rel.startswith(image_dir + "/"):
            rel = rel[len(image_dir) + 1:]
        index[rel.replace("\\", "/")] = i
    out, missing = [], []
    for datum in data:
        parts = datum.impath.replace("\\", "/").split("/")
        hit = next((index[k] for k in ("/".join(parts[j:]) for j in range(len(parts))) if k in index), None)
        (missing if hit is None else out).append(datum.impath if hit is None else hit)
    if missing:
        raise ValueError(f"{pkl}: {len(missing)} pickled images are not in the split, e.g. {missing[:3]}")
    return out


def load_fewshot_pickle(data: DatasetSplits, pkl: Path) -> tuple[list[int], list[int]]:
    with open(pkl, "rb") as f:
        raw = _DatumUnpickler(f).load()
    train = _match(data.train, data.image_dir, raw["train"], pkl)
    val = _match(data.val, data.image_dir, raw.get("val", []), pkl) if data.fewshot_val else []
    return train, val


def select_fewshot(data: DatasetSplits, shots: int, seed: int) -> tuple[list[int], list[int]]:
    """Reuse `<root>/split_fewshot/shot_K-seed_S.pkl` when present, else sample."""
    pkl = data.root / "split_fewshot" / f"shot_{shots}-seed_{seed}.pkl"
    if pkl.is_file():
        return load_fewshot_pickle(data, pkl)
    return dassl_fewshot(data, shots, seed)


def read_dassl_pickle(path: Path):
    """A pickle Dassl wrote (few-shot selections, ImageNet's preprocessed.pkl), read without Dassl."""
    with open(path, "rb") as f:
        return _DatumUnpickler(f).load()

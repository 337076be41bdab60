"""Few-shot selection identical to Dassl's for the same seed and shot count.

Dassl seeds python's `random` with the run seed, groups a split's items by
label in order of first appearance, and draws `random.sample(items, K)` per
label; the val split follows with min(K, 4) from the same generator state.
A fresh `random.Random(seed)` yields the same stream as the seeded global.
"""

from __future__ import annotations

import _compat_pickle
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
        warnings.warn(
            f"{split}: {len(short)} classes have fewer than {shots} images; all of theirs are used (labels {short[:5]})"
        )
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


class FewShotPickleError(ValueError):
    """A `split_fewshot` pickle is unsafe, malformed, or does not fit the dataset."""


# Everything a Dassl few-shot pickle may reference, and nothing else: the
# Datum records, the containers around them, and what protocols 0-2 use to
# rebuild plain objects and bytes. Any other global (eval, exec, os.system)
# is how a crafted pickle runs code, so it is refused by exact name.
_DATUM_MODULES = ("dassl.data.datasets.base_dataset", "dassl.data.datasets")
_SAFE_GLOBALS = {
    ("builtins", name)
    for name in ("object", "dict", "list", "tuple", "set", "frozenset", "str", "bytes", "int", "float", "bool")
}
_SAFE_GLOBALS |= {("collections", "OrderedDict"), ("copyreg", "_reconstructor"), ("_codecs", "encode")}


class _RefusedGlobal(pickle.UnpicklingError):
    pass


class _DatumUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        # Protocols 0-2 spell Python 2's names (copy_reg, __builtin__): compare the Python 3 ones.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if name == "Datum" and module in _DATUM_MODULES:
            return _Datum
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise _RefusedGlobal(
            f"refusing to load {module}.{name} from a few-shot pickle (it holds only Dassl's Datum records)"
        )


def _match(items: list[Item], image_dir: str, data: list, pkl: Path) -> list[int]:
    # Pickled paths are absolute on the authors' machine: match by the
    # longest suffix that names one of our items.
    index = {}
    for i, item in enumerate(items):
        rel = item.impath
        if image_dir and rel.startswith(image_dir + "/"):
            rel = rel[len(image_dir) + 1 :]
        index[rel.replace("\\", "/")] = i
    out, missing = [], []
    for datum in data:
        parts = datum.impath.replace("\\", "/").split("/")
        hit = next((index[k] for k in ("/".join(parts[j:]) for j in range(len(parts))) if k in index), None)
        (missing if hit is None else out).append(datum.impath if hit is None else hit)
    if missing:
        raise FewShotPickleError(f"{pkl}: {len(missing)} pickled images are not in the split, e.g. {missing[:3]}")
    return out


def _read_pickle(pkl: Path) -> dict:
    fix = "delete it to sample the selection instead, or replace it with the file Dassl wrote"
    raw = read_dassl_pickle(pkl, "few-shot pickle", fix)
    records = [raw.get(k, []) for k in ("train", "val")] if isinstance(raw, dict) else None
    if (
        records is None
        or "train" not in raw
        or not all(
            isinstance(r, list) and all(isinstance(d, _Datum) and isinstance(d.impath, str) for d in r) for r in records
        )
    ):
        raise FewShotPickleError(
            f"{pkl} is not a Dassl few-shot pickle (expected {{'train': [Datum], 'val': [Datum]}}); {fix}"
        )
    return raw


def _check_selection(items: list[Item], chosen: list[int], split: str, pkl: Path) -> None:
    """A training selection must hold at least one image of every class the split has."""
    if items and not chosen:
        raise FewShotPickleError(
            f"{pkl}: the {split} selection is empty; delete the file to sample the selection instead"
        )
    missing = sorted({it.classname for it in items} - {items[i].classname for i in chosen})
    if split == "train" and missing:
        raise FewShotPickleError(
            f"{pkl}: the {split} selection has no image of {len(missing)} classes, e.g. {missing[:3]}; "
            "delete the file to sample the selection instead"
        )


def load_fewshot_pickle(data: DatasetSplits, pkl: Path) -> tuple[list[int], list[int]]:
    raw = _read_pickle(pkl)
    train = _match(data.train, data.image_dir, raw["train"], pkl)
    val = _match(data.val, data.image_dir, raw.get("val", []), pkl) if data.fewshot_val else []
    _check_selection(data.train, train, "train", pkl)
    if data.fewshot_val:
        _check_selection(data.val, val, "val", pkl)
    return train, val


def select_fewshot(data: DatasetSplits, shots: int, seed: int) -> tuple[list[int], list[int]]:
    """Reuse `<root>/split_fewshot/shot_K-seed_S.pkl` when present, else sample."""
    pkl = data.root / "split_fewshot" / f"shot_{shots}-seed_{seed}.pkl"
    if pkl.is_file():
        return load_fewshot_pickle(data, pkl)
    return dassl_fewshot(data, shots, seed)


def read_dassl_pickle(path: Path, what: str, fix: str):
    """A pickle Dassl wrote (few-shot selections, ImageNet's preprocessed.pkl), read without Dassl and without
    running code: a refused global or a malformed stream is one FewShotPickleError naming the file, `what`
    it should be, and `fix`."""
    try:
        with open(path, "rb") as f:
            return _DatumUnpickler(f).load()
    except _RefusedGlobal as err:
        raise FewShotPickleError(f"{path}: {err}; {fix}") from err
    except Exception as err:  # a malformed stream can fail in many ways; all mean the same to the user
        raise FewShotPickleError(f"{path} is not a readable {what} ({type(err).__name__}: {err}); {fix}") from err

"""The prepared form of a dataset: one manifest table plus class metadata.

`manifest.csv` has one row per image and split (an image may appear in
val and test, as ImageNet's does): impath (relative to the dataset root),
label, classname, split, subset (base/new), sublabel (label inside its
half) and one 0/1 column `fewshot_<seed>` per seed. `classes.json` holds
the class names in label order, the base/new label lists and the templates.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .atomic import atomic_path, write_json
from .datasets import DatasetSplits, template_for
from .datasets.basenew import relabel, split_base_new
from .datasets.fewshot import select_fewshot

MANIFEST = "manifest.csv"
CLASSES = "classes.json"


def missing_images(data: DatasetSplits) -> list[str]:
    seen = {it.impath for it in data.train + data.val + data.test}
    return sorted(p for p in seen if not (data.root / p).is_file())


def build_manifest(data: DatasetSplits, shots: int, seeds: list[int]) -> tuple[pd.DataFrame, dict]:
    base, new = split_base_new(it.label for it in data.train)
    sub = {**relabel(base), **relabel(new)}
    subset = {**{y: "base" for y in base}, **{y: "new" for y in new}}
    rows, dropped = [], {}
    for split in ("train", "val", "test"):
        for it in getattr(data, split):
            if it.label not in subset:  # CoOp's subsample_classes keeps only the training split's classes
                dropped[it.label] = dropped.get(it.label, 0) + 1
                continue
            rows.append((it.impath, it.label, it.classname, split, subset[it.label], sub[it.label]))
    if dropped:
        warnings.warn(
            f"{sum(dropped.values())} val/test images of {len(dropped)} classes with no training image are "
            f"dropped, as CoOp does (labels {sorted(dropped)[:5]})"
        )
    df = pd.DataFrame(rows, columns=["impath", "label", "classname", "split", "subset", "sublabel"])
    n_train = len(data.train)
    val_kept = [i for i, it in enumerate(data.val) if it.label in subset]
    row_of_val = {i: n_train + j for j, i in enumerate(val_kept)}  # rows follow train, then the kept val items
    n_val = len(val_kept)
    for seed in seeds:
        # Dassl samples few-shot val before dropping classes, so a pick of a dropped class is sampled, then dropped.
        train_idx, val_idx = select_fewshot(data, shots, seed)
        col = [0] * len(df)
        for i in train_idx:
            col[i] = 1
        for i in val_idx:
            if i in row_of_val:
                col[row_of_val[i]] = 1
        df[f"fewshot_{seed}"] = col
    classes = {
        "dataset": data.name,
        "root": str(data.root),
        "image_dir": data.image_dir,
        "classnames": data.classnames,
        "base": base,
        "new": new,
        "template": template_for(data.name),
        "shots": shots,
        "seeds": list(seeds),
        "n_train_val": [n_train, n_val],
    }
    return df, classes


def write_prepared(out_dir: Path, df: pd.DataFrame, classes: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / MANIFEST) as tmp:
        df.to_csv(tmp, index=False)
    write_json(out_dir / CLASSES, classes)


@dataclass
class Prepared:
    """A prepared dataset as later stages read it."""

    manifest: pd.DataFrame
    classes: dict

    @property
    def root(self) -> Path:
        return Path(self.classes["root"])

    @property
    def classnames(self) -> list[str]:
        return self.classes["classnames"]

    def _fewshot_column(self, seed: int) -> str:
        col = f"fewshot_{seed}"
        if col not in self.manifest:
            raise KeyError(
                f"seed {seed} was not prepared (columns: {[c for c in self.manifest if c.startswith('fewshot_')]}); "
                "add it to `seeds` and re-run prepare"
            )
        return col

    def fewshot_train(self, seed: int, subset: str | None = "base") -> pd.DataFrame:
        """One seed's few-shot training images of the base or new classes, or of all classes (subset None: the
        cross-dataset protocol tunes on every class of its source)."""
        m = self.manifest
        keep = (m.split == "train") & (m[self._fewshot_column(seed)] == 1)
        return m[keep & self._in(subset)].reset_index(drop=True)

    def fewshot_union(self, seeds: list[int], subset: str | None = None) -> pd.DataFrame:
        """The few-shot training images of any of `seeds`, each once, of every class by default: what masks and
        encodings cover, so a dataset serves as a base-to-new dataset and as a cross-dataset source alike."""
        m = self.manifest
        chosen = m[[self._fewshot_column(s) for s in seeds]].any(axis=1)
        return m[(m.split == "train") & chosen & self._in(subset)].drop_duplicates("impath").reset_index(drop=True)

    def _in(self, subset: str | None) -> pd.Series:
        if subset is None:
            return pd.Series(True, index=self.manifest.index)
        return self.manifest.subset == subset

    def test(self) -> pd.DataFrame:
        return self.manifest[self.manifest.split == "test"].reset_index(drop=True)


def read_prepared(prepared_dir: str | Path) -> Prepared:
    prepared_dir = Path(prepared_dir)
    path = prepared_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `fvgpt prepare <dataset>` (or `dvc repro prepare`) first")
    df = pd.read_csv(path, keep_default_na=False)
    with open(prepared_dir / CLASSES, encoding="utf-8") as f:
        classes = json.load(f)
    return Prepared(df, classes)

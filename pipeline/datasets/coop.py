"""Readers for the CoOp/Dassl DATA layout of the 11 base-to-new benchmarks.

Each benchmark lives in `<DATA>/<dataset_dir>/` with its images under an
image sub-folder. Nine use Zhou's `split_zhou_*.json`; ImageNet and
FGVCAircraft have their own formats, read here the way Dassl reads them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .base import DatasetLayoutError, DatasetSplits, Item

# Dassl renames some classes when it builds a split from raw folders; the
# published JSON files already carry the new names, so applying the table
# again is a no-op there and fixes splits a user generated from raw data.
CALTECH_NEW_CNAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}
EUROSAT_NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@dataclass(frozen=True)
class ZhouLayout:
    dataset_dir: str
    image_dir: str
    split_file: str
    rename: dict | None = None


ZHOU_LAYOUTS = {
    "caltech101": ZhouLayout("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json", CALTECH_NEW_CNAMES),
    "oxford_pets": ZhouLayout("oxford_pets", "images", "split_zhou_OxfordPets.json"),
    "stanford_cars": ZhouLayout("stanford_cars", "", "split_zhou_StanfordCars.json"),
    "oxford_flowers": ZhouLayout("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json"),
    "food101": ZhouLayout("food-101", "images", "split_zhou_Food101.json"),
    "sun397": ZhouLayout("sun397", "SUN397", "split_zhou_SUN397.json"),
    "dtd": ZhouLayout("dtd", "images", "split_zhou_DescribableTextures.json"),
    "eurosat": ZhouLayout("eurosat", "2750", "split_zhou_EuroSAT.json", EUROSAT_NEW_CNAMES),
    "ucf101": ZhouLayout("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json"),
}
DATASET_DIRS = {name: layout.dataset_dir for name, layout in ZHOU_LAYOUTS.items()}
DATASET_DIRS.update({"imagenet": "imagenet", "fgvc_aircraft": "fgvc_aircraft"})


def _rel(image_dir: str, path: str) -> str:
    return str(Path(image_dir) / path) if image_dir else path


def read_zhou_split(name: str, root: Path, layout: ZhouLayout) -> DatasetSplits:
    split_path = root / layout.split_file
    if not split_path.is_file():
        raise DatasetLayoutError(
            f"{name}: split file {split_path} not found. Expected the CoOp layout "
            f"<DATA>/{layout.dataset_dir}/{layout.split_file} with images under "
            f"<DATA>/{layout.dataset_dir}/{layout.image_dir or '.'}/ (see CoOp's DATASETS.md)."
        )
    with open(split_path, encoding="utf-8") as f:
        raw = json.load(f)
    rename = layout.rename or {}
    splits = {}
    for split in ("train", "val", "test"):
        if split not in raw:
            raise DatasetLayoutError(
                f"{split_path}: no '{split}' key; expected {{'train'|'val'|'test': [[relpath, label, classname], ...]}}"
            )
        splits[split] = [Item(_rel(layout.image_dir, p), int(label), rename.get(c, c)) for p, label, c in raw[split]]
    return DatasetSplits(name, root, layout.image_dir, **splits)


def _listdir_nohidden(path: Path) -> list[str]:
    return sorted(f for f in os.listdir(path) if not f.startswith("."))


def _imagenet_from_preprocessed(root: Path, path: Path) -> tuple[list[Item], list[Item]]:
    """Dassl's cached ImageNet lists, in their order: {"train": [Datum], "test": [Datum]}, absolute paths."""
    from .fewshot import read_dassl_pickle

    raw = read_dassl_pickle(path, "Dassl ImageNet list", "delete it to list the image folders instead")
    out = []
    for split, folder in (("train", "train"), ("test", "val")):
        if split not in raw:
            raise DatasetLayoutError(f"{path}: no '{split}' list; expected Dassl's {{'train': [...], 'test': [...]}}")
        items = []
        for datum in raw[split]:
            parts = datum.impath.replace("\\", "/").split("/")
            if len(parts) < 3 or parts[-3] != folder:
                raise DatasetLayoutError(f"{path}: {datum.impath} is not under images/{folder}/<wnid>/")
            items.append(Item(f"images/{folder}/{parts[-2]}/{parts[-1]}", datum.label, datum.classname))
        out.append(items)
    return out[0], out[1]


def _class_folders(path: Path, dataset: str) -> list[str]:
    """The class folders in `path`; a file there is a mistake to name, not a folder to list."""
    names = _listdir_nohidden(path)
    files = [n for n in names if not (path / n).is_dir()]
    if files:
        raise DatasetLayoutError(
            f"{dataset}: {path} must hold only class folders, but has {len(files)} files, "
            f"e.g. {files[:3]}; move them elsewhere"
        )
    return names


def read_imagenet(root: Path) -> DatasetSplits:
    """Class folders under images/{train,val}, names from classnames.txt.

    Dassl sorts the class folders but lists the images of each in
    os.listdir order, which differs between file systems, and caches the
    lists in `<root>/preprocessed.pkl`. When that file exists its order is
    used, so few-shot picks equal the Dassl run that wrote it; otherwise
    images are sorted (reproducible, but picks can differ from a Dassl run).
    """
    names_file = root / "classnames.txt"
    image_root = root / "images"
    if not names_file.is_file() or not (image_root / "train").is_dir() or not (image_root / "val").is_dir():
        raise DatasetLayoutError(
            f"imagenet: expected {names_file} ('<wnid> <class name>' per line) and class folders "
            f"{image_root}/train/<wnid>/ and {image_root}/val/<wnid>/"
        )
    classnames = {}
    for line in names_file.read_text(encoding="utf-8").splitlines():
        if line.strip():
            wnid, cname = line.strip().split(" ", 1)
            classnames[wnid] = cname.strip()

    def read(split: str) -> list[Item]:
        items = []
        for label, folder in enumerate(_class_folders(image_root / split, "imagenet")):
            if folder not in classnames:
                raise DatasetLayoutError(f"imagenet: folder {image_root / split / folder} has no line in {names_file}")
            for im in _listdir_nohidden(image_root / split / folder):
                items.append(Item(f"images/{split}/{folder}/{im}", label, classnames[folder]))
        return items

    preprocessed = root / "preprocessed.pkl"
    if preprocessed.is_file():
        train, test = _imagenet_from_preprocessed(root, preprocessed)
    else:
        train, test = read("train"), read("val")
    return DatasetSplits("imagenet", root, "images", train, list(test), test, fewshot_val=False)


def read_fgvc_aircraft(root: Path) -> DatasetSplits:
    variants = root / "variants.txt"
    if not variants.is_file():
        raise DatasetLayoutError(
            f"fgvc_aircraft: {variants} not found. Expected <DATA>/fgvc_aircraft/ with variants.txt, "
            "images_variant_{train,val,test}.txt and images/<id>.jpg"
        )
    classnames = [line.strip() for line in variants.read_text(encoding="utf-8").splitlines() if line.strip()]
    cname2lab = {c: i for i, c in enumerate(classnames)}

    def read(split: str) -> list[Item]:
        path = root / f"images_variant_{split}.txt"
        if not path.is_file():
            raise DatasetLayoutError(f"fgvc_aircraft: split file {path} not found")
        items = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            imname, cname = line.strip().split(" ", 1)
            if cname not in cname2lab:
                raise DatasetLayoutError(f"{path}: variant {cname!r} is not in {variants}")
            items.append(Item(f"images/{imname}.jpg", cname2lab[cname], cname))
        return items

    return DatasetSplits("fgvc_aircraft", root, "images", read("train"), read("val"), read("test"), classnames)


def read_imagefolder(root: Path) -> DatasetSplits:
    """`<root>/<split>/<class>/*`; labels follow the sorted class folders."""
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        raise DatasetLayoutError(
            f"imagefolder: expected {root}/train/<class>/* and {root}/test/<class>/* (val optional)"
        )
    classes = _class_folders(root / "train", "imagefolder")
    label_of = {c: i for i, c in enumerate(classes)}

    def read(split: str) -> list[Item]:
        if not (root / split).is_dir():
            return []
        items = []
        for cname in _class_folders(root / split, "imagefolder"):
            if cname not in label_of:
                raise DatasetLayoutError(f"imagefolder: class folder {root / split / cname} has no train folder")
            for im in _listdir_nohidden(root / split / cname):
                items.append(Item(f"{split}/{cname}/{im}", label_of[cname], cname.replace("_", " ")))
        return items

    # Class names from the folders, so an empty class folder is a class (that validation reports),
    # not a gap in the labels.
    classnames = [c.replace("_", " ") for c in classes]
    return DatasetSplits("imagefolder", root, "", read("train"), read("val"), read("test"), classnames)

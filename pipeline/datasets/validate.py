"""What `prepare` checks before it writes anything: a dataset every later stage can run on.

Each problem is found here, named with the class, folder or file it is
about and what to do, instead of surfacing stages later as an IndexError or
a hint to re-run the wrong stage.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import PurePosixPath

from PIL import Image

from .base import DatasetSplits
from .basenew import split_base_new


class DatasetError(ValueError):
    """A dataset the pipeline cannot run on, found when it is prepared."""


def validate_dataset(data: DatasetSplits) -> None:
    """Raise one DatasetError listing every problem of `data`, or return if there is none."""
    problems = [
        p
        for check in (
            _too_few_classes,
            _unused_labels,
            _shared_names,
            _classes_without_training_images,
            _halves_without_test_images,
            _not_images,
        )
        for p in check(data)
    ]
    if problems:
        raise DatasetError(f"{data.name} at {data.root}: " + "; ".join(problems))


def _too_few_classes(data: DatasetSplits) -> list[str]:
    n = len(data.classnames)
    if n < 2:
        return [f"{n} class found, but base-to-new needs at least 2 (one base, one new); add classes"]
    return []


def _unused_labels(data: DatasetSplits) -> list[str]:
    used = {it.label for it in data.train + data.val + data.test}
    outside = sorted(y for y in used if not 0 <= y < len(data.classnames))
    if outside:
        return [
            f"labels {outside[:5]} have no class name (labels must be 0..{len(data.classnames) - 1}); "
            "fix the split file"
        ]
    return []


def _shared_names(data: DatasetSplits) -> list[str]:
    labels_of = defaultdict(list)
    for label, name in enumerate(data.classnames):
        labels_of[name.strip().lower()].append(label)
    clashes = {name: labels for name, labels in labels_of.items() if len(labels) > 1}
    if not clashes:
        return []
    folder = _folder_of_label(data)
    described = [
        " and ".join(repr(folder.get(y, data.classnames[y])) for y in labels) + f" both name the class {name!r}"
        for name, labels in clashes.items()
    ]
    return [f"{'; '.join(described[:3])}: the text prompts could not tell them apart; rename one of each"]


def _classes_without_training_images(data: DatasetSplits) -> list[str]:
    """In a user's image folder an empty class is a mistake; the CoOp benchmarks drop such a class from val and
    test instead, as CoOp's code does (pipeline.manifest.build_manifest)."""
    if data.name != "imagefolder":
        return []
    trained = {it.label for it in data.train}
    empty = [name for label, name in enumerate(data.classnames) if label not in trained]
    if empty:
        return [
            f"{len(empty)} classes have no training image, e.g. {empty[:3]}; add training images or remove the class"
        ]
    return []


def _halves_without_test_images(data: DatasetSplits) -> list[str]:
    if len(data.classnames) < 2:
        return []
    base, new = split_base_new(range(len(data.classnames)))
    tested = {it.label for it in data.test}
    return [
        f"no test image of any {half} class; add test images, or the {half} accuracy cannot be measured"
        for half, labels in (("base", base), ("new", new))
        if not tested & set(labels)
    ]


def _not_images(data: DatasetSplits) -> list[str]:
    known = set(Image.registered_extensions())
    strays = sorted(
        {it.impath for it in data.train + data.val + data.test if PurePosixPath(it.impath).suffix.lower() not in known}
    )
    if strays:
        return [
            f"{len(strays)} listed files are not images (by their extension), e.g. {strays[:3]}; "
            "move them out of the class folders"
        ]
    return []


def _folder_of_label(data: DatasetSplits) -> dict[int, str]:
    """The folder each class's first image sits in (its name as the user sees it)."""
    folders = {}
    for it in data.train + data.val + data.test:
        folders.setdefault(it.label, PurePosixPath(it.impath).parent.name)
    return folders

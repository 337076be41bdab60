"""The in-memory form every dataset reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Item:
    """One image: path relative to the dataset root, label, class name."""

    impath: str
    label: int
    classname: str


@dataclass
class DatasetSplits:
    """train/val/test item lists of one dataset, as Dassl would build them.

    `root` is the dataset folder that every `Item.impath` is relative to;
    `image_dir` is the sub-folder the split files' paths are relative to
    (used to match Dassl's pickled few-shot selections and mask files).
    """

    name: str
    root: Path
    image_dir: str
    train: list[Item]
    val: list[Item]
    test: list[Item]
    classnames: list[str] = field(default_factory=list)
    # ImageNet's few-shot protocol samples train only (val is the test set).
    fewshot_val: bool = True

    def __post_init__(self) -> None:
        if not self.classnames:
            names: dict[int, str] = {}
            for item in self.train + self.val + self.test:
                names.setdefault(item.label, item.classname)
            self.classnames = [names[k] for k in sorted(names)]


class DatasetLayoutError(FileNotFoundError):
    """The dataset folder does not have the layout its reader expects."""

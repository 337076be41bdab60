"""params.yaml as strict, typed configs: one dataclass per section, read in one place.

`load_params(path)` is the only reader. An unknown key fails naming the key,
its section and the closest valid key; a wrong type or an out-of-range value
fails naming the key and what is allowed. Defaults live here, once;
params.yaml shows every one of them (a test checks that they agree).

Keys that cannot change a result (devices, worker counts, inference batch
sizes, caches, thread counts) live in the `runtime` section, which no DVC
stage declares, so changing them never re-runs anything.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

import yaml

from .config_reader import ConfigError, build, check_keys, coerce, require, to_plain
from .datasets import KNOWN, is_known, is_synthetic
from .datasets.synthetic import BENCHMARK_OVERRIDES, CROSS_DATASET_VARIANTS, SyntheticSpec
from .heads.config import HeadsConfig
from .schedule import SGDRecipe


def _registries():
    """The backbone and segmenter registries, imported only to check names and read backbone sections.

    Kept in this one function so the DVC dependency test can tell these imports from code that computes
    a stage's outputs (a stage that uses a backbone or segmenter imports it itself).
    """
    from .backbones.settings import SETTINGS
    from .masks import SEGMENTER_NAMES

    return SETTINGS, SEGMENTER_NAMES


def _merge(plain: dict, changes: dict) -> dict:
    """`plain` with `changes` laid over it, nested mappings merged key by key (so an override may set one
    key of a segmenter's settings)."""
    out = dict(plain)
    for key, value in changes.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _check_dataset_overrides(config, section: str) -> None:
    """Every key of `<section>.overrides` is a known dataset and its changes give a valid section."""
    for dataset, changes in config.overrides.items():
        require(is_known(dataset), f"{section}.overrides: unknown dataset {dataset!r}; known: {KNOWN}")
        require(isinstance(changes, dict), f"{section}.overrides.{dataset}: expected a mapping of {section} keys")
        require("overrides" not in changes, f"{section}.overrides.{dataset}: an override cannot hold overrides")
        try:
            config.for_dataset(dataset)
        except ConfigError as err:
            where = f"{section}.overrides.{dataset}"
            raise ConfigError(str(err) if str(err).startswith(where) else f"{where}: {err}") from None


def _for_dataset(config, dataset: str, section: str):
    changes = config.overrides.get(dataset, {})
    plain = _merge({**to_plain(config), "overrides": {}}, changes)
    return build(type(config), plain, f"{section}.overrides.{dataset}") if changes else replace(config, overrides={})


# --- sections -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrepareConfig:
    shots: int = 16  # few-shot images per base class (Dassl sampling)
    data_root: str = "data/DATA"  # CoOp's DATA folder
    roots: dict[str, str] = field(default_factory=dict)  # per-dataset folder override
    synthetic: SyntheticSpec = field(default_factory=SyntheticSpec)
    # per-dataset changes, e.g. {eurosat: {shots: 8}}; by default the built-in benchmark's (no shortcut on
    # `synthetic`, the cross-dataset variants)
    overrides: dict[str, dict] = field(
        default_factory=lambda: {name: {"synthetic": dict(spec)} for name, spec in BENCHMARK_OVERRIDES.items()}
    )

    def __post_init__(self) -> None:
        require(self.shots >= 1, f"prepare.shots must be at least 1, got {self.shots}")
        unknown = sorted(name for name in self.roots if not is_known(name))
        require(not unknown, f"prepare.roots: unknown dataset(s) {unknown}; known: {KNOWN}")
        _check_dataset_overrides(self, "prepare")

    def for_dataset(self, dataset: str) -> PrepareConfig:
        """The section with `overrides[dataset]` applied (and no overrides left)."""
        return _for_dataset(self, dataset, "prepare")

    def inputs(self, dataset: str) -> dict:
        """The settings that can change `dataset`'s prepared folder, and nothing else: the built-in
        benchmark's spec only for it, the folder only for a real dataset (so editing one dataset's settings
        re-runs only that dataset)."""
        cfg = self.for_dataset(dataset)
        if is_synthetic(dataset):
            return {"shots": cfg.shots, "synthetic": to_plain(cfg.synthetic)}
        return {"shots": cfg.shots, "data_root": cfg.data_root, "root": cfg.roots.get(dataset)}


@dataclass(frozen=True)
class CenterSettings:
    fraction: float = 0.6

    def __post_init__(self) -> None:
        require(0 < self.fraction <= 1, f"masks.center.fraction must be in (0, 1], got {self.fraction}")


@dataclass(frozen=True)
class GrabCutSettings:
    margin: float = 0.1
    iterations: int = 5
    max_side: int = 320

    def __post_init__(self) -> None:
        require(0 <= self.margin < 0.5, f"masks.grabcut.margin must be in [0, 0.5), got {self.margin}")
        require(self.iterations >= 1 and self.max_side >= 8, "masks.grabcut.iterations >= 1 and max_side >= 8")


@dataclass(frozen=True)
class PrecomputedSettings:
    mask_dir: str = "mask"
    strip_image_dir: bool = True
    extension: str = ""
    threshold: float | Literal["auto"] = "auto"


@dataclass(frozen=True)
class SeemSettings:
    checkpoint: str = ""
    config: str = ""


SEGMENTER_SETTINGS = {
    "center": CenterSettings,
    "grabcut": GrabCutSettings,
    "precomputed": PrecomputedSettings,
    "seem": SeemSettings,
}


@dataclass(frozen=True)
class MasksConfig:
    segmenter: str = "groundtruth"
    store_size: int = 64
    include_test: bool = True
    missing: Literal["fail", "full"] = "fail"
    compare: tuple[str, ...] = ("center", "grabcut")
    compare_images: int = 200
    center: CenterSettings = field(default_factory=CenterSettings)
    grabcut: GrabCutSettings = field(default_factory=GrabCutSettings)
    precomputed: PrecomputedSettings = field(default_factory=PrecomputedSettings)
    seem: SeemSettings = field(default_factory=SeemSettings)
    overrides: dict[str, dict] = field(default_factory=dict)  # per-dataset changes, e.g. {eurosat: {segmenter: center}}

    def __post_init__(self) -> None:
        segmenters = _registries()[1]
        for key, name in [("segmenter", self.segmenter)] + [("compare", n) for n in self.compare]:
            require(name in segmenters, f"masks.{key}: unknown segmenter {name!r}; known: {', '.join(segmenters)}")
        require(self.store_size >= 8, f"masks.store_size must be at least 8, got {self.store_size}")
        _check_dataset_overrides(self, "masks")

    def settings(self, name: str) -> dict:
        """The constructor settings of segmenter `name` (groundtruth has none)."""
        return asdict(getattr(self, name)) if name in SEGMENTER_SETTINGS else {}

    def for_dataset(self, dataset: str) -> MasksConfig:
        """The section with `overrides[dataset]` applied (and no overrides left)."""
        return _for_dataset(self, dataset, "masks")

    def inputs(self, dataset: str) -> dict:
        """The settings that can change `dataset`'s masks: its segmenter's and no other's; the comparison
        segmenters only on the built-in benchmark, the one dataset with ground truth to compare against."""
        cfg = self.for_dataset(dataset)
        out = {
            "segmenter": cfg.segmenter,
            "settings": cfg.settings(cfg.segmenter),
            "store_size": cfg.store_size,
            "include_test": cfg.include_test,
            "missing": cfg.missing,
        }
        if is_synthetic(dataset):
            out["compare"] = {name: cfg.settings(name) for name in cfg.compare}
            out["compare_images"] = cfg.compare_images
        return out


@dataclass(frozen=True)
class ClipConfig:
    model: str = "fvgpt-tiny-rn"
    pretrained: str = "data/models/fvgpt-tiny-rn.pt"


@dataclass(frozen=True)
class PretrainSpec:
    steps: int = 300  # 0 writes the untrained model (for runs on real weights)
    batch_size: int = 256
    pool_size: int = 6000  # distinct rendered images, re-augmented every epoch
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 30
    image_size: int = 64
    seed: int = 0
    # (colour, shape) pairs never shown in pretraining, one per colour by default.
    held_out: list[list[str]] = field(
        default_factory=lambda: [
            ["red", "star"],
            ["green", "ring"],
            ["blue", "cross"],
            ["yellow", "hexagon"],
            ["purple", "diamond"],
        ]
    )
    eval_per_class: int = 20
    # Share of pretraining images on a flat background. Web-scale CLIP has seen isolated objects; without
    # these, a tiny CLIP has never seen a flat background and every foreground view is out of distribution.
    plain_background: float = 0.25

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.pool_size < 1 or self.eval_per_class < 1:
            raise ValueError("pretrain.steps >= 0, batch_size, pool_size and eval_per_class >= 1")
        if not 0 <= self.plain_background <= 1:
            raise ValueError(f"pretrain.plain_background must be in [0, 1], got {self.plain_background}")


@dataclass(frozen=True)
class PretrainConfig(PretrainSpec):
    model: str = "fvgpt-tiny-rn"

    def spec(self) -> PretrainSpec:
        return PretrainSpec(**{f.name: getattr(self, f.name) for f in fields(PretrainSpec)})


@dataclass(frozen=True)
class TrainSettings(SGDRecipe):
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"  # autocast dtype on GPU; CPU always runs fp32


# The authors' per-dataset change: EuroSAT with CoOp trains 20 epochs at lr 0.002 (backbone and heads).
AUTHORS_OVERRIDES = {"eurosat/coop": {"epochs": 20, "lr": 0.002}}


@dataclass(frozen=True)
class BackboneConfig:
    """`train` (shared recipe), `overrides` (per "<dataset>/<backbone>"), and one section per registered backbone."""

    train: TrainSettings = field(default_factory=TrainSettings)
    overrides: dict[str, dict] = field(default_factory=lambda: dict(AUTHORS_OVERRIDES))
    settings: dict[str, object] = field(default_factory=dict)  # backbone name -> its Settings dataclass

    @classmethod
    def from_dict(cls, data, where: str = "backbone") -> "BackboneConfig":
        BACKBONES = _registries()[0]
        data = dict(data or {})
        train = build(TrainSettings, data.pop("train", None), f"{where}.train")
        overrides = coerce(dict[str, dict], data.pop("overrides", AUTHORS_OVERRIDES) or {}, f"{where}.overrides")
        settings = {}
        for name, section in data.items():
            if name not in BACKBONES:
                close = difflib.get_close_matches(str(name), [*BACKBONES, "train", "overrides"], n=1)
                hint = f"did you mean {where}.{close[0]}?" if close else f"known backbones: {', '.join(BACKBONES)}"
                raise ConfigError(f"{where}.{name}: unknown key; {hint}")
            settings[name] = build(BACKBONES[name], section, f"{where}.{name}")
        for name, settings_class in BACKBONES.items():
            settings.setdefault(name, settings_class())
        for key, changes in overrides.items():
            dataset, _, backbone = key.partition("/")
            require(
                is_known(dataset) and backbone in BACKBONES,
                f"{where}.overrides.{key}: expected '<dataset>/<backbone>' with a known dataset and backbone",
            )
            build(TrainSettings, {**to_plain(train), **changes}, f"{where}.overrides.{key}")
        return cls(train, overrides, settings)

    def recipe(self, dataset: str, backbone: str) -> TrainSettings:
        """`train`, then the backbone's own `epochs` and `lr` where it sets them, then
        `overrides["<dataset>/<backbone>"]`."""
        own = self.settings[backbone]
        recipe = replace(self.train, **{k: getattr(own, k) for k in ("epochs", "lr") if getattr(own, k, None)})
        return replace(recipe, **self.overrides.get(f"{dataset}/{backbone}", {}))

    def settings_for(self, backbone: str, dataset: str) -> dict:
        """The backbone's `backbone.<name>` keys as constructor arguments, a per-dataset table (MMRL's
        regularisation weights) resolved to this dataset's value."""
        own = self.settings[backbone]
        return to_plain(own.for_dataset(dataset) if hasattr(own, "for_dataset") else own)

    def to_plain(self) -> dict:
        return {
            "train": to_plain(self.train),
            "overrides": to_plain(self.overrides),
            **{name: to_plain(s) for name, s in self.settings.items()},
        }


@dataclass(frozen=True)
class EncodeConfig:
    views: int = 10  # V random views per training image
    crop_scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop scale, same geometry on the mask
    fill: Literal["mean", "black", "blur"] = "mean"  # background of a foreground view
    seed: int = 0  # a view depends only on this, its index and its image path
    dtype: Literal["float16", "float32"] = "float16"  # storage
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"  # autocast on GPU (CPU always fp32)
    channels_last: bool = True  # on GPU

    def __post_init__(self) -> None:
        require(self.views >= 1, f"encode.views must be at least 1, got {self.views}")
        lo, hi = self.crop_scale
        require(
            0 < lo <= hi <= 1, f"encode.crop_scale must be [low, high] with 0 < low <= high <= 1, got {self.crop_scale}"
        )


@dataclass(frozen=True)
class FeaturesConfig:
    dtype: Literal["float16", "float32"] = "float16"


@dataclass(frozen=True)
class AttentionConfig:
    """`attention.*`: Grad-CAM of CLIP, each backbone and backbone + FVG-PT on the test images."""

    layer: str = "last"  # last (ResNet layer4, ViT last block), a ResNet stage layer1-4, or a ViT block index
    images: int = 0  # test images, evenly spaced over the split; 0 = all
    cases: int = 2  # figure rows per kind of case (e.g. the backbone wrong and + FVG-PT right)

    def __post_init__(self) -> None:
        require(self.images >= 0, f"attention.images must be >= 0 (0 = all), got {self.images}")
        require(self.cases >= 1, f"attention.cases must be >= 1, got {self.cases}")
        layer_ok = self.layer == "last" or self.layer in ("layer1", "layer2", "layer3", "layer4")
        require(
            layer_ok or self.layer.lstrip("-").isdigit(),
            f"attention.layer must be last, layer1 ... layer4 or a block index, got {self.layer!r}",
        )


@dataclass(frozen=True)
class HeadsSection:
    """`heads.*`: the FVG-PT heads' settings (HeadsConfig) and per-"<dataset>/<backbone>" overrides."""

    config: HeadsConfig = field(default_factory=HeadsConfig)
    overrides: dict[str, dict] = field(default_factory=lambda: dict(AUTHORS_OVERRIDES))

    @classmethod
    def from_dict(cls, data, where: str = "heads") -> "HeadsSection":
        data = dict(data or {})
        check_keys(data, [f.name for f in fields(HeadsConfig) if f.name != "seed"] + ["overrides"], where)
        overrides = coerce(dict[str, dict], data.pop("overrides", AUTHORS_OVERRIDES) or {}, f"{where}.overrides")
        require("seed" not in data, f"{where}.seed: the seed comes from `seeds`, not from the heads section")
        config = build(HeadsConfig, data, where)
        for key, changes in overrides.items():
            build(HeadsConfig, {**config.to_dict(), **changes}, f"{where}.overrides.{key}")
        return cls(config, overrides)

    def for_run(self, dataset: str, backbone: str, seed: int) -> HeadsConfig:
        """The heads config of one run: the section, its `overrides["<dataset>/<backbone>"]`, the run's seed."""
        return self.config.with_(**self.overrides.get(f"{dataset}/{backbone}", {}), seed=seed)

    def to_plain(self) -> dict:
        plain = {k: v for k, v in self.config.to_dict().items() if k != "seed"}
        return {**plain, "overrides": to_plain(self.overrides)}


@dataclass(frozen=True)
class CrossDatasetConfig:
    """The cross-dataset protocol (Table 2): backbone and heads tuned on every class of each source, then applied
    zero-shot to each target's test split. `backbone` and `heads` hold the changes to the base-to-new recipes
    for tuning on a source (the authors: 5 epochs at lr 0.0035 on ImageNet)."""

    sources: tuple[str, ...] = ("synthetic_source",)
    targets: tuple[str, ...] = tuple(name for name in CROSS_DATASET_VARIANTS if name != "synthetic_source")
    target_branch: Literal["new", "base"] = "new"  # new: PC with BRG (every target class is unseen) | base: FDC
    backbone: dict[str, object] = field(default_factory=lambda: {"epochs": 5, "lr": 0.0035})
    heads: dict[str, object] = field(default_factory=lambda: {"epochs": 5, "lr": 0.0035})

    def __post_init__(self) -> None:
        both = sorted(set(self.sources) & set(self.targets))
        require(not both, f"cross_dataset: {both} is both a source and a target")
        require(not self.targets or self.sources, "cross_dataset.targets: give a source in cross_dataset.sources")
        for key, values in (("sources", self.sources), ("targets", self.targets)):
            require(len(set(values)) == len(values), f"cross_dataset.{key}: {list(values)} lists an entry twice")
        build(TrainSettings, {**to_plain(TrainSettings()), **self.backbone}, "cross_dataset.backbone")
        require("seed" not in self.heads, "cross_dataset.heads.seed: the seed comes from `seeds`")
        build(HeadsConfig, {**HeadsConfig().to_dict(), **self.heads}, "cross_dataset.heads")

    def recipe(self, recipe: TrainSettings) -> TrainSettings:
        """A backbone's base-to-new recipe for `source/backbone` with the cross-dataset changes laid over it."""
        return build(TrainSettings, {**to_plain(recipe), **self.backbone}, "cross_dataset.backbone")

    def heads_config(self, config: HeadsConfig) -> HeadsConfig:
        """A run's heads config with the cross-dataset changes laid over it."""
        return build(HeadsConfig, {**config.to_dict(), **self.heads}, "cross_dataset.heads")


@dataclass(frozen=True)
class RuntimeConfig:
    """Settings that never change a result; no stage declares them, so changing one re-runs nothing."""

    device: str = "auto"  # every stage: auto | cpu | cuda | cuda:N
    threads: int = 0  # torch CPU threads per stage process; 0 = the cores it may use (or OMP_NUM_THREADS if set)
    masks_workers: int = 0  # segmentation processes; 0 = the cores the stage may use
    backbone_workers: int = 0  # DataLoader workers of backbone tuning
    encode_workers: int = -1  # DataLoader workers for decoding and augmentation; -1 = auto (stages/_common.py)
    encode_batch_images: int = 32  # images per DataLoader batch (each gives 2 x V views)
    encode_batch_size: int = 256  # views per encoder forward
    features_memory_mb: int = 2048  # a feature file larger than this as float32 is streamed from disk; 0 = never
    clip_cache_dir: str | None = None  # open_clip / Hugging Face cache override
    allow_download: bool = False  # never reach a network unless asked to

    def __post_init__(self) -> None:
        require(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            f"runtime.device must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )
        for name in ("threads", "masks_workers", "backbone_workers", "features_memory_mb"):
            require(getattr(self, name) >= 0, f"runtime.{name} must be >= 0, got {getattr(self, name)}")
        auto = self.encode_workers >= -1
        require(auto, f"runtime.encode_workers must be -1 (auto) or >= 0, got {self.encode_workers}")
        require(self.encode_batch_images >= 1 and self.encode_batch_size >= 1, "runtime.encode_batch_* must be >= 1")


@dataclass(frozen=True)
class Params:
    datasets: tuple[str, ...] = ("synthetic", *CROSS_DATASET_VARIANTS)  # every dataset prepared, masked, encoded
    base2new: tuple[str, ...] = ("synthetic",)  # the base-to-new runs (Table 1)
    backbones: tuple[str, ...] = ("zsclip", "coop", "kgcoop")
    seeds: tuple[int, ...] = (1, 2, 3)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    masks: MasksConfig = field(default_factory=MasksConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    backbone: BackboneConfig = field(default_factory=lambda: BackboneConfig.from_dict({}))
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    heads: HeadsSection = field(default_factory=HeadsSection)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    cross_dataset: CrossDatasetConfig = field(default_factory=CrossDatasetConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_plain(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_plain() if hasattr(value, "to_plain") else to_plain(value)
        return out


SPECIAL = {"backbone": BackboneConfig.from_dict, "heads": HeadsSection.from_dict}


def parse_params(data: dict, source: str = "params.yaml") -> Params:
    """A params mapping as `Params`; every error names `source` and the key."""
    try:
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping of sections, got {type(data).__name__}")
        plain = {k: v for k, v in data.items() if k not in SPECIAL}
        params = build(Params, plain, "")
        extra = {k: SPECIAL[k](data[k], k) for k in SPECIAL if k in data}
        params = replace(params, **extra)
        _check_run_matrix(params)
        return params
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def _check_run_matrix(params: Params) -> None:
    BACKBONES = _registries()[0]
    for name in params.datasets:
        require(is_known(name), f"datasets: unknown dataset {name!r}; known: {KNOWN}")
    for name in params.backbones:
        require(name in BACKBONES, f"backbones: unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    require(len(params.seeds) >= 1 and all(s >= 0 for s in params.seeds), "seeds: give one or more seeds >= 0")
    for key in ("datasets", "base2new", "backbones", "seeds"):
        values = getattr(params, key)
        require(len(set(values)) == len(values), f"{key}: {list(values)} lists an entry twice")
    # Every protocol's runs read prepared, masked and encoded datasets: those of `datasets`.
    cross = params.cross_dataset
    for key, names in (
        ("base2new", params.base2new),
        ("cross_dataset.sources", cross.sources),
        ("cross_dataset.targets", cross.targets),
    ):
        missing = [name for name in names if name not in params.datasets]
        require(not missing, f"{key}: {missing} not in datasets; add it there (every run's dataset is prepared there)")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file (the only place params.yaml is read)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} not found: run from the project root or pass --params PATH")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    return parse_params(data, str(path))

"""The built-in benchmark: coloured shapes on textured backgrounds.

A class is a (colour, shape) pair. Every image comes with its exact
foreground mask. In train/val a class is shown on "its" background style
with probability `spurious` (a shortcut a model can learn instead of the
object); test backgrounds are drawn uniformly, so the shortcut fails there.
That is the failure foreground guidance is meant to prevent.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "hexagon", "ring")
COLOURS = {
    "red": (215, 35, 35),
    "green": (35, 175, 60),
    "blue": (40, 75, 220),
    "yellow": (235, 210, 30),
    "purple": (145, 55, 200),
}
TEXTURES = ("striped", "checkered", "dotted", "wavy", "noisy", "brick", "grass", "gravel")
# Muted tints so a background never reads as an object colour.
TINTS = {
    "grey": (125, 125, 125),
    "brown": (135, 105, 80),
    "teal": (80, 125, 125),
    "olive": (115, 120, 70),
    "navy": (70, 78, 115),
}
SPLIT_FILE = "split_zhou_Synthetic.json"

# The built-in cross-dataset benchmark (`prepare.overrides` of params.yaml): a source and three targets, each
# target differing from the source in one controlled way. The tiny CLIP has seen every shape, colour and texture.
_FAMILY_A = ["striped", "checkered", "dotted", "wavy"]
CROSS_DATASET_VARIANTS = {
    "synthetic_source": {"seed": 1, "n_shapes": 6, "n_colours": 4, "textures": _FAMILY_A},
    "synthetic_new_shapes": {"seed": 2, "first_shape": 6, "n_shapes": 2, "n_colours": 4, "textures": _FAMILY_A},
    "synthetic_new_colour": {"seed": 3, "n_shapes": 6, "first_colour": 4, "n_colours": 1, "textures": _FAMILY_A},
    "synthetic_textures": {"seed": 4, "n_shapes": 6, "n_colours": 4, "textures": ["noisy", "brick", "grass", "gravel"]},
}
# Every built-in dataset's changes to `prepare.synthetic` (the default of `prepare.overrides`): base-to-new on
# `synthetic` without the background shortcut (README: a sweep of it), and the cross-dataset variants.
BENCHMARK_OVERRIDES = {"synthetic": {"spurious": 0.0}, **CROSS_DATASET_VARIANTS}


@dataclass(frozen=True)
class SyntheticSpec:
    image_size: int = 64
    train_per_class: int = 24
    val_per_class: int = 6
    test_per_class: int = 25
    spurious: float = 0.9
    seed: int = 0
    n_shapes: int = 8
    n_colours: int = 5
    # Which slice of the world the classes and backgrounds come from, so variants of the benchmark differ in a
    # controlled way (new shapes, a new colour, another texture family): the cross-dataset targets.
    first_shape: int = 0  # classes use SHAPES[first_shape : first_shape + n_shapes]
    first_colour: int = 0  # and COLOURS[first_colour : first_colour + n_colours]
    textures: tuple[str, ...] = ()  # background textures; () = all of TEXTURES

    def __post_init__(self) -> None:
        if not 0 <= self.spurious <= 1:
            raise ValueError(f"prepare.synthetic.spurious must be in [0, 1], got {self.spurious}")
        if not (1 <= self.n_shapes and self.first_shape >= 0 and self.first_shape + self.n_shapes <= len(SHAPES)):
            raise ValueError(f"prepare.synthetic: first_shape + n_shapes must be in 1..{len(SHAPES)} ({SHAPES})")
        if not (1 <= self.n_colours and self.first_colour >= 0 and self.first_colour + self.n_colours <= len(COLOURS)):
            raise ValueError(
                f"prepare.synthetic: first_colour + n_colours must be in 1..{len(COLOURS)} ({tuple(COLOURS)})"
            )
        unknown = [t for t in self.textures if t not in TEXTURES]
        if unknown or len(set(self.textures)) != len(self.textures):
            raise ValueError(f"prepare.synthetic.textures: {list(self.textures)}; give distinct names of {TEXTURES}")
        if min(self.train_per_class, self.test_per_class) < 1 or self.val_per_class < 0 or self.image_size < 16:
            raise ValueError("prepare.synthetic: train/test_per_class >= 1, val_per_class >= 0, image_size >= 16")


def class_names(
    n_shapes: int = len(SHAPES), n_colours: int = len(COLOURS), first_shape: int = 0, first_colour: int = 0
) -> list[str]:
    shapes = SHAPES[first_shape : first_shape + n_shapes]
    colours = list(COLOURS)[first_colour : first_colour + n_colours]
    return [f"{c} {s}" for s in shapes for c in colours]


def background_styles(textures: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(texture, tint) pairs of `textures` (all of TEXTURES when empty), in TEXTURES order."""
    return [(t, c) for t in TEXTURES if not textures or t in textures for c in TINTS]


def is_synthetic(dataset: str) -> bool:
    """`synthetic` and its variants `synthetic_<name>`: the generated benchmark, each with its own spec."""
    return dataset == "synthetic" or dataset.startswith("synthetic_")


def _regular(n: int, r: float, phase: float, aspect: float = 1.0) -> np.ndarray:
    a = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([r * aspect * np.sin(a), -r * np.cos(a)], 1)


def _outline(shape: str, r: float) -> np.ndarray | None:
    if shape == "square":
        return _regular(4, r * 1.05, math.pi / 4)
    if shape == "triangle":
        return _regular(3, r * 1.1, 0.0) + [0, r * 0.15]
    if shape == "diamond":
        return _regular(4, r * 1.1, 0.0, aspect=0.6)
    if shape == "hexagon":
        return _regular(6, r, 0.0)
    if shape == "star":
        pts = _regular(10, r * 1.15, 0.0)
        pts[1::2] *= 0.45
        return pts
    if shape == "cross":
        w = 0.36 * r
        return np.array(
            [[-w, -r], [w, -r], [w, -w], [r, -w], [r, w], [w, w], [w, r], [-w, r], [-w, w], [-r, w], [-r, -w], [-w, -w]]
        )
    return None


def shape_mask(shape: str, size: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if shape in ("circle", "ring"):
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        if shape == "ring":
            q = 0.5 * r
            draw.ellipse([cx - q, cy - q, cx + q, cy + q], fill=0)
    else:
        pts = _outline(shape, r)
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        pts = pts @ rot.T + [cx, cy]
        draw.polygon([tuple(p) for p in pts], fill=255)
    return np.asarray(canvas) > 127


@lru_cache(maxsize=None)
def _photo_texture(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)().astype(np.float32)
    return (img - img.min()) / max(float(img.max() - img.min()), 1.0)


def texture(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A [0, 1] greyscale pattern, randomised in phase, scale and crop."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    if name == "plain":
        return np.full((size, size), 0.5, np.float32)
    if name == "striped":
        a = rng.uniform(0, math.pi)
        period = rng.uniform(5, 9)
        return (np.sin((x * math.cos(a) + y * math.sin(a)) * 2 * math.pi / period) > 0).astype(np.float32)
    if name == "checkered":
        k = int(rng.integers(5, 10))
        ox, oy = rng.integers(0, k, 2)
        return (((x + ox) // k + (y + oy) // k) % 2).astype(np.float32)
    if name == "dotted":
        k = rng.uniform(6, 10)
        ox, oy = rng.uniform(0, k, 2)
        d = np.hypot((x + ox) % k - k / 2, (y + oy) % k - k / 2)
        return (d < k * 0.25).astype(np.float32)
    if name == "wavy":
        f, g, amp = rng.uniform(0.25, 0.45), rng.uniform(0.1, 0.2), rng.uniform(2, 5)
        return 0.5 + 0.5 * np.sin(x * f + amp * np.sin(y * g))
    if name == "noisy":
        low = rng.random((size // 8 + 1, size // 8 + 1)).astype(np.float32)
        img = Image.fromarray((low * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
        return np.asarray(img, dtype=np.float32) / 255.0
    photo = _photo_texture(name)
    step = max(1, photo.shape[0] // (size * 3))
    photo = photo[::step, ::step]
    oy, ox = rng.integers(0, photo.shape[0] - size), rng.integers(0, photo.shape[1] - size)
    return photo[oy : oy + size, ox : ox + size]


def render(
    shape: str, colour: str, tex: str, tint: str, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One RGB uint8 image and its exact boolean foreground mask."""
    pattern = texture(tex, size, rng)
    bg = np.asarray(TINTS[tint], np.float32) + 70.0 * (pattern[..., None] - 0.5)
    r = rng.uniform(0.17, 0.3) * size
    cx, cy = rng.uniform(r, size - r, 2)
    angle = rng.uniform(-0.2, 0.2)
    mask = shape_mask(shape, size, cx, cy, r, angle)
    shade = rng.uniform(0.85, 1.1)
    fg = np.clip(np.asarray(COLOURS[colour], np.float32) * shade, 0, 255)
    img = np.where(mask[..., None], fg, bg)
    img = img + rng.normal(0, 4.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), mask


def generate(root: Path, spec: SyntheticSpec, progress=None) -> Path:
    """Write images, masks (`mask/<relpath>`) and a Zhou-style split file."""
    rng = np.random.default_rng(spec.seed)
    names = class_names(spec.n_shapes, spec.n_colours, spec.first_shape, spec.first_colour)
    styles = background_styles(spec.textures)
    own_style = (
        rng.permutation(len(styles))[: len(names)]
        if len(names) <= len(styles)
        else rng.integers(0, len(styles), len(names))
    )
    counts = {"train": spec.train_per_class, "val": spec.val_per_class, "test": spec.test_per_class}
    split, used = {}, {}
    total = sum(counts.values()) * len(names)
    for split_name, per_class in counts.items():
        rows = []
        for label, cname in enumerate(names):
            colour, shape = cname.split(" ")
            for i in range(per_class):
                if split_name != "test" and rng.random() < spec.spurious:
                    tex, tint = styles[own_style[label]]
                else:
                    tex, tint = styles[int(rng.integers(len(styles)))]
                img, mask = render(shape, colour, tex, tint, spec.image_size, rng)
                rel = f"{split_name}/{cname.replace(' ', '_')}/{i:04d}.png"
                for sub, arr in (("images", img), ("mask", (mask * 255).astype(np.uint8))):
                    out = root / sub / rel
                    out.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(arr).save(out)
                rows.append([rel, label, cname])
                used[rel] = [tex, tint]
                if progress:
                    progress(1, total)
        split[split_name] = rows
    (root / SPLIT_FILE).write_text(json.dumps(split), encoding="utf-8")
    own = {n: list(styles[s]) for n, s in zip(names, own_style)}
    (root / "styles.json").write_text(json.dumps({"own": own, "images": used}))
    return root

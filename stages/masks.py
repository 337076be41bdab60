"""masks: one HDF5 of foreground masks per dataset, from the segmenter `masks.segmenter` names."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from pipeline.atomic import atomic_path, write_json
from pipeline.datasets import is_synthetic
from pipeline.datasets.inputs import check_stage_inputs
from pipeline.fingerprint import fingerprint, stat_digest
from pipeline.images import load_rgb
from pipeline.manifest import read_prepared
from pipeline.masks import MaskRequest
from pipeline.masks.quality import area_histogram, example_views, iou_against_groundtruth, summary
from pipeline.masks.segment_all import segment_all
from pipeline.masks.store import MaskStore, MaskStoreWriter
from pipeline.paths import (
    masks_examples_path,
    masks_figure_path,
    masks_inputs_path,
    masks_path,
    masks_quality_path,
    prepared_dir,
)

from ._common import progress_bar, start, usable_cores

EXAMPLES = 6  # classes shown in the examples figure


def mask_requests(prepared, dataset: str, seeds: list[int], include_test: bool) -> list[MaskRequest]:
    """Every few-shot training image of any seed (of every class: a dataset may be a cross-dataset source),
    plus the test images if asked; each once."""
    rows = prepared.fewshot_union(seeds)
    if include_test:
        rows = pd.concat([rows, prepared.test()]).drop_duplicates("impath")
    root = str(prepared.root)
    return [MaskRequest(root, p, c, dataset) for p, c in zip(rows.impath, rows.classname)]


def run(dataset: str, params_file: str = "params.yaml") -> None:
    params = start(params_file)
    cfg = params.masks.for_dataset(dataset)
    seeds = list(params.seeds)
    check_stage_inputs(masks_inputs_path(dataset), params.masks.inputs(dataset), seeds)
    name = cfg.segmenter
    seg_cfg = cfg.settings(name)
    if name == "seem":
        seg_cfg["device"] = params.runtime.device
    prepared = read_prepared(prepared_dir(dataset))
    if name == "precomputed":
        seg_cfg.setdefault("image_dir", prepared.classes.get("image_dir", ""))
    requests = mask_requests(prepared, dataset, seeds, cfg.include_test)
    size = cfg.store_size
    # The resume key covers the images too (path, size, mtime): masks of replaced images are never reused.
    images = stat_digest(prepared.root, [r.impath for r in requests])
    attrs = {
        "segmenter": name,
        "dataset": dataset,
        "fingerprint": fingerprint(
            {"segmenter": name, "cfg": seg_cfg, "size": size, "missing": cfg.missing, "images": images}
        ),
    }
    workers = params.runtime.masks_workers or usable_cores()
    writer = MaskStoreWriter(masks_path(dataset), size, attrs)
    try:
        with progress_bar(f"masks ({name})", len(requests)) as advance:
            result = segment_all(requests, writer, name, seg_cfg, cfg.missing, workers, advance=advance)
    except BaseException:
        writer.close()  # the committed rows stay in the .partial file for the next run
        raise
    if result.missing and cfg.missing == "fail":
        writer.close()
        raise FileNotFoundError(
            f"{dataset}: {len(result.missing)} of {len(requests)} mask files are missing, e.g. {result.missing[:5]}. "
            "Provide them, or set masks.missing: full to use a full-image mask for these (counted in the report)."
        )
    path = writer.finish()
    store = MaskStore(path)
    stats = summary(store)
    stats.update(reused=result.n_reused, segmented=result.n_new)
    if is_synthetic(dataset):
        compare = {k: cfg.settings(k) for k in cfg.compare}
        stats["iou"] = iou_against_groundtruth(requests[: cfg.compare_images], compare, store)
    with atomic_path(masks_figure_path(dataset)) as tmp:
        area_histogram(store, tmp, f"{dataset}: {name} masks, {len(store)} images")
    examples = fewshot_examples(prepared, store, seeds[0], EXAMPLES)
    example_views(examples, masks_examples_path(dataset), examples_title(dataset, seeds[0], len(examples)))
    write_json(masks_quality_path(dataset), stats)
    if stats["stretched"]:
        print(
            f"warning: {stats['stretched']} of {stats['images']} masks have another aspect ratio than their image "
            f"and were stretched to fit it (e.g. {result.stretched[:3] or 'in a resumed part'}); "
            f"check the mask files and masks.{name} "
            f"settings (listed as `stretched` in {masks_quality_path(dataset)})"
        )
    print(
        f"masks for {dataset}: {stats['images']} images ({result.n_new} segmented, {result.n_reused} reused), "
        f"empty {stats['empty']}, full {stats['full']}, missing {stats['missing']}"
        + (f", IoU vs ground truth {stats['iou']}" if "iou" in stats else "")
    )


def fewshot_examples(prepared, store: MaskStore, seed: int, n: int) -> list:
    """A few-shot training image of each of the first `n` classes, its mask and its foreground view with a black
    fill (the pixels outside the mask zeroed, what `pipeline.views.foreground` does with fill "black")."""
    rows = prepared.fewshot_train(seed, None).drop_duplicates("label").head(n)
    out = []
    for path, name in zip(rows.impath, rows.classname):
        img = np.asarray(load_rgb(prepared.root / path))
        m = np.array(Image.fromarray(store.mask(path)).resize(img.shape[1::-1], Image.NEAREST))
        out.append((img, m, black_foreground_view(img, m), name))
    return out


def black_foreground_view(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 image and [H, W] mask -> the foreground view in [0, 1] with a black fill."""
    return img.astype(np.float32) / 255.0 * (mask[..., None] > 0)


def examples_title(dataset: str, seed: int, n_classes: int) -> str:
    return (
        f"{dataset}, seed {seed}: a few-shot training image of each of the first {n_classes} classes, "
        "its mask and its foreground view"
    )

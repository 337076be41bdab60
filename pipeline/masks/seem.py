"""SEEM (Zou et al., NeurIPS 2023) with the per-dataset text prompts of the paper's Table 9.

SEEM is not a pip package: the user clones its repository, puts it on
PYTHONPATH and downloads a checkpoint. This adapter speaks the X-Decoder
codebase API SEEM ships (`modeling.BaseModel`, `modeling.build_model`,
`utils.arguments.load_opt_from_config_files`, grounding inference) and
turns the best-scoring grounding mask into the foreground.
"""

from __future__ import annotations

import importlib

import numpy as np

from .base import MaskRequest, Segmenter

# Table 9 of the paper; [CLASS] is the image's class name.
PROMPTS = {
    "imagenet": "The whole [CLASS] in the middle.",
    "caltech101": "A huge [CLASS].",
    "food101": "The whole [CLASS] in the middle.",
    "stanford_cars": "A huge and whole car.",
    "oxford_pets": "The pet in the middle.",
    "oxford_flowers": "The flower in the middle.",
    "dtd": "The [CLASS].",
    "eurosat": "The satellite [CLASS].",
    "fgvc_aircraft": "The huge airplane in the middle.",
    "sun397": "The [CLASS].",
    "ucf101": "The people with [CLASS].",
}
DEFAULT_PROMPT = "The [CLASS]."

INSTALL = (
    "SEEM is not importable. Clone https://github.com/UX-Decoder/Segment-Everything-Everywhere-All-At-Once, "
    "install its requirements, add it to PYTHONPATH, download a checkpoint (e.g. seem_focall_v1.pt) and set "
    "masks.seem.checkpoint and masks.seem.config; or choose masks.segmenter: grabcut / precomputed."
)


def prompt_for(dataset: str, classname: str) -> str:
    return PROMPTS.get(dataset, DEFAULT_PROMPT).replace("[CLASS]", classname.replace("_", " "))


class Seem(Segmenter):
    name = "seem"
    parallel = False

    def __init__(self, checkpoint: str, config: str, device: str = "auto") -> None:
        if not checkpoint or not config:
            raise ValueError("masks.seem.checkpoint and masks.seem.config must be set. " + INSTALL)
        try:
            base_model = importlib.import_module("modeling.BaseModel").BaseModel
            build_model = importlib.import_module("modeling").build_model
            load_opt = importlib.import_module("utils.arguments").load_opt_from_config_files
        except ImportError as err:
            raise ImportError(f"{INSTALL} ({err})") from err
        import torch

        self.torch = torch
        self.device = torch.device(
            "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
        )
        opt = load_opt([config])
        opt["device"] = str(self.device)
        self.model = base_model(opt, build_model(opt)).from_pretrained(checkpoint).eval().to(self.device)

    def segment(self, image: np.ndarray, request: MaskRequest) -> np.ndarray:
        h, w = image.shape[:2]
        batch = [
            {
                "image": self.torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(self.device),
                "height": h,
                "width": w,
                "groundings": {"texts": [prompt_for(request.dataset, request.classname)]},
            }
        ]
        with self.torch.no_grad():
            out = self.model.model.evaluate_grounding(batch, mode="grounding_refcoco")
        masks = out[0]["grounding_mask"]
        mask = masks[0] if masks.ndim == 3 else masks
        return (mask.float().cpu().numpy() > 0.5)[:h, :w]

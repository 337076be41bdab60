"""Hand-written CLIP prompt templates per dataset (CoOp's table).

KgCoOp's released trainer uses the same table except for DTD; the variant
is kept so a KgCoOp run reproduces its authors' prior text features.
"""

COOP_TEMPLATES = {
    "imagenet": "a photo of a {}.",
    "caltech101": "a photo of a {}.",
    "oxford_pets": "a photo of a {}, a type of pet.",
    "stanford_cars": "a photo of a {}.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    "food101": "a photo of {}, a type of food.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "sun397": "a photo of a {}.",
    "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "ucf101": "a photo of a person doing {}.",
    "imagefolder": "a photo of a {}.",
    "synthetic": "a photo of a {}.",
}

KGCOOP_TEMPLATES = {**COOP_TEMPLATES, "dtd": "a photo of a {}, a type of texture."}


def template_for(dataset: str, variant: str = "coop") -> str:
    table = KGCOOP_TEMPLATES if variant == "kgcoop" else COOP_TEMPLATES
    if dataset.startswith("synthetic_"):
        dataset = "synthetic"  # the built-in benchmark's variants read as it does
    if dataset not in table:
        raise KeyError(f"no CLIP template for dataset {dataset!r}; known: {sorted(table)}")
    return table[dataset]

"""params.yaml, configs/paper.yaml and dvc.yaml agree with each other and with the code."""

import yaml

from pipeline.heads.config import HeadsConfig
from stages.heads import RUNTIME_KEYS


def _keys(d, prefix=""):
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict) and k not in ("roots", "overrides"):
            out |= _keys(v, prefix + k + ".")
    return out


def test_paper_config_has_the_same_knobs(project_root):
    ours = yaml.safe_load((project_root / "params.yaml").read_text())
    paper = yaml.safe_load((project_root / "configs/paper.yaml").read_text())
    assert _keys(ours) == _keys(paper)
    assert paper["clip"]["model"] == "ViT-B-16" and paper["seeds"] == [1, 2, 3] and len(paper["datasets"]) == 11
    assert paper["heads"]["overrides"]["eurosat/coop"]["epochs"] == 20


def test_every_declared_param_exists_and_heads_accept_theirs(project_root):
    params = yaml.safe_load((project_root / "params.yaml").read_text())
    stages = yaml.safe_load((project_root / "dvc.yaml").read_text())["stages"]
    keys = _keys(params)
    for name, stage in stages.items():
        for p in stage.get("params", []):
            p = p.replace("${item.backbone}", "coop")
            assert p in keys, f"{name} declares {p}, which params.yaml lacks"
    HeadsConfig.from_dict({k: v for k, v in params["heads"].items() if k not in RUNTIME_KEYS})

"""params.yaml, configs/paper.yaml and dvc.yaml agree with each other and with the code."""

import yaml

from pipeline.config import load_params


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
    for section in ("backbone", "heads"):  # the authors' EuroSAT config for CoOp: 20 epochs at lr 0.002
        assert paper[section]["overrides"]["eurosat/coop"] == {"epochs": 20, "lr": 0.002}
        assert ours[section]["overrides"]["eurosat/coop"] == {"epochs": 20, "lr": 0.002}


def test_the_vit_benchmark_config_is_params_yaml_with_a_vit_clip_and_all_five_backbones(project_root):
    ours = yaml.safe_load((project_root / "params.yaml").read_text())
    vit = yaml.safe_load((project_root / "configs/benchmark_vit.yaml").read_text())
    assert _keys(ours) == _keys(vit)
    assert vit["clip"]["model"] == vit["pretrain"]["model"] == "fvgpt-tiny-vit"
    assert vit["backbones"] == ["zsclip", "coop", "kgcoop", "promptsrc", "mmrl"]
    for section in ("prepare", "masks", "encode", "features", "cross_dataset", "attention"):  # the same benchmark
        assert vit[section] == ours[section], section
    assert vit["backbone"]["train"] == ours["backbone"]["train"]
    assert {k: v for k, v in vit["heads"].items() if k != "overrides"} == {
        k: v for k, v in ours["heads"].items() if k != "overrides"
    }
    assert vit["heads"]["overrides"]["synthetic/mmrl"] == {"lambda_d": 5.0}
    assert {k: v for k, v in vit["pretrain"].items() if k not in ("model", "steps")} == {
        k: v for k, v in ours["pretrain"].items() if k not in ("model", "steps")
    }


def test_every_declared_param_exists(project_root):
    params = yaml.safe_load((project_root / "params.yaml").read_text())
    stages = yaml.safe_load((project_root / "dvc.yaml").read_text())["stages"]
    keys = _keys(params)
    for name, stage in stages.items():
        for p in stage.get("params", []):
            p = p.replace("${item.backbone}", "coop")
            assert p in keys, f"{name} declares {p}, which params.yaml lacks"


def test_dataset_overrides_reach_the_recipes(project_root):
    paper = load_params(project_root / "configs/paper.yaml")
    recipe = paper.backbone.recipe("eurosat", "coop")
    assert (recipe.epochs, recipe.lr) == (20, 0.002)
    assert paper.backbone.recipe("dtd", "coop").lr == paper.backbone.recipe("eurosat", "kgcoop").lr == 0.0035
    heads = paper.heads.for_run("eurosat", "coop", 1)
    assert (heads.epochs, heads.lr, heads.seed) == (20, 0.002, 1) and paper.heads.for_run("dtd", "coop", 1).epochs == 10

"""FVG-PT heads on small made-up feature dumps."""

import dataclasses
import subprocess
import sys

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

from pipeline.features.run_features import RunFeatures, write_run_features
from pipeline.heads.config import PER_MEMBER, HeadsConfig
from pipeline.heads.evaluate import evaluate, evaluate_transfer, harmonic_mean
from pipeline.heads.model import FVGPTHeads
from pipeline.heads.signals import frg_target, kl, log_probs
from pipeline.heads.train import MomentumSGD, shot_subset, stack_groups, stacked_epochs, train_heads, train_runs


def make_features(
    path, d=16, n_cls=6, shots=4, views=3, m_test=24, seed=0, text_noise=0.3, clip_noise=0.5, logit_scale=20.0
):
    """Class prototypes + noise; foreground views closer to the prototype than full views."""
    rng = np.random.default_rng(seed)
    proto = rng.normal(size=(n_cls, d))
    norm = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    base, new = list(range(n_cls // 2)), list(range(n_cls // 2, n_cls))
    label = np.repeat(np.arange(len(base)), shots)
    full = norm(proto[label][None] + rng.normal(scale=1.5, size=(views, len(label), d)))
    fg = norm(proto[label][None] + rng.normal(scale=0.7, size=(views, len(label), d)))
    test_label = rng.integers(0, n_cls, m_test)
    test = norm(proto[test_label] + rng.normal(scale=1.5, size=(m_test, d)))
    arrays = {
        "train/feat_full": full,
        "train/feat_fg": fg,
        "train/area": rng.uniform(0.01, 0.9, (views, len(label))),
        "train/label": label,
        "test/feat": test,
        "test/feat_fg": norm(proto[test_label] + rng.normal(size=(m_test, d))),
        "test/area": rng.uniform(0.1, 0.9, m_test),
        "test/has_fg": np.ones(m_test, bool),
        "test/label": test_label,
        "test/subset": (test_label >= len(base)).astype(np.int64),
        "text/backbone": norm(proto + rng.normal(scale=text_noise, size=proto.shape)),
        "text/clip": norm(proto + rng.normal(scale=clip_noise, size=proto.shape)),
    }
    write_run_features(
        path,
        arrays,
        {
            "classnames": [f"c{i}" for i in range(n_cls)],
            "base": base,
            "new": new,
            "logit_scale": logit_scale,
            "shares_clip_image": True,
        },
        dtype="float32",
    )
    return RunFeatures(path)


def disagreeing_features(tmp_path):
    """The backbone's text features are far from the class prototypes and CLIP's are exact, so the frozen
    backbone, FDC (which learns to correct it) and PC (which can lean on CLIP) give different answers."""
    return make_features(tmp_path / "disagree.h5", text_noise=2.0, clip_noise=0.0, shots=16, m_test=120)


@pytest.fixture
def feats(tmp_path):
    return make_features(tmp_path / "f.h5")


def test_parameter_count_matches_the_paper():
    model = FVGPTHeads([HeadsConfig()], 512, 100.0)
    n = sum(p.numel() for p in model.parameters())
    assert n == 2 * (512 * 64 + 64 + 64 * 512 + 512) + 2 * (3 * 32 + 32 + 32 + 1)
    assert round(n / 1e6, 2) == 0.13


def test_adapters_start_at_the_backbone(feats):
    model = FVGPTHeads([HeadsConfig()], 16, feats.logit_scale)
    f, g = feats.test_feat, feats.text_backbone
    z_fdc = model.base_logits(f, g)[0]
    assert torch.allclose(z_fdc, feats.logit_scale * f @ g.t(), atol=0.05)


def test_frg_target_rule():
    z_full = torch.tensor([[[2.0, 0.0]], [[2.0, 0.0]]])  # [K=2, B=1, C=2]
    z_fg = torch.tensor([[[4.0, 0.0]], [[4.0, 0.0]]])
    y = torch.zeros(2, 1, dtype=torch.long)
    trusted = torch.tensor([[True], [False]])
    assert frg_target(z_full, z_fg, y, torch.tensor([[0.0], [0.0]]), trusted).tolist() == [[1.0], [0.0]]
    assert frg_target(z_full, z_fg, y, torch.tensor([[1.0], [1.0]]), torch.ones(2, 1, dtype=torch.bool)).tolist() == [
        [0.0],
        [0.0],
    ]


def test_kl_matches_torch():
    p, q = torch.randn(5, 7), torch.randn(5, 7)
    ours = kl(log_probs(p, 2.0), log_probs(q, 2.0))
    ref = F.kl_div(log_probs(q, 2.0), log_probs(p, 2.0), log_target=True, reduction="none").sum(-1)
    assert torch.allclose(ours, ref, atol=1e-6)


# A value different from the default for every HeadsConfig field; a new str field must be added here.
STR_ALTERNATIVES = {"adapters": "visual", "fdc_logit_scale": 7.0}
# Fields that only act together with another setting.
CONTEXT = {"r_constant": dict(frg=False)}
TRAINING = HeadsConfig(epochs=3, lr=0.01, seed=1)


def _changed(name: str, value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, tuple):
        return value[:-1]
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 0.5 if value else 0.5
    return STR_ALTERNATIVES[name]


def member_state(model, k: int) -> dict:
    return {name: p[k].detach().clone() for name, p in model.named_parameters()}


def _scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, float)}


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(HeadsConfig)])
def test_stacking_equals_training_alone_for_every_field(feats, field):
    a = TRAINING.with_(**CONTEXT.get(field, {}))
    b = a.with_(**{field: _changed(field, getattr(a, field))})
    groups = stack_groups([a, b])
    if field in PER_MEMBER:
        assert groups == [[0, 1]]
    else:
        assert groups == [[0], [1]]  # structural: the sweep trains them apart
    alone = [train_heads(feats, [c]) for c in (a, b)]
    for members in groups:
        model, logs = train_heads(feats, [(a, b)[i] for i in members])
        metrics = evaluate(model, feats)
        for k, i in enumerate(members):
            ref_model, ref_logs = alone[i]
            ref = member_state(ref_model, 0)
            for name, value in member_state(model, k).items():
                assert torch.allclose(value, ref[name], atol=1e-5), (field, i, name)
            assert logs[k][-1]["loss"] == pytest.approx(ref_logs[0][-1]["loss"], rel=1e-4, abs=1e-6)
            got, want = _scalars(metrics[k]), _scalars(evaluate(ref_model, feats)[0])
            assert got == pytest.approx(want, abs=1e-4), (field, i)
    # the change matters, so a member trained with the other's setting would be caught
    sa, sb = member_state(alone[0][0], 0), member_state(alone[1][0], 0)
    assert sa.keys() != sb.keys() or any(sa[n].shape != sb[n].shape or not torch.allclose(sa[n], sb[n]) for n in sa), (
        field
    )


def test_seeds_on_their_own_feature_files_train_together_as_each_alone(tmp_path):
    """The heads stage trains every seed of a dataset x backbone as one stack, each on its own run's features
    (its own tuned backbone): member k must be the model training seed k alone on its file gives."""
    files = [make_features(tmp_path / f"seed{s}.h5", seed=s) for s in (1, 2, 3)]
    configs = [TRAINING.with_(seed=s) for s in (1, 2, 3)]
    stacked, logs = train_heads(files, configs)
    for k, (f, c) in enumerate(zip(files, configs)):
        alone, alone_logs = train_heads(f, [c])
        single = stacked.member(k)
        for name, value in single.state_dict().items():
            assert torch.allclose(value, alone.state_dict()[name], atol=1e-5), (k, name)
        assert [r["loss"] for r in logs[k]] == pytest.approx([r["loss"] for r in alone_logs[0]], rel=1e-4)
        assert _scalars(evaluate(single, f)[0]) == pytest.approx(_scalars(evaluate(alone, f)[0]), abs=1e-4)


def test_the_runs_of_a_dataset_train_in_as_few_stacks_as_they_allow_each_as_alone(tmp_path, monkeypatch):
    """The heads stage trains every backbone x seed of a dataset through `train_runs`: runs stack when configs
    share a structure and files a shape and logit scale, and each run's result is what training it alone gives."""
    files = [
        make_features(tmp_path / "coop1.h5", seed=1),
        make_features(tmp_path / "coop2.h5", seed=2),
        make_features(tmp_path / "kgcoop1.h5", seed=3),
        make_features(tmp_path / "other_views.h5", seed=4, views=2),
        make_features(tmp_path / "other_scale.h5", seed=5, logit_scale=50.0),
        make_features(tmp_path / "zsclip1.h5", seed=6),
    ]
    configs = [TRAINING.with_(seed=s) for s in (1, 2, 1, 1, 1)] + [TRAINING.with_(seed=1, adapter_hidden=8)]
    stacks = []
    real_train_heads = train_heads

    def counting(files_here, configs_here, *args, **kwargs):
        stacks.append([files.index(f) for f in files_here])
        return real_train_heads(files_here, configs_here, *args, **kwargs)

    monkeypatch.setattr("pipeline.heads.train.train_heads", counting)
    epochs = []
    trained = train_runs(files, configs, advance=epochs.append, on_epoch=lambda runs, rows: None)
    assert stacks == [[0, 1, 2], [3], [4], [5]]
    assert len(epochs) == stacked_epochs(files, configs) == 4 * TRAINING.epochs
    for k, (f, c) in enumerate(zip(files, configs)):
        model, log = trained[k]
        alone, alone_logs = real_train_heads(f, [c])
        assert len(model.configs) == 1 and model.configs[0] == c
        for name, value in model.state_dict().items():
            assert torch.allclose(value, alone.state_dict()[name], atol=1e-5), (k, name)
        assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in alone_logs[0]], rel=1e-4)


def test_feature_files_of_other_shapes_do_not_train_together(tmp_path):
    files = [make_features(tmp_path / "a.h5"), make_features(tmp_path / "b.h5", views=2)]
    with pytest.raises(ValueError, match="must have the same views"):
        train_heads(files, [TRAINING, TRAINING.with_(seed=2)])


@pytest.mark.parametrize(
    "change",
    [
        dict(adapters="visual"),
        dict(adapter_hidden=16),
        dict(adapter_init=0.1),
        dict(frg_indicators=("cosine", "area")),
        dict(frg=False),
        dict(fdc=False),
        dict(lambda_d=1.0),
        dict(losses=("fdc_ce", "fdc_dist", "pc_ce", "pc_kl")),
    ],
)
def test_new_branch_is_independent_of_fdc_and_frg(feats, change):
    full, _ = train_heads(feats, [TRAINING])
    other, _ = train_heads(feats, [TRAINING.with_(**change)])
    for p, q in zip(full.brg_gate.parameters(), other.brg_gate.parameters()):
        assert torch.equal(p, q)
    m_full, m_other = evaluate(full, feats)[0], evaluate(other, feats)[0]
    assert m_full["fvgpt.new"] == m_other["fvgpt.new"] and m_full["gate.b_new"] == m_other["gate.b_new"]


def test_training_improves_base_accuracy_and_losses_fall(tmp_path):
    feats = disagreeing_features(tmp_path)
    untrained = evaluate(FVGPTHeads([HeadsConfig(seed=3)], 16, feats.logit_scale), feats)[0]
    model, logs = train_heads(feats, [HeadsConfig(epochs=10, seed=3)])
    log = logs[0]
    assert log[0]["lr"] == 1e-5 and log[-1]["fdc_ce"] < log[1]["fdc_ce"] and log[-1]["loss"] < log[1]["loss"]
    m = evaluate(model, feats)[0]
    assert m["fvgpt.base"] >= untrained["fvgpt.base"] + 20
    assert m["fvgpt.hm"] == pytest.approx(harmonic_mean(m["fvgpt.base"], m["fvgpt.new"]))


def test_module_switches_route_the_branches(tmp_path):
    feats = disagreeing_features(tmp_path)
    cfgs = [
        HeadsConfig(epochs=6, seed=1),
        HeadsConfig(epochs=6, fdc=False, frg=False, seed=1),
        HeadsConfig(epochs=6, pc=False, seed=1),
    ]
    model, _ = train_heads(feats, cfgs)
    m = evaluate(model, feats)
    # the branches give different accuracies on this data, so routing errors show
    assert m[0]["fvgpt.base"] != m[0]["backbone.base"] and m[0]["fvgpt.new"] != m[2]["fvgpt.new"]
    # without FDC the base branch is the frozen backbone (its logits exactly, not the untrained adapters')
    assert m[1]["fvgpt.base"] == pytest.approx(m[1]["backbone.base"])
    fb, gb = feats.test_feat, feats.text_backbone[feats.base]
    assert torch.equal(model.base_logits(fb, gb)[1], model.frozen_logits(fb, gb))
    # PC's new branch does not depend on FDC/FRG; without PC the new branch is FDC's
    assert m[0]["fvgpt.new"] == pytest.approx(m[1]["fvgpt.new"])
    f, g = feats.test_feat, feats.text_backbone[feats.new]
    z_new, _ = model.new_logits(f, feats.test_clip, g, feats.text_clip[feats.new])
    assert torch.allclose(z_new[2], model.base_logits(f, g)[2])
    assert not torch.allclose(z_new[0], model.base_logits(f, g)[0])


def test_a_dropped_loss_leaves_its_gate_untouched(feats):
    cfg = HeadsConfig(epochs=2, lr=0.5, weight_decay=0.0, losses=("fdc_ce", "fdc_dist", "pc_ce", "pc_kl"))
    before = FVGPTHeads([cfg], 16, feats.logit_scale).frg_gate.weights[0].detach().clone()
    model, logs = train_heads(feats, [cfg])
    assert torch.equal(model.frg_gate.weights[0].detach(), before)  # r is detached in L_dist, BCE off
    assert logs[0][-1]["frg_bce"] == 0.0


def test_heads_never_call_clip(feats, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a CLIP encoder was called")

    monkeypatch.setattr(open_clip.CLIP, "encode_image", boom)
    monkeypatch.setattr(open_clip.CLIP, "encode_text", boom)
    train_heads(feats, [HeadsConfig(epochs=1)])


def test_shot_fraction_keeps_per_class_share():
    labels = torch.arange(4).repeat_interleave(8)
    keep = shot_subset(labels, 0.25, torch.Generator().manual_seed(0))
    assert torch.bincount(labels[keep]).tolist() == [2, 2, 2, 2]


def test_unknown_setting_is_named():
    with pytest.raises(KeyError, match="lambda_q"):
        HeadsConfig.from_dict({"lambda_q": 1})
    with pytest.raises(ValueError, match="pc_kll"):
        HeadsConfig(losses=("pc_kll",))


def test_train_heads_reports_each_epoch_as_it_ends(feats):
    """`on_epoch` gets one row per member right after each epoch, before the progress bar advances."""
    configs = [HeadsConfig(epochs=3, lambda_d=1.0), HeadsConfig(epochs=3, lambda_d=20.0)]
    events = []
    _, logs = train_heads(
        feats,
        configs,
        advance=lambda n: events.append(("advance", n)),
        on_epoch=lambda rows: events.append(("epoch", rows)),
    )
    assert events == [e for epoch in range(3) for e in (("epoch", [logs[0][epoch], logs[1][epoch]]), ("advance", 1))]
    assert logs[0][0]["loss"] != logs[1][0]["loss"]  # one row per member, in the order of `configs`


def test_sweep_stacked_equals_sequential(tmp_path):
    from pipeline.heads.config import TABLE3
    from pipeline.heads.sweep import grid_rows, run_sweep

    feats = disagreeing_features(tmp_path)
    recipe = HeadsConfig(epochs=6)
    stacked = run_sweep({1: feats, 2: feats}, recipe, TABLE3, stacked=True)
    one_by_one = run_sweep({1: feats, 2: feats}, recipe, TABLE3, stacked=False)
    assert stacked.groups == 2 and one_by_one.groups == 10
    key = ["config", "seed"]
    a, b = stacked.table.set_index(key).sort_index(), one_by_one.table.set_index(key).sort_index()
    assert (a - b).abs().max().max() < 1e-6
    # the rows trained to different models, and away from the frozen backbone
    assert a["fvgpt.base"].nunique() > 1 and a["fvgpt.new"].nunique() > 1
    assert (a.loc["(1) FDC", "fvgpt.base"] != a.loc["(1) FDC", "backbone.base"]).all()
    assert (a.loc["(2) PC", "fvgpt.base"] == a.loc["(2) PC", "backbone.base"]).all()
    assert list(grid_rows("lambda_d=1,10 frg=true,false")) == [
        "lambda_d=1 frg=True",
        "lambda_d=1 frg=False",
        "lambda_d=10 frg=True",
        "lambda_d=10 frg=False",
    ]


@pytest.mark.parametrize("branch", [None, "base", "new"])
def test_evaluating_a_stack_runs_each_branch_as_often_for_any_number_of_members(feats, monkeypatch, branch):
    """The branches compute every member at once, so evaluation must call them a fixed number of times: one
    call per member makes a K-config sweep's evaluation O(K^2)."""
    calls = []
    for name in ("base_logits", "new_logits"):
        real = getattr(FVGPTHeads, name)
        monkeypatch.setattr(
            FVGPTHeads, name, lambda self, *a, _real=real, _name=name: calls.append(_name) or _real(self, *a)
        )

    def counted(k: int) -> int:
        calls.clear()
        model = FVGPTHeads([TRAINING.with_(seed=s, lambda_d=float(s)) for s in range(k)], 16, feats.logit_scale)
        rows = evaluate(model, feats) if branch is None else evaluate_transfer(model, feats, branch)
        assert len(rows) == k
        return len(calls)

    assert counted(1) == counted(6) > 0


def test_momentum_sgd_is_torch_sgd_bit_for_bit():
    torch.manual_seed(0)
    a = [torch.randn(5, 3, requires_grad=True), torch.randn(4, requires_grad=True), torch.randn(2, requires_grad=True)]
    b = [p.detach().clone().requires_grad_() for p in a]
    ours = MomentumSGD(a, momentum=0.9, weight_decay=5e-4)
    theirs = torch.optim.SGD(b, lr=0.0, momentum=0.9, weight_decay=5e-4)
    for step, lr in enumerate([1e-5, 0.002, 0.002, 0.0015, 0.0007, 0.0001]):
        x = torch.randn(3)
        ours.lr = lr
        for group in theirs.param_groups:
            group["lr"] = lr
        for params, opt in ((a, ours), (b, theirs)):
            opt.zero_grad()
            used = params if step % 2 else params[:2]  # a parameter without a gradient on some steps
            loss = sum(((p.flatten()[:2] * x[:2]) ** 2).sum() for p in used)
            loss.backward()
            opt.step()
        for p, q in zip(a, b):
            assert torch.equal(p, q)


def test_training_the_heads_never_imports_dynamo(tmp_path):
    # torch.optim's first call imports torch._dynamo, ~1.8 s of every heads process; MomentumSGD exists to avoid it.
    make_features(tmp_path / "f.h5")
    code = (
        "import sys; from pipeline.features.run_features import RunFeatures; from pipeline.heads.config import "
        "HeadsConfig; from pipeline.heads.train import train_heads; "
        f"train_heads(RunFeatures({str(tmp_path / 'f.h5')!r}), [HeadsConfig(epochs=2)]); "
        "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_epoch_readings_end_at_the_evaluation_and_leave_the_weights_alone(tmp_path):
    from pipeline.heads.evaluate import EpochReadings

    files = [make_features(tmp_path / f"seed{s}.h5", seed=s) for s in (1, 2)]
    configs = [TRAINING.with_(seed=s) for s in (1, 2)]
    plain = train_runs(files, configs)
    read = train_runs(files, configs, epoch_readings=lambda stack: EpochReadings(stack))
    for (model, log), (model_read, log_read), f in zip(plain, read, files):
        for name, value in model.state_dict().items():
            assert torch.equal(value, model_read.state_dict()[name]), name
        final = evaluate(model_read, f)[0]
        last = log_read[-1]
        assert last["test.fvgpt.base"] == pytest.approx(final["fvgpt.base"])
        assert last["test.fvgpt.new"] == pytest.approx(final["fvgpt.new"])
        assert last["test.shift.fvgpt.base"] == pytest.approx(final["shift.fvgpt.base"], rel=1e-5)
        assert len(log_read) == configs[0].epochs and "test.fvgpt.base" not in log[-1]

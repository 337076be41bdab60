"""FVG-PT's signals and losses against hand computations and independent formulas."""

import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.heads.config import LOSSES, HeadsConfig
from pipeline.heads.model import FVGPTHeads
from pipeline.heads.signals import brg_inputs, entropy, frg_inputs, prob_cosine


def test_indicators_by_hand():
    p = torch.tensor([[0.5, 0.5]]).log()
    q = torch.tensor([[1.0, 1e-12]]).log()
    assert entropy(p).item() == pytest.approx(math.log(2))
    assert entropy(q).item() == pytest.approx(0.0, abs=1e-9)
    assert prob_cosine(p, q).item() == pytest.approx(0.5 / math.sqrt(0.5), abs=1e-6)  # (.5,.5).(1,0)/(|.|*1)
    u = frg_inputs(p, q, torch.tensor([0.3]), ("entropy_gap", "cosine", "area"))
    assert u.tolist()[0] == pytest.approx([math.log(2), 1 / math.sqrt(2), 0.3], abs=1e-6)
    assert frg_inputs(p, q, torch.tensor([0.3]), ("area",)).tolist() == [[pytest.approx(0.3)]]
    s = brg_inputs(p, q, ("entropy_full", "entropy_clip", "cosine"))
    assert s.tolist()[0] == pytest.approx([math.log(2), 0.0, 1 / math.sqrt(2)], abs=1e-6)


def _batch(k=1, b=3, c=4, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    unit = lambda *s: F.normalize(torch.randn(*s, generator=g), dim=-1)  # noqa: E731
    return dict(
        f_full=unit(k, b, d),
        f_fg=unit(k, b, d),
        f_clip=unit(k, b, d),
        area=torch.full((k, b), 0.5),
        y=torch.randint(0, c, (k, b), generator=g),
        g=unit(c, d),
        g_clip=unit(c, d),
    )


def test_each_loss_matches_an_independent_formula():
    cfg = HeadsConfig(tau_d=2.0)
    model = FVGPTHeads([cfg], 8, 10.0)
    x = _batch()
    _, parts = model.losses(**x)
    s, tau = 10.0, 2.0
    f, f_fg, f_clip, y, g, gc = x["f_full"][0], x["f_fg"][0], x["f_clip"][0], x["y"][0], x["g"], x["g_clip"]
    z_full, z_fg, z_clip = s * f @ g.t(), s * f_fg @ g.t(), s * f_clip @ gc.t()
    with torch.no_grad():
        fa = model.visual_adapter(f[None])[0]
        ga = model.text_adapter(g[None])[0]
    z_fdc = s * fa @ ga.t()
    p = lambda z: torch.softmax(z / tau, -1)  # noqa: E731
    kl_ref = lambda a, b: F.kl_div(torch.log_softmax(b / tau, -1), p(a), reduction="none").sum(-1)  # noqa: E731
    assert parts["fdc_ce"].item() == pytest.approx(F.cross_entropy(z_fdc, y).item(), rel=1e-5)
    r_star = (F.cross_entropy(z_fg, y, reduction="none") < F.cross_entropy(z_full, y, reduction="none")).float()
    with torch.no_grad():
        ent = lambda z: -(p(z) * torch.log_softmax(z / tau, -1)).sum(-1)  # noqa: E731
        u = torch.stack([ent(z_full) - ent(z_fg), F.cosine_similarity(p(z_full), p(z_fg), dim=-1), x["area"][0]], -1)
        r = torch.sigmoid(model.frg_gate(u[None]))[0, :, 0]
        sb = torch.stack([ent(z_full), ent(z_clip), F.cosine_similarity(p(z_full), p(z_clip), dim=-1)], -1)
        b = torch.sigmoid(model.brg_gate(sb[None]))[0, :, 0]
    assert parts["frg_bce"].item() == pytest.approx(F.binary_cross_entropy(r, r_star).item(), rel=1e-5)
    dist = (r * kl_ref(z_fg, z_fdc) + (1 - r) * kl_ref(z_full, z_fdc)).mean()
    assert parts["fdc_dist"].item() == pytest.approx(dist.item(), rel=1e-4)
    z_pc = (1 - b)[:, None] * z_full + b[:, None] * z_clip
    assert parts["pc_ce"].item() == pytest.approx(F.cross_entropy(z_pc, y).item(), rel=1e-5)
    assert parts["pc_kl"].item() == pytest.approx(kl_ref(z_clip, z_pc).mean().item(), rel=1e-4)
    total = parts["fdc_ce"] + parts["frg_bce"] + 10 * parts["fdc_dist"] + parts["pc_ce"] + parts["pc_kl"]
    assert parts["loss"].item() == pytest.approx(total.item(), rel=1e-5)


def _grads(cfg, x):
    model = FVGPTHeads([cfg], 8, 10.0)
    loss, _ = model.losses(**x)
    loss.backward()
    return {name: (p.grad is not None and p.grad.abs().sum().item() > 0) for name, p in model.named_parameters()}


def _moved(grads, prefix):
    return any(v for k, v in grads.items() if k.startswith(prefix))


def test_gradient_routing():
    x = _batch()
    only = lambda *keep: HeadsConfig(losses=keep)  # noqa: E731
    base = _grads(only("fdc_ce", "frg_bce", "fdc_dist"), x)
    assert not _moved(base, "brg_gate") and _moved(base, "visual_adapter") and _moved(base, "frg_gate")
    pc = _grads(only("pc_ce", "pc_kl"), x)
    assert _moved(pc, "brg_gate") and not _moved(pc, "visual_adapter") and not _moved(pc, "text_adapter")
    assert not _moved(pc, "frg_gate")
    dist = _grads(only("fdc_dist"), x)
    assert not _moved(dist, "frg_gate")  # r is detached in L_dist
    undetached = _grads(HeadsConfig(losses=("fdc_dist",), detach_r=False), x)
    assert _moved(undetached, "frg_gate")


def test_switches_change_only_their_terms():
    x = _batch(seed=3)
    ref = FVGPTHeads([HeadsConfig()], 8, 10.0).losses(**x)[1]
    for loss in LOSSES:
        parts = FVGPTHeads([HeadsConfig(losses=tuple(x for x in LOSSES if x != loss))], 8, 10.0).losses(**x)[1]
        assert parts[loss].item() == 0.0
        for other in LOSSES:
            if other != loss:
                assert parts[other].item() == pytest.approx(ref[other].item(), rel=1e-6)
    no_frg = FVGPTHeads([HeadsConfig(frg=False, r_constant=1.0)], 8, 10.0).losses(**x)[1]
    assert no_frg["frg_bce"].item() == 0.0 and no_frg["fdc_ce"].item() == pytest.approx(ref["fdc_ce"].item())
    no_pc = FVGPTHeads([HeadsConfig(pc=False)], 8, 10.0).losses(**x)[1]
    assert no_pc["pc_ce"].item() == 0.0 == no_pc["pc_kl"].item()
    assert no_pc["fdc_dist"].item() == pytest.approx(ref["fdc_dist"].item())


def _dist_reference(model, x, r):
    """L_dist, Eq. (9), recomputed by hand for one member with the weights `r` [B]."""
    s, tau = 10.0, 2.0
    with torch.no_grad():
        z_fdc = s * model.visual_adapter(x["f_full"])[0] @ model.text_adapter(x["g"][None])[0].t()
    kl_ref = lambda a, b: F.kl_div(torch.log_softmax(b / tau, -1), torch.softmax(a / tau, -1), reduction="none").sum(-1)  # noqa: E731
    z_fg, z_full = s * x["f_fg"][0] @ x["g"].t(), s * x["f_full"][0] @ x["g"].t()
    return (r * kl_ref(z_fg, z_fdc) + (1 - r) * kl_ref(z_full, z_fdc)).mean()


def _mixed_area_batch():
    """Four views whose foreground view is the class's own text feature (so CE(fg) < CE(full) everywhere) and
    whose mask areas are too small, trusted, too large, trusted."""
    x = _batch(b=4)
    x["f_fg"] = x["g"][x["y"]].clone()
    x["area"] = torch.tensor([[0.001, 0.5, 0.999, 0.3]])
    return x


def test_area_rule_zeroes_r_and_target_where_frg_is_on():
    x = _mixed_area_batch()
    model = FVGPTHeads([HeadsConfig()], 8, 10.0)
    with torch.no_grad():
        model.frg_gate.biases[-1].fill_(3.0)  # r near 0.95, far from 0.5, so r and 1 - r cannot be confused
        tau = 2.0
        z = lambda f, g: torch.log_softmax(10.0 * f @ g.t() / tau, -1)  # noqa: E731
        r = model.trust_score(z(x["f_full"], x["g"]), z(x["f_fg"], x["g"]), x["area"])[0]
    assert r.min() > 0.8
    parts = model.losses(**x)[1]
    trusted = torch.tensor([0.0, 1.0, 0.0, 1.0])
    assert parts["fdc_dist"].item() == pytest.approx(_dist_reference(model, x, r * trusted).item(), rel=1e-4)
    assert parts["r_star"].item() == pytest.approx(0.5)  # targets [0, 1, 0, 1]: the fg view wins everywhere


def test_without_frg_r_is_the_constant_on_every_view():
    x = _mixed_area_batch()
    model = FVGPTHeads([HeadsConfig(frg=False, r_constant=0.9)], 8, 10.0)
    parts = model.losses(**x)[1]
    assert parts["fdc_dist"].item() == pytest.approx(_dist_reference(model, x, torch.full((4,), 0.9)).item(), rel=1e-4)
    assert parts["frg_bce"].item() == 0.0

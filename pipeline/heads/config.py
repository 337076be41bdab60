"""Every FVG-PT head setting, including each ablation of the paper, as one flat config.

Defaults follow docs/method.md (the authors' values where the paper gives them,
ours where it is silent, each named there). A config's `structure` decides
which configs can be trained together, stacked, in one process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from ..schedule import SGDRecipe

FRG_INDICATORS = ("entropy_gap", "cosine", "area")
BRG_INDICATORS = ("entropy_full", "entropy_clip", "cosine")
LOSSES = ("fdc_ce", "frg_bce", "fdc_dist", "pc_ce", "pc_kl")
# Fields FVGPTHeads keeps per stacked member (buffers, loss weights, initial weights); all others are `structure`.
PER_MEMBER = frozenset(
    {
        "frg",
        "fdc",
        "pc",
        "losses",
        "lambda_frg",
        "lambda_d",
        "lambda_new",
        "tau_d",
        "kl_tau_squared",
        "fdc_logit_scale",
        "delta",
        "area_min",
        "area_max",
        "r_constant",
        "detach_r",
        "adapter_init",
        "seed",
    }
)


@dataclass(frozen=True)
class HeadsConfig(SGDRecipe):
    # modules (Table 3)
    frg: bool = True
    fdc: bool = True
    pc: bool = True
    # loss terms (Table 12)
    losses: tuple[str, ...] = LOSSES
    # loss weights
    lambda_frg: float = 1.0
    lambda_d: float = 10.0
    lambda_new: float = 1.0
    # distributions
    tau_d: float = 2.0
    kl_tau_squared: bool = False
    fdc_logit_scale: float | str = "backbone"  # a number, or the backbone's own scale (100 for OpenAI CLIP)
    # FRG target and trust rules
    delta: float = 0.0
    area_min: float = 0.02
    area_max: float = 0.98
    r_constant: float = 0.5  # r when FRG is off
    detach_r: bool = True
    # architecture (Tables 4, 5, 6, 13)
    adapter_hidden: int = 64
    adapter_init: float = 1e-3
    adapters: str = "both"  # both | visual
    gate_hidden: int = 32
    gate_depth: int = 2  # linear layers in each gate MLP (2 = 3 -> 32 -> 1)
    frg_indicators: tuple[str, ...] = FRG_INDICATORS
    brg_indicators: tuple[str, ...] = BRG_INDICATORS
    # data (Supp. C.4); the optimisation recipe comes from SGDRecipe
    shot_fraction: float = 1.0
    seed: int = 1

    def __post_init__(self) -> None:
        bad = [x for x in self.losses if x not in LOSSES]
        bad += [x for x in self.frg_indicators if x not in FRG_INDICATORS]
        bad += [x for x in self.brg_indicators if x not in BRG_INDICATORS]
        if bad:
            raise ValueError(
                f"unknown heads setting(s) {bad}; losses {LOSSES}, FRG {FRG_INDICATORS}, BRG {BRG_INDICATORS}"
            )
        if self.adapters not in ("both", "visual"):
            raise ValueError(f"heads.adapters must be both or visual, got {self.adapters!r}")
        if not self.frg_indicators or not self.brg_indicators:
            raise ValueError("each gate needs at least one indicator")
        if not 0 < self.shot_fraction <= 1:
            raise ValueError(f"heads.shot_fraction must be in (0, 1], got {self.shot_fraction}")

    @classmethod
    def from_dict(cls, d: dict) -> "HeadsConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise KeyError(f"unknown heads parameter(s) {unknown}; known: {sorted(known)}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)

    def with_(self, **changes) -> "HeadsConfig":
        return replace(self, **{k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()})

    def weight(self, loss: str) -> float:
        """1 if a loss term is on (its module on and the term listed), else 0."""
        module = {
            "fdc_ce": self.fdc,
            "frg_bce": self.frg and self.fdc,
            "fdc_dist": self.fdc,
            "pc_ce": self.pc,
            "pc_kl": self.pc,
        }[loss]
        return float(module and loss in self.losses)

    @property
    def structure(self) -> tuple:
        """What must match for configs to share one stacked training run: every field the model does not
        hold per member (sizes, indicators, data, schedule). A new field is structural until the model
        handles it per member and it is listed in PER_MEMBER, so stacking can never mix two settings."""
        return tuple((f.name, getattr(self, f.name)) for f in fields(self) if f.name not in PER_MEMBER)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# Named rows of the paper's ablations, as changes to the full model.
TABLE3 = {
    "(1) FDC": dict(frg=False, pc=False),
    "(2) PC": dict(frg=False, fdc=False),
    "(3) FRG+FDC": dict(pc=False),
    "(4) FDC+PC": dict(frg=False),
    "(5) full": dict(),
}
TABLE12 = {f"without {loss}": dict(losses=tuple(x for x in LOSSES if x != loss)) for loss in LOSSES}
# Table 6 drops one indicator group at a time; the BRG "distribution" group is both entropies.
TABLE6 = {
    "FRG without distribution (entropy gap)": dict(frg_indicators=("cosine", "area")),
    "FRG without similarity (cosine)": dict(frg_indicators=("entropy_gap", "area")),
    "FRG without geometry (area)": dict(frg_indicators=("entropy_gap", "cosine")),
    "BRG without distribution (both entropies)": dict(brg_indicators=("cosine",)),
    "BRG without similarity (cosine)": dict(brg_indicators=("entropy_full", "entropy_clip")),
}
# Table 4 varies the FDC adapters' hidden size and the gates' hidden size in separate rows, the other at its default.
TABLE4 = {
    **{f"FDC adapters hidden {h}": dict(adapter_hidden=h) for h in (16, 32, 64, 128)},
    **{f"RG MLPs hidden {h}": dict(gate_hidden=h) for h in (16, 32, 64, 128)},
}
ABLATIONS = {
    "table3": TABLE3,
    "table12": TABLE12,
    "table6": TABLE6,
    "table4": TABLE4,
    "table5": {f"depth {d}": dict(gate_depth=d) for d in (1, 2, 3)},
    "table13": {"adapters both": dict(adapters="both"), "adapters visual": dict(adapters="visual")},
    "lambda_d": {f"lambda_d {x:g}": dict(lambda_d=x) for x in (0.1, 1, 5, 10, 20, 50)},
    "shots": {f"shots {int(f * 100)}%": dict(shot_fraction=f) for f in (0.25, 0.5, 0.75, 1.0)},
}

"""Scores of a sweep over training-set sizes N (the paper's Figure 2 and Figure 4-left).

``zoo.regimes`` names the models, keyed (N, width, training seed). Here their samples become two tables:
per model (memorization rate, GL) and per pair of widths (RP and its chance level), then the regimes are
read off the data: memorization where every width copies (>= 90% memorized), generalization where none
does (<= 10%).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import data, metrics, samplers, zoo
from .optimal import OptimalDenoiser

MEMORIZED, GENERALIZED = 0.9, 0.1  # regime bounds on the memorized fraction


def loss_drift(curve) -> float:
    """Relative change of the mean loss between the last two tenths of training (0 = converged)."""
    curve = np.asarray(curve, dtype=float)
    k = max(len(curve) // 10, 1)
    if len(curve) < 2 * k:
        return float("nan")
    before, last = curve[-2 * k:-k].mean(), curve[-k:].mean()
    return float((last - before) / before)


def sweep_samples(models: dict, store, seeds, P: dict) -> dict:
    """Samples of every model of the sweep for ``seeds`` (cached in the store)."""
    return {key: zoo.samples(cfg, store, seeds, P) for key, cfg in models.items()}


def optimal_samples(P: dict, seeds) -> dict:
    """Samples of the closed-form optimal denoiser of each subset: Theorem 1's prediction."""
    full = data.load(P["data"])
    steps = P["sample_steps"]
    return {n: samplers.sample(OptimalDenoiser(full.subset(n).images), seeds, P["shape"], "heun", steps)
            for n in P["sizes"]}


def model_table(samples: dict, P: dict, sim) -> pd.DataFrame:
    """One row per model: memorized fraction (ratio test), GL = 1 - memorized, and GL by correlation."""
    full, rows = data.load(P["data"]), []
    for (n, w, s), x in samples.items():
        train = full.subset(n).images
        mem = float(metrics.memorized(x, train).double().mean())
        rows.append(dict(n=n, width=w, seed=s, memorized=mem, gl=1 - mem,
                         gl_corr=metrics.gl_score(sim, x, train, sim.default_threshold)))
    return pd.DataFrame(rows)


def pair_table(samples: dict, sim, reference: dict | None = None, reference_name: str = "optimal") -> pd.DataFrame:
    """One row per (N, training seed, pair of widths): RP and its chance level at the similarity's threshold.

    With ``reference`` ({N: samples}), pairs each model with it instead (RP against the theory).
    """
    rows = []
    by_ns = {}
    for (n, w, s), x in samples.items():
        by_ns.setdefault((n, s), {})[w] = x
    for (n, s), group in sorted(by_ns.items()):
        if reference is None:
            pairs = [(f"{a} vs {b}", group[a], group[b]) for a, b in combinations(sorted(group), 2)]
        else:
            pairs = [(f"{w} vs {reference_name}", group[w], reference[n]) for w in sorted(group)]
        for name, a, b in pairs:
            rows.append(dict(n=n, seed=s, pair=name, rp=metrics.rp_score(sim, a, b), chance=metrics.chance_rp(sim, a, b)))
    return pd.DataFrame(rows)


def training_curves(models: dict, store, seeds, P: dict, theory: dict | None = None) -> pd.DataFrame:
    """Memorized fraction (ratio test) of every model at each EMA snapshot and at its end, and with ``theory``
    ({N: D*'s samples}) the same-copy rate with D*. A memorized fraction that has stopped moving is one of the
    two convergence tests of the sweep (the training loss is the other)."""
    full, rows = data.load(P["data"]), []
    for (n, w, s), cfg in models.items():
        train = full.subset(n).images
        stored = range(cfg.snapshot_every, cfg.steps, cfg.snapshot_every) if cfg.snapshot_every else []
        for step in [*stored, cfg.steps]:
            x = (zoo.samples(cfg, store, seeds, P) if step == cfg.steps
                 else zoo.snapshot_samples(cfg, step, store, seeds, P))
            row = dict(n=n, width=w, seed=s, step=step, memorized=float(metrics.memorized(x, train).double().mean()))
            if theory is not None:
                row["same_copy"] = same_copy(x, theory[n], train)
            rows.append(row)
    return pd.DataFrame(rows)


def last_change(curves: pd.DataFrame, column: str = "memorized") -> pd.Series:
    """Per model (N, width, seed): the change of ``column`` between its last two points (NaN with one)."""
    by_model = curves.sort_values("step").groupby(["n", "width", "seed"])[column]
    return by_model.apply(lambda v: v.iloc[-1] - v.iloc[-2] if len(v) > 1 else np.nan)


def same_copy(x, theory_x, train) -> float:
    """Fraction of seeds where ``x`` is a copy (ratio test) of the very training image that ``theory_x`` is."""
    copies = metrics.memorized(x, train)
    _, mine = metrics.nearest_l2(x, train)
    _, theirs = metrics.nearest_l2(theory_x, train)
    return float((copies & (mine == theirs)).double().mean())


class Handoff(nn.Module):
    """The denoiser ``hi`` above the noise level ``sigma`` and ``lo`` at or below it.

    Integrating the PF-ODE with D* on one side of ``sigma`` and a trained model on the other locates the noise
    levels where the model's noise-to-image map departs from Theorem 1's. The samplers call a denoiser with
    one noise level per step, so the switch is per call.
    """

    def __init__(self, hi, lo, sigma: float):
        super().__init__()
        self.hi, self.lo, self.sigma = hi, lo, sigma

    def forward(self, x, sigma, labels=None):
        level = float(torch.as_tensor(sigma).reshape(-1)[0])
        return (self.hi if level > self.sigma else self.lo)(x, sigma).to(x.dtype)


def handoff_table(model, optimal, theory_x, train, seeds, cuts, P: dict) -> pd.DataFrame:
    """Same-copy rate with D*'s samples when D* takes the levels above each cut and the model those below
    ("D* above"), and the reverse ("model above")."""
    rows = []
    for cut in cuts:
        for name, hi, lo in (("D* above", optimal, model), ("model above", model, optimal)):
            x = samplers.sample(Handoff(hi, lo, cut), seeds, P["shape"], "heun", P["sample_steps"]).clamp(-1, 1)
            rows.append(dict(cut=cut, order=name, same_copy=same_copy(x, theory_x, train)))
    return pd.DataFrame(rows)


def summarise(pairs: pd.DataFrame) -> pd.DataFrame:
    """Mean RP per (N, pair) over training seeds, with the half-range as error bar."""
    g = pairs.groupby(["pair", "n"])
    out = g.agg(rp=("rp", "mean"), lo=("rp", "min"), hi=("rp", "max"), chance=("chance", "max")).reset_index()
    out["rp_err"] = (out["hi"] - out["lo"]) / 2
    return out


def regime_bounds(models: pd.DataFrame) -> tuple[int | None, int | None]:
    """Largest N where every model memorizes, smallest N from which none does (None when absent)."""
    worst = models.groupby("n")["memorized"].agg(["min", "max"])
    mem = worst.index[worst["min"] >= MEMORIZED]
    gen = worst.index[worst["max"] <= GENERALIZED]
    mem_until = int(mem.max()) if len(mem) else None
    gen_from = int(gen[gen > (mem_until or 0)].min()) if len(gen[gen > (mem_until or 0)]) else None
    return mem_until, gen_from


def claims(models: pd.DataFrame, summary: pd.DataFrame, record) -> None:
    """Check Figure 2's claims on ``record`` (a ``reprolib.claims.Claims``), thresholds as stated in notebook 02.

    Each compound claim is checked on its extreme value: the lowest pair's RP, the lowest middle size, the least
    memorizing width. With no size between the two ends the dip cannot be measured (NaN) and does not hold.
    """
    ns = sorted(summary["n"].unique())
    lo, hi, middle = ns[0], ns[-1], ns[1:-1]
    mean_rp = summary.groupby("n")["rp"].mean()
    gl = models.groupby("n")["gl"].mean()
    fig2 = "paper, Fig. 2"

    def pairs_at(n):
        rows = summary[summary.n == n]
        return ", ".join(f"{p}: {r:.3f}" for p, r in zip(rows["pair"], rows["rp"]))

    record.check("rp_smallest_n", f"RP >= 0.6 for every width pair at the smallest N ({lo})",
                 summary[summary.n == lo]["rp"].min(), ">=", 0.6, source=fig2,
                 paper="about 0.69 / 0.62 / 0.65 at N = 2^6 (UNet-64 vs 128 / 64 vs 256 / 128 vs 256)",
                 detail=pairs_at(lo))
    record.check("rp_largest_n", f"RP >= 0.6 for every width pair at the largest N ({hi})",
                 summary[summary.n == hi]["rp"].min(), ">=", 0.6, source=fig2,
                 paper="about 0.67 / 0.61 / 0.85 at N = 2^15", detail=pairs_at(hi))
    depth, detail = None, "no size between the ends"
    if len(middle):
        dip_n = mean_rp[middle].idxmin()
        depth = min(mean_rp[lo], mean_rp[hi]) - mean_rp[dip_n]
        detail = ", ".join(f"mean RP {mean_rp[n]:.3f} at N = {n}" for n in (lo, dip_n, hi))
    record.check("dip", "between the two ends the mean RP over pairs dips at least 0.1 below the lower end "
                 "(measured: the depth of the dip)", depth, ">=", 0.1, source=fig2,
                 paper="RP about 0.18 / 0.02 / 0.17 at N = 2^13, 0.6-0.7 at both ends", detail=detail)
    record.check("gl_smallest_n", f"mean GL <= 0.1 at the smallest N ({lo})", gl[lo], "<=", 0.1, source=fig2,
                 paper="GL 0 up to N = 2^10")
    record.check("gl_largest_n", f"mean GL >= 0.9 at the largest N ({hi})", gl[hi], ">=", 0.9, source=fig2,
                 paper="about 1 from N = 2^14")
    mem = models[models.n == lo].groupby("width")["memorized"].min()
    record.check("memorized_smallest_n", f">= 90% of samples memorized (ratio test) for every width at N = {lo}",
                 mem.min(), ">=", 0.9, source=fig2, paper="GL 0 (every sample a copy) up to N = 2^10",
                 detail=", ".join(f"width {w}: {m:.3f}" for w, m in mem.items()))

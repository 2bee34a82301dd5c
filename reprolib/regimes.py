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

from . import claims as claims_lib  # this module's ``claims`` checks notebook 02's
from . import banks, codehash, data, fitting, metrics, samplers
from .optimal import OptimalDenoiser
from .train import training_set

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
    return {key: banks.samples(cfg, store, seeds, P) for key, cfg in models.items()}


def optimal_samples(P: dict, seeds) -> dict:
    """Samples of the closed-form optimal denoiser of each subset: Theorem 1's prediction."""
    full = data.load(P["data"])
    steps = P["sample_steps"]
    return {n: samplers.sample(OptimalDenoiser(full.subset(n).images).to(P["device"]), seeds, P["shape"], "heun",
                               steps, device=P["device"]) for n in P["sizes"]}


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
            x = (banks.samples(cfg, store, seeds, P) if step == cfg.steps
                 else banks.snapshot_samples(cfg, step, store, seeds, P))
            row = dict(n=n, width=w, seed=s, step=step, memorized=float(metrics.memorized(x, train).double().mean()))
            if theory is not None:
                row["same_copy"] = same_copy(x, theory[n], train)
            rows.append(row)
    return pd.DataFrame(rows)


def last_change(curves: pd.DataFrame, column: str = "memorized") -> pd.Series:
    """Per model (N, width, seed): the change of ``column`` between its last two points (NaN with one)."""
    by_model = curves.sort_values("step").groupby(["n", "width", "seed"])[column]
    return by_model.apply(lambda v: v.iloc[-1] - v.iloc[-2] if len(v) > 1 else np.nan)


def same_copies(x, theory_x, train) -> torch.Tensor:
    """Per seed: is ``x`` a copy (ratio test) of the very training image that ``theory_x`` is?"""
    copies = metrics.memorized(x, train)
    _, mine = metrics.nearest_l2(x, train)
    _, theirs = metrics.nearest_l2(theory_x, train)
    return copies & (mine == theirs)


def same_copy(x, theory_x, train) -> float:
    """Fraction of seeds where ``x`` is a copy (ratio test) of the very training image that ``theory_x`` is."""
    return float(same_copies(x, theory_x, train).double().mean())


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


def handoff(cfg, store, seeds, cuts, P: dict) -> pd.DataFrame:
    """``handoff_table`` of the trained model ``cfg`` and D*, the optimal denoiser of its training set, against D*'s
    own samples for ``seeds``; cached in the store (kind "tables"), keyed by the model's key and the code."""
    seeds = [int(s) for s in seeds]
    key = {"table": "hand-off", "model": cfg.key_dict(), "seeds": seeds, "cuts": [float(c) for c in cuts],
           "sampler": "heun", "steps": P["sample_steps"], "code": codehash.of("hand-off")}

    def compute():
        train = training_set(cfg).images
        optimal = OptimalDenoiser(train).to(P["device"])
        theory_x = samplers.sample(optimal, seeds, P["shape"], "heun", P["sample_steps"], device=P["device"])
        return handoff_table(fitting.fit(cfg, store, False, P["device"]), optimal, theory_x, train, seeds, cuts, P)

    return banks.table(store, key, compute)


def handoff_table(model, optimal, theory_x, train, seeds, cuts, P: dict) -> pd.DataFrame:
    """Same-copy rate with D*'s samples when D* takes the levels above each cut and the model those below
    ("D* above"), and the reverse ("model above")."""
    rows = []
    for cut in cuts:
        for name, hi, lo in (("D* above", optimal, model), ("model above", model, optimal)):
            x = samplers.sample(Handoff(hi, lo, cut), seeds, P["shape"], "heun", P["sample_steps"],
                                device=P["device"]).clamp(-1, 1)
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


def per_seed(samples: dict, P: dict, sim) -> dict:
    """Per seed, what ``claims`` resamples for its intervals: whether each pair of widths agrees ("agree": {N:
    {pair: (training seeds, seeds)}}) and whether each model's sample is a copy ("copies": {N: (models, seeds)})."""
    full, agree, copies = data.load(P["data"]), {}, {}
    by_ns = {}
    for (n, w, s), x in sorted(samples.items()):
        by_ns.setdefault((n, s), {})[w] = x
        copies.setdefault(n, []).append(metrics.memorized(x, full.subset(n).images).numpy())
    for (n, s), group in sorted(by_ns.items()):
        for a, b in combinations(sorted(group), 2):
            hits = (metrics.paired(sim, group[a], group[b]) > sim.default_threshold).numpy()
            agree.setdefault(n, {}).setdefault(f"{a} vs {b}", []).append(hits)
    return {"agree": {n: {p: np.stack(h) for p, h in pairs.items()} for n, pairs in agree.items()},
            "copies": {n: np.stack(c) for n, c in copies.items()}}


def claims(models: pd.DataFrame, summary: pd.DataFrame, record, seeds: dict | None = None) -> None:
    """Check Figure 2's claims on ``record`` (a ``reprolib.claims.Claims``), thresholds as stated in notebook 02,
    each with its 95% bootstrap interval over the seeds when ``seeds`` (``per_seed``) is given.

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

    def rp(n, idx):  # each pair's RP at N on the seeds idx (the mean over training seeds, as ``summarise``)
        return np.array([h[:, idx].mean() for h in seeds["agree"][n].values()])

    def interval(statistic):
        if seeds is None:
            return None
        return claims_lib.bootstrap(statistic, next(iter(seeds["copies"].values())).shape[1])

    record.check("rp_smallest_n", f"RP >= 0.6 for every width pair at the smallest N ({lo})",
                 summary[summary.n == lo]["rp"].min(), ">=", 0.6, source=fig2,
                 paper="about 0.69 / 0.62 / 0.65 at N = 2^6 (UNet-64 vs 128 / 64 vs 256 / 128 vs 256)",
                 detail=pairs_at(lo), interval=interval(lambda idx: rp(lo, idx).min()))
    record.check("rp_largest_n", f"RP >= 0.6 for every width pair at the largest N ({hi})",
                 summary[summary.n == hi]["rp"].min(), ">=", 0.6, source=fig2,
                 paper="about 0.67 / 0.61 / 0.85 at N = 2^15", detail=pairs_at(hi),
                 interval=interval(lambda idx: rp(hi, idx).min()))
    depth, detail = None, "no size between the ends"
    if len(middle):
        dip_n = mean_rp[middle].idxmin()
        depth = dip_depth(mean_rp)[0]
        detail = ", ".join(f"mean RP {mean_rp[n]:.3f} at N = {n}" for n in (lo, dip_n, hi))
    record.check("dip", "between the two ends the mean RP over pairs dips at least 0.1 below the lower end "
                 "(measured: the depth of the dip)", depth, ">=", 0.1, source=fig2,
                 paper="RP about 0.18 / 0.02 / 0.17 at N = 2^13, 0.6-0.7 at both ends", detail=detail,
                 interval=interval(lambda idx: dip_depth(pd.Series({n: rp(n, idx).mean() for n in ns}))[0])
                 if len(middle) else None)
    copied = {n: None if seeds is None else seeds["copies"][n].astype(float) for n in (lo, hi)}
    record.check("gl_smallest_n", f"mean GL <= 0.1 at the smallest N ({lo})", gl[lo], "<=", 0.1, source=fig2,
                 paper="GL 0 up to N = 2^10", interval=interval(lambda idx: 1 - copied[lo][:, idx].mean()))
    record.check("gl_largest_n", f"mean GL >= 0.9 at the largest N ({hi})", gl[hi], ">=", 0.9, source=fig2,
                 paper="about 1 from N = 2^14", interval=interval(lambda idx: 1 - copied[hi][:, idx].mean()))
    mem = models[models.n == lo].groupby("width")["memorized"].min()
    record.check("memorized_smallest_n", f">= 90% of samples memorized (ratio test) for every width at N = {lo}",
                 mem.min(), ">=", 0.9, source=fig2, paper="GL 0 (every sample a copy) up to N = 2^10",
                 detail=", ".join(f"width {w}: {m:.3f}" for w, m in mem.items()),
                 interval=interval(lambda idx: copied[lo][:, idx].mean(1).min()))


# --- Figure 2's dip taken apart (replications/02_dip_decomposition.md) ---------------------------------------

class Missing(LookupError):
    """An artifact a read-only analysis needs is not in the store it reads."""


class Sealed:
    """A store that only reads: a missing artifact raises ``Missing`` at the lookup, before anything is trained
    or sampled, and nothing can be saved (an analysis of another run's store leaves it as it was)."""

    def __init__(self, store):
        self.store, self.root = store, store.root

    def exists(self, kind: str, config: dict, name: str) -> bool:
        if not self.store.exists(kind, config, name):
            raise Missing(f"{kind}/{name} missing from {self.root} (config {config})")
        return True

    def load(self, kind: str, config: dict, name: str) -> dict:
        self.exists(kind, config, name)
        return self.store.load(kind, config, name)

    def save(self, *args, **kwargs):
        raise Missing(f"{self.root} is read here, never written")


def bank(cfg, step: int, store, seeds, P: dict):
    """Samples of ``cfg``'s EMA snapshot after ``step`` steps; its final model's bank at ``step == cfg.steps``."""
    if step == cfg.steps:
        return banks.samples(cfg, store, seeds, P)
    return banks.snapshot_samples(cfg, step, store, seeds, P)


TYPES = ("SAME", "DIFF", "ONE", "NONE")  # both copy one image / both copy, different images / one copies / neither
STEADY = 0.05  # notebook 02's convergence test: loss drift and memorized change both within this


def evidence(sim, x, train) -> dict:
    """Per sample, what either copy rule needs: the ratio test's verdict and nearest training image (L2), and the
    highest correlation with a training image and which one (``metrics.nearest``)."""
    corr, corr_img = metrics.nearest(sim, x, train)
    _, l2 = metrics.nearest_l2(x, train)
    return dict(ratio=metrics.memorized(x, train).numpy(), l2=l2.numpy(), corr=corr.numpy(), corr_img=corr_img.numpy())


def copies(ev: dict, t: float | None = None):
    """(copies?, the copied image) per sample: notebook 02's rule with ``t`` None (ratio test, nearest image in
    L2), else one rule at ``t`` (highest correlation above ``t``, the most correlated image)."""
    return (ev["ratio"], ev["l2"]) if t is None else (ev["corr"] > t, ev["corr_img"])


def pair_types(copy_a, img_a, copy_b, img_b) -> np.ndarray:
    """Each seed's type (``TYPES``) for a pair of samples, from each one's copy verdict and copied image."""
    copy_a, copy_b = np.asarray(copy_a, bool), np.asarray(copy_b, bool)
    both = copy_a & copy_b
    return np.select([both & (np.asarray(img_a) == np.asarray(img_b)), both, copy_a ^ copy_b],
                     ["SAME", "DIFF", "ONE"], "NONE")


def near_same(copy_a, img_a, copy_b, img_b, l2_a, l2_b) -> np.ndarray:
    """ONE seeds whose non-copying sample has as nearest training image (L2) the image the other one copies."""
    copy_a, copy_b = np.asarray(copy_a, bool), np.asarray(copy_b, bool)
    return np.where(copy_a & ~copy_b, np.asarray(l2_b) == np.asarray(img_a),
                    np.where(copy_b & ~copy_a, np.asarray(l2_a) == np.asarray(img_b), False))


def type_table(types, agree, near=None) -> pd.DataFrame:
    """Per type: its number of seeds, RP within it (NaN when empty), its share of the agreeing seeds (shares sum to 1) and
    its contribution (its agreeing seeds over all seeds; contributions sum to RP). With ``near`` (``near_same``),
    ONE is also split into near-copies of the same image and the rest, and its row gives their fraction."""
    types, agree = np.asarray(types), np.asarray(agree, bool)
    groups = [(name, types == name) for name in TYPES]
    if near is not None:
        near = np.asarray(near, bool)
        groups += [("ONE near-same", (types == "ONE") & near), ("ONE rest", (types == "ONE") & ~near)]
    rows, agreeing = [], agree.sum()
    for name, m in groups:
        k, a = int(m.sum()), int((agree & m).sum())
        rows.append(dict(type=name, seeds=k, rp=a / k if k else np.nan, share=a / agreeing if agreeing else np.nan,
                         contribution=a / len(agree),
                         near_same=float(near[m].mean()) if name == "ONE" and near is not None and k else np.nan))
    return pd.DataFrame(rows)


def t_copy(sim, images, q: float = 0.95, chunk: int = 4096) -> float:
    """The one-rule copy threshold: the ``q`` quantile over real images of each one's highest similarity with any
    *other* image (leave-one-out), so that a real image is called a copy of another with probability 1 - q. Rows
    are taken ``chunk`` at a time, so 60,000 MNIST images never need their whole similarity matrix at once."""
    e = sim.embed(images)
    best = []
    for i in range(0, len(e), chunk):
        c = e[i:i + chunk] @ e.T
        c[:, i:i + chunk].fill_diagonal_(-np.inf)
        best.append(c.max(1).values)
    return float(np.quantile(torch.cat(best).numpy(), q))


def straddles(frac_a: float, frac_b: float) -> bool:
    """A pair straddles the transition when one width copies (>= ``MEMORIZED``) and the other does not
    (<= ``GENERALIZED``), under one copy rule."""
    lo, hi = sorted((frac_a, frac_b))
    return hi >= MEMORIZED and lo <= GENERALIZED


def decompose(samples: dict, P: dict, sim, thresholds=()) -> dict:
    """Notebook 02's sweep scored under notebook 02's rule ("ratio": copy by the ratio test, agreement s > the
    similarity's threshold) and under one rule at each of ``thresholds`` ("one": copy and agreement both by
    correlation above t). ``samples`` as ``sweep_samples`` gives them, {(N, width, seed): x}; pairs are the
    widths of one (N, seed). Tables: ``pairs`` (RP, chance), ``models`` (copy fraction, GL), ``types`` (per pair
    type, ``type_table``) and ``alike`` (fraction of samples the two copy rules classify alike, per t)."""
    full = data.load(P["data"])
    ev = {key: evidence(sim, x, full.subset(key[0]).images) for key, x in samples.items()}
    rules = [("ratio", None)] + [("one", float(t)) for t in thresholds]
    groups: dict = {}
    for n, w, s in samples:
        groups.setdefault((n, s), []).append(w)
    pairs, types, models = [], [], []
    for (n, s), widths in sorted(groups.items()):
        for a, b in combinations(sorted(widths), 2):
            ka, kb = (n, a, s), (n, b, s)
            same_seed = metrics.paired(sim, samples[ka], samples[kb]).numpy()
            other_seed = metrics.unpaired(sim, samples[ka], samples[kb]).numpy()
            for rule, t in rules:
                at = sim.default_threshold if t is None else t
                agree = same_seed > at
                (ca, ia), (cb, ib) = copies(ev[ka], t), copies(ev[kb], t)
                tags = dict(rule=rule, t=at, n=n, seed=s, pair=f"{a} vs {b}", width_a=a, width_b=b)
                pairs.append(dict(tags, rp=float(agree.mean()), chance=float((other_seed > at).mean()),
                                  straddles=straddles(ca.mean(), cb.mean())))
                near = near_same(ca, ia, cb, ib, ev[ka]["l2"], ev[kb]["l2"])
                types.append(type_table(pair_types(ca, ia, cb, ib), agree, near).assign(**tags))
    for (n, w, s), e in ev.items():
        for rule, t in rules:
            frac = float(copies(e, t)[0].mean())
            models.append(dict(rule=rule, t=sim.default_threshold if t is None else t, n=n, width=w, seed=s,
                               copy=frac, gl=1 - frac))
    alike = [dict(t=float(t), alike=float(np.mean(np.concatenate([(e["corr"] > t) == e["ratio"] for e in ev.values()]))))
             for t in thresholds]
    front = ["rule", "t", "n", "seed", "pair", "type"]
    types = pd.concat(types, ignore_index=True) if types else pd.DataFrame(columns=front)
    return dict(pairs=pd.DataFrame(pairs), models=pd.DataFrame(models), alike=pd.DataFrame(alike),
                types=types[front + [c for c in types.columns if c not in front]])


def dip_depth(mean_rp: pd.Series) -> tuple[float, float]:
    """Claim ``02.dip``'s quantity on a mean RP per N: the lower end minus the lowest middle size, and that over
    the lower end (NaN without a middle)."""
    ns = sorted(mean_rp.index)
    if len(ns) < 3:
        return float("nan"), float("nan")
    ends = min(mean_rp[ns[0]], mean_rp[ns[-1]])
    depth = ends - mean_rp[ns[1:-1]].min()
    return float(depth), float(depth / ends)


def depth_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per rule and threshold (``decompose``'s pairs): depth and relative depth of the dip, each end's lowest-pair
    RP and the lower of the two, E = the largest RP - chance over the straddling (pair, N) (NaN when none
    straddles), and those pairs."""
    rows = []
    for (rule, t), g in pairs.groupby(["rule", "t"]):
        g = g.groupby(["n", "pair"])[["rp", "chance", "straddles"]].mean().reset_index()
        ns = sorted(g["n"].unique())
        depth, relative = dip_depth(g.groupby("n")["rp"].mean())
        small, large = g[g.n == ns[0]]["rp"].min(), g[g.n == ns[-1]]["rp"].min()
        cross = g[g["straddles"] >= 1]
        rows.append(dict(rule=rule, t=t, depth=depth, relative_depth=relative, end_small=small, end_large=large,
                         ends=min(small, large), E=float((cross["rp"] - cross["chance"]).max()) if len(cross) else np.nan,
                         straddling="; ".join(f"N={n} {p}: RP {r:.3f}, chance {c:.3f}" for n, p, r, c in
                                              zip(cross["n"], cross["pair"], cross["rp"], cross["chance"]))))
    return pd.DataFrame(rows)


def convergence(memorized: dict, losses, step: int, every: int = 1000, per: int = 100) -> dict:
    """Notebook 02's test at snapshot ``step``: memorized fraction moved by at most ``STEADY`` since ``step -
    every`` ({step: fraction}) and the loss drift of the curve cut at ``step`` (``per`` steps a point) within it."""
    change = memorized[step] - memorized[step - every]
    drift = loss_drift(np.asarray(losses)[:step // per])
    return dict(memorized=memorized[step], change=change, drift=drift,
                converged=bool(abs(change) <= STEADY and abs(drift) <= STEADY))


def first_converged(table: pd.DataFrame, start: int) -> dict:
    """Per N ({N: step or None}): the first snapshot from ``start`` at which every width of ``table`` (columns n,
    width, step, converged) passes the test at that same snapshot."""
    out = {}
    for n, g in table.groupby("n"):
        ok = g[g.step >= start].groupby("step")["converged"].all()
        out[n] = int(ok[ok].index.min()) if ok.any() else None
    return out


def shift(new, old) -> float:
    """D_w, D_c: the lowest RP of one set of sizes minus the lowest of the other (negative: a deeper dip)."""
    return float(np.min(new) - np.min(old)) if len(new) and len(old) else float("nan")


def rules_verdict(straddle: bool, e: float, ends: float) -> str:
    """Reading 1 (one rule): (a) a pair straddles, (b) E <= 0.2, (c) the ends' lowest-pair RP >= 0.6."""
    if not straddle or np.isnan(e):
        return "not testable"
    if e > 0.4:
        return "refuted"
    return "supported" if e <= 0.2 and ends >= 0.6 else "partly"


def shift_verdict(d: float, opposite: bool = False) -> str:
    """Readings 2 and 3 on D: supported at <= -0.1, refuted at >= -0.05 (with ``opposite``, >= +0.1 is the
    opposite reading), inconclusive between."""
    if np.isnan(d):
        return "not testable"
    if opposite and d >= 0.1:
        return "opposite"
    return "supported" if d <= -0.1 else "refuted" if d >= -0.05 else "inconclusive"


def digits_verdict(rules: str, gap: str, converge: str, e: float) -> str:
    """Reading 4: supported when reading 1 is refuted, partly supported with E > 0.2, or not testable, and
    readings 2 and 3 are each refuted (or opposite) or not testable; refuted when one of them holds (brings the
    straddling pair within 0.2 of chance or the dip 0.1 deeper); inconclusive when one is left inconclusive."""
    if rules == "supported" or (rules == "partly" and e <= 0.2) or "supported" in (gap, converge):
        return "refuted"
    return "inconclusive" if "inconclusive" in (gap, converge) else "supported"

"""Models trained on disjoint data, against N (notebooks 02 and 08; replications/02_disjoint_data.md).

Two models of one width, one on the N images of set A and one on N images of set B that shares none of them
(``zoo.disjoint``), sampled from the same seeds. Their RP can only be chance while each copies its own training
images, and rises once both learn the distribution: the paper's mechanism seen directly (Kadkhodaie et al.,
ICLR 2024, Fig. 2). Per seed, each model's sample either copies its own training set (``metrics.memorized``) or
not, which tells the memorization regime's disagreement (both copy, different images) from a model that has not
converged to either regime (one copies, the other does not).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from . import claims as claims_lib
from . import metrics
from .loop import training_set

KINDS = ("both copy", "one copies", "neither copies")
SOURCE = "ours, replications/02_disjoint_data.md"


def copies(samples: dict, cfgs: dict) -> dict:
    """{(N, width, set): bool per seed}: whether the model's sample copies an image of its own training set."""
    return {key: metrics.memorized(x, training_set(cfgs[key]).images).numpy() for key, x in samples.items()}


def agree(samples: dict, sim) -> dict:
    """{(N, width): bool per seed}: whether the pair's two samples of a seed agree (similarity above threshold)."""
    pairs = {(n, w) for n, w, _ in samples}
    return {(n, w): (metrics.paired(sim, samples[(n, w, "A")], samples[(n, w, "B")]) > sim.default_threshold).numpy()
            for n, w in sorted(pairs)}


def pair_table(samples: dict, cfgs: dict, sim) -> pd.DataFrame:
    """One row per (N, width): the pair's RP, its chance (mismatched seeds), and the fractions of seeds on which
    both models copy their own training set, one does, or neither."""
    copied, agreed = copies(samples, cfgs), agree(samples, sim)
    rows = []
    for (n, w), hits in agreed.items():
        a, b = copied[(n, w, "A")], copied[(n, w, "B")]
        both, one = a & b, a ^ b
        rows.append({"n": n, "width": w, "rp": float(hits.mean()),
                     "chance": metrics.chance_rp(sim, samples[(n, w, "A")], samples[(n, w, "B")]),
                     "both copy": float(both.mean()), "one copies": float(one.mean()),
                     "neither copies": float((~a & ~b).mean())})
    return pd.DataFrame(rows)


def first_reaching(curve: pd.Series, level: float) -> float:
    """The N at which ``curve`` (index N, increasing) first reaches ``level``, interpolated linearly in log N
    between the two sizes around the crossing; NaN when it never does, the smallest N when it starts there."""
    curve = curve.sort_index()
    n, v = np.log(curve.index.to_numpy(dtype=float)), curve.to_numpy(dtype=float)
    above = np.flatnonzero(v >= level)
    if not len(above):
        return float("nan")
    i = above[0]
    if i == 0:
        return float(curve.index[0])
    t = (level - v[i - 1]) / (v[i] - v[i - 1])
    return float(np.exp(n[i - 1] + t * (n[i] - n[i - 1])))


def half_way(curve: pd.Series) -> float:
    """The N at which ``curve`` first reaches half-way between its values at the smallest and the largest N."""
    curve = curve.sort_index()
    return first_reaching(curve, (curve.iloc[0] + curve.iloc[-1]) / 2)


def doublings(n: float, m: float) -> float:
    """How many doublings apart two sizes are: |log2(n / m)| (NaN when either is)."""
    return float(abs(np.log2(n / m))) if n > 0 and m > 0 else float("nan")


@torch.no_grad()
def theory_pairs(theory_x: dict, sim) -> pd.DataFrame:
    """One row per (theory, N): RP between a theory built on set A and the same theory on set B, and its chance;
    ``theory_x``: {theory: {(N, set): samples}}."""
    rows = []
    for name, by in theory_x.items():
        for n in sorted({n for n, _ in by}):
            a, b = by[(n, "A")], by[(n, "B")]
            rows.append({"theory": name, "n": n, "rp": metrics.rp_score(sim, a, b),
                         "chance": metrics.chance_rp(sim, a, b)})
    return pd.DataFrame(rows)


def gl_by_width(copies: dict, widths) -> dict:
    """{width: {N: copied per seed, (training seeds, seeds)}} from ``regimes.per_seed``'s "copies" ({N: (models,
    seeds)}, its models in (width, training seed) order)."""
    widths = sorted(widths)
    return {w: {n: c.reshape(len(widths), -1, c.shape[-1])[i] for n, c in copies.items()} for i, w in enumerate(widths)}


def claims(pairs: pd.DataFrame, agreed: dict, same_data: dict, copied: dict, record) -> None:
    """Check notebook 02's disjoint-data claims (replications/02_disjoint_data.md) on ``record``, each with a 95%
    bootstrap interval over the seeds: ``pairs`` (``pair_table``), ``agreed`` (``agree``), ``same_data``
    (``regimes.per_seed``'s "agree": {N: {width pair: (training seeds, seeds)}}), ``copied`` (``gl_by_width``)."""
    ns = sorted(pairs["n"].unique())
    lo, hi = ns[0], ns[-1]
    widths = sorted(pairs["width"].unique())
    seeds = len(next(iter(agreed.values())))

    def interval(statistic):
        return claims_lib.bootstrap(statistic, seeds)

    def excess(n, idx=slice(None)):  # per width: RP over the bound 3 x chance + 0.05
        row = pairs[pairs.n == n].set_index("width")
        return {w: agreed[(n, w)][idx].mean() - 3 * row.loc[w, "chance"] - 0.05 for w in widths}

    worst = max(widths, key=excess(lo).get)
    at_lo = pairs[(pairs.n == lo) & (pairs.width == worst)].iloc[0]
    record.check("disjoint_small_n", f"models on disjoint sets of N = {lo} images: RP <= 3 x chance + 0.05",
                 at_lo["rp"], "<=", 3 * at_lo["chance"] + 0.05, source=SOURCE,
                 detail=f"width {worst}; chance {at_lo['chance']:.3f}; both copy their own images on "
                        f"{at_lo['both copy']:.3f} of seeds",
                 interval=interval(lambda idx: max(excess(lo, idx).values()) + 3 * at_lo["chance"] + 0.05))

    n_same = min(n for n in same_data if n >= hi)  # the sweep's size at or just above the largest pair's
    same = np.stack([h.mean(0) for h in same_data[n_same].values()])  # (width pairs, seeds)
    lowest = float(same.mean(1).min())
    weakest = min(widths, key=lambda w: agreed[(hi, w)].mean())
    record.check("disjoint_large_n", f"models on disjoint sets of N = {hi} images agree within 0.1 of the "
                 f"lowest same-data width pair at N = {n_same}: RP >= that pair's RP - 0.1",
                 agreed[(hi, weakest)].mean(), ">=", lowest - 0.1, source=SOURCE,
                 detail=f"width {weakest}; lowest same-data pair {lowest:.3f}; chance "
                        f"{pairs[(pairs.n == hi) & (pairs.width == weakest)]['chance'].iloc[0]:.3f}",
                 interval=interval(lambda idx: agreed[(hi, weakest)][idx].mean() - same[:, idx].mean(1).min()
                                   + lowest))

    def apart(idx=slice(None)):  # per width: doublings between the disjoint curve's half-way N and GL's 0.5
        out = {}
        for w in widths:
            rp = pd.Series({n: agreed[(n, w)][idx].mean() for n in ns})
            gl = pd.Series({n: 1 - c[:, idx].mean() for n, c in copied[w].items()})
            out[w] = doublings(half_way(rp), first_reaching(gl, 0.5))
        return out

    found = apart()
    far = max(widths, key=lambda w: np.nan_to_num(found[w], nan=np.inf))
    rp_far = pd.Series({n: agreed[(n, far)].mean() for n in ns})
    gl_far = pd.Series({n: 1 - c.mean() for n, c in copied[far].items()})
    record.check("disjoint_tracks_gl", "the N where the disjoint pair's RP first reaches half-way between its ends "
                 "lies within one doubling of the N where GL first reaches 0.5 (log-N interpolation)",
                 found[far], "<=", 1.0, source=SOURCE,
                 detail=f"width {far}: half-way at N = {half_way(rp_far):.0f}, GL 0.5 at N = "
                        f"{first_reaching(gl_far, 0.5):.0f}",
                 interval=interval(lambda idx: max(apart(idx).values())))


def theory_claims(theory_rp: pd.DataFrame, gaussian: np.ndarray, trained: dict, record) -> None:
    """Check notebook 08's disjoint-data claims (replications/02_disjoint_data.md): D* of A against D* of B near
    chance at every N, and at the largest N the Gaussian denoisers' agreement across the two sets within 0.15 of
    every trained pair's. ``theory_rp``: ``theory_pairs``; ``gaussian`` and ``trained`` ({width: ...}): per seed,
    whether the Gaussian pair's and each trained pair's samples agree at the largest N (the same seeds)."""
    opt = theory_rp[theory_rp.theory == "D*"].set_index("n")
    n = (opt["rp"] - 3 * opt["chance"]).idxmax()
    record.check("optimal_disjoint_chance", "D* of set A against D* of set B: RP <= 3 x chance + 0.05 at every N "
                 "(the N where it is highest above that bound)", opt.loc[n, "rp"], "<=",
                 3 * opt.loc[n, "chance"] + 0.05, source=SOURCE,
                 detail=f"N = {n}; chance {opt.loc[n, 'chance']:.3f}; highest RP over N {opt['rp'].max():.3f}")
    hi = int(theory_rp["n"].max())
    w = max(trained, key=lambda k: abs(gaussian.mean() - trained[k].mean()))
    record.check("gaussian_predicts_disjoint", f"at N = {hi}, the Gaussian denoisers of sets A and B agree as the "
                 "trained pairs do: |RP(Gaussian A, Gaussian B) - RP(trained A, trained B)| <= 0.15",
                 abs(gaussian.mean() - trained[w].mean()), "<=", 0.15, source=SOURCE,
                 detail=f"Gaussian pair {gaussian.mean():.3f}, trained pair {trained[w].mean():.3f} (width {w})",
                 interval=claims_lib.bootstrap(lambda idx: max(abs(gaussian[idx].mean() - t[idx].mean())
                                                               for t in trained.values()), len(gaussian)))

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

from . import metrics
from .loop import training_set

KINDS = ("both copy", "one copies", "neither copies")


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

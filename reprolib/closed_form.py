"""Closed-form theories beside notebook 02's trained U-Nets (notebook 08): which theory explains them at each N.

A theory is named: ``"D*"`` (``optimal.OptimalDenoiser``, the memorization regime's), ``"Gaussian"``
(``gaussian.GaussianDenoiser``) and ``"patch k"`` (``patches.PatchDenoiser`` with side k), the generalization
regime's candidates. Each is built on the training subset of one N, sampled like the U-Nets (Heun, the same steps,
the same seeds; samples cached in the store), and compared with them at two levels:

- samples: RP (``regimes.pair_table`` with the theory as reference) and its chance level;
- denoisers: r^2 of the theory's D(x; sigma) as a prediction of the U-Net's, on training and held-out images
  with the same noise, r^2 = 1 - sum ||D_model - D_theory||^2 / sum ||D_model - mean over images of D_model||^2.
"""

from __future__ import annotations

import pandas as pd
import torch

from . import banks, codehash, data, fitting, samplers
from .gaussian import GaussianDenoiser
from .optimal import OptimalDenoiser
from .patches import PatchDenoiser

def names(patch_sizes) -> list[str]:
    """D*, the Gaussian, then one patch denoiser per side."""
    return ["D*", "Gaussian", *[f"patch {k}" for k in patch_sizes]]


def build(name: str, train: torch.Tensor):
    """The denoiser a theory's name stands for, on the training images ``train``."""
    if name == "D*":
        return OptimalDenoiser(train)
    if name == "Gaussian":
        return GaussianDenoiser(train)
    if name.startswith("patch "):
        return PatchDenoiser(train, int(name.split()[1]))
    raise ValueError(f"Unknown theory '{name}': use 'D*', 'Gaussian' or 'patch <odd side>'.")


def require_models(models: dict, store) -> None:
    """Fail at once, before any long work, when the store lacks some of notebook 02's trained models."""
    missing = [key for key, cfg in models.items() if not fitting.is_fitted(cfg, store)]
    if missing:
        shown = ", ".join(f"N={n} width {w} seed {s}" for n, w, s in missing[:4])
        raise RuntimeError(
            f"run notebook 02 first: the store at {store.root} lacks {len(missing)} of notebook 02's {len(models)} "
            f"models at this profile ({shown}{', ...' if len(missing) > 4 else ''}). Notebook 08 trains nothing; "
            f"point REPRO_STORE at the store notebook 02 filled, or run notebook 02 with the same profile.")


def samples(name: str, P: dict, n: int, seeds, store, exclude: tuple | None = None) -> torch.Tensor:
    """Samples of theory ``name`` on the first ``n`` images of ``P["data"]`` (of those outside its subset
    ``exclude`` = (size, seed), as ``TrainConfig.exclude``), as ``banks.samples`` draws the U-Nets' (Heun,
    ``P["sample_steps"]``, Karras schedule, clipped to [-1, 1]); cached in the store (kind "samples")."""
    seeds = [int(s) for s in seeds]
    key = {"theory": name, "data": P["data"], "n": n, "subset_seed": 0, "sampler": "heun", "schedule": "karras",
           "steps": P["sample_steps"],
           "seeds": [seeds[0], len(seeds)] if seeds == list(range(seeds[0], seeds[0] + len(seeds))) else seeds,
           "code": codehash.of("closed-form samples"), **({"exclude": list(exclude)} if exclude else {})}
    if store.exists("samples", key, "x"):
        return store.load("samples", key, "x")["x"]
    full = data.load(P["data"])
    train = (full.outside(*exclude) if exclude else full).subset(n).images
    den = build(name, train).to(P["device"])
    x = samplers.sample(den, seeds, P["shape"], "heun", P["sample_steps"], device=P["device"]).clamp(-1, 1)
    store.save("samples", key, "x", {"x": x})
    return x


def r2(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of the variance of ``target`` across images (per pixel) that ``pred`` explains."""
    t, p = target.reshape(len(target), -1).double(), pred.reshape(len(pred), -1).double()
    total = ((t - t.mean(0)) ** 2).sum()
    return float(1 - ((t - p) ** 2).sum() / total) if total > 0 else float("nan")


def probe_images(P: dict, n: int, count: int) -> dict[str, torch.Tensor]:
    """Up to ``count`` training images of the subset of ``n`` and ``count`` held-out ones (the images after the
    subset in the same permutation; none when the subset is the whole data set)."""
    full = data.load(P["data"])
    order = full.subset(len(full)).images  # the one permutation every subset is a prefix of
    return {"training": order[:min(n, count)], "held-out": order[n:n + count]}


def agreement(models: dict, theory_names, P: dict, store, sigmas, count: int, seed: int = 0) -> pd.DataFrame:
    """r^2 of every theory's D(x; sigma) against every U-Net's, per (N, width, seed, theory, sigma, split):
    x = y + sigma n on ``probe_images``, the same n for the model and the theories. Cached in the store (kind
    "tables"), keyed by the models' keys and the code that computes it."""
    key = {"table": "denoiser agreement", "models": sorted((list(k), cfg.key_dict()) for k, cfg in models.items()),
           "theories": list(theory_names), "data": P["data"], "sigmas": [float(s) for s in sigmas], "count": count,
           "seed": seed, "code": codehash.of("denoiser agreement")}
    return banks.table(store, key, lambda: _agreement(models, theory_names, P, store, sigmas, count, seed))


@torch.no_grad()
def _agreement(models: dict, theory_names, P: dict, store, sigmas, count: int, seed: int) -> pd.DataFrame:
    rows = []
    for n in sorted({key[0] for key in models}):
        train = data.load(P["data"]).subset(n).images
        theories = {name: build(name, train).to(P["device"]) for name in theory_names}
        nets = {key: fitting.fit(cfg, store, False, P["device"]) for key, cfg in models.items() if key[0] == n}
        for split, y in probe_images(P, n, count).items():
            if not len(y):
                continue
            g = torch.Generator().manual_seed(seed)
            for sigma in sigmas:
                x = (y + sigma * torch.randn(y.shape, generator=g)).to(P["device"])
                s = torch.tensor(float(sigma), device=P["device"])
                told = {name: d(x, s).float().cpu() for name, d in theories.items()}
                for (_, w, k), net in nets.items():
                    out = net(x, s).float().cpu()
                    rows += [dict(n=n, width=w, seed=k, theory=name, sigma=float(sigma), split=split,
                                  r2=r2(pred, out)) for name, pred in told.items()]
    return pd.DataFrame(rows)


def switch_point(rp: pd.DataFrame) -> float:
    """From ``rp`` (index N, columns "D*" and "generalization": mean RP over widths), the smallest N from which
    the generalization theory scores above D* at every larger N; NaN when it does not at the largest N."""
    wins = (rp["generalization"] > rp["D*"]).sort_index()
    if not len(wins) or not wins.iloc[-1]:
        return float("nan")
    losing = wins.index[~wins.values]
    later = wins.index[wins.index > losing.max()] if len(losing) else wins.index
    return float(later.min())


def best(table: pd.DataFrame, candidates) -> pd.Series:
    """Per N, the name of the candidate theory with the highest mean RP over widths (``table``: N x theory)."""
    return table[list(candidates)].idxmax(axis=1)


def ratio_to_chance(rp: float, chance: float, seeds: int) -> float:
    """RP over its chance level, the chance floored at one seed in ``seeds`` (a chance of 0 was not measured as 0,
    only as below 1 / seeds)."""
    return float(rp / max(chance, 1.0 / seeds))


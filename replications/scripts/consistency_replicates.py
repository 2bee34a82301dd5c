"""Why notebook 01's one-step consistency row is a draw (issue 36, point 4): its numbers in every training replicate
of a store, read only (``regimes.Sealed``: it trains and samples nothing, and stops if a replicate's notebook 01 has
not run).

For each replicate r of the store, at the cpu profile (``--profile``) on notebook 01's seeds:
- ``consistency_rp`` as the notebook computes it (lowest RP of the one-step row against the other deterministic
  rows of replicate r) and the median, and the same with the threshold at 0.85 and 0.95: is the row near the
  threshold's edge (Pearson 0.9), where round-off decides which side a sample falls?
- the median per-seed Pearson similarity of the one-step sample to replicate r's U-Net EDM sample;
- the pixel Frechet distance of its samples to the real digits (``quality.frechet``) beside the U-Net EDM's and the
  real data's floor, and the mean training loss of its last 600 steps (``train.losses``);
and between replicates: RP of each replicate's one-step row with every other's, and of the U-Net EDM's likewise.

    python replications/scripts/consistency_replicates.py --store /root/companion-store --replicates 0 1
"""

from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np

from reprolib import banks, data, metrics, profiles, quality, regimes, train, zoo
from reprolib.store import Store

ONE_STEP, EDM = "U-Net CT (1 step)", "U-Net EDM (Heun)"


def replicate(r: int, store, profile: str = "cpu") -> tuple[dict, dict]:
    """Replicate r's deterministic samples of notebook 01 (name -> images) and its variants."""
    P = profiles.settings("01", profile, replicate=r)
    variants = {v.name: v for v in zoo.section1(P) if not (v.sampler == "consistency" and (v.steps or 1) > 1)}
    seeds = list(range(100_000, 100_000 + P.seeds))
    return {n: banks.generate(v, store, seeds, P) for n, v in variants.items()}, variants


def rp(sim, a, b, threshold: float) -> float:
    return float((metrics.paired(sim, a, b) > threshold).float().mean())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="the store of a cpu run of several replicates")
    parser.add_argument("--replicates", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--profile", default="cpu", choices=profiles.NAMES)
    args = parser.parse_args(argv)
    store = regimes.Sealed(Store(args.store))
    P = profiles.settings("01", args.profile)
    sim = metrics.backend(P.similarity, device=P.device, pixel_threshold=P.pixel_threshold)
    real = data.load(P.data).images
    try:
        runs = {r: replicate(r, store, args.profile) for r in args.replicates}
    except regimes.Missing as err:
        sys.exit(f"{args.store} lacks a replicate's notebook 01 samples ({err}). Run `paper_figures.py --all "
                 f"--profile {args.profile} --replicates R` with REPRO_STORE={args.store} first.")
    print(f"real digits' own floor (Frechet, two halves): {quality.real_floor(real):.2f}\n")
    print("| replicate | consistency_rp (lowest / median, > 0.9) | lowest at > 0.85 | lowest at > 0.95 | "
          "median Pearson with U-Net EDM | Frechet one-step | Frechet U-Net EDM | CT loss, last 600 steps |")
    print("|---|---|---|---|---|---|---|---|")
    for r, (samples, variants) in runs.items():
        one = samples[ONE_STEP]
        others = [n for n in samples if n != ONE_STEP and not n.startswith("U-Net CT")]
        at = {t: [rp(sim, one, samples[n], t) for n in others] for t in (0.85, 0.9, 0.95)}
        pearson = float(metrics.paired(sim, one, samples[EDM]).median())
        loss = float(np.mean(train.losses(variants[ONE_STEP].cfg, store)[-600:]))
        print(f"| {r} | {min(at[0.9]):.3f} / {np.median(at[0.9]):.3f} | {min(at[0.85]):.3f} | {min(at[0.95]):.3f} | "
              f"{pearson:.3f} | {quality.frechet(one, real):.2f} | {quality.frechet(samples[EDM], real):.2f} | "
              f"{loss:.4f} |")
    print("\n| pair of replicates | one-step CT with itself | U-Net EDM with itself |\n|---|---|---|")
    for r, s in itertools.combinations(runs, 2):
        a, b = runs[r][0], runs[s][0]
        print(f"| {r} - {s} | {rp(sim, a[ONE_STEP], b[ONE_STEP], 0.9):.3f} | {rp(sim, a[EDM], b[EDM], 0.9):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The one-step consistency row against training length (issue 36, point 4): notebook 01's consistency model of one
training replicate trained ``--steps`` steps instead of 6,000, with EMA snapshots every ``--every``; at each
snapshot, its one-step samples on notebook 01's seeds against that replicate's other deterministic rows (RP at
Pearson > 0.9, lowest and median, as ``01.consistency_rp``), its median Pearson with the U-Net EDM and its pixel
Frechet distance to the digits. An observation, not a claim: a longer recipe is adopted only once pre-registered.

The iCT curriculum follows the total length (``formulations.Consistency.levels``), so the 6,000-step snapshot of a
12,000-step run is not the 6,000-step model of the notebook; the notebook's model is the first row.

    python replications/scripts/consistency_length.py --store /root/companion-store --replicate 0
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from reprolib import banks, data, fitting, metrics, profiles, quality, samplers, train, zoo
from reprolib.store import Store

ONE_STEP, EDM = "U-Net CT (1 step)", "U-Net EDM (Heun)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--replicate", type=int, default=0)
    parser.add_argument("--steps", type=int, default=12_000)
    parser.add_argument("--every", type=int, default=3_000)
    parser.add_argument("--profile", default="cpu", choices=profiles.NAMES)
    args = parser.parse_args(argv)
    if args.steps % args.every:
        parser.error(f"--every {args.every} must divide --steps {args.steps}")
    store, P = Store(args.store), profiles.settings("01", args.profile, replicate=args.replicate)
    seeds = list(range(100_000, 100_000 + P.seeds))
    variants = [v for v in zoo.section1(P) if not (v.sampler == "consistency" and (v.steps or 1) > 1)]
    rows = {v.name: banks.generate(v, store, seeds, P) for v in variants}  # trains nothing after notebook 01 ran
    one_step = next(v for v in variants if v.name == ONE_STEP)
    longer = one_step.cfg.replace(steps=args.steps, snapshot_every=args.every)
    fitting.fit(longer, store, progress=False, device=P.device)
    sim = metrics.backend(P.similarity, device=P.device, pixel_threshold=P.pixel_threshold)
    real = data.load(P.data).images
    others = [n for n in rows if not n.startswith("U-Net CT")]

    def line(what: str, images) -> str:
        rp = [float((metrics.paired(sim, images, rows[n]) > sim.default_threshold).float().mean()) for n in others]
        pearson = float(metrics.paired(sim, images, rows[EDM]).median())
        return (f"| {what} | {min(rp):.3f} / {np.median(rp):.3f} | {pearson:.3f} | "
                f"{quality.frechet(images, real):.2f} |")

    print(f"replicate {args.replicate}, {len(seeds)} seeds; RP against: {', '.join(others)}\n")
    print("| consistency model | RP lowest / median | median Pearson with U-Net EDM | pixel Frechet |\n|---|---|---|---|")
    print(line(f"the notebook's ({one_step.cfg.steps} steps)", rows[ONE_STEP]))
    for step in range(args.every, args.steps + 1, args.every):
        model = train.snapshot(longer, step, store, device=P.device)
        images = samplers.sample(model, seeds, P.shape, "consistency", 1, "consistency", device=P.device).clamp(-1, 1)
        print(line(f"{step} of {args.steps} steps", images), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

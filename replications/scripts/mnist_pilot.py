"""The mnist rung's pilot (replications/mnist_profile.md): do notebook 02's widths memorize the smallest N and
generalize at the largest?

Trains notebook 02's mnist configs at N = 64 and N = 32,768 (every width, the profile's length, or ``--steps``)
into ``$REPRO_STORE``, where the full run finds them again, samples ``--seeds`` seeds of each and prints the
memorized fraction (the ratio test) with the protocol's verdict: accepted when every width memorizes >= 0.9 at the
smallest N and <= 0.1 at the largest. ``--override`` takes settings as paper_figures.py does (``widths=[16, 32,
64]``, ``steps=...``), for the protocol's one allowed change.

    python replications/scripts/mnist_pilot.py [--seeds 500] [--override KEY=VALUE ...] [--out pilot.md]
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from reprolib import banks, data, fitting, machine, metrics, profiles, zoo  # noqa: E402
from reprolib.store import Store  # noqa: E402

MEMORIZED, GENERALIZED = 0.9, 0.1  # the protocol's acceptance bounds


def pilot(P: dict, store: Store, seeds) -> list[dict]:
    """Memorized fraction of each width's samples at the sweep's smallest and largest N."""
    ends = (min(P["sizes"]), max(P["sizes"]))
    configs = {k: cfg for k, cfg in zoo.regimes(P).items() if k[0] in ends}
    t0 = time.perf_counter()
    fitting.fit_all(list(configs.values()), store, P)
    trained = time.perf_counter() - t0
    full, rows = data.load(P["data"]), []
    for (n, w, s), cfg in sorted(configs.items()):
        x = banks.samples(cfg, store, seeds, P)
        rows.append(dict(n=n, width=w, seed=s, memorized=float(metrics.memorized(x, full.subset(n).images).double()
                                                                .mean()), steps=cfg.steps, train_s=trained))
    return rows


def verdict(rows: list[dict]) -> tuple[bool, list[str]]:
    """The protocol's acceptance, and one line per width that fails it."""
    small, large = min(r["n"] for r in rows), max(r["n"] for r in rows)
    fails = [f"width {r['width']} memorizes {r['memorized']:.3f} at N = {r['n']} (needs "
             f"{'>= ' + str(MEMORIZED) if r['n'] == small else '<= ' + str(GENERALIZED)})" for r in rows
             if (r["n"] == small and r["memorized"] < MEMORIZED) or (r["n"] == large and r["memorized"] > GENERALIZED)]
    return not fails, fails


def _override(text: str):
    key, _, value = text.partition("=")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="mnist", choices=profiles.NAMES)
    ap.add_argument("--seeds", type=int, default=500)
    ap.add_argument("--override", type=_override, nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", type=Path, help="also write the table and the verdict here (Markdown)")
    a = ap.parse_args(argv)
    P = profiles.settings("02", a.profile, **dict(a.override))
    machine.apply(P)
    seeds = list(range(100_000, 100_000 + a.seeds))
    start = time.perf_counter()
    rows = pilot(P, Store(), seeds)
    ok, fails = verdict(rows)
    lines = [f"mnist pilot ({machine.describe(P)}; {time.perf_counter() - start:.0f} s, training "
             f"{rows[0]['train_s']:.0f} s; overrides {dict(a.override) or 'none'})", "",
             "| N | width | steps | memorized |", "|---|---|---|---|",
             *(f"| {r['n']} | {r['width']} | {r['steps']} | {r['memorized']:.3f} |" for r in rows), "",
             "accepted" if ok else "not accepted: " + "; ".join(fails)]
    print("\n".join(lines))
    if a.out:
        a.out.write_text("\n".join(lines) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

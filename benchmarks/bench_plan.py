"""How long a profile's training takes on W workers: ``sweep.makespan`` (the training pool's list scheduler,
simulated) over the measured CPU seconds per step (``reprolib/step_costs.json``, one thread), for several W, with
the longest chain of dependent jobs (no number of workers trains faster than it) and the total.

    python benchmarks/bench_plan.py [--workers 2 4 8 16 32] [--profile cpu] [--write]

A prediction on the machine the step costs were measured on: two or more workers side by side each run slower
than one alone (1.23x on two cores here, benchmarks/results.md), and another machine's cores are faster or slower.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reprolib import profiles, sweep, zoo  # noqa: E402
from reprolib.store import Store  # noqa: E402

NOTEBOOKS = ("01", "02", "04", "05", "06", "07")


def plan(profile: str, device: str = "cpu"):
    """The jobs of every notebook's training plan at ``profile`` from an empty store, their costs and waits."""
    with tempfile.TemporaryDirectory() as empty:
        store = Store(empty)
        configs = [c for nb in NOTEBOOKS for c in zoo.plan(nb, profiles.settings(nb, profile, device=device), store)]
        return zoo.schedule(configs, store, device=device)


def critical_path(costs, after) -> tuple[float, list[int]]:
    """The longest chain of jobs that wait for one another: its length and its jobs, first to last."""
    prio = sweep.priorities(costs, after)
    waiting = [[j for j, needs in enumerate(after) if i in needs] for i in range(len(costs))]
    chain = [max((j for j in range(len(costs)) if not after[j]), key=lambda j: prio[j])]
    while waiting[chain[-1]]:
        chain.append(max(waiting[chain[-1]], key=lambda j: prio[j]))
    return prio[chain[0]], chain


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    ap.add_argument("--profile", default="cpu", choices=profiles.NAMES)
    ap.add_argument("--write", action="store_true", help="append the table to benchmarks/results.md")
    a = ap.parse_args(argv)
    jobs, costs, after = plan(a.profile)
    if any(zoo.cost(j) is None for j in jobs):
        print(f"not every job of the {a.profile} plan has a measured step cost (benchmarks/bench_jobs.py)")
        return 2
    length, chain = critical_path(costs, after)
    rows = [f"| {w} | {sweep.makespan(costs, after, w)[0] / 60:.1f} |" for w in a.workers]
    text = "\n".join([
        f"\n## {datetime.datetime.now():%Y-%m-%d %H:%M} - the {a.profile} plan's training on W one-thread workers "
        f"(benchmarks/bench_plan.py)\n",
        f"{len(jobs)} jobs, {sum(costs):,.0f} CPU s at the one-thread step costs of `reprolib/step_costs.json`; "
        f"the scheduler simulated with exact costs.\n",
        "| workers | training (min) |", "|---|---|", *rows, "",
        f"No number of workers does better than the longest chain, **{length / 60:.1f} min**: "
        + " -> ".join(f"{zoo.describe(jobs[j])} ({costs[j]:.0f} s)" for j in chain) + ".\n"])
    print(text)
    if a.write:
        with open(Path(__file__).with_name("results.md"), "a") as out:
            out.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How long a profile's training takes on W workers: ``sweep.makespan`` (the training pool's list scheduler,
simulated) over the measured CPU seconds per step (``reprolib/step_costs.json``, one thread), for several W, with
the longest chain of dependent jobs (no number of workers trains faster than it) and the total.

    python benchmarks/bench_plan.py [--workers 2 4 8 16 32] [--profile cpu] [--replicates 3] [--write]
    python benchmarks/bench_plan.py --profile paper --gpu-rates benchmarks/gpu_rates_h200.json [--precision bf16]

A prediction on the machine the step costs were measured on: two or more workers side by side each run slower
than one alone (1.23x on two cores here, benchmarks/results.md), and another machine's cores are faster or slower.

With ``--gpu-rates`` a worker is one GPU (the paper profile trains one model per card) and a step costs what
``gpu_hours.py`` makes of the rates measured on one H200 (measured, scaled by FLOPs, or the launch-bound floor);
a stack of K models costs K of its models' steps (no gain assumed: an upper bound where small models stack). The
paper profile's sampling (``gpu_hours.py``'s sample jobs) comes after and is given as GPU hours, split over the
GPUs at best.

With ``--replicates R`` the runner trains R training replicates one pool after another (``paper_figures.prefit``),
each as a run of that replicate alone would: R times one replicate's time (their costs are the same; only their
seeds differ).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_hours, beside this file
from reprolib import fitting, profiles, sweep, zoo  # noqa: E402
from reprolib.store import Store  # noqa: E402

NOTEBOOKS = ("01", "02", "04", "05", "06", "07")


def plans(profile: str, device: str = "cpu") -> dict[str, list]:
    """Each notebook's training plan at ``profile`` on ``device``, from an empty store."""
    with tempfile.TemporaryDirectory() as empty:
        store = Store(empty)
        return {nb: zoo.plan(nb, profiles.settings(nb, profile, device=device), store) for nb in NOTEBOOKS}


def plan(profile: str, device: str = "cpu", per_step=None):
    """The jobs of every notebook's training plan at ``profile`` from an empty store, their costs and waits;
    ``per_step``: a function of the jobs giving seconds per step by ``fitting.cost_class`` (default: the measured CPU
    step costs)."""
    configs = [c for cfgs in plans(profile, device).values() for c in cfgs]
    with tempfile.TemporaryDirectory() as empty:
        store = Store(empty)
        most = fitting.max_stack(profiles.settings("02", profile, device=device))
        jobs = fitting.schedule(configs, store, device=device, max_stack=most)[0]
        return fitting.schedule(configs, store, device=device, per_step=per_step(jobs) if per_step else None,
                            max_stack=most)


def gpu_step_costs(rates: dict, precision: str):
    """``plan``'s ``per_step`` on one GPU a worker: each model's GPU seconds (``gpu_hours.seconds``) over its steps,
    a stack's the sum of its models'."""
    import gpu_hours

    def per_step(jobs) -> dict:
        costs = {}
        for job in jobs:
            members = list(getattr(job, "cfgs", [job]))
            for c in [*members, *(a for m in members for a in fitting.ancestors(m))]:
                costs.setdefault(fitting.cost_class(c), gpu_hours.seconds(gpu_hours.training(c), rates, precision)[0]
                                 / c.steps)
            if len(members) > 1:
                costs[fitting.cost_class(job)] = sum(costs[fitting.cost_class(c)] for c in members)
        return costs

    return per_step


def sampling_hours(rates: dict, precision: str) -> float:
    """GPU hours of the paper profile's sampling (``gpu_hours.estimate``'s sample jobs, notebooks in order)."""
    import gpu_hours

    return sum(job["hours"][precision] for row in gpu_hours.estimate(rates)["rows"] for job in row["jobs"]
               if job["kind"] == "sample")


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
    ap.add_argument("--workers", type=int, nargs="+", default=None,
                    help="worker counts (default 2 4 8 16 32; GPUs 1 8 64 with --gpu-rates)")
    ap.add_argument("--profile", default="cpu", choices=profiles.NAMES)
    ap.add_argument("--gpu-rates", metavar="JSON", help="a worker is a GPU at these measured rates (gpu_hours.py)")
    ap.add_argument("--precision", default="tf32", choices=("tf32", "bf16"), help="training precision on the GPU")
    ap.add_argument("--replicates", type=int, default=1,
                    help="training replicates, one pool after another (paper_figures.py --replicates)")
    ap.add_argument("--write", action="store_true", help="append the table to benchmarks/results.md")
    a = ap.parse_args(argv)
    if a.gpu_rates:
        import gpu_hours

        rates = gpu_hours.load_rates(a.gpu_rates)
        device = "cuda"
        jobs, costs, after = plan(a.profile, device, gpu_step_costs(rates, a.precision))
        workers, unit = a.workers or [1, 8, 64], ("GPU", "h", 3600, "GPU")
        basis = f"GPU seconds per step from {a.gpu_rates} ({rates['device']}, {a.precision} training)"
    else:
        device = "cpu"
        jobs, costs, after = plan(a.profile, device)
        if any(fitting.cost(j) is None for j in jobs):
            print(f"not every job of the {a.profile} plan has a measured step cost (benchmarks/bench_jobs.py)")
            return 2
        workers, unit = a.workers or [2, 4, 8, 16, 32], ("one-thread worker", "min", 60, "CPU")
        basis = "the one-thread step costs of `reprolib/step_costs.json`"
    who, per, scale, kind = unit
    length, chain = critical_path(costs, after)
    R = a.replicates
    rows = [f"| {w} | {sweep.makespan(costs, after, w)[0] / scale:.1f} |"
            + (f" {R * sweep.makespan(costs, after, w)[0] / scale:.1f} |" if R > 1 else "") for w in workers]
    chained = {repr(c) for j in chain for c in getattr(jobs[j], "cfgs", [jobs[j]])}
    notebooks = sorted(nb for nb, cfgs in plans(a.profile, device).items() if chained & set(map(repr, cfgs)))
    text = "\n".join([
        f"\n## {datetime.datetime.now():%Y-%m-%d %H:%M} - the {a.profile} plan's training on W {who}s "
        f"(benchmarks/bench_plan.py)\n",
        f"{len(jobs)} jobs, {sum(costs) / scale:,.1f} {kind} {per} at {basis}; the scheduler simulated with exact "
        "costs.\n",
        f"| {who}s | training ({per}) |" + (f" {R} replicates ({per}) |" if R > 1 else ""),
        "|---|---|" + ("---|" if R > 1 else ""), *rows, "",
        f"No number of {who}s does better than the longest chain, **{length / scale:.1f} {per}** (notebook "
        f"{', '.join(notebooks)}): " + " -> ".join(f"{fitting.describe(jobs[j])} ({costs[j] / scale:.1f} {per})"
                                                  for j in chain) + ".\n"])
    if a.gpu_rates and a.profile != "paper":  # gpu_hours.py lists the paper profile's sample jobs only
        text += "The notebooks' sampling is not estimated here (gpu_hours.py knows the paper profile's alone).\n"
    elif a.gpu_rates:
        hours = sampling_hours(rates, a.precision)
        text += (f"Then the notebooks' sampling: {hours:,.1f} GPU h (float32), {hours / max(workers):,.1f} h on "
                 f"{max(workers)} GPUs at best.\n")
    print(text)
    if a.write:
        with open(Path(__file__).with_name("results.md"), "a") as out:
            out.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How much arithmetic the cpu profile's training is, and how close to this CPU's peak it already runs: the floor
under a cold ``paper_figures.py --all --profile cpu`` that no scheduling or kernel choice can go below.

    nice -n 10 .venv/bin/python benchmarks/bench_flops.py [--repeats 3]

For one job of each ``fitting.cost_class`` (``bench_jobs.jobs``): the floating-point operations of one training step,
counted by ``torch.utils.flop_counter.FlopCounterMode`` over a LONG- and a SHORT-step run (their difference, so
set-up cancels; matrix products and convolutions, forward and backward, which is where the arithmetic is), and the
CPU seconds of one step on one thread, timed as ``bench_jobs`` times them. A stack's operations are those of its
members trained alone (the counter miscounts the grouped convolutions vmap dispatches to). The peak is one
thread's float32 matrix product (2048 x 2048, median of 5). Summed over the training plan (``fitting.schedule``, each
job with the ancestors it trains): total operations, the floor ops / (2 cores x peak), and the plan's CPU time at
the measured step costs. Appends a dated section to ``benchmarks/results.md``.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_jobs  # noqa: E402

from reprolib import fitting, profiles, stacked, zoo  # noqa: E402
from reprolib.store import Store  # noqa: E402

SHORT, LONG = 2, 6
WORKERS = 2


def step_flops(job) -> float | None:
    """Floating-point operations of one training step of ``job``; None where the counter cannot follow the step
    (the GANs' gradient penalty differentiates through a gradient, which its module hooks refuse)."""
    if isinstance(job, stacked.Stack):
        return sum(step_flops(c) for c in job.cfgs)
    counts = []
    for steps in (SHORT, LONG):
        with tempfile.TemporaryDirectory() as root:
            try:
                with FlopCounterMode(display=False) as counter:
                    fitting.fit(bench_jobs.shortened(job, steps), Store(root), progress=False)
            except RuntimeError:
                return None
        counts.append(counter.get_total_flops())
    return (counts[1] - counts[0]) / (LONG - SHORT)


def _giga(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value / 1e9:.{digits}f}"


def _rate(flops: float | None, seconds: float) -> float | None:
    return None if flops is None else flops / seconds


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of one float32 n x n matrix product on the current threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def plan_totals(per_step: dict[str, float]) -> tuple[list, list[float]]:
    """The cpu plan's jobs (as ``fitting.fit_all`` would run them from an empty store) and each one's total under
    ``per_step`` (a value per cost class: operations or seconds)."""
    with tempfile.TemporaryDirectory() as empty:
        store = Store(empty)
        configs = [c for nb in bench_jobs.NOTEBOOKS for c in zoo.plan(nb, profiles.settings(nb, "cpu"), store)]
        jobs, totals, _ = fitting.schedule(configs, store, per_step=per_step)
    return jobs, totals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--note", default="", help="a line about the machine's state")
    args = ap.parse_args()
    torch.set_num_threads(1)
    peak = matmul_peak()
    print(f"float32 matrix product, 1 thread: {peak / 1e9:.1f} GFLOP/s", flush=True)
    flops, seconds = {}, {}
    for name, job in bench_jobs.jobs().items():
        flops[name] = step_flops(job)
        seconds[name] = bench_jobs.step_seconds(job, args.repeats)
        print(f"{_giga(flops[name], 3):>7} GFLOP  {seconds[name] * 1e3:7.1f} ms  "
              f"{_giga(_rate(flops[name], seconds[name]), 1):>5} GFLOP/s  {name}", flush=True)
    uncounted = sorted(n for n, f in flops.items() if f is None)
    jobs, job_flops = plan_totals({n: f or 0.0 for n, f in flops.items()})
    _, job_seconds = plan_totals(seconds)
    _, job_uncounted = plan_totals({n: seconds[n] if n in uncounted else 0.0 for n in seconds})
    total_flops, total_seconds = sum(job_flops), sum(job_seconds)
    counted_seconds = total_seconds - sum(job_uncounted)
    floor = total_flops / (WORKERS * peak)
    rows = "\n".join(f"| {n} | {_giga(flops[n], 3)} | {seconds[n] * 1e3:.1f} | "
                     f"{_giga(_rate(flops[n], seconds[n]), 1)} |"
                     for n in sorted(flops, key=lambda n: _rate(flops[n], seconds[n]) or -1.0))
    text = (
        f"\n## {datetime.datetime.now():%Y-%m-%d %H:%M} - arithmetic of the cpu profile's training "
        f"(benchmarks/bench_flops.py)\n\n"
        f"{platform.machine()}, torch {torch.__version__}, 1 thread; step time "
        f"median of {args.repeats} ({bench_jobs.LONG}- minus {bench_jobs.SHORT}-step runs). {args.note}\n\n"
        f"float32 matrix product (2048 x 2048, 1 thread): **{peak / 1e9:.1f} GFLOP/s**.\n\n"
        "| job (fitting.cost_class) | GFLOP per step | ms per step | GFLOP/s |\n|---|---|---|---|\n"
        f"{rows}\n\n"
        f"The plan ({len(jobs)} jobs from an empty store): **{total_flops / 1e12:.1f} TFLOP** of training "
        f"counted, {total_seconds:,.0f} CPU s at these step costs, so {total_seconds / WORKERS / 60:.1f} min on "
        f"{WORKERS} workers. The counted jobs run at {total_flops / counted_seconds / 1e9:.1f} GFLOP/s on average, "
        f"{total_flops / counted_seconds / peak:.0%} of the matrix-product peak; every counted step at that peak "
        f"would still take **{floor / 60:.1f} min** on {WORKERS} cores"
        + (f" (not counted: {', '.join(uncounted)}, {sum(job_uncounted):,.0f} CPU s of the plan)" if uncounted
           else "") + ".\n")
    print(text)
    with open(Path(__file__).with_name("results.md"), "a") as out:
        out.write(text)


if __name__ == "__main__":
    main()

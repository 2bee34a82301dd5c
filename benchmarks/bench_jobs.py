"""CPU seconds per training step of every kind of job the cpu profile trains: the cost model ``fitting.cost`` orders
the training pool by (the longest chain of work first).

    nice -n 10 .venv/bin/python benchmarks/bench_jobs.py [--repeats 3] [--write]

Every notebook's training plan (``zoo.plan``) at the cpu profile, grouped into jobs as ``fitting.fit_all`` groups
them (stacks of narrow U-Nets), is reduced to one job per ``fitting.cost_class``. Each is trained for ``SHORT`` and
for ``LONG`` steps from scratch in a fresh store on one thread (a fine-tuning's parent shortened to one step, so
that it costs the same in both runs), and the difference of the two runs' CPU time (``time.process_time``) over
``LONG - SHORT`` steps is its cost per step: set-up, data loading and saving cancel. Median of ``--repeats``.
``--write`` replaces ``reprolib/step_costs.json``; a dated table is appended to ``benchmarks/results.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reprolib import fitting, profiles, stacked, zoo  # noqa: E402
from reprolib.store import Store  # noqa: E402
from reprolib.train import TrainConfig  # noqa: E402

SHORT, LONG = 10, 40
NOTEBOOKS = ("01", "02", "03", "04", "05", "06", "07")


def jobs(profile: str = "cpu") -> dict[str, object]:
    """One job of each cost class among every notebook's plan at ``profile``, grouped as ``fitting.fit_all`` does
    (07's corner of the sweep alone too: it stacks differently when 02 has not run)."""
    with tempfile.TemporaryDirectory() as empty:
        store = Store(empty)
        plans = [zoo.plan(nb, profiles.settings(nb, profile), store) for nb in NOTEBOOKS]
    every = [c for plan in plans for c in plan]
    groups = stacked.group(list({repr(c): c for c in every}.values())) + stacked.group(plans[6])
    return {fitting.cost_class(j): j for j in groups}


def _short_parent(cfg: TrainConfig) -> TrainConfig:
    if cfg.init is None:
        return cfg
    return cfg.replace(init=dataclasses.asdict(_short_parent(TrainConfig(**cfg.init)).replace(steps=1)))


def shortened(job, steps: int):
    """``job`` trained for ``steps`` steps (every member of a stack), its parents for one."""
    if isinstance(job, stacked.Stack):
        return stacked.Stack(tuple(shortened(c, steps) for c in job.cfgs))
    if isinstance(job, TrainConfig):
        return _short_parent(job).replace(steps=steps, snapshot_every=None)
    return dataclasses.replace(job, steps=steps)


def cpu_seconds(job, steps: int) -> float:
    with tempfile.TemporaryDirectory() as root:
        t0 = time.process_time()
        fitting.fit(shortened(job, steps), Store(root), progress=False)
        return time.process_time() - t0


def step_seconds(job, repeats: int) -> float:
    """CPU seconds of one training step of ``job``: the median over ``repeats`` of (LONG-step run - SHORT-step run)
    / (LONG - SHORT)."""
    return statistics.median((cpu_seconds(job, LONG) - cpu_seconds(job, SHORT)) / (LONG - SHORT)
                             for _ in range(repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="replace reprolib/step_costs.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    todo = jobs()
    per_step = {}
    for name, job in todo.items():
        per_step[name] = step_seconds(job, args.repeats)
        print(f"{per_step[name] * 1000:8.1f} ms/step  {name}", flush=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    if args.write:
        fitting.STEP_COSTS.write_text(json.dumps({
            "measured": f"{stamp}, {platform.machine()}, torch {torch.__version__}, 1 thread, "
                        f"benchmarks/bench_jobs.py (median of {args.repeats})",
            "seconds_per_step": {k: round(v, 5) for k, v in sorted(per_step.items())}}, indent=1) + "\n")
    rows = "\n".join(f"| {name} | {per_step[name] * 1000:.1f} |" for name in sorted(per_step, key=per_step.get))
    with open(Path(__file__).with_name("results.md"), "a") as out:
        out.write(f"\n## {stamp} - cost of one training step per kind of job (benchmarks/bench_jobs.py)\n\n"
                  f"{platform.machine()}, torch {torch.__version__}, 1 thread, CPU ms per step from the difference "
                  f"of a {LONG}- and a {SHORT}-step run, median of {args.repeats}; `fitting.cost` reads them "
                  f"(`reprolib/step_costs.json`).\n\n| job (fitting.cost_class) | ms per step |\n|---|---|\n{rows}\n")


if __name__ == "__main__":
    main()

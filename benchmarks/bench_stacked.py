"""Throughput of K same-shape models trained as one stack (``reprolib.stacked``) against the same models trained one
after another by ``train.train``, in the same process, per model kind the notebooks train.

    nice -n 10 .venv/bin/python benchmarks/bench_stacked.py [--threads 1] [--repeats 3] [--steps 30]

Appends a dated section to ``benchmarks/results.md``. Rates are model-steps per CPU second of this process
(``time.process_time``: on one thread, the wall time of a quiet machine, and still that on a shared one, where wall
clocks measure the neighbours) in steady state: from each run's 5th step to its last (from the training callback),
so start-up (data, build, the final save) is left out of both sides. The one-by-one rate is measured on two models per repeat (every model of a kind has the
same shape, so K of them one after another take K times as long); repeats interleave both sides, so drift hits
them alike; each figure is the median of ``--repeats``. Peak memory (ru_maxrss) of the largest stack and of one
model alone is measured in fresh processes.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reprolib import profiles, stack_resume, zoo  # noqa: E402
from reprolib.store import Store  # noqa: E402
from reprolib.train import TrainConfig, train, training_set  # noqa: E402

SKIP = 5  # steps left out at the start of each run (allocations, first-call overheads)


def kinds() -> dict:
    """The U-Nets of notebook 02's sweep (``zoo.regimes``, cpu profile) per width, and notebooks 01/06's."""
    P = profiles.settings("02", "cpu")
    sweep = {w: next(c for (n, width, s), c in zoo.regimes(P).items() if width == w) for w in P["widths"]}
    out = {f"02 U-Net width {w} (DDPM++, lr {c.lr:g})": c for w, c in sweep.items()}
    out["01/06 U-Net width 16"] = zoo.section1(profiles.settings("01", "cpu"))[0].cfg
    return out


def _configs(cfg: TrainConfig, k: int, steps: int) -> list[TrainConfig]:
    return [cfg.replace(n=n, seed=s, steps=steps, snapshot_every=None, ckpt_every=10 * steps)
            for s, n in zip(range(k), [16, 32, 64, 128, 256, 512, 1024, None][:k])]


def _rate(run) -> float:
    """Model-steps per second of ``run(callback)`` in steady state."""
    marks = []
    run(lambda step, loss: marks.append((step, time.process_time(), len(loss) if isinstance(loss, list) else 1)))
    runs, total_steps, total_time, start = [], 0, 0.0, 0
    for i in range(1, len(marks) + 1):  # split the marks into runs (the step counter restarts per model)
        if i == len(marks) or marks[i][0] < marks[i - 1][0]:
            runs.append(marks[start:i])
            start = i
    for r in runs:
        total_steps += (len(r) - 1 - SKIP) * r[0][2]
        total_time += r[-1][1] - r[SKIP][1]
    return total_steps / total_time


def one_by_one(cfgs) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        return _rate(lambda cb: [train(c, store, progress=False, callback=cb) for c in cfgs])


def together(cfgs) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        return _rate(lambda cb: stack_resume.train(cfgs, Store(tmp), progress=False, callback=cb))


def peak_rss(kind: str, k: int, steps: int) -> tuple[float, float]:
    """MiB of peak resident memory of a fresh process training ``k`` models of ``kind`` (stacked if k > 1): before
    training (imports, data) and at the end."""
    out = subprocess.run([sys.executable, __file__, "--memory-of", kind, str(k), str(steps)], check=True,
                         capture_output=True, text=True).stdout
    before, peak = out.strip().splitlines()[-1].split()
    return float(before), float(peak)


def _memory_child(kind: str, k: int, steps: int) -> None:
    torch.set_num_threads(1)
    cfgs = _configs(kinds()[kind], k, steps)
    for c in cfgs:
        training_set(c)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    with tempfile.TemporaryDirectory() as tmp:
        (stack_resume.train if k > 1 else lambda c, s, progress: train(c[0], s, progress=progress))(
            cfgs, Store(tmp), progress=False)
    print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30, help="training steps per timed run")
    ap.add_argument("--stacks", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--note", default="", help="a word on the machine (e.g. shared with other work)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results.md")))
    ap.add_argument("--no-throughput", dest="throughput", action="store_false", help="only the memory table")
    ap.add_argument("--no-memory", dest="memory", action="store_false", help="only the throughput table")
    ap.add_argument("--memory-of", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.memory_of:
        return _memory_child(a.memory_of[0], int(a.memory_of[1]), int(a.memory_of[2]))
    torch.set_num_threads(a.threads)
    note = f", {a.note}" if a.note else ""
    lines = [f"\n## {datetime.datetime.now():%Y-%m-%d %H:%M} - stacked training: {platform.machine()}, torch "
             f"{torch.__version__}, {a.threads} thread(s), median of {a.repeats}{note}\n",
             ]
    if a.throughput:
        lines += [f"K same-shape models (batch 128, 8x8 digits, EDM) trained as one stack (`stack_resume.train`, "
                  f"vmap) against one after another (`train.train`); model-steps per CPU second in steady state over "
                  f"{a.steps} steps.\n",
                  "| model | one by one | " + " | ".join(f"K={k} stacked | ratio" for k in a.stacks) + " |",
                  "|---|---|" + "---|---|" * len(a.stacks)]
    for name, cfg in kinds().items() if a.throughput else []:
        alone, stacks = [], {k: [] for k in a.stacks}
        for _ in range(a.repeats):
            alone.append(one_by_one(_configs(cfg, 2, a.steps)))
            for k in a.stacks:
                stacks[k].append(together(_configs(cfg, k, a.steps)))
        ref = statistics.median(alone)
        cells = [f"{statistics.median(v):.1f} | {statistics.median(v) / ref:.2f}" for v in stacks.values()]
        lines.append(f"| {name} | {ref:.1f} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    largest = max(a.stacks)
    if a.memory:
        lines.append(f"\nPeak resident memory (MiB) of a fresh process training {a.steps} steps: before training "
                     f"(imports, data) and the growth from there:\n")
        lines += [f"| model | before | 1 alone: growth | K={largest} stacked: growth |", "|---|---|---|---|"]
    for name in kinds() if a.memory else []:
        (b1, p1), (bk, pk) = peak_rss(name, 1, a.steps), peak_rss(name, largest, a.steps)
        lines.append(f"| {name} | {b1:.0f} | {p1 - b1:.0f} | {pk - bk:.0f} |")
        print(lines[-1], flush=True)
    with open(a.out, "a") as f:
        f.write("\n".join(lines) + "\n")
    print(f"appended to {a.out}")


if __name__ == "__main__":
    main()

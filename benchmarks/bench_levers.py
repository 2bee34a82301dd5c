"""Throughput of one training step under each speed lever issue 16 names, against today's float32 eager step, in
the same process, per model kind the notebooks train.

    nice -n 10 .venv/bin/python benchmarks/bench_levers.py [--threads 1] [--repeats 3] [--steps 40]

The step is ``train.train``'s (minibatch, the formulation's loss, backward, Adam, EMA) written bare, so that each
lever changes one thing: ``bf16`` runs the loss under ``torch.autocast`` (as ``TrainConfig.precision="bf16"``),
``channels_last`` stores the U-Net's weights and inputs in NHWC, ``compile`` wraps the backbone in
``torch.compile`` (inductor; its one-off compilation, the wall time of the first step from a cold cache
directory, is reported apart). Rates are
steps per CPU second of this process (``time.process_time``) from each run's 6th step on, so start-up and
compilation are left out; repeats interleave the levers, and each figure is the median of ``--repeats``. Appends a
dated section to ``benchmarks/results.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reprolib import profiles, zoo  # noqa: E402
from reprolib import train as train_lib  # noqa: E402
from reprolib.train import TrainConfig, build, training_set  # noqa: E402

SKIP = 5
LEVERS = ("fp32", "bf16", "channels_last", "compile", "fused")
TITLES = {"bf16": "bf16", "channels_last": "channels-last", "compile": "torch.compile",
          "fused": "fused Adam + foreach EMA"}


def kinds() -> dict[str, TrainConfig]:
    """Notebook 02's U-Nets per width, and notebook 01's U-Net (also 04/06/07's), MLP and U-ViT."""
    P = profiles.settings("02", "cpu")
    sweep = {w: next(c for (n, width, s), c in zoo.regimes(P).items() if width == w) for w in P["widths"]}
    out = {f"02 U-Net width {w}": c for w, c in sweep.items()}
    s1 = {v.name: v.cfg for v in zoo.section1(profiles.settings("01", "cpu"))}
    out["01 U-Net width 16"] = s1["U-Net EDM (Heun)"]
    out["01 MLP"] = s1["MLP EDM (Heun)"]
    out["01 U-ViT"] = s1["U-ViT EDM (Heun)"]
    return out


def run(cfg: TrainConfig, lever: str, steps: int) -> tuple[float, float]:
    """(steps per CPU second after the first SKIP steps, wall seconds of the first step) of the bare loop. The first
    step's compilation runs partly in compiler subprocesses, which this process's CPU time would miss."""
    ds = training_set(cfg)
    torch.manual_seed(cfg.seed)
    model = build(cfg, ds.shape)
    images = ds.images
    if lever == "channels_last" and cfg.net["kind"] == "unet":
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    if lever == "compile":
        model.net = torch.compile(model.net)
    ema = copy.deepcopy(model).requires_grad_(False)
    ema_update = train_lib.ema_update
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=lever == "fused" or None)
    if lever == "fused":  # one kernel per step for Adam and one for the EMA instead of one per tensor
        params, ema_params = list(model.parameters()), list(ema.parameters())

        def ema_update(ema, model, decay):  # noqa: F811 - the lever's stand-in for train.ema_update
            torch._foreach_lerp_(ema_params, params, 1 - decay)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if lever == "bf16" else contextlib.nullcontext()
    decay = 0.5 ** (1 / cfg.ema_halflife)
    marks, wall = [time.process_time()], time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, len(images), (cfg.batch,), generator=gen)
        with cast:
            loss = model.loss(images[idx], gen, None, step, steps).float()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_update(ema, model, decay)
        loss.item()
        marks.append(time.process_time())
        if step == 0:
            wall = time.perf_counter() - wall
    return (steps - SKIP) / (marks[-1] - marks[SKIP]), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--only", nargs="*", help="model kinds to measure (substrings of their names)")
    parser.add_argument("--levers", nargs="*", default=list(LEVERS[1:]), choices=LEVERS[1:],
                        help="levers to measure against fp32 (default: all)")
    parser.add_argument("--note", default="", help="a line about the machine's state (e.g. shared)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # compilation measured from a cold cache: a warm one (a second process) compiles in a fraction of it
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="bench-levers-inductor-"))
    chosen = {k: c for k, c in kinds().items() if not args.only or any(o in k for o in args.only)}
    rows = []
    for name, cfg in chosen.items():
        levers = ("fp32", *args.levers)
        rates, first = {lv: [] for lv in levers}, {}
        for r in range(args.repeats):
            for lever in levers:
                rate, t_first = run(cfg, lever, args.steps)
                rates[lever].append(rate)
                first.setdefault(lever, t_first)
                print(f"{name} {lever} repeat {r}: {rate:.1f} steps/s (first step {t_first:.1f} s)", flush=True)
        med = {lv: statistics.median(v) for lv, v in rates.items()}
        rows.append((name, med, first.get("compile")))
    lines = [f"\n## {datetime.datetime.now():%Y-%m-%d %H:%M} - speed levers of one training step "
             f"(benchmarks/bench_levers.py)\n",
             f"{platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), batch 128, steps/CPU s "
             f"from step {SKIP + 1} of {args.steps}, median of {args.repeats}. {args.note}\n",
             "| model | fp32 steps/s | " + " | ".join(TITLES[lv] for lv in args.levers)
             + (" | first compiled step, wall s |" if "compile" in args.levers else " |"),
             "|---|---|" + "---|" * (len(args.levers) + ("compile" in args.levers))]
    for name, med, t_compile in rows:
        ratios = " | ".join(f"{med[lv] / med['fp32']:.2f}x" for lv in args.levers)
        lines.append(f"| {name} | {med['fp32']:.1f} | {ratios} |" + (f" {t_compile:.0f} |" if t_compile else ""))
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()

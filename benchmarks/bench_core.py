"""Throughput of reprolib's training loop and samplers, against plain references in the same process.

Run by hand on a quiet machine (nothing else using the cores):

    .venv/bin/python benchmarks/bench_core.py [--threads 1] [--repeats 5]

Appends a dated section to ``benchmarks/results.md``. Every figure is the median of ``--repeats`` runs;
ratios compare runs made in this process, interleaved, so machine drift hits both sides alike.

1. training: ``train.train`` (EMA, warm-up, checkpoints every 500 steps, the atomic store) against a
   bare loop over the same model, loss and optimiser;
2. sampling: Heun with 18 steps (35 evaluations) per image, for each backbone and the optimal denoiser;
3. the optimal denoiser: ``optimal.OptimalDenoiser`` against a straightforward float64 implementation
   that loops twice over the training set per evaluation (once for the normaliser, once for the sum).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reprolib import data, samplers, zoo  # noqa: E402
from reprolib.optimal import OptimalDenoiser  # noqa: E402
from reprolib.store import Store  # noqa: E402
from reprolib.train import TrainConfig, build, train, training_set  # noqa: E402


def bare_loop(cfg: TrainConfig) -> float:
    """The same model, loss and Adam, with nothing else: the floor train.train is measured against."""
    ds = training_set(cfg)
    torch.manual_seed(cfg.seed)
    model = build(cfg, ds.shape)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    t0 = time.perf_counter()
    for _ in range(cfg.steps):
        idx = torch.randint(0, len(ds.images), (cfg.batch,), generator=gen)
        loss = model.loss(ds.images[idx], gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def reprolib_loop(cfg: TrainConfig) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(cfg, Store(tmp), progress=False)
        return time.perf_counter() - t0


class NaiveOptimal(torch.nn.Module):
    """D*(x; sigma) with two Python-level passes over the training set per evaluation, in float64."""

    def __init__(self, y):
        super().__init__()
        self.y = y.reshape(len(y), -1).double()

    def forward(self, x, sigma):
        flat, s2 = x.reshape(len(x), -1).double(), 2 * float(sigma) ** 2
        out = torch.empty_like(flat)
        for r, xr in enumerate(flat):
            logits = torch.stack([-((xr - yi) ** 2).sum() / s2 for yi in self.y])  # pass 1
            m = logits.max()
            z = sum(torch.exp(li - m) for li in logits)
            out[r] = sum(torch.exp(li - m) / z * yi for li, yi in zip(logits, self.y))  # pass 2
        return out.to(x.dtype).reshape(x.shape)


def median_of(fn, repeats):
    return statistics.median(fn() for _ in range(repeats))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=200, help="training steps per timed run")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results.md")))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    lines = [f"\n## {datetime.datetime.now():%Y-%m-%d %H:%M} - {platform.machine()}, torch {torch.__version__}, "
             f"{a.threads} thread(s), median of {a.repeats}\n"]

    lines += ["### Training (batch 128, 8x8 digits)\n", "| model | bare loop steps/s | train.train steps/s | ratio |",
              "|---|---|---|---|"]
    for name, net in zoo.DIGIT_NETS.items():
        cfg = TrainConfig(net=net, steps=a.steps, ckpt_every=100)
        bare = median_of(lambda: bare_loop(cfg), a.repeats)
        ours = median_of(lambda: reprolib_loop(cfg), a.repeats)
        lines.append(f"| {name} {net} | {a.steps / bare:.1f} | {a.steps / ours:.1f} | {bare / ours:.2f} |")
        print(lines[-1], flush=True)

    train_images = data.load("digits").images
    seeds = list(range(1000))
    lines += ["\n### Sampling: Heun, 18 steps (35 evaluations), 1,000 images\n", "| denoiser | s | images/s |", "|---|---|---|"]
    models = {name: build(TrainConfig(net=net), (1, 8, 8)).eval() for name, net in zoo.DIGIT_NETS.items()}
    models["optimal (1,797 digits)"] = OptimalDenoiser(train_images)
    for name, model in models.items():
        t = median_of(lambda: _timed(lambda: samplers.sample(model, seeds, (1, 8, 8), "heun", 18)), a.repeats)
        lines.append(f"| {name} | {t:.2f} | {len(seeds) / t:.0f} |")
        print(lines[-1], flush=True)

    lines += ["\n### Optimal denoiser, one evaluation on 8 images over 1,797 digits\n",
              "| implementation | ms per evaluation | speed-up |", "|---|---|---|"]
    x, naive, fast = torch.randn(8, 1, 8, 8), NaiveOptimal(train_images), OptimalDenoiser(train_images)
    torch.testing.assert_close(fast(x, 1.0), naive(x, 1.0), rtol=1e-5, atol=1e-5)
    t_naive = median_of(lambda: _timed(lambda: naive(x, 1.0)), max(1, a.repeats // 2))
    t_fast = median_of(lambda: _timed(lambda: fast(x, 1.0)), a.repeats)
    lines.append(f"| naive, two loops over the training set | {1e3 * t_naive:.1f} | 1 |")
    lines.append(f"| reprolib.optimal (one matrix product, streaming log-sum-exp) | {1e3 * t_fast:.2f} | {t_naive / t_fast:.0f}x |")
    print("\n".join(lines[-2:]))

    with open(a.out, "a") as f:
        f.write("\n".join(lines) + "\n")
    print(f"appended to {a.out}")


def _timed(fn):
    t0 = time.perf_counter()
    with torch.no_grad():
        fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()

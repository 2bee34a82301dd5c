"""GPU throughput of the paper profile's U-Nets: training (fp32 with TF32, and bf16) and Heun sampling.

On a CUDA machine, from the repository root (any python with torch; the library is imported from the checkout):

    python benchmarks/bench_gpu.py [--json PATH]          # full run
    python benchmarks/bench_gpu.py --quick [--json PATH]  # fewer, shorter windows
    python benchmarks/bench_gpu.py --smoke                # every code path on the CPU at tiny sizes, seconds

What is measured, for notebook 02's U-Nets at the paper profile (``zoo.regimes``: DDPM++ U-Nets of widths
64/128/256 on 3x32x32, batch 128) and, for scale, at the cpu profile (widths 4/8/16 on the 1x8x8 digits):

1. training, images/s: ``train.train`` itself (the library's loop: the EDM loss, Adam, warm-up, EMA, one
   ``loss.item()`` per step), once in float32 and once with ``precision="bf16"`` (the loss under
   ``torch.autocast``). The paper rows train on synthetic CIFAR-shaped images (uniform in [-1, 1]; the data set is
   not needed); the digits rows on the digits. A callback stamps the clock after every step, behind
   ``torch.cuda.synchronize``; the first ``warm-up`` steps (cuDNN's choices, the allocator) are left out and the
   figure is the median over several timed windows of equal length;
2. sampling, images/s: ``samplers.sample`` with Heun, 18 steps (35 evaluations per image), of the EMA model
   the float32 training returned, in the library's batches (500 at the full run), after a warm-up call; the
   median over windows of one call each.

float32 means TF32 on the tensor cores (``torch.set_float32_matmul_precision("high")`` and cuDNN's
``allow_tf32``; both are written into the results); ``--no-tf32`` measures strict float32. cuDNN's autotuner
stays off as in the library, unless ``--cudnn-benchmark``. The approximate TFLOP/s columns count a training
image as three forward passes (``torch.utils.flop_counter`` on one forward).

Output: a table on stdout, a dated section appended to ``benchmarks/results.md`` (``--out``; not for ``--smoke``
unless ``--out`` is given) and, with ``--json PATH``, the same numbers as JSON, rewritten after every row (a run
stopped part-way leaves the rows it finished). Per row it holds what a GPU-hour estimate needs: the config, the
precision, images/s, seconds per training step at the row's batch, seconds per sampled image, evaluations per
sample, forward GFLOP per image and the peak memory.

Estimated time on one H200 (from the U-Nets' FLOPs, 9.75 / 39.0 / 155.9 GFLOP per forward at widths
64 / 128 / 256): the full run (50 training steps per row, 3 x 500 samples per U-Net) is about 5.5 minutes if the
card sustains only 60 TFLOP/s in TF32 and 100 in bf16 (the README's assumption for an H100), about 3 minutes at
twice that; sampling the width-256 U-Net is the largest item. ``--quick`` (20 steps, 2 x 256 samples) is about
2 minutes at the low rates. Add ~20 s for start-up.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reprolib import data as data_lib  # noqa: E402
from reprolib import profiles, samplers, zoo  # noqa: E402
from reprolib import train as train_lib  # noqa: E402
from reprolib.store import Store  # noqa: E402

SAMPLER, SAMPLE_STEPS = "heun", 18
PRECISIONS = (None, "bf16")  # float32 (TF32 unless --no-tf32), then the library's bf16 autocast


@dataclass(frozen=True)
class Mode:
    warmup: int  # training steps left out of the timing
    window_steps: int  # training steps per timed window
    windows: int
    sample_images: int  # images per timed sampling window (one samplers.sample call)
    sample_batch: int  # samplers.sample's batch_size
    sample_windows: int
    synthetic_images: int  # size of the synthetic CIFAR-shaped training set
    overrides: tuple = ()  # profile settings replaced (smoke: tiny U-Nets and batches)


MODES = {
    "full": Mode(10, 8, 5, 500, 500, 3, 10_000),
    "quick": Mode(5, 5, 3, 256, 256, 2, 10_000),
    "smoke": Mode(1, 2, 2, 4, 4, 2, 64, overrides=(("widths", [4]), ("batch", 4))),
}


@dataclass(frozen=True)
class Model:
    label: str
    profile: str  # whose notebook-02 sweep it comes from: "paper" or "cpu"
    cfg: train_lib.TrainConfig
    shape: tuple


def models(mode: Mode, widths=None) -> list[Model]:
    """Notebook 02's U-Nets, one per width: the cpu profile's digits models first (seconds), then the paper's."""
    out = []
    for profile in ("cpu", "paper"):
        over = dict(mode.overrides)
        if profile == "paper" and widths:
            over["widths"] = list(widths)
        P = profiles.settings("02", profile, **over)
        sweep = zoo.regimes(P)
        for w in P["widths"]:
            cfg = sweep[(P["sizes"][0], w, 0)].replace(n=None, snapshot_every=None)  # the whole (synthetic) set
            out.append(Model(f"U-Net w{w} ({profile})", profile, cfg, tuple(P["shape"])))
    return out


def synthetic_set(shape, n: int) -> data_lib.ImageSet:
    """CIFAR-shaped stand-in: throughput does not depend on the pixels, and the benchmark needs no download."""
    gen = torch.Generator().manual_seed(0)
    return data_lib.ImageSet("synthetic", torch.rand((n, *shape), generator=gen) * 2 - 1,
                             torch.randint(0, 10, (n,), generator=gen))


@contextlib.contextmanager
def training_data(ds: data_lib.ImageSet | None):
    """``train.train`` reads its images through ``train.training_set``: hand it ``ds`` (None: the real data)."""
    if ds is None:
        yield
        return
    with mock.patch.object(train_lib, "training_set", lambda cfg: ds):
        yield


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_training(m: Model, precision, device, mode: Mode, ds=None):
    """(EMA model, images/s per timed window, whether every loss was finite) of ``train.train`` on ``m``."""
    total = mode.warmup + mode.windows * mode.window_steps
    cfg = m.cfg.replace(steps=total, ckpt_every=total, precision=precision)  # no checkpoint inside the run
    stamps, finite = {}, []

    def tick(step, loss):
        sync(device)
        stamps[step] = time.perf_counter()
        finite.append(math.isfinite(loss))

    with tempfile.TemporaryDirectory() as tmp, training_data(ds):
        ema = train_lib.train(cfg, Store(tmp), device=device, progress=False, callback=tick)
    edges = [mode.warmup - 1 + k * mode.window_steps for k in range(mode.windows + 1)]
    rates = [mode.window_steps * cfg.batch / (stamps[b] - stamps[a]) for a, b in zip(edges, edges[1:])]
    return ema, rates, all(finite)


def time_sampling(model, shape, device, mode: Mode) -> list[float]:
    """Images/s of Heun (18 steps) per timed window of ``mode.sample_images`` seeds."""
    seeds = list(range(mode.sample_images))

    def run(n_seeds, steps):
        return samplers.sample(model, seeds[:n_seeds], shape, SAMPLER, steps, batch_size=mode.sample_batch,
                               device=device)

    run(mode.sample_batch, 2)  # warm-up: the batch's shapes and kernels once (3 evaluations)
    rates = []
    for _ in range(mode.sample_windows):
        sync(device)
        t0 = time.perf_counter()
        run(len(seeds), SAMPLE_STEPS)
        sync(device)
        rates.append(len(seeds) / (time.perf_counter() - t0))
    return rates


def forward_flops(model, shape, device) -> float:
    """FLOPs of one forward pass of the denoiser on one image (``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, *shape, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, 1.0)
    return float(counter.get_total_flops())


def peak_gib(device):
    if torch.device(device).type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def reset_peak(device):
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def environment(device, mode_name: str, mode: Mode) -> dict:
    dev = torch.device(device)
    info = {"type": dev.type, "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        info = {"type": "cuda", "name": props.name, "capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2**30, 1), "multiprocessors": props.multi_processor_count}
    return {
        "schema": 1, "date": datetime.datetime.now().isoformat(timespec="seconds"), "mode": mode_name,
        "device": info, "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
        "tf32": {"matmul": torch.get_float32_matmul_precision() != "highest",
                 "cudnn": bool(torch.backends.cudnn.allow_tf32)} if dev.type == "cuda" else None,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "settings": {"warmup_steps": mode.warmup, "window_steps": mode.window_steps, "windows": mode.windows,
                     "sampler": SAMPLER, "sample_steps": SAMPLE_STEPS,
                     "evaluations_per_sample": samplers.evaluations(SAMPLER, SAMPLE_STEPS),
                     "sample_images_per_window": mode.sample_images, "sample_batch": mode.sample_batch,
                     "sample_windows": mode.sample_windows,
                     "paper_data": f"synthetic, {mode.synthetic_images} images", "digits_data": "digits"},
        "train": [], "sample": [],
    }


def _row(m: Model, rates, params, flops, device, t0) -> dict:
    return {"model": m.label, "profile": m.profile, "width": m.cfg.net["width"], "net": m.cfg.net,
            "shape": list(m.shape), "params": params, "forward_gflop_per_image": flops / 1e9,
            "images_per_s": statistics.median(rates), "window_images_per_s": rates,
            "peak_memory_gib": peak_gib(device), "wall_s": time.perf_counter() - t0}


def measure(mode: Mode, device, widths, on_row) -> None:
    """Every row, in order; ``on_row(kind, row)`` after each (for printing and the JSON)."""
    for m in models(mode, widths):
        ds = synthetic_set(m.shape, mode.synthetic_images) if m.profile == "paper" else None
        for precision in PRECISIONS:
            reset_peak(device)
            t0 = time.perf_counter()
            ema, rates, finite = time_training(m, precision, device, mode, ds)
            params = sum(p.numel() for p in ema.parameters())
            if precision is None:  # sampled later; parked on the CPU so the bf16 row's peak memory is its own
                flops, sampling_model = forward_flops(ema, m.shape, device), ema.cpu()
            row = _row(m, rates, params, flops, device, t0)
            row.update(kind="train", precision=precision or "fp32", batch=m.cfg.batch,
                       seconds_per_step=m.cfg.batch / row["images_per_s"], losses_finite=finite,
                       approx_tflops=3 * flops * row["images_per_s"] / 1e12)
            on_row("train", row)
            del ema
        reset_peak(device)
        t0 = time.perf_counter()
        rates = time_sampling(sampling_model.to(device), m.shape, device, mode)
        row = _row(m, rates, params, flops, device, t0)
        evals = samplers.evaluations(SAMPLER, SAMPLE_STEPS)
        row.update(kind="sample", precision="fp32", batch=mode.sample_batch, sampler=SAMPLER, steps=SAMPLE_STEPS,
                   evaluations_per_sample=evals, seconds_per_image=1 / row["images_per_s"],
                   approx_tflops=evals * flops * row["images_per_s"] / 1e12)
        on_row("sample", row)
        del sampling_model
        reset_peak(device)


def _precision_name(row, env) -> str:
    if row["precision"] != "fp32":
        return row["precision"]
    return "fp32 (TF32)" if env["tf32"] and any(env["tf32"].values()) else "fp32"


def _gib(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def train_line(row, env) -> str:
    lo, hi = min(row["window_images_per_s"]), max(row["window_images_per_s"])
    precision = _precision_name(row, env) + ("" if row["losses_finite"] else ", loss not finite")
    return (f"| {row['model']} | {'x'.join(map(str, row['shape']))} | {row['params'] / 1e6:.2f} M | {precision} | "
            f"{row['batch']} | {row['images_per_s']:.1f} | {row['seconds_per_step']:.4f} | {lo:.1f}-{hi:.1f} | "
            f"{row['approx_tflops']:.3g} | {_gib(row['peak_memory_gib'])} |")


def sample_line(row, env) -> str:
    lo, hi = min(row["window_images_per_s"]), max(row["window_images_per_s"])
    return (f"| {row['model']} | {_precision_name(row, env)} | {row['batch']} | {row['images_per_s']:.1f} | "
            f"{1e4 * row['seconds_per_image']:.1f} | {lo:.1f}-{hi:.1f} | {row['approx_tflops']:.3g} | "
            f"{_gib(row['peak_memory_gib'])} |")


TRAIN_HEAD = ["| model | shape | params | precision | batch | images/s | s/step | windows (images/s) | ~TFLOP/s "
              "| peak GiB |", "|---|---|---|---|---|---|---|---|---|---|"]
SAMPLE_HEAD = ["| model | precision | batch | images/s | s per 10,000 images | windows (images/s) | ~TFLOP/s "
               "| peak GiB |", "|---|---|---|---|---|---|---|---|"]


def report(env) -> list[str]:
    s, dev = env["settings"], env["device"]
    where = (f"{dev['name']} ({dev['memory_gib']} GiB, sm {dev['capability']}), torch {env['torch']}, CUDA "
             f"{env['cuda']}, cuDNN {env['cudnn']}" if dev["type"] == "cuda"
             else f"CPU {dev['name']}, {dev['threads']} thread(s), torch {env['torch']}")
    tf32 = ("TF32 on (matmul precision 'high', cuDNN allow_tf32)" if env["tf32"] and any(env["tf32"].values())
            else "TF32 off" if env["tf32"] else "no TF32 on a CPU")
    autotune = "on" if env["cudnn_benchmark"] else "off"
    lines = [f"\n## {env['date'][:16].replace('T', ' ')} - GPU benchmark ({env['mode']}): {where}; {tf32}; "
             f"cudnn.benchmark {autotune}\n",
             f"### Training: `train.train`, median of {s['windows']} windows of {s['window_steps']} steps after "
             f"{s['warmup_steps']} warm-up step(s) (paper rows: {s['paper_data']}; ~TFLOP/s counts 3 forward passes "
             f"per image)\n", *TRAIN_HEAD, *(train_line(r, env) for r in env["train"]),
             f"\n### Sampling: Heun, {s['sample_steps']} steps ({s['evaluations_per_sample']} evaluations), median of "
             f"{s['sample_windows']} windows of {s['sample_images_per_window']} images\n",
             *SAMPLE_HEAD, *(sample_line(r, env) for r in env["sample"])]
    if "wall_s" in env:
        lines.append(f"\nWall time of the benchmark: {env['wall_s']:.0f} s.")
    return lines


def write_json(path, env) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(env, indent=1))
    os.replace(tmp, path)


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer, shorter windows (about 2 minutes on an H200)")
    size.add_argument("--smoke", action="store_true", help="every code path on the CPU at tiny sizes, in seconds")
    ap.add_argument("--device", help="default: cuda (cpu for --smoke); only --smoke runs elsewhere than CUDA")
    ap.add_argument("--widths", type=int, nargs="+", help="only these of the paper profile's U-Net widths")
    ap.add_argument("--json", metavar="PATH", help="also write the numbers as JSON to PATH")
    ap.add_argument("--out", metavar="PATH", help="results file to append to (default benchmarks/results.md; "
                                                   "--smoke writes none unless given)")
    ap.add_argument("--no-tf32", action="store_true", help="strict float32 (TF32 off for matmuls and cuDNN)")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN autotune (the library does not)")
    a = ap.parse_args(argv)
    if a.widths is not None:
        paper = profiles.settings("02", "paper")["widths"]
        if a.smoke or not set(a.widths) <= set(paper):
            ap.error(f"--widths takes some of the paper profile's widths {paper} (and not with --smoke)")
    return ap, a


def main(argv=None) -> int:
    ap, a = parse(argv)
    mode_name = "smoke" if a.smoke else "quick" if a.quick else "full"
    device = torch.device(a.device or ("cpu" if a.smoke else "cuda"))
    if device.type != "cuda" and not a.smoke:
        print(f"bench_gpu: the {mode_name} run measures a CUDA device, not '{device}'; --smoke runs every code path "
              f"on the CPU.", file=sys.stderr)
        return 2
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"bench_gpu: no CUDA device is available (torch {torch.__version__}, built for CUDA "
              f"{torch.version.cuda}): the {mode_name} run measures a GPU. Use --smoke to run every code path on "
              f"the CPU.", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.set_float32_matmul_precision("highest" if a.no_tf32 else "high")
        torch.backends.cudnn.allow_tf32 = not a.no_tf32
        torch.backends.cudnn.benchmark = a.cudnn_benchmark
    mode = MODES[mode_name]
    env = environment(device, mode_name, mode)
    out = a.out or (None if a.smoke else str(Path(__file__).with_name("results.md")))
    t_start = time.perf_counter()
    print("\n".join(report(env)[:1]), flush=True)

    def on_row(kind, row):
        env[kind].append(row)
        print((train_line if kind == "train" else sample_line)(row, env) + f"  [{kind}, {row['wall_s']:.1f} s]",
              flush=True)
        if a.json:
            write_json(a.json, env)

    measure(mode, device, a.widths, on_row)
    env["wall_s"] = time.perf_counter() - t_start
    lines = report(env)
    print("\n".join(lines), flush=True)
    if a.json:
        write_json(a.json, env)
        print(f"wrote {a.json}")
    if out:
        with open(out, "a") as f:
            f.write("\n".join(lines) + "\n")
        print(f"appended to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

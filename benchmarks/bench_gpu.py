"""GPU throughput of the library's training loop and sampler, and the levers that might raise it.

On a CUDA machine, from the repository root (any python with torch; the library is imported from the checkout):

    python benchmarks/bench_gpu.py [--json PATH]          # full run
    python benchmarks/bench_gpu.py --quick [--json PATH]  # fewer widths and shorter windows
    python benchmarks/bench_gpu.py --levers syncs stack   # only these sections, in this order
    python benchmarks/bench_gpu.py --quick --budget 150   # start no row after 150 s (the device check's way)
    python benchmarks/bench_gpu.py --smoke                # every code path on the CPU at tiny sizes

Sections (``--levers``; by default all, in this order, the cheapest news first):

- ``syncs``: host syncs per training step. A few steps of ``train.train`` for each formulation the profiles
  train (section 1's edm, ddpm, flow, subvp, ct, a conditional U-Net, the first round of progressive
  distillation, and a stack of two U-Nets) under ``torch.cuda.set_sync_debug_mode("warn")``; the warnings are
  counted for two lengths and their difference divided by the steps between them, so that setting up and saving
  cancel. 0 means no step waits for the GPU. On a CPU the row says n/a.
- ``stack``, ``workers``: the cpu profile's digits U-Nets (notebook 02's, widths 4 and 16), model-steps/s on one
  GPU: K models trained as one stack (``stack_resume.train``; members differ in ``n`` and, past 8, ``seed``),
  and W worker processes each training one model at the same time (spawned, one thread each like the runner's
  pool, their timed windows started together at a barrier); each with its ratio to one model alone.
- ``train``: images/s of ``train.train`` on notebook 02's paper-profile U-Nets (DDPM++, widths 64/128/256, quick
  128/256, on 3x32x32, batch 128; synthetic CIFAR-shaped images, so no data set is needed), in float32 (TF32 unless
  ``--no-tf32``) and in bf16 (``precision="bf16"``); the full run adds the digits U-Nets for scale.
- ``sample``: images/s of ``samplers.sample`` (Heun, 18 steps, 35 evaluations per image) of the same U-Nets in
  float32 and with ``precision="bf16"``, and the RP between the two (the same model and seeds;
  ``metrics.PixelSimilarity``, threshold 0.9), with the lowest and median pixel similarity. The model is the
  float32 training's EMA after a few dozen steps: the RP says how far bf16 moves the ODE's solution, not a
  trained model's samples.
- ``channels-last``, ``compile``, ``compile-ro``: ``train.train(..., channels_last=True)`` and
  ``compile_mode="default"`` / ``"reduce-overhead"`` (CUDA graphs) on the paper U-Nets, each with its ratio to
  the ``train`` row of the same width and precision (measured in the same run when ``train`` is selected).
  A compiled row also gives the wall time to the end of its warm-up steps (compilation included). ``--smoke``
  compiles with the "eager" backend: dynamo traces the step and nothing is compiled (inductor takes minutes on a
  CPU).

Timing: a clock at the start of chosen steps, read through the loop's progress report (``progress.update``)
behind ``torch.cuda.synchronize``; the training callback is not used, as it reads the losses (a host sync per
step) and the runner trains without one. Warm-up steps (cuDNN's choices, the allocator, compilation) are left
out; a figure is the median over timed windows of equal length. Approximate TFLOP/s counts a training image as
three forward passes and a sample as one per evaluation (``torch.utils.flop_counter`` on one forward). cuDNN's
autotuner stays off as in the library unless ``--cudnn-benchmark``. A row that fails records its error and the
others go on; the exit status is then 1.

Output: tables on stdout, a dated section appended to ``benchmarks/results.md`` (``--out``; not for ``--smoke``
unless given) and, with ``--json PATH``, the numbers as JSON, rewritten after every row (a run stopped part-way
leaves the rows it finished).

Estimated time on one H200, from DEVICE.md's rates (paper U-Nets train at 905 / 341 images/s at widths 128 / 256
in TF32 and 1,211 / 550 in bf16 and sample at 91 / 35 images/s; a lone digits U-Net trains at 45-48 steps/s) plus
about a second to set up each training: ``--quick`` (widths 128 and 256, 5 warm-up + 3 x 5 timed steps, 2 x 256
samples; the compiled rows at width 128 in bf16 only) is about 2.5 minutes without its compiled rows (syncs
~25 s, stack ~15 s, workers ~30 s with spawning up to 8 processes, train ~25 s, sample ~35 s if bf16 samples 1.5x
faster, channels-last ~25 s) and 1.5-3 minutes more for the two compiled rows, a guess: how long inductor takes
to compile a DDPM++ U-Net's step there was not yet measured. ``--budget`` keeps a run within what it is given
(the device check's way). The full run (three widths, both precisions everywhere, 5 x 8 timed steps, 3 x 500
samples) is about 10-15 minutes, most of it compiling. ``--smoke`` takes about 30 s on two cores.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(1, str(Path(__file__).resolve().parent))  # spawned workers import this module by name
from reprolib import data as data_lib  # noqa: E402
from reprolib import machine, metrics, profiles, samplers, stack_resume, zoo  # noqa: E402
from reprolib import progress as progress_lib  # noqa: E402
from reprolib import train as train_lib  # noqa: E402
from reprolib.store import Store  # noqa: E402

SAMPLER = "heun"
PRECISIONS = (None, "bf16")  # float32 (TF32 unless --no-tf32), then the library's bf16 autocast
SECTIONS = ("syncs", "stack", "workers", "train", "sample", "channels-last", "compile", "compile-ro")
LEVERS = {"channels-last": {"channels_last": True}, "compile": {"compile_mode": "default"},
          "compile-ro": {"compile_mode": "reduce-overhead"}}  # section -> train.train keywords
SYNC_WORDS = "synchroniz"  # in the message of every warning torch's sync debug mode gives


@dataclass(frozen=True)
class Mode:
    warmup: int  # training steps left out of the timing
    window_steps: int  # training steps per timed window
    windows: int
    sample_images: int  # images per timed sampling window (one samplers.sample call)
    sample_batch: int  # samplers.sample's batch_size
    sample_windows: int
    sample_steps: int  # Heun steps
    synthetic_images: int  # size of the synthetic CIFAR-shaped training set
    paper_widths: tuple  # the paper U-Nets of the train, sample and lever rows
    digits: bool  # the train and sample rows also measure notebook 02's digits U-Nets
    compile_widths: tuple
    compile_precisions: tuple
    stack_sizes: tuple  # K
    workers: tuple  # W
    small_widths: tuple  # the digits U-Nets of the stack and workers rows
    sync_steps: tuple  # the two run lengths whose sync counts are differenced
    overrides: tuple = ()  # (notebook, {setting: value}) replaced in the profiles (smoke: tiny nets and batches)


SMALL = dict(small_widths=(4, 16), sync_steps=(3, 8))
MODES = {
    "full": Mode(warmup=10, window_steps=8, windows=5, sample_images=500, sample_batch=500, sample_windows=3,
                 sample_steps=18, synthetic_images=10_000, paper_widths=(64, 128, 256), digits=True,
                 compile_widths=(64, 128, 256), compile_precisions=PRECISIONS, stack_sizes=(1, 2, 4, 8, 16),
                 workers=(1, 2, 4, 8), **SMALL),
    # compiled rows at one width and precision: compiling is most of a row's time (estimated in the docstring)
    "quick": Mode(warmup=5, window_steps=5, windows=3, sample_images=256, sample_batch=256, sample_windows=2,
                  sample_steps=18, synthetic_images=10_000, paper_widths=(128, 256), digits=False,
                  compile_widths=(128,), compile_precisions=("bf16",), stack_sizes=(1, 2, 4, 8, 16),
                  workers=(1, 2, 4, 8), **SMALL),
    "smoke": Mode(warmup=1, window_steps=2, windows=2, sample_images=4, sample_batch=4, sample_windows=2,
                  sample_steps=2, synthetic_images=64, paper_widths=(4,), digits=True, compile_widths=(4,),
                  compile_precisions=(None,), stack_sizes=(1, 2), workers=(1, 2), small_widths=(4, 16),
                  sync_steps=(1, 2),
                  overrides=(("02", {"widths": [4], "batch": 4, "nets": {"unet": {"num_blocks": 1}}}),
                             ("01", {"nets": {"unet": {"width": 4}, "mlp": {"width": 32}}}))),
}


def settings(nid: str, profile: str, mode: Mode, **more) -> dict:
    """``profiles.settings`` with the mode's overrides for notebook ``nid`` (and ``more``)."""
    return profiles.settings(nid, profile, **{**dict(mode.overrides).get(nid, {}), **more})


# ---------------------------------------------------------------------------------------------------------
# Models, data and clocks


@dataclass(frozen=True)
class Model:
    label: str
    profile: str  # whose notebook-02 sweep it comes from: "paper" or "cpu"
    cfg: train_lib.TrainConfig
    shape: tuple


def models(mode: Mode, widths=None, digits=None) -> list[Model]:
    """Notebook 02's U-Nets, one per width: the cpu profile's digits models (when ``digits``, by default the mode's),
    then the paper profile's of ``widths`` (by default the mode's)."""
    out, digits = [], mode.digits if digits is None else digits
    for profile in ("cpu", "paper") if digits else ("paper",):
        more = {"widths": list(widths or mode.paper_widths)} if profile == "paper" else {}
        P = settings("02", profile, mode, **more)
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


@contextlib.contextmanager
def step_clock(device, edges, at_first=None):
    """{step: monotonic seconds} at the start of each step in ``edges`` (the run's length: after its last step), read
    when the loop reports its progress, behind a device sync; ``at_first()`` runs before the first stamp (a
    barrier). Nothing else is added to the loop: the callback would read the losses, a host sync per step."""
    stamps, report = {}, progress_lib.update

    def update(kind, what, done, total):
        if kind == "train" and done in edges and done not in stamps:
            sync(device)
            if at_first is not None and done == edges[0]:
                at_first()
            stamps[done] = time.monotonic()
        report(kind, what, done, total)

    with mock.patch.object(progress_lib, "update", update):
        yield stamps


def edges(mode: Mode) -> list[int]:
    """The steps that bound the timed windows: after the warm-up, then every ``window_steps``."""
    return [mode.warmup + k * mode.window_steps for k in range(mode.windows + 1)]


def timed(run, device, mode: Mode):
    """(what ``run()`` returns, seconds of each timed window, seconds from the start to the first window) of a
    training run of ``edges(mode)[-1]`` steps."""
    bounds = edges(mode)
    t0 = time.monotonic()
    with step_clock(device, bounds) as stamps:
        out = run()
    return out, [stamps[b] - stamps[a] for a, b in zip(bounds, bounds[1:])], stamps[bounds[0]] - t0


def for_timing(cfg: train_lib.TrainConfig, mode: Mode) -> train_lib.TrainConfig:
    """``cfg`` at the timed length, with no checkpoint or snapshot inside the run."""
    steps = edges(mode)[-1]
    return cfg.replace(steps=steps, ckpt_every=steps, snapshot_every=None)


def finite(model) -> bool:
    """Whether every weight is finite (a NaN loss makes the EMA NaN within a step)."""
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def time_training(m: Model, precision, device, mode: Mode, ds=None, **levers):
    """(EMA model, images/s per timed window, seconds to the end of the warm-up) of ``train.train`` on ``m``."""
    cfg = for_timing(m.cfg, mode).replace(precision=precision)
    with tempfile.TemporaryDirectory() as tmp, training_data(ds):
        ema, seconds, first = timed(lambda: train_lib.train(cfg, Store(tmp), device=device, progress=False,
                                                            **levers), device, mode)
    return ema, [mode.window_steps * cfg.batch / s for s in seconds], first


def time_sampling(model, shape, device, mode: Mode, precision=None):
    """(images/s per timed window of ``mode.sample_images`` seeds, the last window's samples) of Heun."""
    seeds = list(range(mode.sample_images))

    def run(n_seeds, steps):
        return samplers.sample(model, seeds[:n_seeds], shape, SAMPLER, steps, batch_size=mode.sample_batch,
                               device=device, precision=precision)

    run(mode.sample_batch, 2)  # warm-up: the batch's shapes and kernels once (3 evaluations)
    rates = []
    for _ in range(mode.sample_windows):
        sync(device)
        t0 = time.perf_counter()
        out = run(len(seeds), mode.sample_steps)
        sync(device)
        rates.append(len(seeds) / (time.perf_counter() - t0))
    return rates, out


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


# ---------------------------------------------------------------------------------------------------------
# Sections: each yields (kind, what, thunk) per row; ``measure`` runs the thunks, so that the budget, the errors
# and the clock are handled in one place.


class State:
    """What later rows reuse: each model's forward FLOPs, float32 EMA (for sampling) and plain training rate."""

    def __init__(self, mode: Mode, device):
        self.mode, self.device = mode, device
        self.flops, self.ema, self.plain = {}, {}, {}

    def forward_flops(self, m: Model) -> float:
        if m.label not in self.flops:
            torch.manual_seed(m.cfg.seed)
            self.flops[m.label] = forward_flops(train_lib.build(m.cfg, m.shape).to(self.device), m.shape,
                                                self.device)
        return self.flops[m.label]

    def sampling_model(self, m: Model):
        """The float32 training's EMA (kept on the CPU), else the untrained network of the same seed."""
        if m.label not in self.ema:
            torch.manual_seed(m.cfg.seed)
            self.ema[m.label] = train_lib.build(m.cfg, m.shape).eval().requires_grad_(False)
        return self.ema[m.label].to(self.device)

    def data(self, m: Model):
        return synthetic_set(m.shape, self.mode.synthetic_images) if m.profile == "paper" else None


def _model_row(m: Model, rates, params, flops) -> dict:
    return {"model": m.label, "profile": m.profile, "width": m.cfg.net["width"], "net": m.cfg.net,
            "shape": list(m.shape), "params": params, "forward_gflop_per_image": flops / 1e9,
            "images_per_s": statistics.median(rates), "window_images_per_s": rates}


def train_row(state: State, m: Model, precision, lever: str | None = None) -> dict:
    """One timed ``train.train`` of ``m`` at ``precision`` (with ``lever``'s keywords), as a row."""
    ema, rates, first = time_training(m, precision, state.device, state.mode, state.data(m), **LEVERS.get(lever, {}))
    flops = state.forward_flops(m)
    row = _model_row(m, rates, sum(p.numel() for p in ema.parameters()), flops)
    row.update(precision=precision or "fp32", batch=m.cfg.batch, seconds_per_step=m.cfg.batch / row["images_per_s"],
               weights_finite=finite(ema), approx_tflops=3 * flops * row["images_per_s"] / 1e12,
               seconds_to_timed_steps=first)
    if lever is None:
        state.plain[(m.label, row["precision"])] = row["images_per_s"]
        if precision is None:  # sampled later; parked on the CPU so that later rows' peak memory is their own
            state.ema[m.label] = ema.cpu()
    else:
        plain = state.plain.get((m.label, row["precision"]))
        row.update(lever=lever, **LEVERS[lever], ratio_to_plain=plain and row["images_per_s"] / plain)
    return row


def section_train(state: State, widths):
    for m in models(state.mode, widths):
        for precision in PRECISIONS:
            yield "train", f"{m.label} {precision or 'fp32'}", functools.partial(train_row, state, m, precision)


def sample_row(state: State, m: Model, precision, reference: dict) -> dict:
    """Heun throughput of ``m`` at ``precision``; a bf16 row also scores its samples against float32's."""
    model = state.sampling_model(m)
    rates, out = time_sampling(model, m.shape, state.device, state.mode, precision)
    flops = state.forward_flops(m)
    evals = samplers.evaluations(SAMPLER, state.mode.sample_steps)
    model.cpu()  # so that later rows' peak memory is their own
    row = _model_row(m, rates, sum(p.numel() for p in model.parameters()), flops)
    row.update(precision=precision or "fp32", batch=state.mode.sample_batch, sampler=SAMPLER,
               steps=state.mode.sample_steps, evaluations_per_sample=evals, seconds_per_image=1 / row["images_per_s"],
               approx_tflops=evals * flops * row["images_per_s"] / 1e12)
    if precision is None:
        reference[m.label] = out
    elif m.label in reference:
        sim = metrics.PixelSimilarity()
        paired = metrics.paired(sim, reference[m.label], out)
        row.update(rp_vs_fp32=metrics.rp_score(sim, reference[m.label], out), rp_threshold=sim.default_threshold,
                   similarity_min=float(paired.min()), similarity_median=float(paired.median()))
    return row


def section_sample(state: State, widths):
    reference = {}
    for m in models(state.mode, widths):
        for precision in PRECISIONS:
            yield "sample", f"{m.label} {precision or 'fp32'}", functools.partial(sample_row, state, m, precision,
                                                                                  reference)


def section_lever(lever: str):
    def rows(state: State, widths):
        mode, compiled = state.mode, lever.startswith("compile")
        chosen = widths or (mode.compile_widths if compiled else mode.paper_widths)
        for m in models(mode, chosen, digits=False):
            for precision in (mode.compile_precisions if compiled else PRECISIONS):
                yield "levers", f"{m.label} {lever} {precision or 'fp32'}", functools.partial(
                    train_row, state, m, precision, lever)
    return rows


def small_configs(width: int, k: int, mode: Mode) -> list[train_lib.TrainConfig]:
    """``k`` digits U-Nets of ``width`` from notebook 02's cpu sweep that may train as one stack: they differ in
    ``n`` (the sweep's sizes) and, past as many models as sizes, in ``seed``."""
    P = settings("02", "cpu", mode, widths=sorted(set(mode.small_widths)))
    base = zoo.regimes(P)[(P["sizes"][0], width, 0)]
    sizes = P["sizes"]
    return [for_timing(base.replace(n=sizes[i % len(sizes)], seed=i // len(sizes)), mode) for i in range(k)]


def stack_row(state: State, width: int, k: int, alone: dict) -> dict:
    """Model-steps/s of ``k`` digits U-Nets trained as one stack (``stack_resume.train``)."""
    cfgs = small_configs(width, k, state.mode)
    with tempfile.TemporaryDirectory() as tmp:
        out, seconds, first = timed(lambda: train_together(cfgs, Store(tmp), state.device), state.device, state.mode)
    rates = [k * state.mode.window_steps / s for s in seconds]
    rate = statistics.median(rates)
    alone.setdefault(width, rate if k == 1 else None)
    return {"width": width, "k": k, "batch": cfgs[0].batch, "model_steps_per_s": rate,
            "window_model_steps_per_s": rates, "ms_per_stacked_step": 1e3 * k / rate,
            "ratio_to_one": alone[width] and rate / alone[width],
            "weights_finite": all(map(finite, out)), "seconds_to_timed_steps": first}


def section_stack(state: State, widths):
    alone = {}
    for width in state.mode.small_widths:
        for k in state.mode.stack_sizes:
            yield "stack", f"digits U-Net w{width} stack of {k}", functools.partial(stack_row, state, width, k, alone)


def _worker(cfg, device: str, mode: Mode, barrier) -> tuple[float, float, bool]:
    """In a worker process: train ``cfg`` alone on one thread; (start, end) monotonic seconds of its timed steps,
    which start when every worker of the round has done its warm-up."""
    torch.set_num_threads(machine.TRAIN_THREADS)
    bounds = [mode.warmup, edges(mode)[-1]]
    with tempfile.TemporaryDirectory() as tmp, step_clock(device, bounds, lambda: barrier.wait(timeout=180)) as t:
        ema = train_lib.train(cfg, Store(tmp), device=device, progress=False)
    return t[bounds[0]], t[bounds[1]], finite(ema)


def workers_row(state: State, pool, manager, width: int, w: int, alone: dict) -> dict:
    """Model-steps/s of ``w`` processes each training one digits U-Net at the same time on the device."""
    mode, barrier = state.mode, manager.Barrier(w)
    cfgs = small_configs(width, w, mode)
    runs = [f.result() for f in [pool.submit(_worker, c, str(state.device), mode, barrier) for c in cfgs]]
    steps = edges(mode)[-1] - mode.warmup
    rate = w * steps / (max(end for _, end, _ in runs) - min(start for start, _, _ in runs))
    alone.setdefault(width, rate if w == 1 else None)
    return {"width": width, "workers": w, "batch": cfgs[0].batch, "model_steps_per_s": rate,
            "per_worker_steps_per_s": [steps / (end - start) for start, end, _ in runs],
            "ratio_to_one": alone[width] and rate / alone[width], "weights_finite": all(ok for _, _, ok in runs),
            "peak_memory_gib": None}


def section_workers(state: State, widths):
    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    with ctx.Manager() as manager, ProcessPoolExecutor(max(state.mode.workers), mp_context=ctx) as pool:
        alone = {}
        for width in state.mode.small_widths:
            for w in state.mode.workers:
                yield "workers", f"digits U-Net w{width} x {w} processes", functools.partial(
                    workers_row, state, pool, manager, width, w, alone)


def sync_configs(mode: Mode) -> dict:
    """One config per formulation section 1 trains (and a conditional U-Net, the first distillation round, a stack
    of two): {name: (configs trained together, their parent or None)}."""
    P = settings("01", "cpu", mode)
    first = {}
    for v in zoo.section1(P):
        first.setdefault(v.cfg.formulation, v.cfg)
    distilled = next(c for name, c in first.items() if name.startswith("distill"))
    chain = [distilled]
    while chain[-1].init is not None:
        chain.append(train_lib.TrainConfig(**chain[-1].init))
    teacher, first_round = chain[-1], chain[-2]
    teacher = for_timing(teacher, mode)
    out = {name: ([c], None) for name, c in first.items() if not name.startswith("distill")}
    out["edm conditional"] = ([first["edm"].replace(conditional=True)], None)
    out[first_round.formulation] = ([first_round.replace(init=dataclasses.asdict(teacher))], teacher)
    out["edm stack of 2"] = (small_configs(min(mode.small_widths), 2, mode), None)
    return out


def count_syncs(run, device) -> int | None:
    """Host syncs torch's sync debug mode reports while ``run()`` runs on a CUDA ``device`` (None elsewhere)."""
    cuda = torch.device(device).type == "cuda"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode(0)
    return sum(SYNC_WORDS in str(w.message) for w in caught) if cuda else None


def train_together(cfgs, store, device) -> list:
    """``cfgs`` trained as the runner trains them: one alone (``train.train``; a distilled student has its own
    teacher and cannot stack), several as one stack."""
    if len(cfgs) == 1:
        return [train_lib.train(cfgs[0], store, device=device, progress=False)]
    return stack_resume.train(cfgs, store, device=device, progress=False)


def syncs_row(state: State, name: str, cfgs: list, parent) -> dict:
    """Syncs per training step of ``cfgs`` (trained together when several), from two run lengths."""
    short, long = state.mode.sync_steps
    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        if parent is not None:  # the teacher, trained before the counting
            train_lib.train(parent, store, device=state.device, progress=False)
        for steps in (short, long):
            these = [c.replace(steps=steps, ckpt_every=steps, snapshot_every=None) for c in cfgs]
            counts[steps] = count_syncs(lambda: train_together(these, store, state.device), state.device)
    per_step = None if counts[short] is None else (counts[long] - counts[short]) / (long - short)
    net = cfgs[0].net
    return {"formulation": name, "net": f"{net['kind']}-{net.get('width', '')}", "models": len(cfgs),
            "steps": [short, long], "syncs": [counts[short], counts[long]], "syncs_per_step": per_step,
            "syncs_outside_steps": None if per_step is None else counts[short] - short * per_step}


def section_syncs(state: State, widths):
    for name, (cfgs, parent) in sync_configs(state.mode).items():
        yield "syncs", f"syncs {name}", functools.partial(syncs_row, state, name, cfgs, parent)


SECTION_ROWS = {"syncs": section_syncs, "stack": section_stack, "workers": section_workers, "train": section_train,
                "sample": section_sample, **{lever: section_lever(lever) for lever in LEVERS}}


def measure(mode: Mode, device, sections, widths, on_row, budget: float | None = None) -> None:
    """Every row of ``sections``, in order; ``on_row(kind, row)`` after each (for printing and the JSON). Past
    ``budget`` seconds no row starts (it is reported as skipped); a row that raises reports its error."""
    state, start = State(mode, device), time.monotonic()
    for section in sections:
        for kind, what, thunk in SECTION_ROWS[section](state, widths):
            if budget is not None and time.monotonic() - start > budget:
                on_row("skipped", {"section": section, "what": what, "reason": f"budget of {budget:.0f} s spent"})
                continue
            reset_peak(device)
            t0 = time.perf_counter()
            try:
                row = thunk()
            except Exception as err:  # noqa: BLE001 - one failed lever must not cost the others
                row = {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]}
            row = {"what": what, "section": section, **row}
            row.setdefault("peak_memory_gib", peak_gib(device))
            row["wall_s"] = time.perf_counter() - t0
            on_row(kind, row)


# ---------------------------------------------------------------------------------------------------------
# Report


def environment(device, mode_name: str, mode: Mode, sections) -> dict:
    dev = torch.device(device)
    info = {"type": dev.type, "name": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        info = {"type": "cuda", "name": props.name, "capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2**30, 1), "multiprocessors": props.multi_processor_count}
    return {
        "schema": 2, "date": datetime.datetime.now().isoformat(timespec="seconds"), "mode": mode_name,
        "device": info, "cores": machine.usable_cores(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
        "tf32": {"matmul": torch.get_float32_matmul_precision() != "highest",
                 "cudnn": bool(torch.backends.cudnn.allow_tf32)} if dev.type == "cuda" else None,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark), "sections": list(sections),
        "settings": {"warmup_steps": mode.warmup, "window_steps": mode.window_steps, "windows": mode.windows,
                     "sampler": SAMPLER, "sample_steps": mode.sample_steps,
                     "evaluations_per_sample": samplers.evaluations(SAMPLER, mode.sample_steps),
                     "sample_images_per_window": mode.sample_images, "sample_batch": mode.sample_batch,
                     "sample_windows": mode.sample_windows, "sync_steps": list(mode.sync_steps),
                     "paper_data": f"synthetic, {mode.synthetic_images} images", "digits_data": "digits"},
        "train": [], "sample": [], "syncs": [], "stack": [], "workers": [], "levers": [], "skipped": [],
    }


def _precision_name(row, env) -> str:
    if row["precision"] != "fp32":
        return row["precision"]
    return "fp32 (TF32)" if env["tf32"] and any(env["tf32"].values()) else "fp32"


def _num(v, fmt="{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def _windows(row, key) -> str:
    return f"{min(row[key]):.1f}-{max(row[key]):.1f}"


def _lever(row, env) -> str:
    return row["lever"] + ("" if row["weights_finite"] else ", weights not finite")


def _finite(row, env) -> str:
    return _precision_name(row, env) + ("" if row["weights_finite"] else ", weights not finite")


def _rp(row, env) -> str:
    if "rp_vs_fp32" not in row:
        return "-"
    return f"{row['rp_vs_fp32']:.3f} (min {row['similarity_min']:.4f}, median {row['similarity_median']:.5f})"


# Per kind: the table's columns, (title, cell(row, env)); a row with an error shows its name and the error.
COLUMNS = {
    "train": [("model", lambda r, e: r["model"]), ("shape", lambda r, e: "x".join(map(str, r["shape"]))),
              ("params", lambda r, e: f"{r['params'] / 1e6:.2f} M"), ("precision", _finite),
              ("batch", lambda r, e: str(r["batch"])), ("images/s", lambda r, e: f"{r['images_per_s']:.1f}"),
              ("s/step", lambda r, e: f"{r['seconds_per_step']:.4f}"),
              ("windows (images/s)", lambda r, e: _windows(r, "window_images_per_s")),
              ("~TFLOP/s", lambda r, e: f"{r['approx_tflops']:.3g}"),
              ("peak GiB", lambda r, e: _num(r["peak_memory_gib"]))],
    "sample": [("model", lambda r, e: r["model"]), ("precision", _precision_name),
               ("batch", lambda r, e: str(r["batch"])), ("images/s", lambda r, e: f"{r['images_per_s']:.1f}"),
               ("s per 10,000 images", lambda r, e: f"{1e4 * r['seconds_per_image']:.1f}"),
               ("windows (images/s)", lambda r, e: _windows(r, "window_images_per_s")),
               ("~TFLOP/s", lambda r, e: f"{r['approx_tflops']:.3g}"),
               ("peak GiB", lambda r, e: _num(r["peak_memory_gib"])), ("RP vs fp32 (pixel similarity)", _rp)],
    "syncs": [("formulation", lambda r, e: r["formulation"]), ("network", lambda r, e: r["net"]),
              ("models", lambda r, e: str(r["models"])),
              ("syncs per step", lambda r, e: _num(r["syncs_per_step"], "{:.2f}") if r["syncs_per_step"] is not None
               else "n/a (no CUDA)"),
              ("syncs outside the steps", lambda r, e: _num(r["syncs_outside_steps"], "{:.0f}")),
              ("runs (steps: syncs)", lambda r, e: ", ".join(f"{s}: {_num(c, '{}')}"
                                                              for s, c in zip(r["steps"], r["syncs"])))],
    "stack": [("width", lambda r, e: str(r["width"])), ("K stacked", lambda r, e: str(r["k"])),
              ("model-steps/s", lambda r, e: f"{r['model_steps_per_s']:.1f}"),
              ("x one model", lambda r, e: _num(r["ratio_to_one"], "{:.2f}x")),
              ("ms per stacked step", lambda r, e: f"{r['ms_per_stacked_step']:.1f}"),
              ("peak GiB", lambda r, e: _num(r["peak_memory_gib"], "{:.2f}"))],
    "workers": [("width", lambda r, e: str(r["width"])), ("W processes", lambda r, e: str(r["workers"])),
                ("model-steps/s", lambda r, e: f"{r['model_steps_per_s']:.1f}"),
                ("x one process", lambda r, e: _num(r["ratio_to_one"], "{:.2f}x")),
                ("steps/s per process", lambda r, e: _windows(r, "per_worker_steps_per_s"))],
    "levers": [("model", lambda r, e: r["model"]), ("lever", _lever), ("precision", _precision_name),
               ("images/s", lambda r, e: f"{r['images_per_s']:.1f}"),
               ("x plain", lambda r, e: _num(r["ratio_to_plain"], "{:.2f}x")),
               ("~TFLOP/s", lambda r, e: f"{r['approx_tflops']:.3g}"),
               ("s to the timed steps", lambda r, e: f"{r['seconds_to_timed_steps']:.1f}"),
               ("peak GiB", lambda r, e: _num(r["peak_memory_gib"]))],
}


def head(kind: str) -> list[str]:
    titles = [t for t, _ in COLUMNS[kind]]
    return ["| " + " | ".join(titles) + " |", "|" + "---|" * len(titles)]


def line(kind: str, row, env) -> str:
    if "error" in row:
        return f"| {row['what']} | error: {row['error']} |" + " |" * (len(COLUMNS[kind]) - 2)
    return "| " + " | ".join(cell(row, env) for _, cell in COLUMNS[kind]) + " |"


def titles(env) -> dict:
    s = env["settings"]
    windows = f"median of {s['windows']} windows of {s['window_steps']} steps after {s['warmup_steps']} warm-up step(s)"
    return {
        "syncs": f"Host syncs per training step (torch.cuda.set_sync_debug_mode('warn'), runs of "
                 f"{' and '.join(map(str, s['sync_steps']))} steps differenced)",
        "stack": f"Digits U-Nets, K trained as one stack (stack_resume.train), {windows}",
        "workers": f"Digits U-Nets, W processes each training one model at once (one thread each), "
                   f"{s['windows'] * s['window_steps']} steps timed together after a barrier",
        "train": f"Training: `train.train`, {windows} (paper rows: {s['paper_data']}; ~TFLOP/s counts 3 forward "
                 f"passes per image)",
        "sample": f"Sampling: Heun, {s['sample_steps']} steps ({s['evaluations_per_sample']} evaluations), median "
                  f"of {s['sample_windows']} windows of {s['sample_images_per_window']} images; RP of the bf16 "
                  f"samples against float32's, same seeds",
        "levers": f"Paper U-Net levers: `train.train(..., channels_last / compile_mode)`, {windows}; x plain is the "
                  f"ratio to the training row of the same width and precision",
    }


def report(env) -> list[str]:
    dev = env["device"]
    where = (f"{dev['name']} ({dev['memory_gib']} GiB, sm {dev['capability']}), torch {env['torch']}, CUDA "
             f"{env['cuda']}, cuDNN {env['cudnn']}" if dev["type"] == "cuda"
             else f"CPU {dev['name']}, {dev['threads']} thread(s), torch {env['torch']}")
    tf32 = ("TF32 on (matmul precision 'high', cuDNN allow_tf32)" if env["tf32"] and any(env["tf32"].values())
            else "TF32 off" if env["tf32"] else "no TF32 on a CPU")
    autotune = "on" if env["cudnn_benchmark"] else "off"
    lines = [f"\n## {env['date'][:16].replace('T', ' ')} - GPU benchmark ({env['mode']}): {where}; {tf32}; "
             f"cudnn.benchmark {autotune}; {env['cores']} cores\n"]
    for kind, title in titles(env).items():
        if env[kind]:
            lines += [f"### {title}\n", *head(kind), *(line(kind, r, env) for r in env[kind]), ""]
    if env["skipped"]:
        lines.append("Not run (budget): " + "; ".join(r["what"] for r in env["skipped"]) + ".")
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
    size.add_argument("--quick", action="store_true", help="fewer widths, shorter windows (about 4-5 minutes on an H200)")
    size.add_argument("--smoke", action="store_true", help="every code path on the CPU at tiny sizes")
    ap.add_argument("--levers", nargs="+", choices=SECTIONS, metavar="SECTION",
                    help=f"only these sections, in this order (default: all: {' '.join(SECTIONS)})")
    ap.add_argument("--budget", type=float, metavar="SECONDS", help="start no row after SECONDS (the rest: skipped)")
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


@contextlib.contextmanager
def eager_compile():
    """torch.compile with the "eager" backend: dynamo traces the step, nothing is compiled (the smoke run's code
    path in seconds; inductor on a CPU takes minutes)."""
    with mock.patch.object(torch, "compile", functools.partial(torch.compile, backend="eager")):
        yield


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
    mode, sections = MODES[mode_name], a.levers or SECTIONS
    env = environment(device, mode_name, mode, sections)
    out = a.out or (None if a.smoke else str(Path(__file__).with_name("results.md")))
    t_start = time.perf_counter()
    print("\n".join(report(env)[:1]), flush=True)

    def on_row(kind, row):
        env[kind].append(row)
        text = f"skipped: {row['what']} ({row['reason']})" if kind == "skipped" else line(kind, row, env)
        print(text + ("" if kind == "skipped" else f"  [{kind}, {row['wall_s']:.1f} s]"), flush=True)
        if a.json:
            write_json(a.json, env)

    with eager_compile() if a.smoke else contextlib.nullcontext():
        measure(mode, device, sections, a.widths, on_row, a.budget)
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
    failed = [r["what"] for kind in COLUMNS for r in env[kind] if "error" in r]
    if failed:
        print(f"bench_gpu: {len(failed)} row(s) failed: {'; '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The training loop every diffusion model shares, trained alone (``train.Single``) or K at once (``stacked.Stacked``).

``run`` owns what is the same whatever is trained, as EDM's ``training_loop`` does: resuming each model from its
checkpoint, the learning rate's warm-up, the loss bookkeeping (the mean of each 100 steps), EMA snapshots,
checkpoints, progress and the final save. A job owns its models and one optimisation step (``Job``). Every draw
comes from a config's seed, so the loop itself holds no randomness. The losses are summed on the device and read
every 100 steps, so that no step waits for a GPU to report its loss; the sums are float64, as Python's were.

What holds: the same configs on the same device at the same thread count give the same weights, bit for bit,
and a run resumed from a checkpoint ends bit-identical to one never interrupted; another thread count, device or
torch build splits the float32 reductions differently, and training amplifies that round-off. So each model
records its thread counts beside its weights (``threads``: the counts a run and its resumes used, in order).
"""

from __future__ import annotations

from typing import Protocol

import torch
from tqdm.auto import tqdm

from . import data as data_lib
from . import progress as progress_lib
from .store import Store

KIND = "diffusion"


class Job(Protocol):
    cfgs: list  # K configs of one length, learning rate and warm-up
    keys: list  # their store keys
    device: torch.device
    what: str  # the models, for progress lines

    def restore(self, checkpoints: list) -> None:
        """Load each model's checkpoint (None: it starts afresh); called once, before the first step."""

    def step(self, step: int, lr: float) -> torch.Tensor:
        """One optimisation step of every model at learning rate ``lr``: their K losses, on the device."""

    def ema(self, k: int) -> dict:
        """Model k's EMA weights (a state dict on the CPU)."""

    def state(self, k: int) -> dict:
        """Model k's checkpoint: weights, EMA, optimiser and generator states."""


def training_set(cfg) -> data_lib.ImageSet:
    """The images a config trains on: its data set, less the classes it leaves out, less the subset it must not
    share an image with (``exclude``: (size, seed)), then its nested subset."""
    ds = data_lib.load(cfg.data)
    if getattr(cfg, "classes", None) is not None:
        keep = torch.isin(ds.labels, torch.tensor(list(cfg.classes)))
        ds = data_lib.ImageSet(ds.name, ds.images[keep], ds.labels[keep])
    if getattr(cfg, "exclude", None) is not None:
        ds = ds.outside(*cfg.exclude)
    return ds.subset(cfg.n, cfg.subset_seed)


def lr(cfg, step: int) -> float:
    """The learning rate at ``step``: linear warm-up over ``cfg.warmup`` steps, then constant."""
    return cfg.lr * min(1.0, (step + 1) / max(cfg.warmup, 1))


def optimizer(params, rate: float) -> torch.optim.Adam:
    """Adam (Kingma & Ba 2015) as one fused kernel over every tensor per step instead of a loop over them: the same
    update up to round-off, and with ``ema_update`` 1.02-1.16x more training steps per CPU second on one thread
    (``benchmarks/bench_levers.py``, benchmarks/results.md)."""
    return torch.optim.Adam(params, lr=rate, fused=True)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, every parameter in one call (one kernel launch, not one a tensor)."""
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)


def threads_used(threads: list[int]) -> list[int]:
    """The thread counts a run has used, with this process's appended when it differs from the last one."""
    now = torch.get_num_threads()
    return list(threads) if threads and threads[-1] == now else [*threads, now]


def run(job: Job, store: Store, progress: bool = True, callback=None) -> None:
    """Train ``job``'s models from their checkpoints (or from the start) to their last step, saving their EMA
    snapshots, checkpoints and final weights. ``callback(step, losses)`` (a float per model) is called after every
    step; raising in it interrupts training like Ctrl-C."""
    # Resume
    checkpoints = [store.load(KIND, key, "checkpoint") if store.exists(KIND, key, "checkpoint") else None
                   for key in job.keys]
    starts = [ck["step"] if ck else 0 for ck in checkpoints]
    if len(set(starts)) > 1:
        raise ValueError(f"models trained together must start at one step; these start at {starts}")
    job.restore(checkpoints)
    losses = [list(ck["losses"]) if ck else [] for ck in checkpoints]
    running = torch.tensor([ck["running"] if ck else 0.0 for ck in checkpoints], dtype=torch.float64,
                           device=job.device)
    threads = [threads_used(ck.get("threads", []) if ck else []) for ck in checkpoints]
    steps = job.cfgs[0].steps
    bar = tqdm(range(starts[0], steps), initial=starts[0], total=steps, disable=not progress,
               desc=f"train {job.what}", leave=False)
    for step in bar:
        progress_lib.update("train", job.what, step, steps)
        # One step of every model
        loss = job.step(step, lr(job.cfgs[0], step))
        # Bookkeeping: a mean loss per 100 steps
        running += loss.detach().double()
        if (step + 1) % 100 == 0:
            for k, mean in enumerate((running / 100).tolist()):
                losses[k].append(mean)
            running.zero_()
            bar.set_postfix(loss=f"{sum(kept[-1] for kept in losses) / len(losses):.4f}")
        # Snapshots, callback, checkpoints
        for k, cfg in enumerate(job.cfgs):
            if cfg.snapshot_every and (step + 1) % cfg.snapshot_every == 0:
                store.save(KIND, job.keys[k], f"ema_{step + 1}", {"ema": job.ema(k)})
        if callback is not None:
            callback(step, loss.tolist())
        for k, cfg in enumerate(job.cfgs):
            if (step + 1) % cfg.ckpt_every == 0 and step + 1 < steps:
                store.save(KIND, job.keys[k], "checkpoint", {**job.state(k), "step": step + 1, "losses": losses[k],
                                                             "running": running[k].item(), "threads": threads[k]})
    progress_lib.update("train", job.what, steps, steps)
    # Final weights
    for k, key in enumerate(job.keys):
        store.save(KIND, key, "final", {"ema": job.ema(k), "losses": losses[k], "threads": threads[k]})
        store.remove(KIND, key, "checkpoint")

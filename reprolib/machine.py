"""The machine a run computes on, decided once from three settings and what the machine has.

- ``device``: "auto" is CUDA when torch sees a GPU (a workstation, a cluster node, a Colab GPU runtime), else
  the CPU; "cpu", "cuda", "cuda:N" and "mps" are taken as given.
- ``n_jobs``: training workers. "auto" is one per usable core on the CPU (``os.sched_getaffinity``: the cores
  this process may run on, which a container or ``taskset`` can make fewer than the machine's), and the
  profile's ``gpu_workers`` on a GPU (small models are launch-bound, so several processes keep one card busy;
  the paper's U-Nets fill it alone).
- ``threads``: torch threads of the process that samples and measures (a notebook's kernel). "auto" is every
  usable core.

Every training worker computes on ``TRAIN_THREADS`` (one) thread whatever the machine, and the cpu profile pins
its kernels' ``threads`` to the count its record was made with: a float32 reduction is split by thread count,
so a model's weights and a sample's bits depend on it (a U-Net's Heun samples differ at 3 or more threads from
those at 1 or 2), and with both pinned a 64-core machine computes the committed 2-core numbers. What a number
depends on is ``layout``; a run whose layout differs from its record's is a replicate (``claims``).
"""

from __future__ import annotations

import os

TRAIN_THREADS = 1
AUTO = "auto"


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def device(setting: str = AUTO) -> str:
    """The device ``setting`` names; "auto" is "cuda" when a GPU is visible, else "cpu"."""
    if setting != AUTO:
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def workers(setting, on: str, gpu_workers: int = 1) -> int:
    """Training workers: ``setting`` when it is a number, else one per usable core on the CPU and ``gpu_workers``
    on a GPU (never more than the cores that drive them)."""
    if setting != AUTO:
        return int(setting)
    cores = usable_cores()
    return cores if on == "cpu" else max(1, min(gpu_workers, cores))


def threads(setting) -> int:
    """Torch threads of a kernel: ``setting``, or every usable core for "auto"."""
    return usable_cores() if setting == AUTO else int(setting)


def accelerator(on: str) -> str | None:
    """The GPU's name for a CUDA device (its model decides its kernels, so its numbers), else None."""
    if not on.startswith("cuda"):
        return None
    import torch

    return torch.cuda.get_device_name(torch.device(on)) if torch.cuda.is_available() else None


def layout(P: dict) -> dict:
    """What a run's numbers depend on besides its settings and code: the device, the GPU model, and the thread
    counts of the training workers and of the kernel."""
    on = P.get("device", "cpu")
    return {"device": on.partition(":")[0], "accelerator": accelerator(on), "train_threads": TRAIN_THREADS,
            "threads": P.get("threads")}


def describe(P: dict) -> str:
    """One line: where a run computes, e.g. "cpu · 2 training workers of 1 thread · kernel 2 threads"."""
    on = P.get("device", "cpu")
    name = accelerator(on)
    parts = [on + (f" ({name})" if name else "")]
    if "n_jobs" in P:
        parts.append(f"{P['n_jobs']} training worker{'s' if P['n_jobs'] != 1 else ''} of {TRAIN_THREADS} thread")
    if P.get("threads"):
        parts.append(f"kernel {P['threads']} thread{'s' if P['threads'] != 1 else ''}")
    return " · ".join(parts)


def apply(P: dict) -> None:
    """Pin this process's torch threads to ``P["threads"]`` (what a notebook does first)."""
    import torch

    if P.get("threads") and torch.get_num_threads() != P["threads"]:
        torch.set_num_threads(P["threads"])

"""The machine a run computes on, decided once from three settings and what the machine has.

- ``device``: "auto" is CUDA when torch sees a GPU (a workstation, a cluster node, a Colab GPU runtime), else
  the CPU; "cpu", "cuda", "cuda:N" and "mps" are taken as given.
- ``n_jobs``: training workers. "auto" is one per usable core on the CPU (``os.sched_getaffinity``: the cores
  this process may run on, which a container or ``taskset`` can make fewer than the machine's), and the
  profile's ``gpu_workers`` per visible GPU (small models are launch-bound, so several processes keep one card
  busy; the paper's U-Nets fill it alone). On several GPUs each training takes one of them (``gpu``), spread
  evenly: no two share a card while another has fewer.
- ``threads``: torch threads of the process that samples and measures (a notebook's kernel). "auto" is every
  usable core.

Every training worker computes on ``TRAIN_THREADS`` (one) thread whatever the machine, and the cpu profile pins
its kernels' ``threads`` to the count its record was made with: a float32 reduction is split by thread count,
so a model's weights and a sample's bits depend on it (a U-Net's Heun samples differ at 3 or more threads from
those at 1 or 2), and with both pinned a 64-core machine computes the committed 2-core numbers. What a number
depends on is ``layout``, which names the CPU too (its vendor and model, and the kernels torch picks for it:
ATen, oneDNN and MKL each choose theirs per CPU, so the same code on another CPU family trains other bits); a run
whose layout differs from its record's is a replicate (``claims``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: every training on the device it is given
    fcntl = None

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


def gpus() -> int:
    """The GPUs torch sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def workers(setting, on: str, gpu_workers: int = 1) -> int:
    """Training workers: ``setting`` when it is a number, else one per usable core on the CPU and ``gpu_workers``
    per GPU on "cuda" (one GPU for "cuda:N"), never more than the cores that drive them."""
    if setting != AUTO:
        return int(setting)
    cores = usable_cores()
    if on == "cpu":
        return cores
    cards = max(1, gpus()) if on == "cuda" else 1
    return max(1, min(gpu_workers * cards, cores))


@contextlib.contextmanager
def gpu(on: str, folder: str | Path | None = None, count: int | None = None):
    """The device one training runs on, held while it runs: for "cuda" with several GPUs visible (``count``,
    default ``gpus()``), the card with the fewest trainings at the moment, claimed by an exclusive ``flock`` on
    ``<folder>/gpu<k>.<slot>.lock`` (every worker process of this machine and user shares the folder), so that
    workers spread over the cards; anything else ("cpu", "cuda:N", one GPU, or a cluster worker that sees only
    the GPU it was given) as given."""
    count = gpus() if count is None else count
    if on != "cuda" or count < 2 or fcntl is None:
        yield on
        return
    folder = Path(folder or Path(tempfile.gettempdir()) / f"reprolib-gpus-{os.getuid()}")
    folder.mkdir(parents=True, exist_ok=True)
    for slot in itertools.count():  # every card's first slot, then every card's second, ...
        for k in range(count):
            fd = os.open(folder / f"gpu{k}.{slot}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield f"cuda:{k}"
            finally:
                os.close(fd)  # closing releases the card
            return


def unusable(P: dict, given=()) -> list[str]:
    """One message per machine setting of ``P`` (resolved, ``profiles.settings``) that this machine cannot honour,
    found before any work: a device torch does not see (naming those it does), unless a cluster backend trains
    (``REPRO_SWEEP_BACKEND``: its workers' devices are checked when it connects); a thread count above the usable
    cores among the settings ``given`` (a profile's own pinned count is the record's, and runs on fewer cores)."""
    import torch

    on, problems = P.get("device", "cpu"), []
    kind, _, index = on.partition(":")
    seen = [f"cuda:{k} ({torch.cuda.get_device_name(k)})" for k in range(gpus())]
    if torch.backends.mps.is_available():
        seen.append("mps")
    sees = "torch sees " + ", ".join(["cpu"] + seen)
    if not os.environ.get("REPRO_SWEEP_BACKEND"):
        if kind == "cuda" and (gpus() == 0 or (index and int(index) >= gpus())):
            problems.append(f"device={on}: no such CUDA device here ({sees}). Leave device at 'auto' or name one "
                            "torch sees.")
        elif kind == "mps" and not torch.backends.mps.is_available():
            problems.append(f"device=mps: Apple's Metal backend is not available here ({sees}).")
    cores = usable_cores()
    if "threads" in given and isinstance(P.get("threads"), int) and P["threads"] > cores:
        problems.append(f"threads={P['threads']}: this process may use {cores} core(s); more threads than cores "
                        f"only contend for them. Give threads <= {cores}, or 'auto'.")
    return problems


def threads(setting) -> int:
    """Torch threads of a kernel: ``setting``, or every usable core for "auto"."""
    return usable_cores() if setting == AUTO else int(setting)


def accelerator(on: str) -> str | None:
    """The GPU's name for a CUDA device (its model decides its kernels, so its numbers), else None."""
    if not on.startswith("cuda"):
        return None
    import torch

    return torch.cuda.get_device_name(torch.device(on)) if torch.cuda.is_available() else None


def cpu() -> str:
    """The CPU's vendor and model as the operating system names it ("Intel(R) Xeon(R) Processor", "AMD EPYC
    7B13"), and the widest vector kernels torch's ATen dispatches to on it (``get_cpu_capability``: "AVX2",
    "AVX512", ...), e.g. "Intel(R) Xeon(R) Processor (AVX512)"."""
    import platform

    import torch

    name = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            name = next((line.partition(":")[2].strip() for line in f if line.startswith("model name")), "")
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    return f"{name} ({torch.backends.cpu.get_cpu_capability()})"


def layout(P: dict) -> dict:
    """What a run's numbers depend on besides its settings and code: the device, the CPU (``cpu``), the GPU
    model, and the thread counts of the training workers and of the kernel."""
    on = P.get("device", "cpu")
    return {"device": on.partition(":")[0], "cpu": cpu(), "accelerator": accelerator(on),
            "train_threads": TRAIN_THREADS, "threads": P.get("threads")}


def describe(P: dict) -> str:
    """One line: where a run computes, e.g. "cpu (Intel(R) Xeon(R) Processor (AVX512)) · 2 training workers of 1
    thread · kernel 2 threads"; on a GPU its model names the device."""
    on = P.get("device", "cpu")
    name = accelerator(on) or (cpu() if on == "cpu" else None)
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

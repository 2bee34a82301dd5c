"""Many independent trainings at once, through joblib, so the same sweep runs anywhere.

On 2 cores two one-thread processes train faster in total than one two-thread process (threads give
only 1.3-1.5x), and a model's bits depend on its thread count, so every training runs on
``machine.TRAIN_THREADS`` (one) thread: in ``n_jobs`` worker processes, or in this process for ``n_jobs=1``.
Every finished model lands in the store, so an interrupted sweep resumes where it stopped, and every notebook
reuses what any other has trained.

To hand a sweep to a cluster, name a joblib backend (``backend=`` here, or ``REPRO_SWEEP_BACKEND`` for a
notebook run headlessly), or wrap the call in joblib's backend context; nothing else changes::

    from dask.distributed import Client
    client = Client("scheduler-address:8786")   # or Client(n_workers=2) for a local cluster
    sweep.run_all(fitting.fit, configs, is_done=fitting.is_fitted, n_jobs=16, backend="dask")

``backend="dask"`` uses the current Dask client, else connects to ``DASK_SCHEDULER_ADDRESS`` for the
sweep's duration; ``backend="ray"`` registers Ray's joblib backend (``ray.init`` as usual, or
``RAY_ADDRESS``). Without a named backend, ``n_jobs=1`` trains in this process. The workers need the
same store folder (a shared disk): the store root is sent with every task. ``gpus=`` makes every task ask the
cluster for that share of a GPU (``fitting.fit_all`` asks for the profile's share when it trains on "cuda").
"""

from __future__ import annotations

import concurrent.futures
import os
import time
from contextlib import contextmanager
from typing import Callable, Sequence

import joblib
import torch
from tqdm.auto import tqdm

from . import machine
from . import progress as progress_lib
from .store import Store


def _run(fn: Callable, cfg, store_root: str, threads: int):
    """``fn`` on one config at ``threads`` torch threads (a model's bits depend on them), in a worker or in this
    process, whose own count comes back after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        fn(cfg, Store(store_root), progress=False)
    finally:
        torch.set_num_threads(before)
        progress_lib.clear("train")  # a training that failed part-way is no longer running
    return cfg, time.perf_counter() - t0


@contextmanager
def _backend(name: str, gpus: float = 0.0):
    """joblib's context for backend ``name``, with what the cluster backends need to find their cluster; with
    ``gpus`` > 0 every task of a cluster backend asks it for that share of a GPU (``_gpu_request``)."""
    client = None
    if name == "dask":
        try:
            from distributed import Client, default_client
        except ImportError as err:
            raise ImportError("backend 'dask' needs dask.distributed: pip install 'reprolib[cluster]'.") from err
        try:
            default_client()
        except ValueError:  # no client in this process: connect to the configured scheduler
            import dask

            address = dask.config.get("scheduler-address", None)  # DASK_SCHEDULER_ADDRESS
            if not address:
                raise RuntimeError("backend 'dask' needs a Dask cluster: create a distributed.Client first, or set "
                                   "DASK_SCHEDULER_ADDRESS=tcp://host:8786.") from None
            client = Client(address)
    elif name == "ray":
        try:
            from ray.util.joblib import register_ray
        except ImportError as err:
            raise ImportError("backend 'ray' needs Ray: pip install 'reprolib[cluster]'.") from err
        register_ray()
    try:
        with joblib.parallel_config(backend=name, **_gpu_request(name, gpus)):
            yield
    finally:
        if client is not None:
            client.close()


def _gpu_request(name: str, gpus: float) -> dict:
    """What joblib's backend ``name`` takes to make each task ask the cluster for ``gpus`` of a GPU: a Dask worker
    resource ``GPU`` (workers started with ``--resources GPU=<cards>``), or Ray's ``num_gpus``, with which Ray
    also sets each worker's CUDA_VISIBLE_DEVICES to the card it gives. Refused at once when no worker offers that
    much, since the tasks would otherwise wait for it forever."""
    if not gpus or name not in ("dask", "ray"):
        return {}
    if name == "dask":
        from distributed import default_client

        offers = [w.get("resources", {}).get("GPU", 0) for w in default_client().scheduler_info()["workers"].values()]
        request = {"resources": {"GPU": gpus}}
        how = "start the Dask workers with --resources GPU=<their cards> (LocalCluster(resources={'GPU': 1}))"
    else:
        import ray

        if not ray.is_initialized():
            ray.init()  # RAY_ADDRESS, else a local cluster: what Ray's joblib backend would start
        offers = [node.get("Resources", {}).get("GPU", 0) for node in ray.nodes() if node.get("Alive")]
        request = {"ray_remote_args": {"num_gpus": gpus}}
        how = "start the Ray nodes where Ray sees their GPUs (ray start --num-gpus=<cards>)"
    if max(offers, default=0) < gpus:
        raise RuntimeError(f"every training asks the {name} cluster for {gpus:g} GPU, and no worker offers one: {how}, "
                           "or train on the CPU (device=cpu).")
    return request


def _ray_slots(name: str, gpus: float, n_jobs: int) -> int:
    """``n_jobs``, cut for Ray to the workers its cluster holds at once: its joblib backend starts ``n_jobs`` workers
    of one CPU (and ``gpus`` of a GPU) each, which hold them for as long as the sweep runs, and refuses more than
    the cluster's CPUs."""
    if name != "ray":
        return n_jobs
    import ray

    if not ray.is_initialized():
        ray.init()
    have = ray.cluster_resources()
    slots = min(n_jobs, int(have.get("CPU", 1)), int(have.get("GPU", 0) / gpus + 1e-9) if gpus else n_jobs)
    return max(1, slots)


_CLUSTER_BACKENDS = {"DaskDistributedBackend": "dask", "RayBackend": "ray"}


def _local_backend() -> bool:
    """Whether joblib's active backend is one of its own (this machine): a cluster backend set by the caller's
    ``joblib.parallel_config`` must get the work even at n_jobs=1."""
    active, _ = joblib.parallel.get_active_backend()
    return type(active).__name__ in ("LokyBackend", "MultiprocessingBackend", "ThreadingBackend", "SequentialBackend")


def run_all(fn: Callable, configs: Sequence, store: Store | None = None, n_jobs: int = 2,
            threads: int = machine.TRAIN_THREADS,
            is_done: Callable | None = None, progress: bool = True, label: Callable = str,
            backend: str | None = None, gpus: float = 0.0) -> dict:
    """Run ``fn(cfg, store, progress=False)`` for every config not yet done; returns {label: seconds}.

    ``is_done(cfg, store)`` skips finished work (so a warm store costs nothing); ``label(cfg)`` names a
    config in the progress bar. Configs start in the given order: put the longest first to balance the workers.
    ``backend`` (default ``REPRO_SWEEP_BACKEND``, else joblib's active one) is a joblib backend name such as
    ``"loky"``, ``"dask"`` or ``"ray"``; ``n_jobs`` is passed to it (Dask sends tasks to every worker anyway).
    ``gpus`` > 0 makes every task ask a cluster backend for that share of a GPU (``_gpu_request``); this machine's
    own workers find their card themselves (``machine.gpu``).
    """
    backend = backend or os.environ.get("REPRO_SWEEP_BACKEND") or None
    if backend is None and gpus and not _local_backend():  # a cluster backend the caller's parallel_config set
        backend = _CLUSTER_BACKENDS.get(type(joblib.parallel.get_active_backend()[0]).__name__)
    store = store or Store()
    unique = list({repr(c): c for c in configs}.values())  # one training per distinct config
    todo = [c for c in unique if is_done is None or not is_done(c, store)]
    times = {}
    if not todo:
        return times
    bar = tqdm(total=len(todo), desc="sweep", disable=not progress)
    progress_lib.update("sweep", "models", 0, len(todo))
    if n_jobs == 1 and backend is None and _local_backend():
        results = (_run(fn, c, str(store.root), threads) for c in todo)
        _collect(results, times, bar, label)
    else:
        with _backend(backend, gpus) if backend else joblib.parallel_config():
            n_jobs = _ray_slots(backend, gpus, n_jobs)
            # each result as it comes where the backend can hand them so (loky, Dask); Ray's, all at the end
            streams = getattr(joblib.parallel.get_active_backend()[0], "supports_return_generator", False)
            results = joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered" if streams else "list")(
                joblib.delayed(_run)(fn, c, str(store.root), threads) for c in todo)
            _collect(results, times, bar, label)
    bar.close()
    return times


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def priorities(costs: Sequence[float], after: Sequence[Sequence[int]]) -> list[float]:
    """Each job's cost plus the longest chain of jobs that wait for it (``after[j]``: the jobs job j waits for):
    the work that cannot start before it has, the priority of list scheduling's critical-path rule."""
    waiting = [[] for _ in costs]
    for j, needs in enumerate(after):
        for i in needs:
            waiting[i].append(j)
    out: list[float | None] = [None] * len(costs)
    visiting = set()

    def chain(i: int) -> float:
        if out[i] is None:
            if i in visiting:
                raise ValueError(f"job {i} waits for itself through `after`: it must not have a cycle")
            visiting.add(i)
            out[i] = costs[i] + max((chain(j) for j in waiting[i]), default=0.0)
        return out[i]

    return [chain(i) for i in range(len(costs))]


def makespan(costs: Sequence[float], after: Sequence[Sequence[int]], n_jobs: int) -> tuple[float, list[float]]:
    """What ``run_scheduled`` does on ``n_jobs`` workers when every job takes exactly its cost: the time the last
    job ends, and each job's start. A simulation of its list scheduling, for planning (``benchmarks/bench_plan.py``)."""
    prio = priorities(costs, after)
    pending, done, starts, running, now = set(range(len(costs))), set(), [0.0] * len(costs), {}, 0.0
    while pending or running:
        ready = sorted((j for j in pending if set(after[j]) <= done), key=lambda j: (-prio[j], j))
        for j in ready[: n_jobs - len(running)]:
            pending.discard(j)
            starts[j], running[j] = now, now + costs[j]
        now = min(running.values())
        for j in [j for j, end in running.items() if end == now]:
            done.add(j)
            del running[j]
    return now, starts


def run_scheduled(fn: Callable, jobs: Sequence, costs: Sequence[float], after: Sequence[Sequence[int]],
                  store: Store | None = None, n_jobs: int = 2, threads: int = machine.TRAIN_THREADS,
                  progress: bool = True, label: Callable = str, backend: str | None = None,
                  gpus: float = 0.0) -> dict:
    """Run ``fn(job, store, progress=False)`` for every job, at most ``n_jobs`` at once, each only after the jobs it
    waits for (``after[j]``: indices into ``jobs``) have finished; returns {label: seconds}.

    List scheduling (Graham 1966) with the critical-path rule: whenever a worker is free it takes the ready job
    with the most work behind it (``priorities``), so a long chain of dependent trainings starts first and the
    short jobs fill the other worker around it. ``costs`` only order the jobs; any consistent unit does. With a
    cluster backend (``backend``, ``REPRO_SWEEP_BACKEND`` or joblib's active one) the jobs go wave by wave through
    ``run_all``, each wave the jobs whose predecessors are done, each job asking for ``gpus`` of a GPU there.
    """
    backend = backend or os.environ.get("REPRO_SWEEP_BACKEND") or None
    store = store or Store()
    prio = priorities(costs, after)
    pending, done, times = set(range(len(jobs))), set(), {}
    if not pending:
        return times

    def ready() -> list[int]:
        return sorted((j for j in pending if set(after[j]) <= done), key=lambda j: (-prio[j], j))

    bar = tqdm(total=len(jobs), desc="sweep", disable=not progress)
    progress_lib.update("sweep", "models", 0, len(jobs))
    if backend is not None or not _local_backend():
        while pending:
            wave = ready()
            times.update(run_all(fn, [jobs[j] for j in wave], store, n_jobs, threads, label=label, backend=backend,
                                 progress=False, gpus=gpus))
            pending -= set(wave)
            done |= set(wave)
        bar.close()
        return times
    if n_jobs == 1:
        while pending:
            j = ready()[0]
            pending.discard(j)
            _collect([_run(fn, jobs[j], str(store.root), threads)], times, bar, label, len(done))
            done.add(j)
        bar.close()
        return times
    from joblib.executor import get_memmapping_executor

    # joblib's own worker pool (the one run_all's loky backend reuses), with the thread limits it gives its workers
    executor = get_memmapping_executor(n_jobs, env={var: str(threads) for var in _THREAD_VARS})
    running, failed = {}, None
    try:
        while (pending and failed is None) or running:
            for j in ready()[: n_jobs - len(running)] if failed is None else []:
                pending.discard(j)
                running[executor.submit(_run, fn, jobs[j], str(store.root), threads)] = j
            finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                j = running.pop(future)
                if future.exception() is not None:  # start nothing new; the running jobs finish into the store
                    failed = failed or future.exception()
                    continue
                _collect([future.result()], times, bar, label, len(done))
                done.add(j)
    finally:
        for future in running:
            future.cancel()
    bar.close()
    if failed is not None:
        raise failed
    return times


def _collect(results, times: dict, bar, label: Callable, before: int = 0) -> None:
    """Record finished jobs (``before`` of the sweep's had finished earlier)."""
    for done, (cfg, seconds) in enumerate(results, before + 1):
        progress_lib.update("sweep", "models", done, bar.total)
        times[label(cfg)] = seconds
        bar.set_postfix_str(f"done {label(cfg)} in {seconds:.0f}s")
        bar.update()


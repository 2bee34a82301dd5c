"""Many independent trainings at once, through joblib, so the same sweep runs anywhere.

On 2 cores two one-thread processes train faster in total than one two-thread process (threads give
only 1.3-1.5x), so the default is ``n_jobs`` processes of ``threads`` thread each. Every finished
model lands in the store, so an interrupted sweep resumes where it stopped, and every notebook reuses
what any other has trained.

To hand a sweep to a cluster, wrap the call in joblib's backend context; nothing else changes::

    from dask.distributed import Client
    import joblib
    client = Client("scheduler-address:8786")   # or Client(n_workers=2) for a local cluster
    with joblib.parallel_config(backend="dask"):
        sweep.run_all(zoo.fit, configs, is_done=zoo.is_fitted)

(Ray: ``from ray.util.joblib import register_ray; register_ray()`` then ``backend="ray"``.)
The workers need the same store folder (a shared disk, or set ``REPRO_STORE`` on each).
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import joblib
import torch
from tqdm.auto import tqdm

from .store import Store


def _run(fn: Callable, cfg, store_root: str, threads: int):
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    fn(cfg, Store(store_root), progress=False)
    return cfg, time.perf_counter() - t0


def run_all(fn: Callable, configs: Sequence, store: Store | None = None, n_jobs: int = 2, threads: int = 1,
            is_done: Callable | None = None, progress: bool = True, label: Callable = str) -> dict:
    """Run ``fn(cfg, store, progress=False)`` for every config not yet done; returns {label: seconds}.

    ``is_done(cfg, store)`` skips finished work (so a warm store costs nothing); ``label(cfg)`` names a
    config in the progress bar. Configs start in the given order: put the longest first to balance the workers.
    """
    store = store or Store()
    unique = list({repr(c): c for c in configs}.values())  # one training per distinct config
    todo = [c for c in unique if is_done is None or not is_done(c, store)]
    times = {}
    if not todo:
        return times
    bar = tqdm(total=len(todo), desc="sweep", disable=not progress)
    if n_jobs == 1:
        torch_threads = torch.get_num_threads()
        results = (_run(fn, c, str(store.root), torch_threads) for c in todo)
    else:
        results = joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            joblib.delayed(_run)(fn, c, str(store.root), threads) for c in todo)
    for cfg, seconds in results:
        times[label(cfg)] = seconds
        bar.set_postfix_str(f"done {label(cfg)} in {seconds:.0f}s")
        bar.update()
    bar.close()
    return times


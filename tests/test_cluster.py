"""Sweeps handed to a Dask cluster through joblib: a local cluster of two worker processes, started here.

The same configs trained in this process must give the very same weights (all randomness comes from the
config's seed, and each training runs on one thread wherever it runs).
"""

from __future__ import annotations

import re

import dask
import joblib
import pytest
import torch
from distributed import Client, LocalCluster, default_client

from reprolib import fitting, profiles, sweep, zoo
from reprolib.store import Store
from reprolib.train import KIND


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def regime_configs():
    """Notebook 02's smoke sweep (2 sizes x 2 widths), 5 steps each."""
    P = profiles.settings("02", "smoke", steps={16: 5, 256: 5}, batch=16)
    return list(zoo.regimes(P).values())


def trainings_run_by_workers(cluster) -> int:
    """How many ``sweep._run`` calls the workers executed, from their own task logs (joblib names a task
    ``batch_of__run_<calls>_calls-<id>``)."""
    with Client(cluster) as client:
        logs = client.run(lambda dask_worker: sorted({str(e[0]) for e in dask_worker.state.log}))
    keys = {k for keys in logs.values() for k in keys}
    return sum(int(m[1]) for k in keys if (m := re.match(r"batch_of__run_(\d+)_calls", k)))


def assert_same_weights(a: Store, b: Store, configs):
    for cfg in configs:
        wa, wb = (s.load(KIND, cfg.key_dict(), "final")["ema"] for s in (a, b))
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f"{fitting.describe(cfg)} differs"


def test_dask_sweep_lands_in_the_store_bitwise_equal_to_in_process(cluster, tmp_path):
    configs = regime_configs()
    assert len(configs) == 4
    before = trainings_run_by_workers(cluster)
    on_cluster = Store(tmp_path / "cluster")
    with Client(cluster):
        times = sweep.run_all(fitting.fit, configs, on_cluster, n_jobs=2, backend="dask", is_done=fitting.is_fitted,
                              label=fitting.describe, progress=False)
    assert sorted(times) == sorted(fitting.describe(c) for c in configs)
    assert trainings_run_by_workers(cluster) - before == 4  # trained by the workers, not here
    assert all(fitting.is_fitted(c, on_cluster) for c in configs)

    here = Store(tmp_path / "here")
    sweep.run_all(fitting.fit, configs, here, n_jobs=1, is_done=fitting.is_fitted, progress=False)
    assert_same_weights(on_cluster, here, configs)
    first = on_cluster.load(KIND, configs[0].key_dict(), "final")["ema"]
    other = on_cluster.load(KIND, configs[1].key_dict(), "final")["ema"]
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].shape == other[k].shape)


def test_joblib_context_and_environment_reach_the_cluster_even_at_one_job(cluster, tmp_path, monkeypatch):
    """A notebook cannot take an argument: REPRO_SWEEP_BACKEND and the scheduler's address reach it (papermill
    kernels inherit the environment); n_jobs=1 (the paper profile's) must not fall back to this process."""
    configs = regime_configs()[:2]
    before = trainings_run_by_workers(cluster)
    with Client(cluster), joblib.parallel_config(backend="dask"):
        sweep.run_all(fitting.fit, configs, Store(tmp_path / "context"), n_jobs=1, is_done=fitting.is_fitted,
                      progress=False)
    assert trainings_run_by_workers(cluster) - before == 2

    monkeypatch.setenv("REPRO_SWEEP_BACKEND", "dask")
    with pytest.raises(RuntimeError, match="DASK_SCHEDULER_ADDRESS"):  # no client, no address: say what to do
        sweep.run_all(fitting.fit, configs, Store(tmp_path / "env"), n_jobs=1, is_done=fitting.is_fitted,
                      progress=False)
    before = trainings_run_by_workers(cluster)
    with dask.config.set({"scheduler-address": cluster.scheduler_address}):  # what DASK_SCHEDULER_ADDRESS sets
        P = profiles.settings("02", "smoke", n_jobs=1)
        fitting.fit_all(configs, Store(tmp_path / "env"), P)
    assert trainings_run_by_workers(cluster) - before == 2
    assert all(fitting.is_fitted(c, Store(tmp_path / "env")) for c in configs)
    assert_same_weights(Store(tmp_path / "env"), Store(tmp_path / "context"), configs)
    with pytest.raises(ValueError):  # the client run_all opened for the sweep was closed after it
        default_client()


# ---------------------------------------------------------------- GPUs as a resource, and many writers


@pytest.fixture(scope="module")
def gpu_cluster():
    """Two workers of two threads, each offering one (pretend) GPU: the resource, not the threads, must keep a
    worker to one training at a time."""
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None,
                      resources={"GPU": 1}) as c:
        yield c


def _timed(seen):
    """A job that notes its worker process and when it ran (local: Dask's workers get it by value)."""
    import os
    import time

    def job(cfg, store, progress):
        t0 = time.time()
        time.sleep(1.0)
        (seen / f"{cfg}-{os.getpid()}-{t0}-{time.time()}").touch()

    return job


def _overlap_in_one_process(seen) -> bool:
    runs = [p.name.split("-") for p in seen.iterdir()]
    return any(a[1] == b[1] and a[0] != b[0] and float(a[2]) < float(b[3]) and float(b[2]) < float(a[3])
               for a in runs for b in runs)


def test_on_dask_each_training_asks_for_a_gpu_and_a_worker_runs_one_at_a_time(gpu_cluster, tmp_path):
    for gpus, limited in ((1, True), (0, False)):
        seen = tmp_path / f"gpus{gpus}"
        seen.mkdir()
        with Client(gpu_cluster):
            sweep.run_all(_timed(seen), list(range(4)), Store(tmp_path / "store"), n_jobs=4, backend="dask",
                          progress=False, gpus=gpus)
        assert len(list(seen.iterdir())) == 4
        # asking for the GPU keeps each worker to one training; without it, a worker's two threads take two at once
        assert _overlap_in_one_process(seen) is not limited


def test_a_gpu_request_no_dask_worker_can_meet_is_refused_at_once(cluster, tmp_path):
    with Client(cluster), pytest.raises(RuntimeError, match="--resources GPU"):
        sweep.run_all(_timed(tmp_path), [0], Store(tmp_path / "store"), n_jobs=1, backend="dask", progress=False,
                      gpus=1)
    assert not list(tmp_path.glob("0-*"))


def test_fit_all_asks_a_cluster_for_the_profiles_share_of_a_gpu_on_cuda(monkeypatch):
    asked = []
    monkeypatch.setattr(sweep, "run_scheduled", lambda *a, **k: asked.append(k["gpus"]) or {})
    for profile, device in (("paper", "cuda"), ("mnist", "cuda:1"), ("cpu", "cpu")):
        fitting.fit_all([], Store("/nonexistent"), {"profile": profile, "device": device, "n_jobs": 1})
    assert asked == [1.0, 1 / profiles.GPU_WORKERS["mnist"], 0.0]


def _counting_fit(trained, slow: float = 1.0):
    """fitting.fit that notes every training it really runs (not a load), slowed so that two racing calls overlap."""
    import os
    import time

    def fit(cfg, store, progress=False):
        from reprolib import loop

        run = loop.run

        def counting(job, *args, **kwargs):
            (trained / f"{os.getpid()}-{time.time()}").touch()
            time.sleep(slow)
            return run(job, *args, **kwargs)

        loop.run = counting
        try:
            fitting.fit(cfg, store, progress=False)
        finally:
            loop.run = run
        return os.getpid()

    return fit


def test_two_dask_workers_racing_for_one_model_train_it_once(cluster, tmp_path):
    cfg, trained, store = regime_configs()[0], tmp_path / "trained", Store(tmp_path / "store")
    trained.mkdir()
    with Client(cluster) as client:
        a, b = list(client.scheduler_info()["workers"])
        fit = _counting_fit(trained)
        futures = [client.submit(fit, cfg, store, workers=[w], pure=False) for w in (a, b)]
        pids = client.gather(futures)
    assert len(set(pids)) == 2  # both workers asked for it
    assert len(list(trained.iterdir())) == 1 and fitting.is_fitted(cfg, store)


def test_a_preempted_training_resumes_from_its_checkpoint_on_a_dask_worker(cluster, tmp_path):
    from reprolib.train import TrainConfig, train

    cfg = TrainConfig(net={"kind": "mlp", "width": 32, "depth": 1}, steps=40, batch=16, ckpt_every=10, n=64)

    class Preempted(Exception):
        pass

    def preempt_at_25(step, loss):
        if step == 25:
            raise Preempted

    here = Store(tmp_path / "here")
    with pytest.raises(Preempted):
        train(cfg, here, progress=False, callback=preempt_at_25)
    assert here.load(KIND, cfg.key_dict(), "checkpoint")["step"] == 20

    def resume(cfg, store):
        steps = []
        train(cfg, store, progress=False, callback=lambda step, loss: steps.append(step))
        return steps

    with Client(cluster) as client:
        steps = client.submit(resume, cfg, here, pure=False).result()
    assert steps == list(range(20, 40))  # from the checkpoint, not from the start
    whole = Store(tmp_path / "whole")
    train(cfg, whole, progress=False)
    assert_same_weights(here, whole, [cfg])

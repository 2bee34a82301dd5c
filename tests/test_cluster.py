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

from reprolib import profiles, sweep, zoo
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
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f"{zoo.describe(cfg)} differs"


def test_dask_sweep_lands_in_the_store_bitwise_equal_to_in_process(cluster, tmp_path):
    configs = regime_configs()
    assert len(configs) == 4
    before = trainings_run_by_workers(cluster)
    on_cluster = Store(tmp_path / "cluster")
    with Client(cluster):
        times = sweep.run_all(zoo.fit, configs, on_cluster, n_jobs=2, backend="dask", is_done=zoo.is_fitted,
                              label=zoo.describe, progress=False)
    assert sorted(times) == sorted(zoo.describe(c) for c in configs)
    assert trainings_run_by_workers(cluster) - before == 4  # trained by the workers, not here
    assert all(zoo.is_fitted(c, on_cluster) for c in configs)

    here = Store(tmp_path / "here")
    sweep.run_all(zoo.fit, configs, here, n_jobs=1, is_done=zoo.is_fitted, progress=False)
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
        sweep.run_all(zoo.fit, configs, Store(tmp_path / "context"), n_jobs=1, is_done=zoo.is_fitted, progress=False)
    assert trainings_run_by_workers(cluster) - before == 2

    monkeypatch.setenv("REPRO_SWEEP_BACKEND", "dask")
    with pytest.raises(RuntimeError, match="DASK_SCHEDULER_ADDRESS"):  # no client, no address: say what to do
        sweep.run_all(zoo.fit, configs, Store(tmp_path / "env"), n_jobs=1, is_done=zoo.is_fitted, progress=False)
    before = trainings_run_by_workers(cluster)
    with dask.config.set({"scheduler-address": cluster.scheduler_address}):  # what DASK_SCHEDULER_ADDRESS sets
        P = profiles.settings("02", "smoke", n_jobs=1)
        zoo.fit_all(configs, Store(tmp_path / "env"), P)
    assert trainings_run_by_workers(cluster) - before == 2
    assert all(zoo.is_fitted(c, Store(tmp_path / "env")) for c in configs)
    assert_same_weights(Store(tmp_path / "env"), Store(tmp_path / "context"), configs)
    with pytest.raises(ValueError):  # the client run_all opened for the sweep was closed after it
        default_client()

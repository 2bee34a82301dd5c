"""Sweeps handed to a Ray cluster through joblib, as tests/test_cluster.py does for Dask: a local Ray cluster of
two worker processes, started here, trains notebook 02's smoke sweep into the store, bit for bit the weights of
the same configs trained in this process."""

from __future__ import annotations

import os
import pytest

from reprolib import sweep, zoo
from reprolib.store import Store

from test_cluster import assert_same_weights, regime_configs

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_sweep_lands_in_the_store_bitwise_equal_to_in_process(cluster, tmp_path):
    configs, seen = regime_configs(), tmp_path / "pids"
    seen.mkdir()

    def fit_noting_the_process(cfg, store, progress):  # local: Ray's workers get it by value, not by import
        (seen / str(os.getpid())).touch()
        return zoo.fit(cfg, store, progress=progress)

    on_cluster = Store(tmp_path / "cluster")
    times = sweep.run_all(fit_noting_the_process, configs, on_cluster, n_jobs=2, backend="ray",
                          is_done=zoo.is_fitted, label=zoo.describe, progress=False)
    assert sorted(times) == sorted(zoo.describe(c) for c in configs)
    workers = {int(p.name) for p in seen.iterdir()}
    assert workers and os.getpid() not in workers  # trained by Ray's workers, not here
    assert all(zoo.is_fitted(c, on_cluster) for c in configs)

    here = Store(tmp_path / "here")
    sweep.run_all(zoo.fit, configs, here, n_jobs=1, is_done=zoo.is_fitted, progress=False)
    assert_same_weights(on_cluster, here, configs)

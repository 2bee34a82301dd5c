"""Sweeps handed to a Ray cluster through joblib, as tests/test_cluster.py does for Dask: a local Ray cluster of
two worker processes, started here, trains notebook 02's smoke sweep into the store, bit for bit the weights of
the same configs trained in this process. The cluster offers two (pretend) GPUs: Ray hands them out on request,
whether or not a card is behind them."""

from __future__ import annotations

import os
import pytest

from reprolib import fitting, sweep
from reprolib.store import Store

from test_cluster import _counting_fit, assert_same_weights, regime_configs

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_sweep_lands_in_the_store_bitwise_equal_to_in_process(cluster, tmp_path):
    configs, seen = regime_configs(), tmp_path / "pids"
    seen.mkdir()

    def fit_noting_the_process(cfg, store, progress):  # local: Ray's workers get it by value, not by import
        (seen / str(os.getpid())).touch()
        return fitting.fit(cfg, store, progress=progress)

    on_cluster = Store(tmp_path / "cluster")
    times = sweep.run_all(fit_noting_the_process, configs, on_cluster, n_jobs=2, backend="ray",
                          is_done=fitting.is_fitted, label=fitting.describe, progress=False)
    assert sorted(times) == sorted(fitting.describe(c) for c in configs)
    workers = {int(p.name) for p in seen.iterdir()}
    assert workers and os.getpid() not in workers  # trained by Ray's workers, not here
    assert all(fitting.is_fitted(c, on_cluster) for c in configs)

    here = Store(tmp_path / "here")
    sweep.run_all(fitting.fit, configs, here, n_jobs=1, is_done=fitting.is_fitted, progress=False)
    assert_same_weights(on_cluster, here, configs)


def _noting_the_gpu(seen):
    def job(cfg, store, progress):  # local: Ray's workers get it by value
        import ray

        ids = ",".join(str(i) for i in ray.get_gpu_ids())
        (seen / f"{cfg}-{os.getpid()}-{ids}-{os.environ.get('CUDA_VISIBLE_DEVICES')}").touch()

    return job


@pytest.mark.parametrize("gpus,workers", [(1, 2), (0.5, 4)])
def test_on_ray_each_training_is_given_its_own_share_of_a_gpu(cluster, tmp_path, gpus, workers):
    """Ray gives each of its joblib workers the GPU share it asks for and sets CUDA_VISIBLE_DEVICES to that card, so
    a training on "cuda" runs on it; n_jobs beyond the shares the cluster holds (2 GPUs / gpus, 4 CPUs) is cut to
    them."""
    seen = tmp_path / "seen"
    seen.mkdir()
    sweep.run_all(_noting_the_gpu(seen), list(range(8)), Store(tmp_path / "store"), n_jobs=8, backend="ray",
                  progress=False, gpus=gpus)
    runs = [p.name.split("-") for p in seen.iterdir()]
    assert sorted(int(r[0]) for r in runs) == list(range(8))
    assert all(r[2] in ("0", "1") and r[3] == r[2] for r in runs)  # one card each, and the one torch will see
    cards = {pid: {r[2] for r in runs if r[1] == pid} for pid in {r[1] for r in runs}}
    assert all(len(c) == 1 for c in cards.values()) and len(cards) <= workers
    per_card = [sum(c == {k} for c in cards.values()) for k in ("0", "1")]
    assert max(per_card) <= 1 / gpus  # a card never holds more trainings than its shares


def test_a_gpu_request_the_ray_cluster_cannot_meet_is_refused_at_once(cluster, tmp_path):
    with pytest.raises(RuntimeError, match="num-gpus"):
        sweep.run_all(_noting_the_gpu(tmp_path), [0], Store(tmp_path / "store"), n_jobs=1, backend="ray",
                      progress=False, gpus=3)
    assert not list(tmp_path.glob("0-*"))


def test_two_ray_workers_racing_for_one_model_train_it_once(cluster, tmp_path):
    cfg, trained, store = regime_configs()[0], tmp_path / "trained", Store(tmp_path / "store")
    trained.mkdir()
    fit = ray.remote(num_cpus=1)(_counting_fit(trained))
    pids = ray.get([fit.remote(cfg, store) for _ in range(2)])
    assert len(set(pids)) == 2  # two worker processes asked for it at once
    assert len(list(trained.iterdir())) == 1 and fitting.is_fitted(cfg, store)

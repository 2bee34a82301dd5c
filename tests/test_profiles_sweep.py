"""Profiles (sizes per notebook) and the sweep runner (parallel trainings that resume through the store)."""

from __future__ import annotations

import pytest
import torch

from reprolib import profiles, sweep, zoo
from reprolib.store import Store
from reprolib.train import TrainConfig, is_trained


def test_settings_apply_overrides_and_refuse_unknown_names():
    p = profiles.settings("01", "smoke", seeds=7)
    assert p["seeds"] == 7 and p["profile"] == "smoke" and p["device"] == "cpu"
    with pytest.raises(ValueError, match="Unknown profile 'laptop'.*smoke, cpu, paper"):
        profiles.settings("01", "laptop")
    with pytest.raises(ValueError, match=r"Unknown setting\(s\) \['seedz'\]"):
        profiles.settings("01", "smoke", seedz=3)
    with pytest.raises(ValueError, match="No settings for notebook '99'"):
        profiles.settings("99", "smoke")


def test_profile_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("REPRO_PROFILE", "smoke")
    assert profiles.current() == "smoke"
    monkeypatch.delenv("REPRO_PROFILE")
    assert profiles.current() == "cpu"


def test_paper_profile_is_expressible_and_picks_the_device():
    p = profiles.settings("01", "paper")
    assert p["data"] == "cifar10" and p["shape"] == (3, 32, 32) and p["seeds"] == 10_000
    assert p["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    variants = zoo.section1(p)
    assert all(v.cfg.data == "cifar10" for v in variants)
    assert {v.cfg.net["kind"] for v in variants} == {"unet", "mlp", "uvit"}


def test_section1_varies_architecture_formulation_sampler_and_seed():
    variants = zoo.section1(profiles.settings("01", "cpu"))
    assert len(variants) >= 6
    assert {v.cfg.net["kind"] for v in variants} >= {"unet", "mlp", "uvit"}
    assert {v.cfg.formulation for v in variants} >= {"edm", "ddpm", "flow"}
    assert len({v.sampler for v in variants}) >= 3
    assert len({v.cfg.seed for v in variants}) >= 2


def _tiny(seed):
    return TrainConfig(n=32, net={"kind": "mlp", "width": 16, "depth": 1}, steps=5, batch=8, seed=seed)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_run_all_trains_each_distinct_config_once_and_skips_finished_ones(tmp_path, n_jobs):
    store = Store(tmp_path)
    configs = [_tiny(0), _tiny(1), _tiny(0)]  # a duplicate must not be trained twice
    times = sweep.run_all(zoo.fit, configs, store, n_jobs=n_jobs, is_done=zoo.is_fitted, label=zoo.describe,
                          progress=False)
    assert sorted(times) == sorted({zoo.describe(_tiny(0)), zoo.describe(_tiny(1))})
    assert all(is_trained(c, store) for c in configs)
    again = sweep.run_all(zoo.fit, configs + [_tiny(2)], store, n_jobs=n_jobs, is_done=zoo.is_fitted,
                          label=zoo.describe, progress=False)
    assert list(again) == [zoo.describe(_tiny(2))]

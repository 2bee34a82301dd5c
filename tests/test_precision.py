"""Mixed-precision training (``TrainConfig.precision``) and the profile setting that hands it to every config
the zoo builds, without moving a single store key at the default (float32)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict

import pytest
import torch

from reprolib import codehash, profiles, zoo
from reprolib.store import Store, config_key
from reprolib.train import KIND, TrainConfig, autocast, build, train

TINY = TrainConfig(n=40, net={"kind": "mlp", "width": 32, "depth": 1}, steps=60, batch=16, warmup=5, ckpt_every=1000)


class Stop(Exception):
    pass


def _run(cfg, store):
    seen = []
    model = train(cfg, store, progress=False, callback=lambda step, loss: seen.append(loss))
    return {k: v.clone() for k, v in model.state_dict().items()}, seen


def _distance(a, b):
    return sum(float((a[k] - b[k]).double().norm() ** 2) for k in a) ** 0.5


@pytest.fixture(scope="module")
def float32_run(tmp_path_factory):
    return _run(TINY, Store(tmp_path_factory.mktemp("fp32")))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_float32_weights_close_to_but_not_equal_to_float32(tmp_path, float32_run, precision):
    state, losses = _run(TINY.replace(precision=precision), Store(tmp_path))
    assert sum(losses[-15:]) / 15 < 0.9 * sum(losses[:15]) / 15  # it learns
    assert {v.dtype for v in state.values()} == {torch.float32}  # the EMA, as saved, stays float32
    saved = Store(tmp_path).load(KIND, TINY.replace(precision=precision).key_dict(), "final")["ema"]
    assert {v.dtype for v in saved.values()} == {torch.float32}
    ref, _ = float32_run
    torch.manual_seed(TINY.seed)
    moved = _distance(ref, build(TINY, (1, 8, 8)).state_dict())
    gap = _distance(state, ref)
    assert gap > 0, "autocast had no effect"
    assert gap < 0.1 * moved, (gap, moved)  # rounding, not a different run: measured 0.3-0.5% of the distance


def test_autocast_context():
    with autocast("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert (torch.ones(2, 3) @ torch.ones(3, 2)).dtype == torch.bfloat16
    with autocast(None, "cpu"):
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(ValueError, match="bf16"):
        autocast("fp8", "cpu")


def test_fp16_run_resumes_bit_identically_with_its_loss_scale(tmp_path):
    cfg = TINY.replace(precision="fp16", steps=40, ckpt_every=20)
    whole, _ = _run(cfg, Store(tmp_path / "whole"))

    def stop(step, loss):
        if step == 30:
            raise Stop

    cut = Store(tmp_path / "cut")
    with pytest.raises(Stop):
        train(cfg, cut, progress=False, callback=stop)
    assert "scale" in cut.load(KIND, cfg.key_dict(), "checkpoint")["scaler"]
    resumed, _ = _run(cfg, cut)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_precision_joins_the_key_only_when_set():
    assert "precision" not in TINY.key_dict()
    assert TINY.replace(precision="bf16").key_dict()["precision"] == "bf16"
    # A fine-tuned config names its parent as ``asdict``, which now holds precision=None: same key as before.
    parent = asdict(TINY)
    child = TINY.replace(init=parent)
    before = {k: v for k, v in parent.items() if k != "precision"}
    assert config_key(child.key_dict()) == config_key(TINY.replace(init=before).key_dict())
    assert config_key(TINY.replace(init=asdict(TINY.replace(precision="bf16"))).key_dict()) != config_key(
        child.key_dict())


def _sweep_configs(profile, **overrides):
    return list(zoo.regimes(profiles.settings("02", profile, **overrides)).values())


ADDED_LATER = ("encoder fine-tune",)  # section 6 models younger than the digest below: new keys, none changed
ADDED_LATER_01 = ("U-Net sub-VP (Heun)", "U-Net CT (1 step)", "U-Net CT (2 steps)",  # section 1's, likewise
                  "U-Net distilled (4 steps)")


def _section_configs(profile, added_later=True, **overrides):
    """Every config the zoo builds outside the size sweep."""
    out = [v.cfg for v in zoo.section1(profiles.settings("01", profile, **overrides))
           if added_later or v.name not in ADDED_LATER_01]
    out += [v.cfg for v in zoo.section4(profiles.settings("04", profile, **overrides))]
    out += [v.cfg for v in zoo.unconditional(profiles.settings("05", profile, **overrides))]
    out += [v.cfg for name, v in zoo.section6(profiles.settings("06", profile, **overrides)).items()
            if added_later or name not in ADDED_LATER]
    out += [v.cfg for v in zoo.section7(profiles.settings("07", profile, **overrides))]
    return out


def _zoo_configs(profile, **overrides):
    return _section_configs(profile, **overrides) + _sweep_configs(profile, **overrides)


# sha256 of the sorted store keys' config parts (each key less its "code" entry): every section but the size
# sweep, taken when section 6's partial fine-tunings began to be read off their longer runs (their 1,500-step keys
# gave way to the longer runs' keys, which notebook 06 trained already: no key new to the store, none other
# changed); the size sweep, taken when its models began to keep EMA snapshots and N <= 32 to train 5,000 steps at
# cpu (after its U-Nets took DDPM++'s details, ``zoo.DDPMPP``): both were meant to retrain it.
# The mnist profile's, taken when it was added (its settings await its pilot: replications/mnist_profile.md).
KEYS_BEFORE = {"smoke": (20, "3c10ba75b7e52436"), "cpu": (20, "c0fc41817e9ecf72"), "paper": (20, "f795ba59c7184d07"),
               "mnist": (20, "fdd87b2988878818")}
SWEEP_KEYS = {"smoke": (4, "018a61dbb441f58d"), "cpu": (24, "254f6bd48d2042c0"), "paper": (30, "a355b09a2628205a"),
              "mnist": (30, "04c920bd893ae744")}
# The whole keys since they hold the digest of the code that trains each model, with that digest held to a
# stand-in naming the artifact kind (a code edit changes the real keys by design: tests/test_codehash.py). Taken
# when keys began to hold code, which changed every key and nothing else (the sections' retaken with the change
# to section 6 above).
KEYS_WITH_CODE = {"smoke": (20, "5d5457ca4f66adc8"), "cpu": (20, "1c64e651e506600f"), "paper": (20, "1ddecc32bd7b1bf4"),
                  "mnist": (20, "1c486b96b9543d4d")}
SWEEP_KEYS_WITH_CODE = {"smoke": (4, "1422638c8875256e"), "cpu": (24, "8fa566973ad8ac05"),
                        "paper": (30, "4488731758b7809a"), "mnist": (30, "95b968601f9f4ebd")}


def _digest(configs, code=True):
    keys = sorted(config_key({k: v for k, v in c.key_dict().items() if code or k != "code"}) for c in configs)
    return len(keys), hashlib.sha256(",".join(keys).encode()).hexdigest()[:16]


@pytest.mark.parametrize("profile", profiles.NAMES)
def test_default_settings_keep_every_store_key(profile, monkeypatch):
    sections, sweep = _section_configs(profile, added_later=False), _sweep_configs(profile)
    assert _digest(sections, code=False) == KEYS_BEFORE[profile]
    assert _digest(sweep, code=False) == SWEEP_KEYS[profile]
    monkeypatch.setattr(codehash, "of", lambda artifact: f"<code of {artifact}>")
    assert _digest(sections) == KEYS_WITH_CODE[profile]
    assert _digest(sweep) == SWEEP_KEYS_WITH_CODE[profile]


def test_precision_setting_reaches_every_config_the_zoo_builds(tmp_path):
    for notebook in profiles.SETTINGS:
        assert profiles.settings(notebook, "paper")["precision"] is None, notebook
    cfgs = _zoo_configs("paper", precision="bf16")
    assert cfgs and all(c.precision == "bf16" for c in cfgs)
    assert all(c.init["precision"] == "bf16" for c in cfgs if c.init is not None)  # fine-tuning parents too
    p07 = profiles.settings("07", "paper", precision="bf16")
    _, privacy, _ = zoo.privacy_models(p07, Store(tmp_path))
    assert privacy and all(c.precision == "bf16" for c in privacy.values())


def test_nets_setting_replaces_backbone_entries():
    P = profiles.settings("04", "paper", nets={"mlp": {"width": 64, "depth": 1}, "unet": {"width": 8}})
    nets = zoo.nets(P)
    assert nets["mlp"] == {"kind": "mlp", "width": 64, "depth": 1}
    assert nets["unet"] == {**zoo.PAPER_NETS["unet"], "width": 8}
    assert nets["uvit"] == zoo.PAPER_NETS["uvit"]

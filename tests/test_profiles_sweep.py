"""Profiles (sizes per notebook) and the sweep runner (parallel trainings that resume through the store)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated

import pytest
import torch

from reprolib import fitting, profiles, sweep, zoo
from reprolib import setting_types as T
from reprolib.store import Store
from reprolib.train import TrainConfig, is_trained


def test_settings_apply_overrides_and_refuse_unknown_names():
    p = profiles.settings("01", "smoke", seeds=7)
    assert p["seeds"] == 7 and p["profile"] == "smoke" and p["device"] == "cpu"
    with pytest.raises(ValueError, match="Unknown profile 'laptop'.*smoke, cpu, mnist, paper"):
        profiles.settings("01", "laptop")
    with pytest.raises(ValueError, match=r"notebook 01: unknown setting seedz=3; known settings: .*seeds"):
        profiles.settings("01", "smoke", seedz=3)
    with pytest.raises(ValueError, match="No settings for notebook '99'"):
        profiles.settings("99", "smoke")


# ---------------------------------------------------------------- settings checks


@pytest.mark.parametrize("profile", profiles.NAMES)
@pytest.mark.parametrize("notebook", list(profiles.SETTINGS))
def test_every_default_passes_the_checks_also_as_papermill_hands_it_over(notebook, profile):
    defaults = profiles.SETTINGS[notebook][profile]
    assert profiles.validate(notebook, profile, dict(defaults)) == []
    as_json = json.loads(json.dumps(defaults))  # tuples become lists, integer keys strings
    assert profiles.validate(notebook, profile, as_json) == []


BAD = [  # (notebook, setting, value, words of what is allowed)
    ("01", "seeds", "abc", "a positive integer"),
    ("01", "seeds", -5, "a positive integer"),
    ("01", "seeds", 2.5, "a positive integer"),
    ("01", "sample_steps", 0, "a positive integer"),
    ("01", "claims_strict", 1, "True or False"),
    ("01", "steps_scale", 0, "a number > 0"),
    ("01", "data", "imagenet", "one of 'digits', 'mnist', 'cifar10'"),
    ("01", "device", "gpu", "'cuda:N'"),
    ("01", "precision", "fp8", "one of None, 'bf16', 'fp16'"),
    ("01", "similarity", "ssim", "one of 'pixel', 'sscd'"),
    ("01", "public_checkpoints", "google/ddpm-cifar10-32", "a list of strings"),
    ("02", "sizes", [16, -3], "a non-empty list of positive integers"),
    ("02", "widths", [], "a non-empty list of positive integers"),
    ("02", "lr", -1e-3, "a number > 0"),
    ("02", "steps", {16: "long", 256: 30}, "a dict {a positive integer: a positive integer}"),
    ("04", "guidance", -1.0, "a number >= 0"),
    ("04", "judge", {"width": 0}, "width: a positive integer"),
    ("04", "judge", {"depth": 3}, "CNNConfig"),
    ("04", "nets", {"unet": {"widht": 4}}, "width: a positive integer"),
    ("04", "nets", {"transformer": {}}, "backbones unet, mlp, uvit"),
    ("05", "tasks", ["colorize"], "names among 'inpaint', 'superres', 'deblur'"),
    ("05", "zetas", [1.0], "a list of 2 numbers >= 0"),
    ("06", "source", [0, 10], "class labels 0-9"),
    ("06", "target", [5, 5], "all different"),
]


@pytest.mark.parametrize("notebook,name,value,allowed", BAD, ids=[f"{b[0]}-{b[1]}={b[2]!r}" for b in BAD])
def test_a_bad_value_gives_one_message_naming_notebook_setting_value_and_what_is_allowed(notebook, name, value,
                                                                                        allowed):
    [message] = profiles.validate(notebook, "cpu", {name: value})
    assert message.startswith(f"notebook {notebook}: {name}={value!r} is not allowed: ") and allowed in message
    with pytest.raises(ValueError) as err:  # and nothing is run: settings refuses them first
        profiles.settings(notebook, "cpu", **{name: value})
    assert str(err.value) == message


def test_every_problem_is_reported_at_once():
    problems = profiles.validate("01", "smoke", {"seeds": "abc", "n_jobs": 0, "seedz": 3, "sample_steps": 4})
    assert len(problems) == 3
    assert [p.split(":")[1].split("=")[0].strip() for p in problems] == ["seeds", "n_jobs", "unknown setting seedz"]
    with pytest.raises(ValueError) as err:
        profiles.settings("01", "smoke", seeds="abc", n_jobs=0, seedz=3)
    assert str(err.value).splitlines() == problems


CROSS = [  # settings fine alone, not together: (notebook, profile, overrides, the setting named first, words)
    ("02", "paper", {"sizes": [8, 16]}, "sizes", 
     "steps needs a training length for every N of sizes (none for [8, 16])"),
    ("02", "smoke", {"steps": {16: 3}}, "steps", "(none for [256])"),
    ("02", "cpu", {"curve_seeds": 600}, "curve_seeds", "at most seeds"),
    ("07", "cpu", {"edit_seeds": 501}, "edit_seeds", "at most seeds"),
    ("01", "cpu", {"data": "cifar10"}, "data", "the images of cifar10 are (3, 32, 32)"),
    ("02", "cpu", {"sizes": [16, 4096], "steps": {16: 5, 4096: 5}}, "sizes", "digits has 1797 training images"),
    ("05", "cpu", {"images": 2000}, "images", "digits has 1797 training images"),
    ("07", "cpu", {"privacy_sizes": [16, 100]}, "privacy_sizes", "each one of notebook 02's sizes"),
    ("07", "cpu", {"privacy_widths": [12]}, "privacy_widths", "each one of notebook 02's widths"),
]


@pytest.mark.parametrize("notebook,profile,overrides,name,words", CROSS, ids=[f"{c[0]}-{c[3]}" for c in CROSS])
def test_settings_that_do_not_fit_together_are_refused(notebook, profile, overrides, name, words):
    [message] = profiles.validate(notebook, profile, overrides)
    assert message.startswith(f"notebook {notebook}: {name}=") and words in message


def test_consistent_overrides_pass():
    assert profiles.validate("02", "paper", {"sizes": [8, 16], "steps": {"8": 5, "16": 5}}) == []  # JSON keys
    assert profiles.validate("01", "cpu", {"data": "cifar10", "shape": [3, 32, 32], "device": "cuda:1"}) == []
    assert profiles.validate("04", "paper", {"judge": {"width": 4, "epochs": 20, "batch": 32, "lr": 0.1},
                                             "nets": {"unet": {"width": 4, "num_blocks": 1}}}) == []
    assert profiles.validate("06", "cpu", {"source": [5, 6, 7, 8, 9], "target": [0, 1, 2, 3, 4]}) == []
    assert profiles.validate("04", "cpu", {"guidance": 0, "precision": "bf16", "similarity": "sscd"}) == []


@dataclass(frozen=True)
class New(profiles.Common):
    count: Annotated[T.PositiveInt, "how many"]
    ratio: Annotated[T.PositiveNumber, "how much"]
    offset: Annotated[T.Count, "where from"]
    sigmas: Annotated[T.list_of(T.PositiveNumber, non_empty=True), "noise levels"]
    flag: Annotated[T.Flag, "whether"]
    widths: Annotated[T.dict_of(T.PositiveInt, T.PositiveInt), "width -> steps"]
    label: Annotated[T.Name, "a name"]


def test_a_notebook_added_later_gets_its_checks_from_its_declared_class(monkeypatch):
    """Types declared on a new class give its messages; nothing is inferred from defaults."""
    base = {k: v for k, v in profiles.SETTINGS["08"]["cpu"].items() if k in profiles.Common.__dataclass_fields__}
    new = {p: dict(base, count=3, ratio=0.5, offset=0, sigmas=[0.2, 5.0], flag=False, widths={4: 10}, label="x")
           for p in profiles.NAMES}
    monkeypatch.setitem(profiles.SETTINGS, "98", new)
    monkeypatch.setitem(profiles.CLASSES, "98", New)
    assert profiles.validate("98", "cpu", {"count": 7, "ratio": 2, "offset": 0, "sigmas": [1.0], "flag": True}) == []
    assert profiles.validate("98", "cpu", {"widths": {"8": 5}}) == []  # JSON's string keys
    bad = {"count": 0, "ratio": 0.0, "offset": -1, "sigmas": [1.0, -2.0], "flag": "yes", "widths": {4: 0},
           "label": 3}
    problems = profiles.validate("98", "cpu", bad)
    assert len(problems) == len(bad)
    for (name, value), message, allowed in zip(bad.items(), problems, [
            "a positive integer", "a number > 0", "an integer >= 0", "a non-empty list of numbers > 0",
            "True or False", "a dict {a positive integer: a positive integer}", "a string"]):
        assert message == f"notebook 98: {name}={value!r} is not allowed: {allowed} (default {new['cpu'][name]!r})."
    assert profiles.settings("98", "cpu", count=4).count == 4


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
    times = sweep.run_all(fitting.fit, configs, store, n_jobs=n_jobs, is_done=fitting.is_fitted, label=fitting.describe,
                          progress=False)
    assert sorted(times) == sorted({fitting.describe(_tiny(0)), fitting.describe(_tiny(1))})
    assert all(is_trained(c, store) for c in configs)
    again = sweep.run_all(fitting.fit, configs + [_tiny(2)], store, n_jobs=n_jobs, is_done=fitting.is_fitted,
                          label=fitting.describe, progress=False)
    assert list(again) == [fitting.describe(_tiny(2))]


def test_notebook_08_settings_are_checked():
    assert profiles.validate("08", "cpu", {"patch_sizes": [3, 7]}) == []
    [even] = profiles.validate("08", "cpu", {"patch_sizes": [3, 4]})
    assert "patch_sizes=[3, 4]" in even and "odd positive integer" in even
    [many] = profiles.validate("08", "cpu", {"theory_seeds": 501})
    assert "theory_seeds=501" in many and "500" in many

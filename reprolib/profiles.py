"""The sizes every notebook uses, per profile, in one place.

- ``smoke``: seconds per notebook; for tests and CI. Claims are computed and shown, not judged: models this
  small are not converged (``claims_strict=False``).
- ``cpu`` (default): the paper's claims judged on a 2-core laptop with nothing downloaded (``digits``); those
  that do not hold there are recorded in ``expected_verdicts.toml``.
- ``mnist``: real 28x28 MNIST (installed offline with ``reprolib[mnist]``), N up to 2^15 as the paper's Figure 2;
  minutes on one GPU (or hours on many cores). Its sizes are provisional until its pilot has run
  (replications/mnist_profile.md).
- ``paper``: the paper's scale (CIFAR-10 32x32, EDM-sized U-Nets); needs a GPU and the data on disk.

A notebook asks ``settings("01", profile, **overrides)``; overrides replace single entries (papermill's
``overrides`` parameter or ``paper_figures.py --override``). ``validate`` checks them first, with nothing run:
unknown names, and values outside what each setting allows (its type and range, derived from its defaults
where they tell, e.g. positive integers, lists of integers, known names), give one message each, and
``settings`` raises ValueError with them.
"""

from __future__ import annotations

import math
import os
from typing import Callable, NamedTuple

from . import machine

NAMES = ("smoke", "cpu", "mnist", "paper")


def current(default: str = "cpu") -> str:
    """The profile a notebook runs at: ``REPRO_PROFILE`` when set (tests, nbval), else ``default``."""
    return os.environ.get("REPRO_PROFILE") or default


_DIGITS_SHAPE = (1, 8, 8)
_MNIST_SHAPE = (1, 28, 28)
_CIFAR_SHAPE = (3, 32, 32)
_PAPER_UNET = {"kind": "unet", "channel_mult": [2, 2, 2], "num_blocks": 4, "attn_res": [16]}

# Notebook 01: the zoo of section 1 (``zoo.section1``), lengths scaled by steps_scale. ``public_checkpoints``
# (local folders or hub ids of diffusers DDPM checkpoints, ``hub.py``) add rows to the heatmaps; empty by
# default, so that nothing is downloaded unless asked for.
_S1 = {
    "smoke": dict(data="digits", shape=_DIGITS_SHAPE, steps_scale=0.01, seeds=64, sample_steps=6,
                   claims_strict=False, public_checkpoints=[]),
    "cpu": dict(data="digits", shape=_DIGITS_SHAPE, steps_scale=1.0, seeds=1000, sample_steps=18,
                 claims_strict=True, public_checkpoints=[]),
    "mnist": dict(data="mnist", shape=_MNIST_SHAPE, steps_scale=4.0, seeds=1000, sample_steps=18,
                   claims_strict=True, public_checkpoints=[]),
    "paper": dict(data="cifar10", shape=_CIFAR_SHAPE, steps_scale=50.0, seeds=10_000, sample_steps=18,
                   claims_strict=True, public_checkpoints=[]),
}

# Notebooks 02 and 03: one sweep over training-set sizes (``zoo.regimes``); 03 reuses 02's models.
# steps maps N to a training length (notebook 02 shows how convergence was judged). On digits the widths train
# at lr 3e-3: at 1e-3 width 4 needs 6,000 steps to memorize 16 images, at 3e-3 3,000, and width 16 on all
# 1,797 digits stays stable (loss drift -0.3% at the end). N <= 32 train 5,000 steps: at 3,000 width 4's
# memorized fraction was still moving (N = 32: 0.35 -> 0.80 over the last 1,000 steps; N = 16: 0.89 -> 1.00),
# and 5,000 is the first multiple of 1,000 where it moves by <= 0.05 (side runs of widths 4 and 8 to 6,000
# steps; notebook 02's curves show every model).
# Every model keeps its EMA weights each ``snapshot_every`` steps (scaled by ``steps_scale`` like the lengths);
# the first ``curve_seeds`` seeds are sampled at each snapshot for the convergence curves.
_DIGIT_SIZES = [16, 32, 64, 128, 256, 512, 1024, 1797]
_PAPER_SIZES = [2**k for k in range(6, 16)]  # 64 ... 32,768: the paper's Figure 2, and the mnist rung's
_REGIMES = {
    "smoke": dict(data="digits", shape=_DIGITS_SHAPE, sizes=[16, 256], widths=[4, 8], train_seeds=1,
                   steps={16: 30, 256: 30}, lr=3e-3, batch=64, seeds=48, sample_steps=5, grid=8,
                   snapshot_every=10, curve_seeds=48, claims_strict=False),
    "cpu": dict(data="digits", shape=_DIGITS_SHAPE, sizes=_DIGIT_SIZES, widths=[4, 8, 16], train_seeds=1,
                 steps={n: 5000 if n <= 32 else 3000 for n in _DIGIT_SIZES}, lr=3e-3, batch=128, seeds=500,
                 sample_steps=18, grid=32, snapshot_every=1000, curve_seeds=500, claims_strict=True),
    "mnist": dict(data="mnist", shape=_MNIST_SHAPE, sizes=_PAPER_SIZES, widths=[8, 16, 32], train_seeds=1,
                   steps={n: 10_000 for n in _PAPER_SIZES}, lr=2e-3, batch=128, seeds=1000, sample_steps=18,
                   grid=32, snapshot_every=2500, curve_seeds=500, claims_strict=True),
    "paper": dict(data="cifar10", shape=_CIFAR_SHAPE, sizes=_PAPER_SIZES, widths=[64, 128, 256], train_seeds=1,
                   steps={n: 60_000 for n in _PAPER_SIZES}, lr=1e-3, batch=128, seeds=10_000, sample_steps=18,
                   grid=64, snapshot_every=20_000, curve_seeds=1000, claims_strict=True),
}

SETTINGS: dict[str, dict[str, dict]] = {"01": _S1, "02": _REGIMES, "03": _REGIMES}

# Notebook 04: conditional U-Net and MLP (``zoo.section4``) beside notebook 01's unconditional ones (same
# steps_scale, seeds and sample_steps as 01, so its models and sample banks are reused). ``guidance`` is the
# classifier-free guidance scale w of the claims; ``guidance_sweep`` the scales of the RP-against-w figure.
# ``judge`` configures the CIFAR-10 classifier (``classifier.CNNConfig`` fields; the digits SVC takes none) and
# ``judge_accuracy`` is the held-out accuracy claim 1 asks of it: a small CNN does not reach the SVC's 0.97 on
# CIFAR-10 (this recipe is known to reach about 0.94; not measured here).
_S4 = {
    "smoke": dict(data="digits", shape=_DIGITS_SHAPE, steps_scale=0.01, seeds=60, sample_steps=6, guidance=1.0,
                   guidance_sweep=[0.0, 1.0], judge={}, judge_accuracy=0.97, claims_strict=False),
    "cpu": dict(data="digits", shape=_DIGITS_SHAPE, steps_scale=1.0, seeds=1000, sample_steps=18, guidance=1.0,
                 guidance_sweep=[0.0, 0.5, 1.0, 2.0, 4.0], judge={}, judge_accuracy=0.97, claims_strict=True),
    "mnist": dict(data="mnist", shape=_MNIST_SHAPE, steps_scale=4.0, seeds=1000, sample_steps=18, guidance=1.0,
                   guidance_sweep=[0.0, 0.5, 1.0, 2.0, 4.0], judge={}, judge_accuracy=0.98, claims_strict=True),
    "paper": dict(data="cifar10", shape=_CIFAR_SHAPE, steps_scale=50.0, seeds=10_000, sample_steps=18,
                   guidance=1.0, guidance_sweep=[0.0, 0.5, 1.0, 2.0, 4.0], judge=dict(width=64, epochs=24),
                   judge_accuracy=0.9, claims_strict=True),
}

# Notebook 05: deterministic DPS with notebook 01's unconditional U-Net and MLP (``zoo.unconditional``).
# ``images`` real images are measured; each is reconstructed from two noises per setting. ``zetas`` are the
# two DPS step sizes compared; ``sample_steps`` DPM-Solver++ steps (Euler gets 2 x steps - 1, as in 01).
_S5 = {
    "smoke": dict(data="digits", shape=_DIGITS_SHAPE, steps_scale=0.01, images=16, sample_steps=6,
                   tasks=["inpaint", "superres", "deblur"], noise_std=0.05, zetas=[0.5, 1.0], claims_strict=False),
    "cpu": dict(data="digits", shape=_DIGITS_SHAPE, steps_scale=1.0, images=200, sample_steps=18,
                 tasks=["inpaint", "superres", "deblur"], noise_std=0.05, zetas=[0.5, 1.0], claims_strict=True),
    "mnist": dict(data="mnist", shape=_MNIST_SHAPE, steps_scale=4.0, images=500, sample_steps=18,
                   tasks=["inpaint", "superres", "deblur"], noise_std=0.05, zetas=[0.5, 1.0], claims_strict=True),
    "paper": dict(data="cifar10", shape=_CIFAR_SHAPE, steps_scale=50.0, images=1000, sample_steps=18,
                   tasks=["inpaint", "superres", "deblur"], noise_std=0.05, zetas=[0.5, 1.0], claims_strict=True),
}
SETTINGS["04"], SETTINGS["05"] = _S4, _S5

# Notebook 06: pre-train on the ``source`` classes, fine-tune on ``target`` (fully, decoder only, head only,
# LoRA of rank ``lora_rank``), against from-scratch models on ``target`` (``zoo.section6``). The partial
# fine-tunings are also trained ``long_factor`` times as long, with EMA snapshots at every multiple of their
# length (``zoo.section6_long``): is the fine-tuned model of the claims where its training is heading?
_S6 = {
    "smoke": dict(data="digits", shape=_DIGITS_SHAPE, steps_scale=0.01, source=[0, 1, 2, 3, 4],
                   target=[5, 6, 7, 8, 9], lora_rank=4, long_factor=3, seeds=64, sample_steps=6, claims_strict=False),
    "cpu": dict(data="digits", shape=_DIGITS_SHAPE, steps_scale=1.0, source=[0, 1, 2, 3, 4],
                 target=[5, 6, 7, 8, 9], lora_rank=4, long_factor=3, seeds=1000, sample_steps=18, claims_strict=True),
    "mnist": dict(data="mnist", shape=_MNIST_SHAPE, steps_scale=4.0, source=[0, 1, 2, 3, 4],
                   target=[5, 6, 7, 8, 9], lora_rank=4, long_factor=3, seeds=1000, sample_steps=18, claims_strict=True),
    "paper": dict(data="cifar10", shape=_CIFAR_SHAPE, steps_scale=20.0, source=[0, 1, 2, 3, 4],
                   target=[5, 6, 7, 8, 9], lora_rank=16, long_factor=3, seeds=10_000,
                   sample_steps=18, claims_strict=True),
}

# Notebook 07: a U-Net and an MLP with EMA snapshots every ``snapshot_every`` steps (``zoo.section7``), of
# which ``snapshots`` evenly spaced ones are sampled; noise edits turn ``edit_seeds`` noises by ``angles``
# degrees toward the noise of ``direction_seed``. Privacy reuses notebook 02's sweep when the store holds all
# of it, else trains its ``privacy_widths`` x ``privacy_sizes`` corner (the same configs as 02's).
_S7 = {
    "smoke": dict(data="digits", shape=_DIGITS_SHAPE, steps_scale=0.01, snapshot_every=250, snapshots=4, seeds=64,
                   sample_steps=6, edit_seeds=32, angles=[0, 20, 45], direction_seed=7, privacy_sizes=[16, 256],
                   privacy_widths=[8], claims_strict=False),
    "cpu": dict(data="digits", shape=_DIGITS_SHAPE, steps_scale=1.0, snapshot_every=250, snapshots=12, seeds=500,
                 sample_steps=18, edit_seeds=200, angles=[0, 10, 20, 30, 45], direction_seed=7,
                 privacy_sizes=[16, 64, 256, 1797], privacy_widths=[8], claims_strict=True),
    "mnist": dict(data="mnist", shape=_MNIST_SHAPE, steps_scale=4.0, snapshot_every=250, snapshots=12, seeds=1000,
                   sample_steps=18, edit_seeds=500, angles=[0, 10, 20, 30, 45], direction_seed=7,
                   privacy_sizes=[64, 1024, 32768], privacy_widths=[32], claims_strict=True),
    "paper": dict(data="cifar10", shape=_CIFAR_SHAPE, steps_scale=50.0, snapshot_every=250, snapshots=12,
                   seeds=10_000, sample_steps=18, edit_seeds=1000, angles=[0, 10, 20, 30, 45], direction_seed=7,
                   privacy_sizes=[64, 1024, 32768], privacy_widths=[128], claims_strict=True),
}
SETTINGS["06"], SETTINGS["07"] = _S6, _S7
for _name, _profile in _S6.items():  # the judge of the target share, notebook 04's (its CNN where there is one)
    _profile.update(judge=dict(_S4[_name]["judge"]))
for _profile in _S7.values():  # the privacy study reads notebook 02's sweep under these overrides of 02's settings
    _profile.update(sweep={})

# Settings every notebook has, alike at every profile; at their defaults no store key and no number changes.
# - ``similarity``: "pixel" (``metrics.PixelSimilarity``, threshold 0.9) or "sscd" (``metrics.SSCDSimilarity``,
#   the paper's 0.6; weights from ``REPRO_SSCD``);
# - ``precision``: autocast dtype of every training, None (float32), "bf16" or "fp16" (``train.autocast``): on a
#   GPU, ``--override precision=bf16``;
# - ``nets``: entries replacing the backbones' (``zoo.nets``), e.g. {"unet": {"width": 8}} for a tiny run;
# - ``pixel_threshold``: the pixel similarity's RP threshold, calibrated on each data set's real images by notebook
#   01's rule: random pairs of different real images exceed it with probability 0.75% (digits: 0.90; MNIST: 0.73,
#   ``metrics.threshold_for_chance(sim, mnist training images, 0.0075)`` = 0.728, 20,000 pairs). SSCD keeps 0.6.
PIXEL_THRESHOLD = {"smoke": 0.9, "cpu": 0.9, "mnist": 0.73, "paper": 0.9}
# - ``replicate``: which training replicate (replications/training_replicates.md); 0 is the record. Replicate r moves
#   every training seed the catalogue sets by ``REPLICATE_STRIDE`` * r (``training_seed``), never a sampling seed.
#   Notebook 01's ``replicates``, the run's count of them (``paper_figures.py --replicates`` sets it): from 2 on, it
#   compares each model with itself in the next replicate.
for _notebook in SETTINGS.values():
    for _name, _profile in _notebook.items():
        _profile.update(similarity="pixel", precision=None, nets={}, pixel_threshold=PIXEL_THRESHOLD[_name],
                        replicate=0)
for _profile in _S1.values():
    _profile.update(replicates=1)

# Far above every training seed the catalogue sets (0-10, and notebook 02's ``train_seeds``), so that no replicate
# shares a seed with another, or with another model of its own run.
REPLICATE_STRIDE = 1000


def training_seed(P: dict, seed: int) -> int:
    """The training seed of a model whose seed in the record (replicate 0) is ``seed``, in ``P["replicate"]``: all
    of a training's randomness (initial weights, minibatch order, noise levels and noise, label dropout, a GAN's
    or VAE's latents while it trains, a judge's split or its minibatches) comes from its seed, so this moves all of
    it; the training data (``subset_seed``) and the sampling seeds stay, so that replicates are compared on the
    same noise."""
    return seed + REPLICATE_STRIDE * int(P.get("replicate", 0))

# Machine settings (``machine.py``), resolved by ``settings``: ``device`` "auto" (the GPU when there is one),
# ``n_jobs`` "auto" (one training worker per usable core, or ``GPU_WORKERS`` on a GPU) and ``threads``, the torch
# threads of a notebook's kernel: at smoke and cpu the count the committed record was made with, so that a machine
# with more cores gives the same numbers (set it higher and the run is a replicate); "auto" (every core) above.
GPU_WORKERS = {"smoke": 8, "cpu": 8, "mnist": 4, "paper": 1}  # small models are launch-bound; large ones fill a card
# The most models one training job stacks on a GPU (None: any number). The paper's U-Nets fill an H200 alone (2.7-12.7
# steps/s at batch 128 against a launch-bound digits U-Net's 45, docs/gpu.md): stacked, they would only put a whole
# sweep on one card, 62.6 h for notebook 02's ten width-256 models (benchmarks/bench_plan.py), however many GPUs.
GPU_STACK = {"smoke": None, "cpu": None, "mnist": None, "paper": 1}
RECORD_THREADS = 2
_MACHINE = {"smoke": dict(device="auto", n_jobs="auto", threads=RECORD_THREADS),
            "cpu": dict(device="auto", n_jobs="auto", threads=RECORD_THREADS),
            "mnist": dict(device="auto", n_jobs="auto", threads="auto"),
            "paper": dict(device="auto", n_jobs="auto", threads="auto")}
for _notebook in SETTINGS.values():
    for _name, _profile in _notebook.items():
        _profile.update(_MACHINE[_name])


def _like(default, value):
    """An override in the default's own key type: papermill hands parameters over as JSON, whose keys are
    strings, so ``steps={8: 5}`` reaches the notebook as ``{"8": 5}``."""
    if isinstance(default, dict) and isinstance(value, dict) and default and all(isinstance(k, int) for k in default):
        return {int(k) if isinstance(k, str) and k.lstrip("-").isdigit() else k: v for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------------------
# Checks of settings, before any work. Each setting's rule is derived from its defaults at the three profiles
# (True/False; integers, positive when every default is; numbers, > 0 or >= 0 as the defaults are; lists and
# dicts of such), unless ``_named_rule`` knows better (names, fixed lengths, nested configs); then the
# settings are checked against each other (``_cross_checks``). Every notebook's settings, those added later too.


class _Rule(NamedTuple):
    allowed: str  # what is allowed, in words
    ok: Callable[[object], bool]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _number(ints: bool, low: float | None = None, strict: bool = False, high: float | None = None) -> _Rule:
    kind = "an integer" if ints else "a number"
    if low == 1 and ints:
        words = "a positive integer"
    elif low is not None and high is not None:
        words = f"{kind} in {'(' if strict else '['}{low}, {high}]"
    elif low is not None:
        words = f"{kind} {'>' if strict else '>='} {low}"
    else:
        words = kind

    def ok(v):
        if not (_is_int(v) if ints else _is_number(v)):
            return False
        return (low is None or (v > low if strict else v >= low)) and (high is None or v <= high)

    return _Rule(words, ok)


def _one_of(names) -> _Rule:
    names = tuple(names)
    words = "one of " + ", ".join(repr(n) for n in names)
    return _Rule(words, lambda v: isinstance(v, (str, type(None))) and v in names)


def _list_of(item: _Rule | None, non_empty: bool = False, length: int | None = None, distinct: bool = False) -> _Rule:
    words = "a non-empty list" if non_empty else "a list"
    if length is not None:
        words = f"a list of {length}" + (f" {_plural(item)}" if item else " values")
    elif item is not None:
        words += f" of {_plural(item)}"
    words += ", all different" if distinct else ""

    def ok(v):
        return (isinstance(v, (list, tuple)) and (not non_empty or len(v) > 0) and (length is None or len(v) == length)
                and (item is None or all(item.ok(x) for x in v)) and (not distinct or len(set(v)) == len(v)))

    return _Rule(words, ok)


def _plural(rule: _Rule) -> str:
    words = rule.allowed
    for one, many in (("a positive integer", "positive integers"), ("an integer", "integers"), ("a number", "numbers"),
                      ("a string", "strings"), ("True or False", "True/False values"), ("one of", "names among")):
        if words.startswith(one):
            return many + words[len(one):]
    return words


def _dict_of(key: _Rule | None, value: _Rule | None) -> _Rule:
    if key is None and value is None:
        return _Rule("a dict", lambda v: isinstance(v, dict))
    words = f"a dict {{{key.allowed if key else 'key'}: {value.allowed if value else 'value'}}}"
    return _Rule(words, lambda v: isinstance(v, dict) and all(
        (key is None or key.ok(k)) and (value is None or value.ok(x)) for k, x in v.items()))


def _or_none(rule: _Rule) -> _Rule:
    return _Rule(rule.allowed + " or None", lambda v: v is None or rule.ok(v))


def _derived(defaults: list) -> _Rule | None:
    """The rule the defaults of one setting imply (None: nothing can be said, anything goes)."""
    given = [v for v in defaults if v is not None]
    if not given:
        return None
    rule = None
    if all(isinstance(v, bool) for v in given):
        rule = _Rule("True or False", lambda v: isinstance(v, bool))
    elif all(_is_int(v) for v in given) or all(_is_number(v) for v in given):
        ints, low = all(_is_int(v) for v in given), min(given)
        if ints and low >= 1:
            rule = _number(True, 1)
        else:
            rule = _number(ints, 0, strict=low > 0) if low >= 0 else _number(ints)
    elif all(isinstance(v, str) for v in given):
        rule = _Rule("a string", lambda v: isinstance(v, str) and v != "")
    elif all(isinstance(v, (list, tuple)) for v in given):
        items = [x for v in given for x in v]
        rule = _list_of(_derived(items) if items else None, non_empty=all(len(v) > 0 for v in given))
    elif all(isinstance(v, dict) for v in given):
        keys, values = [k for v in given for k in v], [x for v in given for x in v.values()]
        rule = _dict_of(_derived(keys) if keys else None, _derived(values) if values else None)
    if rule is not None and len(given) < len(defaults):
        rule = _or_none(rule)
    return rule


_DATA_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
_DATA_SIZES = {"digits": 1797, "mnist": 60_000, "cifar10": 50_000}  # training images


def _device_ok(v) -> bool:
    if not isinstance(v, str):
        return False
    kind, _, index = v.partition(":")
    return v in ("auto", "cpu", "mps", "cuda") or (kind == "cuda" and index.isdigit())


def _config_rule(what: str, fields: dict, named: dict) -> _Rule:
    """A dict of some of ``fields`` (name -> default), each value by its named or derived rule."""
    rules = {k: named.get(k) or _derived([d]) for k, d in fields.items()}
    entries = "; ".join(f"{k}: {r.allowed if r else 'any'}" for k, r in rules.items())
    words = f"a dict of {what} entries ({entries})"
    return _Rule(words, lambda v: isinstance(v, dict) and all(
        k in rules and (rules[k] is None or rules[k].ok(x)) for k, x in v.items()))


def _nets_rule() -> _Rule:
    import inspect

    from . import networks

    set_by_library = ("in_channels", "resolution", "num_classes")
    per_kind = {kind: _config_rule(f"{kind} backbone", {
        name: (p.default if not isinstance(p.default, tuple) else list(p.default))
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and name not in set_by_library and p.default is not inspect.Parameter.empty}, {})
        for kind, cls in networks.BACKBONES.items()}
    words = "a dict {backbone: entries}, backbones " + ", ".join(per_kind) + "; " + "; ".join(
        r.allowed for r in per_kind.values())
    return _Rule(words, lambda v: isinstance(v, dict) and all(
        k in per_kind and per_kind[k].ok(x) for k, x in v.items()))


def _judge_rule() -> _Rule:
    import dataclasses

    from .classifier import CNNConfig

    fields = {f.name: f.default for f in dataclasses.fields(CNNConfig)}
    return _config_rule("CIFAR-10 judge (classifier.CNNConfig)", fields, {
        "data": _one_of(_DATA_SHAPES), "seed": _number(True, 0), "warmup": _number(False, 0, strict=True, high=1),
        "momentum": _number(False, 0, high=1), "weight_decay": _number(False, 0),
        "label_smoothing": _number(False, 0, high=1)})


def _named_rule(name: str) -> _Rule | None:
    """Rules defaults cannot tell: names, fixed lengths, ranges that include 0, nested configs."""
    classes = _list_of(_number(True, 0, high=9), non_empty=True, distinct=True)
    if name == "data":
        return _one_of(_DATA_SHAPES)
    if name == "device":
        return _Rule("'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'", _device_ok)
    if name in ("n_jobs", "threads"):
        return _Rule("'auto' or a positive integer", lambda v: v == "auto" or (_is_int(v) and v >= 1))
    if name == "similarity":
        return _one_of(("pixel", "sscd"))
    if name == "precision":
        return _one_of((None, "bf16", "fp16"))
    if name == "shape":
        return _list_of(_number(True, 1), length=3)
    if name == "tasks":
        from .inverse import OPERATORS

        return _list_of(_one_of(OPERATORS), non_empty=True, distinct=True)
    if name == "zetas":  # the notebook compares two step sizes
        return _list_of(_number(False, 0), length=2)
    if name in ("source", "target"):
        return _Rule(classes.allowed.replace("integers in [0, 9]", "class labels 0-9"), classes.ok)
    if name == "public_checkpoints":
        return _list_of(_Rule("a string", lambda v: isinstance(v, str) and v != ""))
    if name == "angles":
        return _list_of(_number(False), non_empty=True)
    if name in ("guidance", "noise_std"):
        return _number(False, 0)
    if name in ("judge_accuracy", "pixel_threshold"):
        return _number(False, 0, high=1)
    if name in ("direction_seed", "replicate"):
        return _number(True, 0)
    if name == "nets":
        return _nets_rule()
    if name == "judge":
        return _judge_rule()
    if name == "sweep":  # its entries are checked as notebook 02's settings (``validate``)
        return _Rule("a dict of notebook 02's settings", lambda v: isinstance(v, dict) and all(
            k in SETTINGS["02"]["cpu"] for k in v))
    if name == "patch_sizes":  # a window centred on its pixel has an odd side
        return _list_of(_Rule("an odd positive integer", lambda v: _is_int(v) and v > 0 and v % 2 == 1),
                        non_empty=True, distinct=True)
    return None


def _rule(notebook: str, name: str) -> _Rule | None:
    return _named_rule(name) or _derived([p[name] for p in SETTINGS[notebook].values() if name in p])


def _cross_checks(P: dict, profile: str) -> list[tuple[str, str | None, str]]:
    """(setting, other setting or None, what is wrong) for settings that are fine alone but not together."""
    out = []
    data = P.get("data")
    if "steps" in P and "sizes" in P and isinstance(P["steps"], dict):
        missing = [n for n in P["sizes"] if n not in P["steps"]]
        if missing:
            out.append(("sizes", "steps", f"steps needs a training length for every N of sizes (none for {missing})"))
    for name in ("curve_seeds", "edit_seeds"):
        if name in P and "seeds" in P and P[name] > P["seeds"]:
            out.append((name, "seeds", f"{name} are the first of the seeds, so at most seeds"))
    if "shape" in P and data in _DATA_SHAPES and tuple(P["shape"]) != _DATA_SHAPES[data]:
        out.append(("shape", "data", f"the images of {data} are {_DATA_SHAPES[data]}"))
    for name in ("sizes", "privacy_sizes", "images"):
        values = P.get(name)
        values = [values] if _is_int(values) else values
        if values is not None and data in _DATA_SIZES and max(values, default=0) > _DATA_SIZES[data]:
            out.append((name, "data", f"{data} has {_DATA_SIZES[data]} training images"))
    sweep = dict(SETTINGS.get("02", {}).get(profile, {}))  # 07 and 08 read notebook 02's sweep, under ``sweep``
    sweep.update({k: _like(sweep[k], v) for k, v in (P.get("sweep") or {}).items() if k in sweep})
    if "theory_seeds" in P and "seeds" in sweep and _is_int(P["theory_seeds"]) and P["theory_seeds"] > sweep["seeds"]:
        out.append(("theory_seeds", "sweep", f"at most notebook 02's seeds at profile {profile}, {sweep['seeds']}: "
                                             "the theories are compared on the first of 02's seeds"))
    if _is_int(P.get("replicates")) and _is_int(P.get("replicate")) and P["replicates"] > 1 \
            and P["replicate"] >= P["replicates"]:
        out.append(("replicate", "replicates", f"a run of {P['replicates']} replicates has replicates 0 to "
                                               f"{P['replicates'] - 1}"))
    for name, of in (("privacy_sizes", "sizes"), ("privacy_widths", "widths")):
        if name in P and of in sweep and not set(P[name]) <= set(sweep[of]):
            out.append((name, "sweep", f"each one of notebook 02's {of} at profile {profile}, {sweep[of]}: the "
                                       f"privacy study takes its models from 02's sweep"))
    return out


def validate(notebook: str, profile: str, overrides: dict) -> list[str]:
    """One message per problem with ``overrides`` of ``notebook`` at ``profile``, naming the notebook, the
    setting, the value and what is allowed; empty when all is well. Nothing is run or loaded."""
    if notebook not in SETTINGS:
        return [f"No settings for notebook '{notebook}'. Known: {', '.join(SETTINGS)}."]
    if profile not in NAMES:
        return [f"Unknown profile '{profile}'. Choose one of {', '.join(NAMES)}."]
    defaults = SETTINGS[notebook][profile]
    problems, bad = [], set()
    for name, value in overrides.items():
        if name not in defaults:
            problems.append(f"notebook {notebook}: unknown setting {name}={value!r}; known settings: "
                            f"{', '.join(sorted(defaults))}.")
            bad.add(name)
            continue
        rule = _rule(notebook, name)
        if rule is not None and not rule.ok(_like(defaults[name], value)):
            problems.append(f"notebook {notebook}: {name}={value!r} is not allowed: {rule.allowed} "
                            f"(default {defaults[name]!r}).")
            bad.add(name)
        elif name == "sweep" and notebook != "02":
            inner = validate("02", profile, value)
            problems += [f"notebook {notebook}: sweep: {m}" for m in inner]
            bad |= {name} if inner else set()
    P = {**defaults, **{k: _like(defaults[k], v) for k, v in overrides.items() if k not in bad}}
    for name, other, why in _cross_checks(P, profile):
        if name in bad or other in bad or not ({name, other} & set(overrides)):
            continue
        if other is not None and other in overrides and name not in overrides:
            name, other = other, name  # name the setting that was given first
        with_other = f" with {other}={P[other]!r}" if other is not None else ""
        problems.append(f"notebook {notebook}: {name}={P[name]!r} is not allowed{with_other}: {why}.")
    return problems


def settings(notebook: str, profile: str | None = None, **overrides) -> dict:
    """The settings of ``notebook`` at ``profile``, with ``overrides`` applied; clear errors for bad names."""
    profile = profile or current()
    problems = validate(notebook, profile, overrides)
    if problems:
        raise ValueError("\n".join(problems))
    out = dict(SETTINGS[notebook][profile], profile=profile)
    out.update({k: _like(out[k], v) for k, v in overrides.items()})
    out["device"] = machine.device(out["device"])
    if "n_jobs" in out:
        out["n_jobs"] = machine.workers(out["n_jobs"], out["device"], GPU_WORKERS[profile])
    out["threads"] = machine.threads(out["threads"])
    return out


# Notebook 08: closed-form theories beside notebook 02's U-Nets (``closed_form``). It trains nothing and reads
# the sweep's settings with ``settings("02", ...)``; these are its own. ``theory_seeds``: the first seeds of 02's
# that every theory is sampled from (the patch denoisers cost N x positions per query, so fewer than 02's);
# ``patch_sizes``: the sides of the patch denoisers; ``r2_images`` training and as many held-out images probe
# the denoisers at each of ``r2_sigmas``.
_S8 = {
    "smoke": dict(theory_seeds=24, patch_sizes=[3, 5], r2_images=16, r2_sigmas=[0.5, 2.0], claims_strict=False),
    "cpu": dict(theory_seeds=200, patch_sizes=[3, 5, 7], r2_images=100, r2_sigmas=[0.2, 0.5, 1.0, 2.0, 5.0],
                claims_strict=True),
    "mnist": dict(theory_seeds=200, patch_sizes=[3, 5, 7], r2_images=200, r2_sigmas=[0.2, 0.5, 1.0, 2.0, 5.0],
                   claims_strict=True),
    "paper": dict(theory_seeds=1000, patch_sizes=[3, 5, 7, 11], r2_images=200, r2_sigmas=[0.2, 0.5, 1.0, 2.0, 5.0],
                   claims_strict=True),
}
for _name, _profile in _S8.items():  # it trains nothing, so it has no n_jobs; it reads 02's sweep as 07 does
    _profile.update(similarity="pixel", precision=None, nets={}, pixel_threshold=PIXEL_THRESHOLD[_name], sweep={},
                    replicate=0,
                    **{k: v for k, v in _MACHINE[_name].items() if k != "n_jobs"})
SETTINGS["08"] = _S8

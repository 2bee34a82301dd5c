"""Every notebook's settings: one declared class per notebook, and its defaults at each profile.

- ``smoke``: seconds per notebook; for tests and CI. Claims are computed and shown, not judged: models this
  small are not converged (``claims_strict=False``).
- ``cpu`` (default): the paper's claims judged on a 2-core laptop with nothing downloaded (``digits``); those
  that do not hold there are recorded in ``expected_verdicts.toml``.
- ``mnist``: real 28x28 MNIST (installed offline with ``reprolib[mnist]``), N up to 2^15 as the paper's Figure 2;
  minutes on one GPU (or hours on many cores). Its sizes are provisional until its pilot has run
  (replications/mnist_profile.md).
- ``paper``: the paper's scale (CIFAR-10 32x32, EDM-sized U-Nets); needs a GPU and the data on disk.

A notebook asks ``settings("01", profile, **overrides)`` and reads attributes (``P.seeds``); overrides replace
single entries (papermill's ``overrides`` parameter or ``paper_figures.py --override``). Each field is declared
with its type (``setting_types``: a pydantic constraint and its words) and a one-line description; rules between
fields are the class's methods marked ``@rule``. ``validate`` checks overrides with nothing run and gives one line
per problem (the notebook, the setting, the value, what is allowed, the default); ``settings`` raises ValueError
with them. Settings are frozen dataclasses checked field by field with pydantic's ``TypeAdapter`` rather than
pydantic models: a ``BaseModel`` iterates as (name, value) pairs, and the library reads settings as a read-only
mapping too (``P["seeds"]``, ``P.get``), which a dataclass can be without fighting its base class. A check keeps
the value as given (papermill's JSON aside, ``_like``): settings choose the configs, and a value converted on
the way (0 to 0.0) would change a store key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Annotated

from . import machine
from .inverse import OPERATORS
from .setting_types import (DATA_SHAPES, DATA_SIZES, AutoOrPositiveInt, ClassLabel, Count, Device, Flag, Fraction,
                            Judge, Name, Nets, NonNegativeNumber, Number, OddPositiveInt, PositiveInt, PositiveNumber,
                            Settings, allowed, checked, dict_of, is_ok, list_of, one_of, rule)

NAMES = ("smoke", "cpu", "mnist", "paper")


def current(default: str = "cpu") -> str:
    """The profile a notebook runs at: ``REPRO_PROFILE`` when set (tests, nbval), else ``default``."""
    return os.environ.get("REPRO_PROFILE") or default


_DIGITS_SHAPE, _MNIST_SHAPE, _CIFAR_SHAPE = DATA_SHAPES["digits"], DATA_SHAPES["mnist"], DATA_SHAPES["cifar10"]


# ---------------------------------------------------------------------------------------------------------
# What the notebooks share. A field's type says what it allows; the string beside it, what it means.

Sweep = checked(dict, lambda v: all(k in SETTINGS["02"]["cpu"] for k in v), "a dict of notebook 02's settings")
Data = one_of(*DATA_SHAPES)
Shape = list_of(PositiveInt, length=3)
Seeds = Annotated[PositiveInt, "noises every model is sampled from"]


@dataclass(frozen=True)
class Machine(Settings):
    """Where a notebook computes and in what precision, resolved by ``settings`` (``machine.py``). The device and
    thread counts are no store key: ``machine.layout`` records them beside the numbers."""

    device: Annotated[Device, "'auto' is the GPU when there is one"]
    threads: Annotated[AutoOrPositiveInt, "torch threads of the notebook's kernel ('auto': every core; the record's "
                                          "count at smoke and cpu, so that more cores give the same numbers)"]
    precision: Annotated[one_of(None, "bf16", "fp16"),
                         "autocast dtype of every training (None: float32); bf16 or fp16 on a GPU"]


@dataclass(frozen=True)
class Common(Machine):
    """What every notebook has, alike at every profile; at their defaults no store key and no number changes."""

    similarity: Annotated[one_of("pixel", "sscd"), "RP's similarity: pixels (threshold below) or SSCD (0.6)"]
    pixel_threshold: Annotated[Fraction, "the pixel similarity's RP threshold: random pairs of real images pass "
                                         "it with probability 0.75%"]
    nets: Annotated[Nets, "entries replacing the backbones' (zoo.nets), e.g. {'unet': {'width': 8}}"]
    replicate: Annotated[Count, "training replicate: every training seed moves by 1000 x this (0: the record)"]
    claims_strict: Annotated[Flag, "judge the claims (False at smoke: its models are not converged)"]


@dataclass(frozen=True)
class Trains(Common):
    """A notebook that trains (all but 08): its training workers, a machine setting too."""

    n_jobs: Annotated[AutoOrPositiveInt, "training workers ('auto': one per core, or per GPU)"]


@dataclass(frozen=True)
class Images(Trains):
    data: Annotated[Data, "the training images"]
    shape: Annotated[Shape, "their (channels, height, width)"]

    @rule("shape", "data")
    def _shape_is_the_data(self):
        if self.data in DATA_SHAPES and tuple(self.shape) != DATA_SHAPES[self.data]:
            return f"the images of {self.data} are {DATA_SHAPES[self.data]}"

    def _at_most_the_data(self, values) -> str | None:
        values = [values] if isinstance(values, int) else values
        if self.data in DATA_SIZES and max(values, default=0) > DATA_SIZES[self.data]:
            return f"{self.data} has {DATA_SIZES[self.data]} training images"


@dataclass(frozen=True)
class Zoo(Images):
    steps_scale: Annotated[PositiveNumber, "training lengths of the catalogue (zoo), scaled"]
    sample_steps: Annotated[PositiveInt, "Heun steps of a sample (the one-evaluation samplers take 2 x steps - 1)"]


def _seeds_rule(name: str):
    @rule(name, "seeds")
    def first_of_seeds(self):
        if getattr(self, name) > self.seeds:
            return f"{name} are the first of the seeds, so at most seeds"
    return first_of_seeds


class _ReadsTheSweep:
    """Notebooks 07 and 08 read notebook 02's sweep under the overrides ``sweep``."""

    def swept(self) -> dict:
        base = dict(SETTINGS["02"][self.profile])
        return {**base, **{k: _like(base[k], v) for k, v in self.sweep.items() if k in base}}


# ---------------------------------------------------------------------------------------------------------
# Notebook 01: the zoo of section 1 (``zoo.section1``), lengths scaled by steps_scale.

@dataclass(frozen=True)
class Reproducibility(Zoo):
    seeds: Seeds
    public_checkpoints: Annotated[list_of(Name), "local folders or hub ids of diffusers DDPM checkpoints (hub.py) "
                                                 "added to the heatmaps; none by default: nothing is downloaded"]
    replicates: Annotated[PositiveInt, "the run's count of training replicates (paper_figures.py --replicates); "
                                       "from 2 on, each model is compared with itself in the next replicate"]

    @rule("replicate", "replicates")
    def _replicate_of_the_run(self):
        if self.replicates > 1 and self.replicate >= self.replicates:
            return f"a run of {self.replicates} replicates has replicates 0 to {self.replicates - 1}"


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


# ---------------------------------------------------------------------------------------------------------
# Notebooks 02 and 03: one sweep over training-set sizes (``zoo.regimes``); 03 reuses 02's models.
# On digits the widths train at lr 3e-3: at 1e-3 width 4 needs 6,000 steps to memorize 16 images, at 3e-3 3,000,
# and width 16 on all 1,797 digits stays stable (loss drift -0.3% at the end). N <= 32 train 5,000 steps: at 3,000
# width 4's memorized fraction was still moving (N = 32: 0.35 -> 0.80 over the last 1,000 steps; N = 16: 0.89 ->
# 1.00), and 5,000 is the first multiple of 1,000 where it moves by <= 0.05 (side runs of widths 4 and 8 to 6,000
# steps; notebook 02's curves show every model).

@dataclass(frozen=True)
class Regimes(Images):
    sizes: Annotated[list_of(PositiveInt, non_empty=True), "training-set sizes N, nested subsets"]
    widths: Annotated[list_of(PositiveInt, non_empty=True), "U-Net widths (the paper's 64/128/256, scaled)"]
    train_seeds: Annotated[PositiveInt, "models per (N, width), of training seeds 0, 1, ..."]
    steps: Annotated[dict_of(PositiveInt, PositiveInt), "training length of each N (notebook 02 shows how it was "
                                                        "judged)"]
    lr: Annotated[PositiveNumber, "learning rate"]
    batch: Annotated[PositiveInt, "minibatch size"]
    seeds: Seeds
    sample_steps: Annotated[PositiveInt, "Heun steps of a sample (Karras schedule)"]
    grid: Annotated[PositiveInt, "images in the figures' grids"]
    snapshot_every: Annotated[PositiveInt, "EMA weights kept every this many steps, for the convergence curves"]
    curve_seeds: Annotated[PositiveInt, "the first seeds, sampled at every snapshot"]
    disjoint_sizes: Annotated[list_of(PositiveInt, non_empty=True, distinct=True),
                              "N of the disjoint-data pairs: a model on N images and one on N others, outside the "
                              "largest pair's first set"]
    disjoint_widths: Annotated[list_of(PositiveInt, non_empty=True), "the widths those pairs are trained at"]

    @classmethod
    def following(cls, values: dict, given) -> dict:
        """A sweep given without its disjoint pairs takes them from itself: its sizes that leave room for a second
        set of as many images, at its widths that the profile pairs (else its narrowest)."""
        values = dict(values)
        if "sizes" in given and "disjoint_sizes" not in given:
            room = DATA_SIZES.get(values["data"], float("inf")) // 2
            values["disjoint_sizes"] = [n for n in values["sizes"] if n <= room] or [min(values["sizes"])]
        if "widths" in given and "disjoint_widths" not in given:
            values["disjoint_widths"] = ([w for w in values["widths"] if w in values["disjoint_widths"]]
                                         or [min(values["widths"])])
        return values

    @rule("sizes", "steps")
    def _a_length_for_every_size(self):
        missing = [n for n in self.sizes if n not in self.steps]
        if missing:
            return f"steps needs a training length for every N of sizes (none for {missing})"

    @rule("disjoint_sizes", "steps")
    def _a_length_for_every_disjoint_size(self):
        # a size of the sweep without a length is named by the sweep's own rule, once
        missing = [n for n in self.disjoint_sizes if n not in self.steps and n not in self.sizes]
        if missing:
            return f"steps needs a training length for every N of disjoint_sizes (none for {missing})"

    @rule("disjoint_sizes", "data")
    def _two_disjoint_sets_in_the_data(self):
        if self.data in DATA_SIZES and 2 * max(self.disjoint_sizes) > DATA_SIZES[self.data]:
            return (f"two disjoint sets of {max(self.disjoint_sizes)} need {2 * max(self.disjoint_sizes)} images; "
                    f"{self.data} has {DATA_SIZES[self.data]}: at most {DATA_SIZES[self.data] // 2}")

    _curve_seeds = _seeds_rule("curve_seeds")

    @rule("sizes", "data")
    def _sizes_in_the_data(self):
        return self._at_most_the_data(self.sizes)


_DIGIT_SIZES = [16, 32, 64, 128, 256, 512, 1024, 1797]
_PAPER_SIZES = [2**k for k in range(6, 16)]  # 64 ... 32,768: the paper's Figure 2, and the mnist rung's
# The disjoint pairs (replications/02_disjoint_data.md) double up to half the data, then take the largest N that
# leaves room for a second set: 896 of the 1,797 digits, 30,000 of MNIST's 60,000, 25,000 of CIFAR-10's 50,000.
_DIGIT_DISJOINT = [16, 32, 64, 128, 256, 512, 896]
_MNIST_DISJOINT = [2**k for k in range(6, 15)] + [30_000]
_CIFAR_DISJOINT = [2**k for k in range(6, 15)] + [25_000]
_REGIMES = {
    "smoke": dict(data="digits", shape=_DIGITS_SHAPE, sizes=[16, 256], widths=[4, 8], train_seeds=1,
                  steps={16: 30, 256: 30}, lr=3e-3, batch=64, seeds=48, sample_steps=5, grid=8,
                  snapshot_every=10, curve_seeds=48, claims_strict=False, disjoint_sizes=[16, 256],
                  disjoint_widths=[4]),
    "cpu": dict(data="digits", shape=_DIGITS_SHAPE, sizes=_DIGIT_SIZES, widths=[4, 8, 16], train_seeds=1,
                steps={n: 5000 if n <= 32 else 3000 for n in _DIGIT_SIZES + _DIGIT_DISJOINT}, lr=3e-3, batch=128,
                seeds=500, sample_steps=18, grid=32, snapshot_every=1000, curve_seeds=500, claims_strict=True,
                disjoint_sizes=_DIGIT_DISJOINT, disjoint_widths=[8]),
    "mnist": dict(data="mnist", shape=_MNIST_SHAPE, sizes=_PAPER_SIZES, widths=[8, 16, 32], train_seeds=1,
                  steps={n: 10_000 for n in _PAPER_SIZES + _MNIST_DISJOINT}, lr=2e-3, batch=128, seeds=1000,
                  sample_steps=18, grid=32, snapshot_every=2500, curve_seeds=500, claims_strict=True,
                  disjoint_sizes=_MNIST_DISJOINT, disjoint_widths=[8, 16, 32]),
    "paper": dict(data="cifar10", shape=_CIFAR_SHAPE, sizes=_PAPER_SIZES, widths=[64, 128, 256], train_seeds=1,
                  steps={n: 60_000 for n in _PAPER_SIZES + _CIFAR_DISJOINT}, lr=1e-3, batch=128, seeds=10_000,
                  sample_steps=18, grid=64, snapshot_every=20_000, curve_seeds=1000, claims_strict=True,
                  disjoint_sizes=_CIFAR_DISJOINT, disjoint_widths=[64, 128, 256]),
}


# ---------------------------------------------------------------------------------------------------------
# Notebook 04: conditional U-Net and MLP (``zoo.section4``) beside notebook 01's unconditional ones (same
# steps_scale, seeds and sample_steps as 01, so its models and sample banks are reused). A small CNN does not
# reach the digits SVC's 0.97 on CIFAR-10 (its recipe is known to reach about 0.94; not measured here).

@dataclass(frozen=True)
class Conditional(Zoo):
    seeds: Annotated[PositiveInt, "noises every model is sampled from (with a label each)"]
    guidance: Annotated[NonNegativeNumber, "the classifier-free guidance scale w of the claims"]
    guidance_sweep: Annotated[list_of(NonNegativeNumber, non_empty=True), "the scales of the RP-against-w figure"]
    judge: Annotated[Judge, "the CIFAR-10 classifier (classifier.CNNConfig fields; the digits SVC takes none)"]
    judge_accuracy: Annotated[Fraction, "the held-out accuracy claim 1 asks of the judge"]


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


# ---------------------------------------------------------------------------------------------------------
# Notebook 05: deterministic DPS with notebook 01's unconditional U-Net and MLP (``zoo.unconditional``).

@dataclass(frozen=True)
class Inverse(Zoo):
    images: Annotated[PositiveInt, "real images measured; each is reconstructed from two noises per setting"]
    tasks: Annotated[list_of(one_of(*OPERATORS), non_empty=True, distinct=True), "the measurement operators"]
    noise_std: Annotated[NonNegativeNumber, "the measurement noise's standard deviation"]
    zetas: Annotated[list_of(NonNegativeNumber, length=2), "the two DPS step sizes compared"]

    @rule("images", "data")
    def _images_in_the_data(self):
        return self._at_most_the_data(self.images)


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


# ---------------------------------------------------------------------------------------------------------
# Notebook 06: pre-train on the ``source`` classes, fine-tune on ``target`` (fully, decoder only, head only,
# LoRA), against from-scratch models on ``target`` (``zoo.section6``). The partial fine-tunings are also trained
# ``long_factor`` times as long (``zoo.section6_long``): is the fine-tuned model of the claims where its training
# is heading?

Classes = list_of(ClassLabel, non_empty=True, distinct=True)


@dataclass(frozen=True)
class FineTuning(Zoo):
    source: Annotated[Classes, "the classes of the pre-training"]
    target: Annotated[Classes, "the classes of the fine-tuning"]
    lora_rank: Annotated[PositiveInt, "the rank of the LoRA adapters"]
    long_factor: Annotated[PositiveInt, "how many times as long the partial fine-tunings also train"]
    seeds: Seeds
    judge: Annotated[Judge, "notebook 04's judge, of the target share"]


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
for _name, _profile in _S6.items():
    _profile.update(judge=dict(_S4[_name]["judge"]))


# ---------------------------------------------------------------------------------------------------------
# Notebook 07: a U-Net and an MLP with EMA snapshots (``zoo.section7``); noise edits; privacy, which reuses
# notebook 02's sweep when the store holds all of it, else trains its privacy corner (the same configs as 02's).

@dataclass(frozen=True)
class Implications(_ReadsTheSweep, Zoo):
    snapshot_every: Annotated[PositiveInt, "EMA weights kept every this many steps"]
    snapshots: Annotated[PositiveInt, "evenly spaced snapshots sampled"]
    seeds: Seeds
    edit_seeds: Annotated[PositiveInt, "the first seeds, turned by each angle"]
    angles: Annotated[list_of(Number, non_empty=True), "degrees each noise is turned toward the direction's"]
    direction_seed: Annotated[Count, "the seed of the noise edits turn toward"]
    privacy_sizes: Annotated[list_of(PositiveInt, non_empty=True), "N of notebook 02's sweep for the privacy study"]
    privacy_widths: Annotated[list_of(PositiveInt, non_empty=True), "widths of notebook 02's sweep for it"]
    sweep: Annotated[Sweep, "overrides of notebook 02's settings, under which its sweep is read"]

    _edit_seeds = _seeds_rule("edit_seeds")

    @rule("privacy_sizes", "data")
    def _privacy_sizes_in_the_data(self):
        return self._at_most_the_data(self.privacy_sizes)

    @rule("privacy_sizes", "sweep")
    def _privacy_sizes_of_the_sweep(self):
        return self._of_the_sweep("privacy_sizes", "sizes")

    @rule("privacy_widths", "sweep")
    def _privacy_widths_of_the_sweep(self):
        return self._of_the_sweep("privacy_widths", "widths")

    def _of_the_sweep(self, name: str, of: str):
        swept = self.swept()[of]
        if not set(getattr(self, name)) <= set(swept):
            return (f"each one of notebook 02's {of} at profile {self.profile}, {swept}: the privacy study takes its "
                    "models from 02's sweep")


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
for _profile in _S7.values():
    _profile.update(sweep={})


# ---------------------------------------------------------------------------------------------------------
# Notebook 08: closed-form theories beside notebook 02's U-Nets (``closed_form``). It trains nothing and reads
# the sweep's settings with ``settings("02", ...)``; these are its own.

@dataclass(frozen=True)
class ClosedForm(_ReadsTheSweep, Common):
    theory_seeds: Annotated[PositiveInt, "the first of 02's seeds every theory is sampled from (the patch "
                                         "denoisers cost N x positions per query, so fewer than 02's)"]
    patch_sizes: Annotated[list_of(OddPositiveInt, non_empty=True, distinct=True),
                           "the sides of the patch denoisers (a window centred on its pixel has an odd side)"]
    r2_images: Annotated[PositiveInt, "training and as many held-out images that probe the denoisers"]
    r2_sigmas: Annotated[list_of(PositiveNumber, non_empty=True), "the noise levels they are probed at"]
    sweep: Annotated[Sweep, "overrides of notebook 02's settings, under which its sweep is read"]

    @rule("theory_seeds", "sweep")
    def _theory_seeds_of_the_sweep(self):
        seeds = self.swept()["seeds"]
        if isinstance(seeds, int) and self.theory_seeds > seeds:
            return (f"at most notebook 02's seeds at profile {self.profile}, {seeds}: the theories are compared on "
                    "the first of 02's seeds")


_S8 = {
    "smoke": dict(theory_seeds=24, patch_sizes=[3, 5], r2_images=16, r2_sigmas=[0.5, 2.0], claims_strict=False),
    "cpu": dict(theory_seeds=200, patch_sizes=[3, 5, 7], r2_images=100, r2_sigmas=[0.2, 0.5, 1.0, 2.0, 5.0],
                claims_strict=True),
    "mnist": dict(theory_seeds=200, patch_sizes=[3, 5, 7], r2_images=200, r2_sigmas=[0.2, 0.5, 1.0, 2.0, 5.0],
                  claims_strict=True),
    "paper": dict(theory_seeds=1000, patch_sizes=[3, 5, 7, 11], r2_images=200, r2_sigmas=[0.2, 0.5, 1.0, 2.0, 5.0],
                  claims_strict=True),
}
for _profile in _S8.values():
    _profile.update(sweep={})


# ---------------------------------------------------------------------------------------------------------
# What all notebooks share, and the machine. The pixel similarity's RP threshold is calibrated on each data set's
# real images by notebook 01's rule: random pairs of different real images exceed it with probability 0.75%
# (digits: 0.90; MNIST: 0.73, ``metrics.threshold_for_chance(sim, mnist training images, 0.0075)`` = 0.728,
# 20,000 pairs). SSCD keeps the paper's 0.6 (weights from ``REPRO_SSCD``).
PIXEL_THRESHOLD = {"smoke": 0.9, "cpu": 0.9, "mnist": 0.73, "paper": 0.9}
# ``threads`` at smoke and cpu is the count the committed record was made with, so that a machine with more cores
# gives the same numbers (set it higher and the run is a replicate); "auto" (every core) above.
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

CLASSES: dict[str, type[Settings]] = {"01": Reproducibility, "02": Regimes, "03": Regimes, "04": Conditional,
                                      "05": Inverse, "06": FineTuning, "07": Implications, "08": ClosedForm}
# notebook -> profile -> its defaults, every field but the profile
SETTINGS: dict[str, dict[str, dict]] = {"01": _S1, "02": _REGIMES, "03": _REGIMES, "04": _S4, "05": _S5, "06": _S6,
                                        "07": _S7, "08": _S8}
for _nid, _notebook in SETTINGS.items():
    for _name, _profile in _notebook.items():
        if _nid != "03":  # 03 shares 02's dicts
            _profile.update(similarity="pixel", precision=None, nets={}, pixel_threshold=PIXEL_THRESHOLD[_name],
                            replicate=0, **{k: v for k, v in _MACHINE[_name].items()
                                            if k in CLASSES[_nid].__dataclass_fields__})
for _profile in _S1.values():
    _profile.update(replicates=1)

# Far above every training seed the catalogue sets (0-10, and notebook 02's ``train_seeds``), so that no replicate
# shares a seed with another, or with another model of its own run.
REPLICATE_STRIDE = 1000


def training_seed(P, seed: int) -> int:
    """The training seed of a model whose seed in the record (replicate 0) is ``seed``, in ``P.replicate``: all of
    a training's randomness (initial weights, minibatch order, noise levels and noise, label dropout, a GAN's or
    VAE's latents while it trains, a judge's split or its minibatches) comes from its seed, so this moves all of
    it; the training data (``subset_seed``) and the sampling seeds stay, so that replicates are compared on the
    same noise."""
    return seed + REPLICATE_STRIDE * int(P.get("replicate", 0))


def _like(default, value):
    """An override in the default's own key type: papermill hands parameters over as JSON, whose keys are
    strings, so ``steps={8: 5}`` reaches the notebook as ``{"8": 5}``."""
    if isinstance(default, dict) and isinstance(value, dict) and default and all(isinstance(k, int) for k in default):
        return {int(k) if isinstance(k, str) and k.lstrip("-").isdigit() else k: v for k, v in value.items()}
    return value


def validate(notebook: str, profile: str, overrides: dict) -> list[str]:
    """One message per problem with ``overrides`` of ``notebook`` at ``profile``, naming the notebook, the
    setting, the value and what is allowed; empty when all is well. Nothing is run or loaded."""
    if notebook not in SETTINGS:
        return [f"No settings for notebook '{notebook}'. Known: {', '.join(SETTINGS)}."]
    if profile not in NAMES:
        return [f"Unknown profile '{profile}'. Choose one of {', '.join(NAMES)}."]
    defaults, types = SETTINGS[notebook][profile], CLASSES[notebook].types()
    problems, bad = [], set()
    for name, value in overrides.items():
        if name not in types:
            problems.append(f"notebook {notebook}: unknown setting {name}={value!r}; known settings: "
                            f"{', '.join(sorted(defaults))}.")
            bad.add(name)
        elif not is_ok(types[name], _like(defaults[name], value)):
            problems.append(f"notebook {notebook}: {name}={value!r} is not allowed: {allowed(types[name])} "
                            f"(default {defaults[name]!r}).")
            bad.add(name)
        elif name == "sweep" and notebook != "02":
            inner = validate("02", profile, value)
            problems += [f"notebook {notebook}: sweep: {m}" for m in inner]
            bad |= {name} if inner else set()
    P = _build(notebook, profile, {k: v for k, v in overrides.items() if k not in bad})
    for name, other, why in P.problems():
        if name in bad or other in bad or not ({name, other} & set(overrides)):
            continue
        if other is not None and other in overrides and name not in overrides:
            name, other = other, name  # name the setting that was given first
        with_other = f" with {other}={P[other]!r}" if other is not None else ""
        problems.append(f"notebook {notebook}: {name}={P[name]!r} is not allowed{with_other}: {why}.")
    return problems


def _build(notebook: str, profile: str, overrides: dict, **resolved) -> Settings:
    defaults = SETTINGS[notebook][profile]
    values = {**defaults, **{k: _like(defaults[k], v) for k, v in overrides.items()}, **resolved}
    return CLASSES[notebook](profile=profile, **CLASSES[notebook].following(values, overrides))


def settings(notebook: str, profile: str | None = None, **overrides) -> Settings:
    """The settings of ``notebook`` at ``profile`` with ``overrides`` applied, the machine's resolved
    (``machine.py``); ValueError with ``validate``'s messages when any is wrong."""
    profile = profile or current()
    problems = validate(notebook, profile, overrides)
    if problems:
        raise ValueError("\n".join(problems))
    given = {**SETTINGS[notebook][profile], **overrides}
    on = machine.device(given["device"])
    resolved = dict(device=on, threads=machine.threads(given["threads"]))
    if "n_jobs" in given:
        resolved["n_jobs"] = machine.workers(given["n_jobs"], on, GPU_WORKERS[profile])
    return _build(notebook, profile, overrides, **resolved)

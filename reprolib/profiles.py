"""The sizes every notebook uses, per profile, in one place.

- ``smoke``: seconds per notebook; for tests and CI. Claims are checked for being computed, not for
  holding: models this small are not converged.
- ``cpu`` (default): the paper's claims hold, on a 2-core laptop with nothing downloaded (``digits``).
- ``paper``: the paper's scale (CIFAR-10 32x32, EDM-sized U-Nets); needs a GPU and the data on disk.

A notebook asks ``settings("01", profile, **overrides)``; overrides replace single entries (papermill's
``overrides`` parameter or ``paper_figures.py --override``), and unknown names are refused.
"""

from __future__ import annotations

import os

NAMES = ("smoke", "cpu", "paper")


def current(default: str = "cpu") -> str:
    """The profile a notebook runs at: ``REPRO_PROFILE`` when set (tests, nbval), else ``default``."""
    return os.environ.get("REPRO_PROFILE") or default


_DIGITS_SHAPE = (1, 8, 8)
_CIFAR_SHAPE = (3, 32, 32)
_PAPER_UNET = {"kind": "unet", "channel_mult": [2, 2, 2], "num_blocks": 4, "attn_res": [16]}

# Notebook 01: the zoo of section 1 (``zoo.section1``), lengths scaled by steps_scale. ``public_checkpoints``
# (local folders or hub ids of diffusers DDPM checkpoints, ``hub.py``) add rows to the heatmaps; empty by
# default, so that nothing is downloaded unless asked for.
_S1 = {
    "smoke": dict(data="digits", shape=_DIGITS_SHAPE, steps_scale=0.01, seeds=64, sample_steps=6, n_jobs=1,
                   device="cpu", claims_strict=False, public_checkpoints=[]),
    "cpu": dict(data="digits", shape=_DIGITS_SHAPE, steps_scale=1.0, seeds=1000, sample_steps=18, n_jobs=2,
                 device="cpu", claims_strict=True, public_checkpoints=[]),
    "paper": dict(data="cifar10", shape=_CIFAR_SHAPE, steps_scale=50.0, seeds=10_000, sample_steps=18, n_jobs=1,
                   device="auto", claims_strict=True, public_checkpoints=[]),
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
_PAPER_SIZES = [2**k for k in range(6, 16)]
_REGIMES = {
    "smoke": dict(data="digits", shape=_DIGITS_SHAPE, sizes=[16, 256], widths=[4, 8], train_seeds=1,
                   steps={16: 30, 256: 30}, lr=3e-3, batch=64, seeds=48, sample_steps=5, grid=8, n_jobs=1,
                   snapshot_every=10, curve_seeds=48, device="cpu", claims_strict=False),
    "cpu": dict(data="digits", shape=_DIGITS_SHAPE, sizes=_DIGIT_SIZES, widths=[4, 8, 16], train_seeds=1,
                 steps={n: 5000 if n <= 32 else 3000 for n in _DIGIT_SIZES}, lr=3e-3, batch=128, seeds=500,
                 sample_steps=18, grid=32, n_jobs=2, snapshot_every=1000, curve_seeds=500, device="cpu",
                 claims_strict=True),
    "paper": dict(data="cifar10", shape=_CIFAR_SHAPE, sizes=_PAPER_SIZES, widths=[64, 128, 256], train_seeds=1,
                   steps={n: 60_000 for n in _PAPER_SIZES}, lr=1e-3, batch=128, seeds=10_000, sample_steps=18,
                   grid=64, n_jobs=1, snapshot_every=20_000, curve_seeds=1000, device="auto", claims_strict=True),
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
                   guidance_sweep=[0.0, 1.0], judge={}, judge_accuracy=0.97, n_jobs=1, device="cpu",
                   claims_strict=False),
    "cpu": dict(data="digits", shape=_DIGITS_SHAPE, steps_scale=1.0, seeds=1000, sample_steps=18, guidance=1.0,
                 guidance_sweep=[0.0, 0.5, 1.0, 2.0, 4.0], judge={}, judge_accuracy=0.97, n_jobs=2, device="cpu",
                 claims_strict=True),
    "paper": dict(data="cifar10", shape=_CIFAR_SHAPE, steps_scale=50.0, seeds=10_000, sample_steps=18,
                   guidance=1.0, guidance_sweep=[0.0, 0.5, 1.0, 2.0, 4.0], judge=dict(width=64, epochs=24),
                   judge_accuracy=0.9, n_jobs=1, device="auto", claims_strict=True),
}

# Notebook 05: deterministic DPS with notebook 01's unconditional U-Net and MLP (``zoo.unconditional``).
# ``images`` real images are measured; each is reconstructed from two noises per setting. ``zetas`` are the
# two DPS step sizes compared; ``sample_steps`` DPM-Solver++ steps (Euler gets 2 x steps - 1, as in 01).
_S5 = {
    "smoke": dict(data="digits", shape=_DIGITS_SHAPE, steps_scale=0.01, images=16, sample_steps=6,
                   tasks=["inpaint", "superres", "deblur"], noise_std=0.05, zetas=[0.5, 1.0], n_jobs=1,
                   device="cpu", claims_strict=False),
    "cpu": dict(data="digits", shape=_DIGITS_SHAPE, steps_scale=1.0, images=200, sample_steps=18,
                 tasks=["inpaint", "superres", "deblur"], noise_std=0.05, zetas=[0.5, 1.0], n_jobs=2,
                 device="cpu", claims_strict=True),
    "paper": dict(data="cifar10", shape=_CIFAR_SHAPE, steps_scale=50.0, images=1000, sample_steps=18,
                   tasks=["inpaint", "superres", "deblur"], noise_std=0.05, zetas=[0.5, 1.0], n_jobs=1,
                   device="auto", claims_strict=True),
}
SETTINGS["04"], SETTINGS["05"] = _S4, _S5

# Notebook 06: pre-train on the ``source`` classes, fine-tune on ``target`` (fully, decoder only, head only,
# LoRA of rank ``lora_rank``), against from-scratch models on ``target`` (``zoo.section6``). The partial
# fine-tunings are also trained ``long_factor`` times as long, with EMA snapshots at every multiple of their
# length (``zoo.section6_long``): is the fine-tuned model of the claims where its training is heading?
_S6 = {
    "smoke": dict(data="digits", shape=_DIGITS_SHAPE, steps_scale=0.01, source=[0, 1, 2, 3, 4],
                   target=[5, 6, 7, 8, 9], lora_rank=4, long_factor=3, seeds=64, sample_steps=6,
                   n_jobs=1, device="cpu", claims_strict=False),
    "cpu": dict(data="digits", shape=_DIGITS_SHAPE, steps_scale=1.0, source=[0, 1, 2, 3, 4],
                 target=[5, 6, 7, 8, 9], lora_rank=4, long_factor=3, seeds=1000, sample_steps=18,
                 n_jobs=2, device="cpu", claims_strict=True),
    "paper": dict(data="cifar10", shape=_CIFAR_SHAPE, steps_scale=20.0, source=[0, 1, 2, 3, 4],
                   target=[5, 6, 7, 8, 9], lora_rank=16, long_factor=3, seeds=10_000,
                   sample_steps=18, n_jobs=1, device="auto", claims_strict=True),
}

# Notebook 07: a U-Net and an MLP with EMA snapshots every ``snapshot_every`` steps (``zoo.section7``), of
# which ``snapshots`` evenly spaced ones are sampled; noise edits turn ``edit_seeds`` noises by ``angles``
# degrees toward the noise of ``direction_seed``. Privacy reuses notebook 02's sweep when the store holds all
# of it, else trains its ``privacy_widths`` x ``privacy_sizes`` corner (the same configs as 02's).
_S7 = {
    "smoke": dict(data="digits", shape=_DIGITS_SHAPE, steps_scale=0.01, snapshot_every=250, snapshots=4, seeds=64,
                   sample_steps=6, edit_seeds=32, angles=[0, 20, 45], direction_seed=7, privacy_sizes=[16, 256],
                   privacy_widths=[8], n_jobs=1, device="cpu", claims_strict=False),
    "cpu": dict(data="digits", shape=_DIGITS_SHAPE, steps_scale=1.0, snapshot_every=250, snapshots=12, seeds=500,
                 sample_steps=18, edit_seeds=200, angles=[0, 10, 20, 30, 45], direction_seed=7,
                 privacy_sizes=[16, 64, 256, 1797], privacy_widths=[8], n_jobs=2, device="cpu", claims_strict=True),
    "paper": dict(data="cifar10", shape=_CIFAR_SHAPE, steps_scale=50.0, snapshot_every=250, snapshots=12,
                   seeds=10_000, sample_steps=18, edit_seeds=1000, angles=[0, 10, 20, 30, 45], direction_seed=7,
                   privacy_sizes=[64, 1024, 32768], privacy_widths=[128], n_jobs=1, device="auto",
                   claims_strict=True),
}
SETTINGS["06"], SETTINGS["07"] = _S6, _S7

# Settings every notebook has, alike at every profile; at their defaults no store key and no number changes.
# - ``similarity``: "pixel" (``metrics.PixelSimilarity``, threshold 0.9) or "sscd" (``metrics.SSCDSimilarity``,
#   the paper's 0.6; weights from ``REPRO_SSCD``);
# - ``precision``: autocast dtype of every training, None (float32), "bf16" or "fp16" (``train.autocast``): on a
#   GPU, ``--override precision=bf16``;
# - ``nets``: entries replacing the backbones' (``zoo.nets``), e.g. {"unet": {"width": 8}} for a tiny run.
for _notebook in SETTINGS.values():
    for _profile in _notebook.values():
        _profile.update(similarity="pixel", precision=None, nets={})


def _like(default, value):
    """An override in the default's own key type: papermill hands parameters over as JSON, whose keys are
    strings, so ``steps={8: 5}`` reaches the notebook as ``{"8": 5}``."""
    if isinstance(default, dict) and isinstance(value, dict) and default and all(isinstance(k, int) for k in default):
        return {int(k) if isinstance(k, str) and k.lstrip("-").isdigit() else k: v for k, v in value.items()}
    return value


def settings(notebook: str, profile: str | None = None, **overrides) -> dict:
    """The settings of ``notebook`` at ``profile``, with ``overrides`` applied; clear errors for bad names."""
    profile = profile or current()
    if notebook not in SETTINGS:
        raise ValueError(f"No settings for notebook '{notebook}'. Known: {', '.join(SETTINGS)}.")
    if profile not in NAMES:
        raise ValueError(f"Unknown profile '{profile}'. Choose one of {', '.join(NAMES)}.")
    out = dict(SETTINGS[notebook][profile], profile=profile)
    unknown = set(overrides) - set(out)
    if unknown:
        raise ValueError(f"Unknown setting(s) {sorted(unknown)} for notebook {notebook}. Known: {sorted(out)}.")
    out.update({k: _like(out[k], v) for k, v in overrides.items()})
    if out.get("device") == "auto":
        import torch

        out["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    return out


# Notebook 08: closed-form theories beside notebook 02's U-Nets (``closed_form``). It trains nothing and reads
# the sweep's settings with ``settings("02", ...)``; these are its own. ``theory_seeds``: the first seeds of 02's
# that every theory is sampled from (the patch denoisers cost N x positions per query, so fewer than 02's);
# ``patch_sizes``: the sides of the patch denoisers; ``r2_images`` training and as many held-out images probe
# the denoisers at each of ``r2_sigmas``.
_S8 = {
    "smoke": dict(theory_seeds=24, patch_sizes=[3, 5], r2_images=16, r2_sigmas=[0.5, 2.0], device="cpu",
                   claims_strict=False),
    "cpu": dict(theory_seeds=200, patch_sizes=[3, 5, 7], r2_images=100, r2_sigmas=[0.2, 0.5, 1.0, 2.0, 5.0],
                 device="cpu", claims_strict=True),
    "paper": dict(theory_seeds=1000, patch_sizes=[3, 5, 7, 11], r2_images=200, r2_sigmas=[0.2, 0.5, 1.0, 2.0, 5.0],
                   device="auto", claims_strict=True),
}
for _profile in _S8.values():
    _profile.update(similarity="pixel", precision=None, nets={})
SETTINGS["08"] = _S8

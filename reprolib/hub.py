"""Released diffusers checkpoints read as denoisers D(x, sigma), beside the companion's own models.

A ``diffusers`` ``UNet2DModel`` trained with a ``DDPMScheduler`` predicts eps at integer timesteps
(Ho et al. 2020). That is ``formulations.DDPM`` with the scheduler's own beta table, so the wrapper only
adapts the call: the formulation feeds ``t / T`` (``DDPM.denoise``), the UNet wants ``t`` in timestep
units. Fractional t (between table entries) goes through the UNet's sinusoidal embedding unchanged.
Pixels are in [-1, 1], as in the companion's data sets.

``diffusers`` is optional: ``pip install 'reprolib[hub]'``. Sources are a local folder (what
``save_pretrained`` wrote) or a hub id such as ``google/ddpm-cifar10-32`` (downloaded on first use).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from . import codehash, samplers
from .formulations import DDPM, Denoiser
from .store import Store

_INSTALL = "diffusers is not installed: pip install 'reprolib[hub]' (or pip install diffusers)."


def _diffusers():
    try:
        import diffusers
    except ImportError as err:
        raise ImportError(_INSTALL) from err
    return diffusers


class EpsUNet(nn.Module):
    """A diffusers UNet as a companion backbone ``net(x_t, t / T, labels) -> eps``."""

    def __init__(self, unet: nn.Module, T: int):
        super().__init__()
        self.unet, self.T = unet, T

    def forward(self, x_t, c_noise, labels=None):
        out = self.unet(x_t, c_noise * self.T, class_labels=labels)
        return out.sample if hasattr(out, "sample") else out[0]


def _has(source: str, sub: str, name: str) -> bool:
    return (Path(source) / sub / name).exists()


def _pretrained(cls, source: str, sub: str, name: str, **kw):
    """``cls.from_pretrained`` from ``source/sub`` (the pipeline layout), else from ``source`` itself
    (older releases such as google/ddpm-cifar10-32 keep both configs at the top)."""
    if Path(source).is_dir():
        return cls.from_pretrained(source, subfolder=sub if _has(source, sub, name) else None, **kw)
    try:
        return cls.from_pretrained(source, subfolder=sub, **kw)
    except (OSError, ValueError):
        return cls.from_pretrained(source, **kw)


def load(source: str | Path, device="cpu", dtype=torch.float32) -> Denoiser:
    """A ``UNet2DModel`` + ``DDPMScheduler`` checkpoint as ``D(x, sigma, labels=None)``.

    The result is a ``formulations.Denoiser`` over ``formulations.DDPM`` built from the scheduler's betas, so
    it has DDPM's native (DDIM) schedule too; ``.shape`` is its image shape (C, H, W) and ``.source`` where it
    came from.
    """
    diffusers = _diffusers()
    source = str(source)
    # low_cpu_mem_usage=False: the default wants `accelerate` and warns on every load without it
    unet = _pretrained(diffusers.UNet2DModel, source, "unet", "config.json", low_cpu_mem_usage=False)
    scheduler = _pretrained(diffusers.DDPMScheduler, source, "scheduler", "scheduler_config.json")
    kind = scheduler.config.prediction_type
    if kind != "epsilon":
        raise ValueError(f"{source} predicts {kind!r}; only eps-prediction ('epsilon') checkpoints are supported.")
    formulation = DDPM(betas=scheduler.betas)
    model = Denoiser(EpsUNet(unet, formulation.T), formulation).to(device, dtype).eval().requires_grad_(False)
    cfg = unet.config
    size = cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0]
    model.shape, model.source = (cfg.in_channels, size, size), source
    return model


def name(source: str | Path) -> str:
    """A short row label: the hub id, or the folder's name."""
    source = str(source)
    return Path(source).name if Path(source).is_dir() else source


def _fingerprint(source: str) -> str:
    """What identifies a checkpoint in the store: a local folder's file names, sizes and times (so a replaced
    folder is sampled again); a hub id as itself."""
    folder = Path(source)
    if not folder.is_dir():
        return source
    files = sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                   for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(json.dumps([str(folder.resolve()), files]).encode()).hexdigest()[:16]


def samples(source: str | Path, store: Store, seeds, P: dict, sampler: str = "ddim", schedule: str = "native"):
    """Samples of a released checkpoint for ``seeds`` (cached in the store like ``banks.samples``).

    DDIM on the model's own timesteps by default, with the evaluations of Heun at ``P["sample_steps"]``
    (the convention of notebook 01's DDPM model). The checkpoint must make images of ``P["shape"]``.
    """
    source, seeds = str(source), [int(s) for s in seeds]
    steps = P["sample_steps"] if sampler == "heun" else 2 * P["sample_steps"] - 1  # equal evaluations
    key = {"hub": _fingerprint(source), "sampler": sampler, "schedule": schedule, "steps": steps, "seeds": seeds,
           "code": codehash.of("hub samples")}
    if store.exists("samples", key, "x"):
        return store.load("samples", key, "x")["x"]
    model = load(source, device=P["device"])
    if tuple(model.shape) != tuple(P["shape"]):
        raise ValueError(f"{source} makes images of shape {tuple(model.shape)}, but this profile's models make "
                         f"{tuple(P['shape'])}: public checkpoints fit the paper profile (CIFAR-10, 3x32x32).")
    x = samplers.sample(model, seeds, P["shape"], sampler, steps, schedule, device=P["device"]).clamp(-1, 1)
    store.save("samples", key, "x", {"x": x})
    return x


def rows(sources, store: Store, seeds, P: dict) -> dict:
    """{label: samples} for every source of ``P["public_checkpoints"]``-style lists (empty: nothing loaded)."""
    return {f"{name(s)} (DDIM)": samples(s, store, seeds, P) for s in sources}

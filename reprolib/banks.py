"""Sample banks and tables: what a trained model draws for given seeds, and what a notebook computes from such
draws, computed once and kept in the store beside the model.

Every bank's key holds its model's key, the sampler's settings, the seeds and the digest of the code that draws it
(``codehash``), plus the digest of this module's code, which draws and stores it (``stored_as``). Another process
asking for a bank being computed waits for it and loads it (``_once``).
"""

from __future__ import annotations

import inspect
import sys
from functools import lru_cache
from typing import TYPE_CHECKING

import torch

from . import codehash, samplers
from .store import Store
from .train import TrainConfig, train

if TYPE_CHECKING:
    from .zoo import Variant


def generate(v: Variant, store: Store, seeds, P: dict):
    """Samples of a variant for ``seeds`` (training it first if the store lacks it)."""
    if v.snapshot is not None:
        if (v.sampler, v.schedule, v.steps) != ("heun", "karras", None):
            raise ValueError(f"{v.name}: a snapshot is sampled with Heun on the Karras schedule at the profile's steps")
        return snapshot_samples(v.cfg, v.snapshot, store, seeds, P)
    return samples(v.cfg, store, seeds, P, v.sampler, v.schedule, v.steps)


def samples(cfg: TrainConfig, store: Store, seeds, P: dict, sampler: str = "heun", schedule: str = "karras",
            steps: int | None = None):
    """Samples of a trained model for ``seeds``, cached in the store beside the model (kind "samples"); ``steps``
    defaults to the profile's ``sample_steps`` (Heun) or as many evaluations (the others)."""
    steps = sample_steps(P, sampler) if steps is None else steps
    seeds = [int(s) for s in seeds]
    key = {"model": cfg.key_dict(), "sampler": sampler, "schedule": schedule, "steps": steps,
           "seeds": [seeds[0], len(seeds)] if seeds == list(range(seeds[0], seeds[0] + len(seeds))) else seeds,
           "code": codehash.of("samples")}
    return _bank(store, key, lambda: samplers.sample(train(cfg, store, device=P["device"], progress=False), seeds,
                                                     P["shape"], sampler, steps, schedule, device=P["device"]))


def sample_steps(P: dict, sampler: str) -> int:
    """The profile's ``sample_steps`` for Heun (two evaluations a step, one at the last), as many evaluations
    (2 n - 1 steps) for the one-evaluation samplers."""
    return P["sample_steps"] if sampler == "heun" else 2 * P["sample_steps"] - 1


def snapshot_samples(cfg: TrainConfig, step: int, store: Store, seeds, P: dict):
    """Heun samples of the EMA snapshot after ``step`` steps, cached in the store like ``samples``."""
    from .train import snapshot

    seeds = [int(s) for s in seeds]
    key = {"model": cfg.key_dict(), "snapshot": step, "sampler": "heun", "steps": P["sample_steps"], "seeds": seeds,
           "code": codehash.of("samples")}

    def draw():
        train(cfg, store, device=P["device"], progress=False)
        model = snapshot(cfg, step, store, device=P["device"])
        return samplers.sample(model, seeds, P["shape"], "heun", P["sample_steps"], device=P["device"])

    return _bank(store, key, draw)


def guided_samples(v: Variant, store: Store, seeds, labels, scale: float, P: dict):
    """Samples of a conditional variant for ``seeds`` with per-seed ``labels`` under classifier-free guidance
    of scale ``scale`` (``guidance.Guided``), cached in the store like ``samples``."""
    from .guidance import Guided

    steps = sample_steps(P, v.sampler)
    seeds, labels = [int(s) for s in seeds], torch.as_tensor(labels, dtype=torch.long)
    key = {"model": v.cfg.key_dict(), "sampler": v.sampler, "schedule": v.schedule, "steps": steps,
           "seeds": seeds, "labels": labels.tolist(), "guidance": float(scale),
           "code": codehash.of("guided samples")}
    return _bank(store, key, lambda: samplers.sample(Guided(train(v.cfg, store, device=P["device"], progress=False),
                                                            scale), seeds, P["shape"], v.sampler, steps, v.schedule,
                                                     device=P["device"], labels=labels))


def plane_samples(cfg: TrainConfig, store: Store, corners, P: dict):
    """``hyperplane.generate`` of the trained model ``cfg`` on the plane of the seeds ``corners`` (``P["grid"]``
    points a side): its three corner images and its image from every point, cached in the store (kind "samples")
    and, like ``generate``'s, not clipped."""
    from . import hyperplane

    corners = [int(s) for s in corners]
    key = {"model": cfg.key_dict(), "plane": corners, "grid": P["grid"], "sampler": "heun",
           "steps": P["sample_steps"], "code": codehash.of("plane samples")}

    def draw():
        grid = hyperplane.plane(corners, P["shape"], P["grid"])
        return torch.cat(hyperplane.generate(train(cfg, store, device=P["device"], progress=False), grid, corners, P))

    x = _bank(store, key, draw, clip=False)
    return x[:3], x[3:]


def edit_samples(cfg: TrainConfig, store: Store, seeds, direction_seed: int, angles, P: dict) -> torch.Tensor:
    """``editing.paths`` of the trained model ``cfg``: its samples (angles, seeds, *shape) from every seed's noise
    turned by each angle toward the noise of ``direction_seed``, cached in the store (kind "samples")."""
    from . import editing

    seeds, angles = [int(s) for s in seeds], [float(a) for a in angles]
    key = {"model": cfg.key_dict(), "seeds": seeds, "direction": int(direction_seed), "angles": angles,
           "sampler": "heun", "steps": P["sample_steps"], "code": codehash.of("edit samples")}

    def draw():
        direction = samplers.noise([direction_seed], P["shape"])[0]
        return editing.paths(train(cfg, store, device=P["device"], progress=False), seeds, direction, angles,
                             P["shape"], P["sample_steps"], P["device"])

    return _bank(store, key, draw)


def _bank(store: Store, key: dict, draw, clip: bool = True):
    """The sample bank stored under ``key``, else ``draw()`` clipped to [-1, 1] (images live there: clip as one does
    when writing an image file; ``clip=False`` keeps what the sampler returned) and stored."""
    return _once(store, "samples", key, "x", lambda: draw().clamp(-1, 1) if clip else draw(), lambda x: {"x": x},
                 lambda saved: saved["x"])


@lru_cache(maxsize=None)
def stored_as() -> str:
    """The digest of this module's code (``storing_digest``), which lives outside every artifact's digested modules:
    how each bank is drawn (the sampler's arguments, the model and snapshot it loads), ``_bank``'s clip, ``table``'s
    and ``_once``'s encodings. It joins every bank's and table's key, so that an edit here recomputes what it
    touches, as an edit to the code that computes it does. Read once per process, like ``codehash``."""
    return storing_digest(inspect.getsource(sys.modules[__name__]))


def storing_digest(source: str) -> str:
    """``codehash.source_digest`` of this module's ``source``: its code without docstrings and comments."""
    return codehash.source_digest(source)


def table(store: Store, key: dict, compute):
    """The table stored under ``key`` (kind "tables"), else ``compute()`` (a DataFrame of plain columns), stored."""
    import pandas as pd

    return _once(store, "tables", key, "rows", compute,
                 lambda t: {"columns": list(t.columns), "rows": t.to_dict("records")},
                 lambda saved: pd.DataFrame(saved["rows"], columns=saved["columns"]))


def _once(store: Store, kind: str, key: dict, name: str, compute, encode, decode):
    """``decode`` of what the store holds under ``key``, else ``compute()``, saved as ``encode`` of it. One process
    computes it; another asking for it meanwhile (a notebook run beside this one) waits and loads it. The key holds
    the digest of this storing code too (``stored_as``)."""
    key = {**key, "stored": stored_as()}
    if not store.exists(kind, key, name):
        with store.computing(kind, key, name):
            if not store.exists(kind, key, name):
                value = compute()
                store.save(kind, key, name, encode(value))
                return value
    return decode(store.load(kind, key, name))

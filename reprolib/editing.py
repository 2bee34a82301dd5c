"""Controllable generation through the noise: move every starting noise along one direction.

If every model maps a noise to (nearly) the same image, an edit made in noise space changes the images of
all models the same way (Zhang et al. 2024, section 5, "controllability"). An edit here is a rotation on the
great circle from a noise z toward a fixed direction d: z(a) = cos(a) z + sin(a) ||z|| d_perp, with d_perp the
unit part of d orthogonal to z, so every z(a) keeps the norm of a Gaussian noise (as slerp does). The
agreement of two models' edits is the Pearson correlation of their image changes x(a) - x(0), paired by
seed, against the same correlation over mismatched seeds.
"""

from __future__ import annotations

import math

import torch

from . import metrics, samplers


def rotate(z: torch.Tensor, direction: torch.Tensor, degrees: float) -> torch.Tensor:
    """Each noise of ``z`` (N, ...) turned by ``degrees`` toward ``direction`` (one noise shaped like z[0])."""
    flat, d = z.reshape(len(z), -1).double(), direction.reshape(1, -1).double()
    norm = flat.norm(dim=1, keepdim=True)
    perp = d - (flat @ d.T) / norm**2 * flat
    perp = perp / perp.norm(dim=1, keepdim=True).clamp_min(1e-12)
    a = math.radians(degrees)
    return (math.cos(a) * flat + math.sin(a) * norm * perp).to(z.dtype).reshape(z.shape)


def paths(denoiser, seeds, direction: torch.Tensor, degrees, shape, steps: int, device=None) -> torch.Tensor:
    """Samples (len(degrees), len(seeds), *shape) from every seed's noise turned by each angle (Heun)."""
    z = samplers.noise(seeds, shape)
    return torch.stack([samplers.sample(denoiser, seeds, shape, "heun", steps, z=rotate(z, direction, a),
                                        device=device).clamp(-1, 1) for a in degrees])


def change_agreement(path_a: torch.Tensor, path_b: torch.Tensor, sim=None, seed: int = 0):
    """Per angle (after the first): per-seed correlation of the two models' changes x(a) - x(0), paired and
    over mismatched seeds (the chance level). Returns two tensors (angles - 1, seeds)."""
    sim = sim or metrics.PixelSimilarity()
    da, db = path_a[1:] - path_a[:1], path_b[1:] - path_b[:1]
    paired = torch.stack([metrics.paired(sim, a, b) for a, b in zip(da, db)])
    chance = torch.stack([metrics.unpaired(sim, a, b, seed) for a, b in zip(da, db)])
    return paired, chance

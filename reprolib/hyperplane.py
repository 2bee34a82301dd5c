"""The noise-hyperplane figure: how a model partitions a plane of starting noises (Zhang et al., Figure 5).

Three noises z1, z2, z3 span the plane z(a, b) = z1 + a (z2 - z1) + b (z3 - z1). Every grid point is rescaled
to the norm sqrt(d) that a d-dimensional Gaussian noise has with overwhelming probability, so it is a
plausible starting noise (what slerp does on a circle, done on the plane). A model generates an image from
each point, and the point is labelled by which of the model's own three corner images it resembles most; the
corners are seeds that every model maps to the same image, so a colour means one image in every panel.
"""

from __future__ import annotations

import warnings
from itertools import combinations

import numpy as np
import torch

from . import metrics, samplers
from .optimal import OptimalDenoiser

CORNERS = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0))  # (a, b) of z1, z2, z3
EXTENT = (-0.5, 1.5, -0.5, 1.5)  # the (a, b) square drawn


def _on_sphere(z: torch.Tensor) -> torch.Tensor:
    flat = z.reshape(len(z), -1)
    return (flat * (flat.shape[1] ** 0.5 / flat.norm(dim=1, keepdim=True))).reshape(z.shape)


def points(seeds, shape, ab: torch.Tensor) -> torch.Tensor:
    """Noises at plane coordinates ``ab`` (M, 2), rescaled to norm sqrt(d)."""
    z1, z2, z3 = samplers.noise(seeds[:3], shape)
    a, b = ab[:, 0].view(-1, *[1] * len(shape)), ab[:, 1].view(-1, *[1] * len(shape))
    return _on_sphere(z1 + a * (z2 - z1) + b * (z3 - z1))


def plane(seeds, shape, grid: int) -> torch.Tensor:
    """A grid x grid raster of noises over EXTENT, row-major with b as the row (for imshow's origin='lower')."""
    a = torch.linspace(EXTENT[0], EXTENT[1], grid)
    b = torch.linspace(EXTENT[2], EXTENT[3], grid)
    bb, aa = torch.meshgrid(b, a, indexing="ij")
    return points(seeds, shape, torch.stack([aa.flatten(), bb.flatten()], 1))


def generate(denoiser, grid_z: torch.Tensor, seeds, P: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's three corner images and its image from every noise of the plane."""
    shape = tuple(grid_z.shape[1:])
    corners = points(seeds, shape, torch.tensor(CORNERS))
    run = dict(sampler="heun", steps=P["sample_steps"], device=P["device"])
    return (samplers.sample(denoiser, range(3), shape, z=corners, **run),
            samplers.sample(denoiser, range(len(grid_z)), shape, z=grid_z, **run))


def nearest_corner(refs: torch.Tensor, x: torch.Tensor, sim) -> np.ndarray:
    """For each image ``x`` of the plane, the index (0, 1, 2) of the corner image ``refs`` it resembles most
    (``generate``'s two outputs)."""
    return (sim.embed(x) @ sim.embed(refs).T).argmax(1).numpy()


def reached(x: torch.Tensor, train: torch.Tensor) -> np.ndarray:
    """For each image of the plane, the index of the training image it is closest to: in the memorization
    regime, the copy it made, a label that does not depend on the corners."""
    return metrics.nearest_l2(x, train)[1].numpy()


def pick_corners(denoisers: dict, candidates, shape, P: dict, sim, threshold: float | None = None) -> list:
    """The first three candidate seeds that every model maps to one shared image (every pair of models' images
    similar above the threshold), the three images pairwise different (at most the threshold) for every model.

    Shared corners make each colour mean one image in every panel, so that partitions can be compared; two
    corners on one image would lose a colour. Without three shared seeds, warns and takes the first three whose
    images differ pairwise for every model.
    """
    t = sim.default_threshold if threshold is None else threshold
    run = dict(sampler="heun", steps=P["sample_steps"], device=P["device"])
    embeds = [sim.embed(samplers.sample(d, candidates, shape, **run)) for d in denoisers.values()]
    close = torch.stack([(e @ e.T) > t for e in embeds]).any(0)
    shared = [i for i in range(len(candidates))
              if all(float(a[i] @ b[i]) > t for a, b in combinations(embeds, 2))]

    def first_distinct(indices):
        return next(([candidates[i], candidates[j], candidates[k]] for i, j, k in combinations(indices, 3)
                     if not (close[i, j] or close[i, k] or close[j, k])), None)

    corners = first_distinct(shared)
    if corners is None and len(shared) < len(candidates):  # models that mostly disagree (barely trained)
        warnings.warn(f"No three of the {len(candidates)} candidate seeds give images that every model shares "
                      f"({len(shared)} do) and that differ pairwise: each model's corners are its own images, so "
                      f"a colour may mean different images in different panels.", stacklevel=2)
        corners = first_distinct(range(len(candidates)))
    if corners is None:
        raise ValueError(f"No three of the {len(candidates)} candidate seeds give pairwise different images for "
                         f"every model; pass more candidates.")
    return corners


def optimal(images: torch.Tensor, device="cpu") -> OptimalDenoiser:
    """D* of ``images``, computing on ``device`` (the models' own)."""
    return OptimalDenoiser(images).to(device)


def agreement_table(labels: dict) -> dict:
    """{(a, b): (fraction of the plane where a and b pick the same corner, chance of that)}.

    Chance is what independent labellings with the same label frequencies would give: sum_k p_a(k) p_b(k).
    """
    out = {}
    for a, b in combinations(labels, 2):
        la, lb = labels[a], labels[b]
        k = int(max(la.max(), lb.max())) + 1
        pa, pb = np.bincount(la, minlength=k) / len(la), np.bincount(lb, minlength=k) / len(lb)
        out[(a, b)] = (float((la == lb).mean()), float(pa @ pb))
    return out


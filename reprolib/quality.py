"""Sample quality without a feature network: the Frechet distance in pixel space.

FID (Heusel et al. 2017) fits a Gaussian to the Inception features of the samples and one to those of real
images and reports ||mu_1 - mu_2||^2 + tr(C_1 + C_2 - 2 (C_1 C_2)^{1/2}). On 8x8 digits there is no Inception
network, so the same formula is applied to the raw pixel vectors. Blurry class-average digits have too little
pixel variance and score far from the real digits; a sharp, diverse sample set scores near the floor set by
two halves of the real data.
"""

from __future__ import annotations

import numpy as np
import torch


def _moments(x: torch.Tensor):
    flat = x.reshape(len(x), -1).double().numpy()
    return flat.mean(0), np.cov(flat, rowvar=False)


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(w.clip(min=0))) @ v.T


def frechet(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to the pixels of image sets ``a`` and ``b``.

    tr (C_1 C_2)^{1/2} is computed as tr (S C_2 S)^{1/2} with S = C_1^{1/2}, a symmetric form that stays
    exact when a covariance is singular (digits have pixels that are always blank).
    """
    (m1, c1), (m2, c2) = _moments(a), _moments(b)
    s = _psd_sqrt(c1)
    cross = np.trace(_psd_sqrt(s @ c2 @ s))
    return float(((m1 - m2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * cross)


def real_floor(images: torch.Tensor, seed: int = 0) -> float:
    """The distance between two random halves of a real image set: what a perfect sampler scores at best."""
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    half = len(images) // 2
    return frechet(images[perm[:half]], images[perm[half:2 * half]])

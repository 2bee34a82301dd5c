"""The Gaussian denoiser: the optimal denoiser of a Gaussian with the training set's mean and covariance.

For data y ~ N(mu, Sigma) and x = y + sigma n, the posterior mean is linear in x,

    D_G(x; sigma) = mu + Sigma (Sigma + sigma^2 I)^-1 (x - mu) = mu + U diag(l / (l + sigma^2)) U^T (x - mu),

with Sigma = U diag(l) U^T: the optimal denoiser of the Gaussian that Li, Dai & Qu (NeurIPS 2024,
arXiv 2410.24060) find trained denoisers approaching as they generalize. mu and Sigma are the empirical mean and
covariance (1/N) of the training images, accumulated in float64 over chunks of images so that memory stays
bounded by ``chunk`` images and one d x d matrix (d = 64 on digits, 3,072 on CIFAR-10). The eigendecomposition
makes every sigma one product through U, and a covariance of rank < d (N <= d) simply shrinks the missing
directions to mu.
"""

from __future__ import annotations

import torch
from torch import nn


def moments(images: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (d,) and covariance (d, d) of ``images`` (N, ...), 1/N normalised, in float64."""
    n = len(images)
    flat = images.reshape(n, -1)
    mean = torch.zeros(flat.shape[1], dtype=torch.float64, device=images.device)
    for j in range(0, n, chunk):
        mean += flat[j:j + chunk].double().sum(0)
    mean /= n
    cov = torch.zeros(flat.shape[1], flat.shape[1], dtype=torch.float64, device=images.device)
    for j in range(0, n, chunk):  # centred before the product: no cancellation of E[yy^T] - mu mu^T
        c = flat[j:j + chunk].double() - mean
        cov += c.T @ c
    return mean, cov / n


class GaussianDenoiser(nn.Module):
    """D_G(x, sigma) for the Gaussian fitted to ``train`` (N, C, H, W); a denoiser like any trained model."""

    def __init__(self, train: torch.Tensor, chunk: int = 4096):
        super().__init__()
        mean, cov = moments(train, chunk)
        evals, evecs = torch.linalg.eigh(cov)
        # Round-off leaves the null directions of a rank-deficient covariance (N <= d) at +-1e-16 of the largest
        # eigenvalue, which a tiny sigma would read as variance: below the numerical rank's tolerance they are 0.
        tol = evals.abs().max() * len(evals) * torch.finfo(torch.float64).eps
        self.register_buffer("mean", mean)
        self.register_buffer("evals", torch.where(evals > tol, evals, torch.zeros_like(evals)))
        self.register_buffer("evecs", evecs)

    def forward(self, x, sigma, labels=None):
        flat = x.reshape(len(x), -1).double() - self.mean
        var = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).expand(len(x)).reshape(-1, 1) ** 2
        # (B, d); at sigma = 0 a null direction would be 0/0, and it shrinks to mu like at any sigma
        shrink = self.evals / (self.evals + var).clamp_min(torch.finfo(torch.float64).tiny)
        out = self.mean + ((flat @ self.evecs) * shrink) @ self.evecs.T
        return out.to(x.dtype).reshape(x.shape)

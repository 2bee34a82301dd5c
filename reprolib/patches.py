"""The local, translation-equivariant patch denoiser: the optimal-denoiser formula applied to image patches.

Kamb & Ganguli's equivariant local score (ELS) machine (ICML 2025, arXiv 2412.20292, section 3) assumes what a
convolutional denoiser can know: pixel p is denoised from the k x k window Omega_p around it only (locality), by a
rule that is the same at every position (equivariance). The optimal such denoiser is D* of the data set of all
training *patches*: in the EDM variables x = y + sigma n,

    D_k(x; sigma)_p = sum_{i,q} w_iq y_i(q),   w = softmax_{i,q}( -||x[Omega_p] - y_i[Omega_q]||^2 / (2 sigma^2) ),

the posterior mean of the centre pixel y_i(q) over every training image i and every position q.

Borders: a zero-padded convolution knows where the image ends, so equivariance holds only between positions whose
windows the border cuts alike (the ELS paper's boundary-broken equivariance). Here a window is cut to the image,
and q runs over the positions whose cut window has the same shape around the pixel as p's: every interior position
shares one class, a position near a border only those at the same distance from it. The padding then carries no
information and its value does not matter. A window of side >= 2 max(H, W) - 1 covers the whole image from every
pixel, every position is its own class, and D_k is D* (``optimal.OptimalDenoiser``) exactly.

``size`` is an odd side k, or a function sigma -> k (the ELS paper calibrates k per noise level). Logits are
x.y - ||y||^2 / 2 over sigma^2, accumulated by a streaming log-sum-exp over chunks of training images (windows cut
on the fly), so memory stays bounded by ``budget`` logits however large N or the image is. Each query meets N
times the positions of its class (N x 36 windows per interior pixel of an 8x8 digit at k = 3), which makes this
the costly denoiser; below ``float64_below`` the logits are float64, where 1/sigma^2 amplifies float32's rounding
of x.y (about 1e-7 of ||x||^2 + ||y||^2) past 1e-3; above it float32 keeps that error under 1e-3 on windows of
up to 7 x 7 x 3 pixels in [-1, 1] and runs faster. Each chunk's weighted sums are taken in the logits' precision
and accumulated across chunks in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class _Class:
    window: torch.Tensor  # (Q, D) flat indices of each position's cut window (same shape for every q)
    centre: torch.Tensor  # (Q, C) flat indices of each position's pixel, one per channel


def _cut(length: int, half: int) -> list[tuple[int, int]]:
    """Per position along one axis: the window's extent (first, last) relative to it, cut to [0, length)."""
    return [(max(-i, -half), min(length - 1 - i, half)) for i in range(length)]


def classes(shape, size: int) -> list[_Class]:
    """Positions of a (C, H, W) image grouped by the shape of their cut k x k window."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"patch size must be an odd positive integer, got {size}")
    c, h, w = shape
    rows, cols = _cut(h, size // 2), _cut(w, size // 2)
    groups: dict = {}
    for i in range(h):
        for j in range(w):
            groups.setdefault((rows[i], cols[j]), []).append((i, j))
    out, chan = [], torch.arange(c).view(c, 1, 1) * (h * w)
    for ((r0, r1), (c0, c1)), where in groups.items():
        dr, dc = torch.arange(r0, r1 + 1).view(1, -1, 1), torch.arange(c0, c1 + 1).view(1, 1, -1)
        window = torch.stack([(chan + (i + dr) * w + (j + dc)).reshape(-1) for i, j in where])
        centre = torch.stack([(chan + i * w + j).reshape(-1) for i, j in where])
        out.append(_Class(window, centre))
    return out


class PatchDenoiser(nn.Module):
    """D_k(x, sigma) over the patches of ``train`` (N, C, H, W); a denoiser like any trained model."""

    def __init__(self, train: torch.Tensor, size: int | Callable[[float], int], budget: int = 2**22,
                 float64_below: float = 0.1):
        super().__init__()
        self.register_buffer("y", train.reshape(len(train), -1).double())
        self.shape, self.size, self.budget = tuple(train.shape[1:]), size, budget
        self.float64_below = float64_below
        self._classes: dict[int, list[_Class]] = {}

    def side(self, sigma) -> int:
        """The patch side used at noise level ``sigma``."""
        if not callable(self.size):
            return int(self.size)
        levels = torch.as_tensor(sigma).reshape(-1)
        if not bool((levels == levels[0]).all()):
            raise ValueError("a sigma-dependent patch size needs one noise level per call")
        return int(self.size(float(levels[0])))

    def forward(self, x, sigma, labels=None):
        k = self.side(sigma)
        if k not in self._classes:
            self._classes[k] = classes(self.shape, k)
        flat = x.reshape(len(x), -1).double()
        levels = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).expand(len(x))
        inv_var = levels ** -2
        dtype = torch.float64 if bool((levels < self.float64_below).any()) else torch.float32
        out = torch.empty_like(flat)
        for cls in self._classes[k]:
            window, centre = cls.window.to(x.device), cls.centre.to(x.device)
            q = len(window)
            queries = flat[:, window].reshape(-1, window.shape[1])  # row b * Q + position
            mean = self._posterior_mean(queries, inv_var.repeat_interleave(q).unsqueeze(1), window, centre, dtype)
            out.scatter_(1, centre.reshape(1, -1).expand(len(x), -1), mean.view(len(x), -1))
        return out.to(x.dtype).reshape(x.shape)

    def _posterior_mean(self, queries, inv_var, window, centre, dtype):
        """Softmax-weighted mean of the candidate centres over every training image's patches of this class,
        for blocks of queries small enough that one training image's candidates fit the logit budget."""
        q = len(window)
        rows = max(1, self.budget // q)
        return torch.cat([self._block(queries[r:r + rows].to(dtype), inv_var[r:r + rows].to(dtype), window, centre)
                          for r in range(0, len(queries), rows)])

    def _block(self, queries, inv_var, window, centre):
        per_chunk = max(1, self.budget // (len(queries) * len(window)))  # training images per chunk
        run_max = torch.full((len(queries), 1), -torch.inf, dtype=torch.float64, device=queries.device)
        acc = torch.zeros(len(queries), centre.shape[1] + 1, dtype=torch.float64, device=queries.device)
        for j in range(0, len(self.y), per_chunk):
            y = self.y[j:j + per_chunk]
            cand = y[:, window].reshape(-1, window.shape[1]).to(queries.dtype)
            logits = torch.addmm(-0.5 * (cand * cand).sum(1), queries, cand.T).mul_(inv_var)
            new_max = torch.maximum(run_max, logits.amax(1, keepdim=True).double())
            # In place: the logits are the largest array here. Weights below e^-80 of the largest count as e^-80,
            # at most N Q e^-80 (< 1e-25) of the sum for any data set here, and spare exp its slow underflow path.
            w = logits.sub_(new_max.to(logits.dtype)).clamp_(min=-80.0).exp_()
            # one product gives the weighted centres and, through a column of ones, the sum of the weights
            values = torch.cat([y[:, centre].reshape(-1, centre.shape[1]), y.new_ones(len(cand), 1)], 1)
            acc = acc * torch.exp(run_max - new_max) + (w @ values.to(w.dtype)).double()
            run_max = new_max
        return acc[:, :-1] / acc[:, -1:]

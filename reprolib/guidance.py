"""Classifier-free guidance (Ho & Salimans 2022, eq. 6) as a denoiser like any other.

A conditional model trained with label dropout is both D(x; sigma | c) and, with the "no label" token,
D(x; sigma). Guidance extrapolates from the second to the first:

    D_w(x; sigma | c) = D(x; sigma | c) + w (D(x; sigma | c) - D(x; sigma))

(eq. 6 in eps form; D is an affine function of eps, so the same combination holds for D). w = 0 is the
plain conditional model.
"""

from __future__ import annotations

import torch
from torch import nn


class Guided(nn.Module):
    """``D_w(x, sigma, labels)``; ``null_label`` is the token the model was trained with for "no label"."""

    def __init__(self, denoiser: nn.Module, scale: float, null_label: int = 10):
        super().__init__()
        self.denoiser, self.scale, self.null_label = denoiser, scale, null_label

    def forward(self, x, sigma, labels):
        cond = self.denoiser(x, sigma, labels)
        if self.scale == 0:
            return cond
        uncond = self.denoiser(x, sigma, torch.full_like(labels, self.null_label))
        return cond + self.scale * (cond - uncond)

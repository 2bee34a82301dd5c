"""The closed-form optimal denoiser of an empirical distribution (the paper's Theorem 1).

For training images y_1..y_N, the minimiser of the denoising loss at noise level sigma is

    D*(x; sigma) = sum_i w_i y_i,   w = softmax_i( -||x - y_i||^2 / (2 sigma^2) ).

Since ||x||^2 is the same for every i it drops out of the softmax, so the logits are
(x.y_i - ||y_i||^2 / 2) / sigma^2: one matrix product per step. They are accumulated in float64 with a
streaming log-sum-exp over chunks of the training set, so memory stays bounded by ``chunk`` columns
however large N is, and tiny sigmas (weights of e^-10^5) neither overflow nor lose the winner.
"""

from __future__ import annotations

import torch
from torch import nn


class OptimalDenoiser(nn.Module):
    """D*(x, sigma) over ``train`` (N, C, H, W); a denoiser like any trained model."""

    def __init__(self, train: torch.Tensor, chunk: int = 4096):
        super().__init__()
        y = train.reshape(len(train), -1).double()
        self.register_buffer("y", y)
        self.register_buffer("half_sq", 0.5 * (y * y).sum(1))
        self.chunk = chunk

    def forward(self, x, sigma, labels=None):
        on = self.y.device  # computed where the training images are, whatever device x comes from
        flat = x.reshape(len(x), -1).double().to(on)
        inv_var = torch.as_tensor(sigma, dtype=torch.float64, device=on).expand(len(x)).reshape(-1, 1) ** -2
        run_max = torch.full((len(x), 1), -torch.inf, dtype=torch.float64, device=on)
        run_sum = torch.zeros_like(run_max)
        acc = torch.zeros_like(flat)
        for j in range(0, len(self.y), self.chunk):
            y, half_sq = self.y[j:j + self.chunk], self.half_sq[j:j + self.chunk]
            logits = (flat @ y.T - half_sq) * inv_var
            new_max = torch.maximum(run_max, logits.max(1, keepdim=True).values)
            rescale = torch.exp(run_max - new_max)
            w = torch.exp(logits - new_max)
            run_sum = run_sum * rescale + w.sum(1, keepdim=True)
            acc = acc * rescale + w @ y
            run_max = new_max
        return (acc / run_sum).to(x.device, x.dtype).reshape(x.shape)

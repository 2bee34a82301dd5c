"""Inverse problems with a diffusion prior: deterministic DPS (Chung et al. 2023) on DPM-Solver steps.

Measurements y = A(x0) + noise. Diffusion posterior sampling (DPS, Algorithm 1) follows the reverse
process and, after each step, moves x against the gradient of the measurement error of the denoised
estimate: x <- x - zeta_i grad_x ||y - A(D(x; sigma))||^2 with zeta_i = zeta / ||y - A(D(x; sigma))||.
The paper's deterministic variant replaces DPS's stochastic ancestral step by a deterministic solver step
(here DPM-Solver++(2M) or Euler over D), so the whole map noise -> reconstruction is deterministic and two
backbones can be compared from the same noise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import codehash, samplers


class Inpaint:
    """Keep the pixels where ``mask`` is 1 (default: hide the centre square of side half the image)."""

    def __init__(self, shape, mask: torch.Tensor | None = None):
        if mask is None:
            c, h, w = shape
            mask = torch.ones(shape)
            mask[:, h // 4: h - h // 4, w // 4: w - w // 4] = 0
        self.mask = mask

    def __call__(self, x):
        return x * self.mask.to(x.device)


class Downsample:
    """Super-resolution: average pooling by ``factor``."""

    def __init__(self, factor: int = 2):
        self.factor = factor

    def __call__(self, x):
        return F.avg_pool2d(x, self.factor)


class Blur:
    """Deblurring: a normalised Gaussian kernel of std ``std`` pixels, reflect-padded."""

    def __init__(self, std: float = 1.0, size: int = 5):
        r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        k = torch.exp(-r**2 / (2 * std**2))
        self.kernel = (k[:, None] * k[None, :] / k.sum() ** 2)[None, None]

    def __call__(self, x):
        pad = self.kernel.shape[-1] // 2
        k = self.kernel.to(x.device).expand(x.shape[1], 1, -1, -1)
        return F.conv2d(F.pad(x, (pad,) * 4, mode="reflect"), k, groups=x.shape[1])


OPERATORS = {"inpaint": Inpaint, "superres": Downsample, "deblur": Blur}


def operator(name: str, shape):
    if name not in OPERATORS:
        raise ValueError(f"Unknown inverse problem '{name}'. Choose one of {', '.join(OPERATORS)}.")
    return OPERATORS[name](shape) if name == "inpaint" else OPERATORS[name]()


def measure(A, x0: torch.Tensor, noise_std: float, seed: int = 0) -> torch.Tensor:
    """y = A(x0) + noise_std * n, with n drawn from ``seed``."""
    y = A(x0)
    return y + noise_std * torch.randn(y.shape, generator=torch.Generator().manual_seed(seed))


def dps(denoiser, y, A, z, sigmas, zeta: float = 1.0, solver: str = "dpmpp_2m") -> torch.Tensor:
    """Deterministic DPS from starting noise z (N, C, H, W) over ``sigmas`` (descending, ending at 0)."""
    if solver not in ("dpmpp_2m", "euler"):
        raise ValueError(f"Unknown DPS solver '{solver}': use 'dpmpp_2m' or 'euler'.")
    x = z * sigmas[0]
    prev = None
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        x = x.detach().requires_grad_(True)
        d = denoiser(x, s)
        err = (y - A(d)).flatten(1).norm(dim=1)  # per image
        grad = torch.autograd.grad((err**2).sum(), x)[0]
        d, x = d.detach(), x.detach()
        if solver == "euler":
            x = d if s_next == 0 else samplers.euler_step(x, d, s, s_next)
        else:
            x, prev = samplers.dpmpp_2m_step(x, d, s, s_next, prev)
        x = x - (zeta / err.clamp_min(1e-8)).view(-1, *[1] * (x.ndim - 1)) * grad  # DPS step, Algorithm 1
    return x.detach()


def reconstruct(denoiser, y, A, seeds, shape, steps: int = 18, zeta: float = 1.0, solver: str = "dpmpp_2m",
                batch_size: int = 250) -> torch.Tensor:
    """DPS reconstructions of the measurements ``y`` (one per seed) from each seed's noise."""
    sigmas = samplers.karras_sigmas(steps).to(y.device)
    z = samplers.noise(seeds, shape).to(y.device)
    out = [dps(denoiser, y[i:i + batch_size], A, z[i:i + batch_size], sigmas, zeta, solver)
           for i in range(0, len(z), batch_size)]
    return torch.cat(out).clamp(-1, 1)


def residual(A, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image measurement misfit ||y - A(x)||; for the truth it is the noise's norm."""
    return (y - A(x)).flatten(1).norm(dim=1)


def rp_same_and_other_noise(sim, a: tuple, b: tuple, threshold: float) -> tuple[float, float]:
    """Reproducibility of two reconstruction settings from the same noise, and its baseline.

    ``a`` and ``b`` each hold two reconstructions of the same measurements, from noise draws 1 and 2.
    Returns (RP over the same-noise pairs (a1, b1), (a2, b2); RP over the other-noise pairs (a1, b2),
    (a2, b1)). The second is the chance level: same measurement, different noise.
    """
    from . import metrics

    def rp(p, q):
        return (metrics.paired(sim, p, q) > threshold).double()

    same = torch.cat([rp(a[0], b[0]), rp(a[1], b[1])]).mean()
    other = torch.cat([rp(a[0], b[1]), rp(a[1], b[0])]).mean()
    return float(same), float(other)


def cached_reconstruct(store, model_key: dict, denoiser, truth_key: dict, truth: torch.Tensor, task: str,
                       noise_std: float, seeds, steps: int, zeta: float, solver: str, device="cpu"):
    """``reconstruct`` of ``truth`` measured by ``task`` with ``noise_std`` (measurement seed 0), cached in
    the store under everything that determines it (kind "dps")."""
    seeds = [int(s) for s in seeds]
    key = {"model": model_key, "truth": truth_key, "task": task, "noise_std": float(noise_std), "seeds": seeds,
           "steps": int(steps), "zeta": float(zeta), "solver": solver, "code": codehash.of("dps")}
    if store.exists("dps", key, "x"):
        return store.load("dps", key, "x")["x"]
    A = operator(task, truth.shape[1:])
    y = measure(A, truth, noise_std)
    x = reconstruct(denoiser, y.to(device), A, seeds, truth.shape[1:], steps, zeta, solver).cpu()
    store.save("dps", key, "x", {"x": x})
    return x

"""Deterministic samplers of the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma.

Every sampler is ``fn(denoise, x, sigmas) -> x0`` over any ``denoise(x, sigma)`` (a trained model, the
optimal denoiser, a guided wrapper) and a descending ``sigmas`` that ends at 0. ``sample`` draws the
starting noise per seed, from the seed alone. What holds for the sample: the same seeds in the same batches
(``batch_size``) at the same torch thread count give the same bits. In another batch, or at another thread
count, the network's float32 reductions are split differently and the sample differs by that round-off as
the steps carry it (tests/test_samplers.py bounds it for a small U-Net). In bf16 or fp16 (``precision``) only the
denoiser's evaluations are rounded and the samples stay close to float32's: for a tiny digits U-Net the tests ask
RP >= 0.9 against them (measured 1.0, every Pearson correlation above 0.99999).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from . import progress as progress_lib

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}


def karras_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022, eq. 5: n levels from sigma_max to sigma_min, then a final 0."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    s = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([s, s.new_zeros(1)]).float()


def euler(denoise: Denoise, x, sigmas):
    """First-order steps x += (sigma_next - sigma) (x - D) / sigma."""
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        x = euler_step(x, denoise(x, s), s, s_next)
    return x


def heun(denoise: Denoise, x, sigmas):
    """Karras et al. 2022, Algorithm 1 with S_churn = 0: Euler, then the trapezoidal correction
    wherever sigma_next > 0 (2n - 1 evaluations for n steps)."""
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        d = (x - denoise(x, s)) / s
        x_next = x + (s_next - s) * d
        if s_next > 0:
            d_next = (x_next - denoise(x_next, s_next)) / s_next
            x_next = x + (s_next - s) * (d + d_next) / 2
        x = x_next
    return x


def ddim(denoise: Denoise, x, sigmas):
    """DDIM with eta = 0 (Song et al. 2021, eq. 12), written in its own variance-preserving variables:
    x_t = sqrt(abar) x, abar = 1 / (1 + sigma^2). In x/sigma variables it coincides with Euler
    (Karras et al. 2022, section 3); the tests check that."""
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        x0 = denoise(x, s)
        eps = (x - x0) / s
        abar_next = 1 / (1 + s_next**2)
        x_t_next = abar_next.sqrt() * x0 + (1 - abar_next).sqrt() * eps  # eq. 12, sigma_t = 0
        x = x_t_next / abar_next.sqrt()
    return x


def euler_step(x, d, s, s_next):
    """One Euler step of the PF-ODE given the denoised estimate d = D(x; s)."""
    return x + (s_next - s) * (x - d) / s


def dpmpp_2m_step(x, d, s, s_next, prev=None):
    """One step of DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) in data prediction, lambda = -log sigma.

    ``prev`` is the (d, h) the previous step returned (None on the first step: first order). Returns the
    new x and the (d, h) to pass on; the final step to sigma = 0 returns d itself.

    A step more than twice as long in lambda as the one before is taken at first order: 2M extrapolates D's
    slope, measured over the previous step, across half of this one, and beyond twice that span the line overshoots
    where D levels off (sigma below the data's scale). Only a model's native schedule has such a step, the one into
    its smallest level (DDPM's t = 0, 2.6-5x the step before from 4 to 200 steps); Karras's rho = 7 steps grow by at
    most 1.8x from 4 steps on (2.06x at 3). Deciding it here, in the step every caller chains (``dpmpp_2m``,
    ``sample``, DPS), makes it one rule for all of them.
    """
    if s_next == 0:
        return d, None
    h = torch.log(s / s_next)
    if prev is not None and h > 2 * prev[1]:
        prev = None
    d_hat = d if prev is None else d + (d - prev[0]) * h / (2 * prev[1])
    return (s_next / s) * x - torch.expm1(-h) * d_hat, (d, h)


def dpmpp_2m(denoise: Denoise, x, sigmas):
    """DPM-Solver++(2M) over a schedule: ``dpmpp_2m_step`` chained, first order on the first step, on the final
    step to sigma = 0 and on any step more than twice as long as the one before."""
    prev = None
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        x, prev = dpmpp_2m_step(x, denoise(x, s), s, s_next, prev)
    return x


def consistency(denoise: Denoise, x, sigmas, noises=(), sigma_min: float = 0.002):
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1): x0 = D(x, sigmas[0]); then for each
    further level s, x = x0 + sqrt(s^2 - sigma_min^2) z_k and x0 = D(x, s). ``noises`` are the z_k, one per level
    after the first (``sample`` draws them from each seed's generator after its starting noise). One level
    (sigmas = [sigma_max, 0]) is the one-step model: a denoiser evaluated once at sigma_max."""
    levels = list(sigmas[:-1])
    if len(noises) < len(levels) - 1:
        raise ValueError(f"consistency sampling over {len(levels)} levels needs {len(levels) - 1} extra noises")
    x0 = denoise(x, levels[0])
    for s, z in zip(levels[1:], noises):
        x0 = denoise(x0 + (s**2 - sigma_min**2).clamp(min=0).sqrt() * z, s)
    return x0


SAMPLERS = {"euler": euler, "heun": heun, "ddim": ddim, "dpmpp_2m": dpmpp_2m, "consistency": consistency}
# The intermediate level of two-step consistency sampling: iCT's for CIFAR-10 (Song & Dhariwal 2023, section 5).
CONSISTENCY_MID = 0.821


def evaluations(sampler: str, steps: int) -> int:
    """Denoiser evaluations per sample (Heun: 2 steps - 1)."""
    return 2 * steps - 1 if sampler == "heun" else steps


def noise(seeds: Sequence[int], shape: Sequence[int], draws: int = 1) -> torch.Tensor:
    """z ~ N(0, I) drawn from one generator per seed (CPU, float32): the same z for a seed everywhere.

    ``draws`` > 1 gives (draws, len(seeds), *shape): the k-th draw of each seed's generator, the first being its z.
    """
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    out = torch.stack([torch.stack([torch.randn(tuple(shape), generator=g) for g in gens]) for _ in range(draws)])
    return out[0] if draws == 1 else out


def schedule(denoiser, steps: int, kind: str = "karras", sigma_min: float = 0.002, sigma_max: float = 80.0,
             rho: float = 7.0) -> torch.Tensor:
    """``steps`` noise levels plus a final 0: Karras's rho schedule, the model's own ("native"), or the levels of
    consistency sampling ("consistency")."""
    if kind == "karras":
        return karras_sigmas(steps, sigma_min, sigma_max, rho)
    if kind == "consistency":  # one level per step: sigma_max, then CONSISTENCY_MID (two steps)
        if steps not in (1, 2):
            raise ValueError(f"the consistency schedule has 1 or 2 steps, not {steps}")
        return torch.tensor([sigma_max, CONSISTENCY_MID, 0.0] if steps == 2 else [sigma_max, 0.0])
    if kind == "native":
        own = getattr(denoiser, "native_sigmas", lambda n, s: None)(steps, sigma_max)
        if own is None:
            raise ValueError(f"{type(denoiser).__name__} has no native schedule; use schedule='karras'.")
        return torch.cat([own.float(), own.new_zeros(1)])
    raise ValueError(f"Unknown schedule '{kind}': use 'karras', 'native' or 'consistency'.")


@torch.no_grad()
def sample(denoiser, seeds: Sequence[int], shape: Sequence[int], sampler: str = "heun", steps: int = 18,
           schedule_kind: str = "karras", sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
           batch_size: int = 500, device: str | torch.device | None = None, labels: torch.Tensor | None = None,
           z: torch.Tensor | None = None, progress: bool = False, precision: str | None = None) -> torch.Tensor:
    """Integrate the PF-ODE from x = sigma_max * z(seed) for each seed; returns (len(seeds), *shape) on CPU.

    ``z`` overrides the per-seed noise (for noise planes and interpolations). ``labels`` (one per seed)
    are passed to class-conditional denoisers. ``precision`` "bf16" or "fp16" evaluates the denoiser under
    ``torch.autocast`` (``in_precision``): close to float32's samples, not its bits. None is float32, bit for bit.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"Unknown sampler '{sampler}'. Choose one of {', '.join(SAMPLERS)}.")
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"Unknown precision '{precision}': use None (float32), 'bf16' or 'fp16'.")
    if device is None:
        device = next((p.device for p in getattr(denoiser, "parameters", lambda: iter(()))()), torch.device("cpu"))
    sigmas = schedule(denoiser, steps, schedule_kind, sigma_min, sigma_max, rho).to(device)
    extra = None
    if sampler == "consistency":  # its re-noising draws: the next draws of each seed's generator
        extra = noise(seeds, shape, draws=len(sigmas) - 1)[1:] if len(sigmas) > 2 else None
    z = noise(seeds, shape) if z is None else z
    fn, out = SAMPLERS[sampler], []
    for i in tqdm(range(0, len(z), batch_size), disable=not progress, desc=f"{sampler} x{steps}", leave=False):
        progress_lib.update("sample", f"{sampler} x{steps}", i, len(z))
        x = z[i:i + batch_size].to(device) * sigmas[0]
        lab = None if labels is None else labels[i:i + batch_size].to(device)
        denoise = (lambda x_, s_: denoiser(x_, s_)) if lab is None else (lambda x_, s_: denoiser(x_, s_, lab))
        if precision is not None:
            denoise = in_precision(denoise, precision, device)
        if sampler == "consistency":
            x = consistency(denoise, x, sigmas, () if extra is None else extra[:, i:i + batch_size].to(device))
        else:
            x = fn(denoise, x, sigmas)
        out.append(x.float().cpu())
    progress_lib.update("sample", f"{sampler} x{steps}", len(z), len(z))
    return torch.cat(out)


def in_precision(denoise: Denoise, precision: str, device) -> Denoise:
    """``denoise`` evaluated under ``torch.autocast`` at ``precision`` (mixed precision, Micikevicius et al. 2018),
    its output cast back to float32: x, the sigmas and every update of the ODE stay float32."""
    kind, dtype = torch.device(device).type, PRECISIONS[precision]

    def run(x, sigma):
        with torch.autocast(kind, dtype=dtype):
            out = denoise(x, sigma)
        return out.float()
    return run


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between two noises, which keeps the Gaussian norm (Shoemake 1985)."""
    a, b = z0.flatten(), z1.flatten()
    omega = torch.arccos((a @ b / (a.norm() * b.norm())).clamp(-1, 1))
    if omega.abs() < 1e-6:
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


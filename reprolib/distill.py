"""Progressive distillation (Salimans & Ho 2022, Algorithm 2): a student that does in N deterministic steps what
its teacher does in 2N.

Why progressive distillation and not consistency distillation: the paper's Figure 1 distils with it, and it keeps
the teacher's own parameterisation and sampler (EDM preconditioning, DDIM/Euler steps of the PF-ODE), so the
student is the teacher's noise-to-image map written in fewer steps, nothing else changed; a consistency-distilled
student would add a second change (the consistency parameterisation and loss) on top of the step count.

Everything is on the VE scale x = x0 + sigma n of ``formulations``. The grid of an N-step sampler is Karras's rho
ramp at positions i / N, i = 0 .. N - 1, then 0 (``grid``): halving N keeps every other level, so the teacher's
two steps s_i -> s_mid -> s_next span exactly one student step. DDIM with eta = 0 is Euler in these variables
(Karras et al. 2022, section 3): x' = (s'/s) x + (1 - s'/s) D(x, s). The student's target x~ is the D that makes
one such step from s_i land where the teacher's two land (Algorithm 2's x~ = (z'' - (s''/s) z) / (1 - s''/s));
on the last step (s_next = 0) it is the teacher's x'' itself. The loss is EDM's weighted MSE (Karras et al. 2022,
eq. 8) against x~, the teacher's own training weighting, in place of the paper's truncated-SNR weighting.

A student is a ``TrainConfig`` with formulation ``distill<N>`` and ``init`` its teacher's config (the EDM model, or
the previous round's student); ``train.py`` starts it from the teacher's weights and hands it a frozen copy of
them as the teacher. It is read as D(x, sigma) with EDM's preconditioning, and its sampler is the Euler (= DDIM)
sampler on its grid: ``schedule="native"`` with N steps.
"""

from __future__ import annotations

import torch

from .formulations import SIGMA_DATA, Preconditioned, _col, _randn


def grid(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """The N levels of an N-step sampler, descending (float64): Karras's ramp at i / N, i = 0 .. N - 1."""
    ramp = torch.arange(n, dtype=torch.float64) / n
    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def euler_to(x, d, s, s_next):
    """One DDIM (eta = 0) = Euler step from level s to s_next given D(x, s) = d."""
    r = _col(s_next / s, x)
    return r * x + (1 - r) * d


class Progressive(Preconditioned):
    """The N-step student of a 2N-step teacher (``teacher``: a frozen D(x, sigma), set by ``train.py``)."""

    needs_teacher = True

    def __init__(self, n: int):
        super().__init__("edm")
        self.name, self.n, self.teacher = f"distill{n}", n, None

    def native_sigmas(self, n, sigma_max=80.0):
        return grid(n, self.sigma_min, sigma_max).float()

    def draw(self, x0, gen, step=0, steps=1):
        i = torch.randint(0, self.n, (len(x0),), generator=gen).to(x0.device)
        return {"i": i, "noise": _randn(x0, gen)}

    @torch.no_grad()
    def target(self, x, i, labels=None):
        """x~ for student level index i: two teacher Euler steps on the 2N grid, solved for the one-step D."""
        levels = torch.cat([grid(2 * self.n, self.sigma_min, self.sigma_max), torch.zeros(1, dtype=torch.float64)])
        levels = levels.float().to(x.device)
        s, s_mid, s_next = levels[2 * i], levels[2 * i + 1], levels[2 * i + 2]
        x_mid = euler_to(x, self.teacher(x, s, labels), s, s_mid)
        x_next = euler_to(x_mid, self.teacher(x_mid, s_mid, labels), s_mid, s_next)
        r = _col(s_next / s, x)
        return (x_next - r * x) / (1 - r)

    def objective(self, net, x0, labels=None, *, i, noise):
        if self.teacher is None:
            raise ValueError(f"{self.name} needs its teacher: train it with init= the teacher's config")
        s = grid(self.n, self.sigma_min, self.sigma_max).float().to(x0.device)[i]
        x = x0 + _col(s, x0) * noise
        weight = (s**2 + SIGMA_DATA**2) / (s * SIGMA_DATA) ** 2  # EDM's lambda(sigma)
        return (_col(weight, x0) * (self.denoise(net, x, s, labels) - self.target(x, i, labels)) ** 2).mean()

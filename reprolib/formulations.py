"""Training objectives, each exposing its backbone as a denoiser D(x; sigma) ~ E[x0 | x0 + sigma n = x].

One language for every model (Karras et al. 2022, eq. 1-3): whatever a network predicts (x0, eps,
velocity), ``Denoiser`` turns it into D on the variance-exploding scale x = x0 + sigma n, so every
sampler in ``samplers.py`` and every metric works on every model.

- ``edm``: EDM preconditioning (Karras et al. 2022, Table 1 "ours", sigma_data = 0.5).
- ``ve`` / ``vp``: the VE and VP preconditionings of the same table (Song et al. 2021 in EDM form).
- ``ddpm``: eps-prediction on DDPM's discrete linear-beta schedule (Ho et al. 2020), with
  x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, i.e. sigma_t = sqrt((1 - abar_t) / abar_t), x = x_t / sqrt(abar_t).
- ``flow``: rectified flow / flow matching (Liu et al. 2023), x_t = (1 - t) x0 + t eps, v = eps - x0,
  i.e. sigma = t / (1 - t), x = x_t / (1 - t).
- ``subvp``: the sub-VP SDE (Song et al. 2021, eq. 29) with VP's beta schedule, eps-prediction:
  x_t = alpha_t x0 + (1 - alpha_t^2) z, i.e. sigma = (1 - alpha^2) / alpha, x = x_t / alpha.
- ``ct``: consistency training from scratch (improved CT, Song & Dhariwal 2023), read as D(x, sigma) = f(x, sigma).
- ``distill<N>``: a progressive-distillation student (Salimans & Ho 2022) that does in N Euler/DDIM steps what
  its teacher (the config's ``init``) does in 2N (``Progressive``).

The scalar fed to the backbone (c_noise) is kept within a few units for all of them, so that one noise
embedding serves every formulation. The random draws of a training step come from a CPU generator, so they are
the same on every device (``to_device`` moves them).
"""

from __future__ import annotations

import math

import torch
from torch import nn

SIGMA_DATA = 0.5


def _col(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (x.ndim - 1)))


class Formulation:
    name = ""
    sigma_min, sigma_max = 0.002, 80.0

    def draw(self, x0, gen, step: int = 0, steps: int = 1) -> dict:
        """The random draws of one training step (noise levels, noise) for the clean batch ``x0``, taken from
        ``gen`` in a fixed order. ``step`` of ``steps`` lets a curriculum depend on training progress."""
        raise NotImplementedError

    def objective(self, net, x0, labels=None, **draws) -> torch.Tensor:
        """The training loss of ``net`` on ``x0`` given ``draw``'s draws (deterministic)."""
        raise NotImplementedError

    def loss(self, net, x0, gen, labels=None, step: int = 0, steps: int = 1) -> torch.Tensor:
        """One minibatch's loss: ``objective`` at fresh ``draw``s. Kept apart so that models trained together
        (stacked) draw from their own generators exactly as each would alone."""
        return self.objective(net, x0, labels, **self.draw(x0, gen, step, steps))

    def denoise(self, net, x, sigma, labels=None) -> torch.Tensor:
        raise NotImplementedError

    def native_sigmas(self, n: int, sigma_max: float = 80.0) -> torch.Tensor | None:
        """The model's own schedule of n noise levels at most ``sigma_max`` (descending), when it has one."""
        return None


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """``t``, drawn on the CPU, on ``device``: to a GPU through pinned memory without waiting for the copy, so that
    a training step never stops the host for its draws."""
    device = torch.device(device)
    return t.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else t.to(device)


def _randn(x0, gen):
    return to_device(torch.randn(x0.shape, generator=gen), x0.device)


def _rand(n, gen, device):
    return to_device(torch.rand(n, generator=gen), device)


class Preconditioned(Formulation):
    """D = c_skip x + c_out F(c_in x, c_noise), trained with weight lambda (Karras et al. 2022, eq. 7-8)."""

    def __init__(self, kind: str = "edm"):
        if kind not in ("edm", "ve", "vp", "subvp"):
            raise ValueError(f"Unknown preconditioning '{kind}': use edm, ve, vp or subvp.")
        self.name = self.kind = kind  # a subclass may rename itself (``Progressive``); kind picks the formulas

    # VP's sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1) with EDM's constants.
    beta_d, beta_min, eps_t = 19.9, 0.1, 1e-5

    def _vp_t(self, sigma):
        """Inverse of VP's sigma(t): the root of beta_d t^2 / 2 + beta_min t = ln(1 + sigma^2)."""
        return self._t_of_integral(torch.log1p(sigma**2))

    def _t_of_integral(self, b):
        """The t at which int_0^t beta(s) ds = beta_d t^2 / 2 + beta_min t equals ``b``."""
        return ((self.beta_min**2 + 2 * self.beta_d * b).sqrt() - self.beta_min) / self.beta_d

    @staticmethod
    def subvp_alpha(sigma):
        """sub-VP's mean coefficient alpha for a VE-scale sigma: the positive root of alpha^2 + sigma alpha - 1 = 0
        (sigma = std / mean = (1 - alpha^2) / alpha), written so that it loses no digits at large sigma."""
        return 2 / (sigma + (sigma**2 + 4).sqrt())

    def coefficients(self, sigma):
        sd = SIGMA_DATA
        if self.kind == "edm":
            s2 = sigma**2 + sd**2
            return sd**2 / s2, sigma * sd / s2.sqrt(), 1 / s2.sqrt(), sigma.log() / 4
        if self.kind == "ve":
            return torch.ones_like(sigma), sigma, torch.ones_like(sigma), (0.5 * sigma).log() / 4
        if self.kind == "subvp":  # the network sees x_t = alpha x and t; it predicts z (D = x - sigma z)
            alpha = self.subvp_alpha(sigma)
            return torch.ones_like(sigma), -sigma, alpha, self._t_of_integral(-2 * alpha.log())
        return torch.ones_like(sigma), -sigma, 1 / (sigma**2 + 1).sqrt(), self._vp_t(sigma)

    def sample_sigma(self, n, gen, device):
        u = _rand(n, gen, device)
        if self.kind == "edm":  # ln sigma ~ N(-1.2, 1.2^2)
            return (to_device(torch.randn(n, generator=gen), device) * 1.2 - 1.2).exp()
        if self.kind == "ve":  # log-uniform on [0.02, 100]
            return 0.02 * (100 / 0.02) ** u
        t = self.eps_t + (1 - self.eps_t) * u  # vp and subvp: t ~ U(eps_t, 1), as Song et al. 2021 train them
        integral = 0.5 * self.beta_d * t**2 + self.beta_min * t
        if self.kind == "subvp":  # alpha = exp(-integral / 2), std = 1 - alpha^2 = -expm1(-integral)
            return -torch.expm1(-integral) / torch.exp(-0.5 * integral)
        return (torch.exp(integral) - 1).sqrt()

    def denoise(self, net, x, sigma, labels=None):
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        return _col(c_skip, x) * x + _col(c_out, x) * net(_col(c_in, x) * x, c_noise, labels)

    def draw(self, x0, gen, step=0, steps=1):
        sigma = self.sample_sigma(len(x0), gen, x0.device)
        return {"sigma": sigma, "noise": _randn(x0, gen)}

    def objective(self, net, x0, labels=None, *, sigma, noise):
        x = x0 + _col(sigma, x0) * noise
        weight = (sigma**2 + SIGMA_DATA**2) / (sigma * SIGMA_DATA) ** 2 if self.kind == "edm" else 1 / sigma**2
        return (_col(weight, x0) * (self.denoise(net, x, sigma, labels) - x0) ** 2).mean()


class DDPM(Formulation):
    """eps-prediction on the discrete linear-beta schedule (Ho et al. 2020, Algorithm 1)."""

    name = "ddpm"

    def __init__(self, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, betas=None):
        # ``betas`` (any 1-D table) replaces the linear schedule: a released model keeps the very table it
        # was trained with (``hub.py`` passes its scheduler's), whatever rule produced it.
        if betas is None:
            betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        betas = torch.as_tensor(betas, dtype=torch.float64)
        self.T = T = len(betas)
        abar = torch.cumprod(1 - betas, 0)
        self.sigmas = ((1 - abar) / abar).sqrt()  # increasing in t
        self.sigma_min, self.sigma_max = float(self.sigmas[0]), float(self.sigmas[-1])
        self._copies = {}

    def t_of_sigma(self, sigma):
        """Fractional timestep by linear interpolation in log sigma, so D is defined between steps."""
        log_s = self.sigmas.log().to(sigma.device, torch.float32)
        ls = sigma.float().log().clamp(log_s[0], log_s[-1])
        i = torch.searchsorted(log_s, ls).clamp(1, self.T - 1)
        frac = (ls - log_s[i - 1]) / (log_s[i] - log_s[i - 1])
        return (i - 1) + frac

    def denoise(self, net, x, sigma, labels=None):
        t = self.t_of_sigma(sigma)
        x_t = x / _col((1 + sigma**2).sqrt(), x)
        return x - _col(sigma, x) * net(x_t, t / self.T, labels)

    def draw(self, x0, gen, step=0, steps=1):
        t = to_device(torch.randint(0, self.T, (len(x0),), generator=gen), x0.device)
        return {"t": t, "eps": _randn(x0, gen)}

    def _sigmas_on(self, device) -> torch.Tensor:
        """The sigma table on ``device``, copied there once (not at every training step)."""
        device = torch.device(device)
        if device not in self._copies:
            self._copies[device] = self.sigmas.to(device)
        return self._copies[device]

    def objective(self, net, x0, labels=None, *, t, eps):
        abar = (1 / (1 + self._sigmas_on(x0.device)[t] ** 2)).float()
        x_t = _col(abar.sqrt(), x0) * x0 + _col((1 - abar).sqrt(), x0) * eps
        return ((net(x_t, t.float() / self.T, labels) - eps) ** 2).mean()

    def native_sigmas(self, n, sigma_max=80.0):
        """DDIM's evenly spaced timesteps (Song et al. 2021, section 4.2), from the last t whose sigma_t is
        at most ``sigma_max`` down to 0: every model then starts from (nearly) the same sigma_max * z."""
        t_max = int((self.sigmas <= sigma_max).sum()) - 1
        t = torch.linspace(t_max, 0, n).round().long()
        return self.sigmas[t].float()


class Flow(Formulation):
    """Rectified flow (Liu et al. 2023): the network predicts v = eps - x0 at x_t = (1 - t) x0 + t eps."""

    name = "flow"

    def denoise(self, net, x, sigma, labels=None):
        t = sigma / (1 + sigma)
        x_t = x / _col(1 + sigma, x)
        return x_t - _col(t, x) * net(x_t, t, labels)

    def draw(self, x0, gen, step=0, steps=1):
        return {"t": _rand(len(x0), gen, x0.device), "eps": _randn(x0, gen)}

    def objective(self, net, x0, labels=None, *, t, eps):
        x_t = _col(1 - t, x0) * x0 + _col(t, x0) * eps
        return ((net(x_t, t, labels) - (eps - x0)) ** 2).mean()

    def native_sigmas(self, n, sigma_max=80.0):
        """Evenly spaced t in the flow's own time, from sigma_max down to sigma_min."""
        t_hi, t_lo = sigma_max / (1 + sigma_max), self.sigma_min / (1 + self.sigma_min)
        t = torch.linspace(t_hi, t_lo, n)
        return t / (1 - t)


class Consistency(Formulation):
    """Improved consistency training from scratch (Song & Dhariwal 2023, "iCT"; Song et al. 2023, Algorithm 3).

    f(x, sigma) = c_skip x + c_out F(c_in x, c_noise) with c_skip = sd^2 / ((sigma - sigma_min)^2 + sd^2) and
    c_out = sd (sigma - sigma_min) / sqrt(sd^2 + sigma^2) (Song et al. 2023, eq. 7 and Appendix C), so that
    f(x, sigma_min) = x exactly. The model is read as a denoiser D(x, sigma) = f(x, sigma): one evaluation at
    sigma_max maps the noise to a sample (``samplers.consistency``).

    One training step (iCT, section 3-4): the discretisation N(k) = min(s0 2^floor(k / K'), s1) + 1 of Karras's
    levels, K' = floor(K / (log2(s1 / s0) + 1)) (eq. 8); a level pair (sigma_i, sigma_{i+1}) drawn with the
    lognormal proposal p(i) ~ erf((ln sigma_{i+1} - P_mean) / (sqrt 2 P_std)) - erf((ln sigma_i - P_mean) /
    (sqrt 2 P_std)) (eq. 10); one z for both points; loss lambda(sigma_i) d(f(x0 + sigma_{i+1} z, sigma_{i+1}),
    sg f(x0 + sigma_i z, sigma_i)) with lambda = 1 / (sigma_{i+1} - sigma_i) and the pseudo-Huber
    d(a, b) = sqrt(||a - b||^2 + c^2) - c, c = 0.00054 sqrt(dim) (section 3.3). The teacher is the online
    network under a stop-gradient (no EMA teacher, section 3.2).
    """

    name = "ct"
    rho, s0, s1, p_mean, p_std = 7.0, 10, 1280, -1.1, 2.0

    def coefficients(self, sigma):
        sd, s_min = SIGMA_DATA, self.sigma_min
        c_skip = sd**2 / ((sigma - s_min) ** 2 + sd**2)
        c_out = sd * (sigma - s_min) / (sd**2 + sigma**2).sqrt()
        return c_skip, c_out, 1 / (sigma**2 + sd**2).sqrt(), sigma.log() / 4

    def denoise(self, net, x, sigma, labels=None):
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        return _col(c_skip, x) * x + _col(c_out, x) * net(_col(c_in, x) * x, c_noise, labels)

    def levels(self, step: int, steps: int) -> torch.Tensor:
        """Karras's N(k) levels (ascending, float64) at training step ``step`` of ``steps`` (iCT eq. 8)."""
        k_prime = max(int(steps / (math.log2(self.s1 / self.s0) + 1)), 1)
        n = min(self.s0 * 2 ** (step // k_prime), self.s1) + 1
        i = torch.arange(n, dtype=torch.float64) / (n - 1)
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        return (lo + i * (hi - lo)) ** self.rho

    def proposal(self, sigmas: torch.Tensor) -> torch.Tensor:
        """The lognormal proposal's probability of each pair (sigma_i, sigma_{i+1}) (iCT eq. 10)."""
        cdf = torch.erf((sigmas.log() - self.p_mean) / (math.sqrt(2) * self.p_std))
        p = cdf[1:] - cdf[:-1]
        return p / p.sum()

    def draw(self, x0, gen, step=0, steps=1):
        sigmas = self.levels(step, steps)
        i = torch.multinomial(self.proposal(sigmas), len(x0), replacement=True, generator=gen)
        return {"sigma": to_device(sigmas[i].float(), x0.device),
                "sigma_next": to_device(sigmas[i + 1].float(), x0.device), "noise": _randn(x0, gen)}

    def objective(self, net, x0, labels=None, *, sigma, sigma_next, noise):
        f_next = self.denoise(net, x0 + _col(sigma_next, x0) * noise, sigma_next, labels)
        with torch.no_grad():
            f_here = self.denoise(net, x0 + _col(sigma, x0) * noise, sigma, labels)
        c = 0.00054 * math.sqrt(x0[0].numel())
        dist = (((f_next - f_here) ** 2).flatten(1).sum(1) + c**2).sqrt() - c
        return (dist / (sigma_next - sigma)).mean()


def grid(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """The N levels of an N-step sampler, descending (float64): Karras's ramp at i / N, i = 0 .. N - 1."""
    ramp = torch.arange(n, dtype=torch.float64) / n
    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def euler_to(x, d, s, s_next):
    """One DDIM (eta = 0) = Euler step from level s to s_next given D(x, s) = d."""
    r = _col(s_next / s, x)
    return r * x + (1 - r) * d


class Progressive(Preconditioned):
    """Progressive distillation (Salimans & Ho 2022, Algorithm 2): the N-step student of a 2N-step teacher.

    The paper's Figure 1 distils this way; it keeps the teacher's parameterisation (EDM) and sampler (DDIM =
    Euler on the VE scale, Karras et al. 2022, section 3: x' = (s'/s) x + (1 - s'/s) D(x, s)), so the student is
    the teacher's noise-to-image map in fewer steps and nothing else. The N-step grid is Karras's rho ramp at
    i / N, then 0 (``grid``): halving N keeps every other level, so two teacher steps s_i -> s_mid -> s_next span
    one student step. The target x~ is the D that makes one such step land where the teacher's two land
    (Algorithm 2's x~ = (z'' - (s''/s) z) / (1 - s''/s)); the loss is EDM's weighted MSE against it (Karras et
    al. 2022, eq. 8), the teacher's own weighting, in place of the paper's truncated-SNR one. A student is a
    ``TrainConfig`` with formulation ``distill<N>`` and ``init`` its teacher's config; the training loop starts it
    from the teacher's weights and sets ``teacher``, a frozen copy of them.
    """

    needs_teacher = True

    def __init__(self, n: int):
        super().__init__("edm")
        self.name, self.n, self.teacher = f"distill{n}", n, None
        self._copies = {}

    def _levels(self, n: int, device, final_zero: bool = False) -> torch.Tensor:
        """``grid(n)`` (then 0 with ``final_zero``) in float32 on ``device``, made once."""
        key = (n, torch.device(device), final_zero)
        if key not in self._copies:
            levels = grid(n, self.sigma_min, self.sigma_max)
            levels = torch.cat([levels, torch.zeros(1, dtype=torch.float64)]) if final_zero else levels
            self._copies[key] = levels.float().to(device)
        return self._copies[key]

    def native_sigmas(self, n, sigma_max=80.0):
        return grid(n, self.sigma_min, sigma_max).float()

    def draw(self, x0, gen, step=0, steps=1):
        i = to_device(torch.randint(0, self.n, (len(x0),), generator=gen), x0.device)
        return {"i": i, "noise": _randn(x0, gen)}

    @torch.no_grad()
    def target(self, x, i, labels=None):
        """x~ for student level index i: two teacher Euler steps on the 2N grid, solved for the one-step D."""
        levels = self._levels(2 * self.n, x.device, final_zero=True)
        s, s_mid, s_next = levels[2 * i], levels[2 * i + 1], levels[2 * i + 2]
        x_mid = euler_to(x, self.teacher(x, s, labels), s, s_mid)
        x_next = euler_to(x_mid, self.teacher(x_mid, s_mid, labels), s_mid, s_next)
        r = _col(s_next / s, x)
        return (x_next - r * x) / (1 - r)

    def objective(self, net, x0, labels=None, *, i, noise):
        if self.teacher is None:
            raise ValueError(f"{self.name} needs its teacher: train it with init= the teacher's config")
        s = self._levels(self.n, x0.device)[i]
        x = x0 + _col(s, x0) * noise
        weight = (s**2 + SIGMA_DATA**2) / (s * SIGMA_DATA) ** 2  # EDM's lambda(sigma)
        return (_col(weight, x0) * (self.denoise(net, x, s, labels) - self.target(x, i, labels)) ** 2).mean()


def build(name: str) -> Formulation:
    if name in ("edm", "ve", "vp", "subvp"):
        return Preconditioned(name)
    if name == "ct":
        return Consistency()
    if name.startswith("distill") and name[7:].isdigit() and int(name[7:]) > 0:
        return Progressive(int(name[7:]))
    if name == "ddpm":
        return DDPM()
    if name == "flow":
        return Flow()
    raise ValueError(f"Unknown formulation '{name}'. Choose one of edm, ve, vp, subvp, ddpm, flow, ct, distill<N>.")


class Denoiser(nn.Module):
    """A backbone read through a formulation: ``D(x, sigma, labels=None)``, sigma a float or a (B,) tensor."""

    def __init__(self, net: nn.Module, formulation: Formulation | str):
        super().__init__()
        self.net = net
        self.formulation = build(formulation) if isinstance(formulation, str) else formulation

    def forward(self, x, sigma, labels=None):
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0]).clone()
        return self.formulation.denoise(self.net, x, sigma, labels)

    def loss(self, x0, gen, labels=None, step: int = 0, steps: int = 1):
        return self.formulation.loss(self.net, x0, gen, labels, step, steps)

    def native_sigmas(self, n, sigma_max=80.0):
        return self.formulation.native_sigmas(n, sigma_max)

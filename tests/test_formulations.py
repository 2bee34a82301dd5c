"""Formulations: every one reads its backbone as the same denoiser D(x; sigma) on x = x0 + sigma n.

The strongest check is an "oracle" backbone that knows the clean images x0 of its batch and, from its
own inputs (the network input and c_noise, decoded with the papers' formulas written out here), returns
the ideal training target. Then the denoiser must return x0 exactly and the loss must vanish.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from reprolib import formulations, networks
from reprolib.formulations import DDPM, Denoiser

NAMES = ["edm", "ve", "vp", "subvp", "ddpm", "flow"]
SD = 0.5  # EDM's sigma_data


# Independent DDPM table (Ho et al. 2020: linear betas 1e-4..0.02 over T = 1000 steps).
ABAR = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))


def vp_sigma_of_t(t):
    """EDM Table 1, VP: sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1), beta_d = 19.9, beta_min = 0.1."""
    return torch.sqrt(torch.exp(0.5 * 19.9 * t**2 + 0.1 * t) - 1)


def subvp_marginal(t):
    """Song et al. 2021, eq. 29 with VP's beta(t) = 0.1 + 19.9 t: the sub-VP SDE's perturbation kernel is
    N(alpha x0, (1 - alpha^2)^2 I) with alpha = exp(-int_0^t beta / 2). Returns (mean coefficient, std)."""
    integral = 0.5 * 19.9 * t**2 + 0.1 * t
    alpha = torch.exp(-0.5 * integral)
    return alpha, 1 - torch.exp(-integral)


class Oracle(nn.Module):
    """A backbone that returns the ideal target of ``kind`` for the clean images ``x0`` of its batch.

    It decodes sigma and the noisy image from its inputs with the formulas of the papers, so any
    disagreement between how a formulation feeds its network and how it reads the output shows up.
    It also records the inputs it saw."""

    def __init__(self, kind: str, x0: torch.Tensor, offset: float = 0.0):
        super().__init__()
        self.kind, self.x0, self.offset = kind, x0.double(), offset
        self.dummy = nn.Parameter(torch.zeros(()))  # so that loss.backward() has something to reach
        self.seen = []

    def forward(self, inp, c_noise, labels=None):
        self.seen.append((inp.detach().clone(), c_noise.detach().clone()))
        inp, c = inp.double(), c_noise.double().view(-1, 1, 1, 1)
        x0 = self.x0
        if self.kind == "edm":  # c_in = 1 / sqrt(sigma^2 + sd^2), c_noise = ln(sigma) / 4
            sigma = torch.exp(4 * c)
            x = inp * torch.sqrt(sigma**2 + SD**2)
            c_skip = SD**2 / (sigma**2 + SD**2)
            c_out = sigma * SD / torch.sqrt(sigma**2 + SD**2)
            out = (x0 - c_skip * x) / c_out  # D = c_skip x + c_out F
        elif self.kind == "ve":  # c_in = 1, c_out = sigma, c_noise = ln(sigma / 2) / 4
            sigma = 2 * torch.exp(4 * c)
            out = (x0 - inp) / sigma
        elif self.kind == "vp":  # c_in = 1 / sqrt(sigma^2 + 1), c_out = -sigma, c_noise = t
            sigma = vp_sigma_of_t(c)
            x = inp * torch.sqrt(sigma**2 + 1)
            out = (x - x0) / sigma  # the eps that makes x = x0 + sigma eps
        elif self.kind == "subvp":  # input x_t = alpha x0 + std z (the SDE's marginal at t = c_noise), target z
            alpha, std = subvp_marginal(c)
            out = (inp - alpha * x0) / std
        elif self.kind == "ddpm":  # input x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, c_noise = t / T
            t = c * 1000
            lo = torch.floor(t).long().clamp(0, 998)
            frac = t - lo
            log_s = torch.tensor(np.log(np.sqrt((1 - ABAR) / ABAR)))
            sigma = torch.exp(log_s[lo] * (1 - frac) + log_s[(lo + 1).clamp(max=999)] * frac)
            abar = 1 / (1 + sigma**2)
            out = (inp - abar.sqrt() * x0) / (1 - abar).sqrt()  # eps
        elif self.kind == "flow":  # input x_t = (1 - t) x0 + t eps, c_noise = t, target v = eps - x0
            eps = (inp - (1 - c) * x0) / c
            out = eps - x0
        else:
            raise AssertionError(self.kind)
        return (out + self.offset).float() + 0 * self.dummy


def _batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(n, 1, 8, 8, generator=g) * 2 - 1
    eps = torch.randn(n, 1, 8, 8, generator=g)
    return x0, eps


# ---------------------------------------------------------------- shapes, losses, gradients


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["mlp", "unet"])
def test_forward_shape_loss_and_backprop(name, kind):
    torch.manual_seed(0)
    net = networks.build(kind, in_channels=1, resolution=8, width=16, **({"depth": 1} if kind == "mlp" else {}))
    den = Denoiser(net, name)
    x = torch.randn(5, 1, 8, 8)
    for sigma in (0.5, torch.tensor([0.01, 0.1, 1.0, 10.0, 80.0])):
        out = den(x, sigma)
        assert out.shape == x.shape and out.dtype == x.dtype
        assert torch.isfinite(out).all()
    x0, _ = _batch(8)
    loss = den.loss(x0, torch.Generator().manual_seed(1))
    assert loss.ndim == 0 and torch.isfinite(loss) and float(loss.detach()) > 0
    loss.backward()
    grads = [p.grad for p in den.parameters()]
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    assert any(g is not None and g.abs().sum() > 0 for g in grads), "no gradient reached the network"


@pytest.mark.parametrize("name", NAMES)
def test_loss_is_deterministic_given_the_generator(name):
    torch.manual_seed(0)
    den = Denoiser(networks.build("mlp", width=16, depth=1), name)
    with torch.no_grad():
        den.net.out[-1].weight.normal_(0, 0.1)
    x0, _ = _batch(8)
    a = den.loss(x0, torch.Generator().manual_seed(3))
    b = den.loss(x0, torch.Generator().manual_seed(3))
    c = den.loss(x0, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------- the oracle backbone


def _sigma_range(name):
    if name == "ddpm":  # inside DDPM's table: 0.01 .. 157
        return torch.tensor([0.0101, 0.05, 0.3, 1.0, 7.0, 150.0])
    return torch.tensor([0.002, 0.05, 0.3, 1.0, 7.0, 80.0])


@pytest.mark.parametrize("name", NAMES)
def test_ideal_backbone_makes_denoiser_recover_x0(name):
    x0, eps = _batch()
    sigma = _sigma_range(name)
    x = x0 + sigma.view(-1, 1, 1, 1) * eps
    oracle = Oracle(name, x0)
    got = Denoiser(oracle, name)(x, sigma)
    # float32 inputs at sigma = 80 carry ~1e-5 absolute error in x; relative to the noise it is tiny
    torch.testing.assert_close(got, x0, rtol=0, atol=5e-4)
    # and a wrong oracle (predicting for another x0) must not pass
    wrong = Denoiser(Oracle(name, x0.flip(0)), name)(x, sigma)
    assert (wrong - x0).abs().max() > 0.1


@pytest.mark.parametrize("name", NAMES)
def test_network_inputs_follow_the_papers(name):
    """What the backbone is fed: the scaled noisy image of each formulation's own variables."""
    x0, eps = _batch()
    sigma = _sigma_range(name)
    s = sigma.view(-1, 1, 1, 1)
    x = x0 + s * eps
    oracle = Oracle(name, x0)
    Denoiser(oracle, name)(x, sigma)
    inp, c = oracle.seen[-1]
    expected = {
        "edm": x / torch.sqrt(s**2 + SD**2),
        "ve": x,
        "vp": x / torch.sqrt(s**2 + 1),
        # x_t = alpha x, alpha the root of alpha^2 + s alpha = 1 (float64: the root's formula cancels at s = 80)
        "subvp": (x.double() * (torch.sqrt(s.double()**2 + 4) - s.double()) / 2).float(),
        "ddpm": x / torch.sqrt(1 + s**2),  # = sqrt(abar) x0 + sqrt(1 - abar) eps
        "flow": (x0 + s * eps) / (1 + s),  # = (1 - t) x0 + t eps, t = sigma / (1 + sigma)
    }[name]
    torch.testing.assert_close(inp, expected, rtol=1e-5, atol=1e-5)
    assert bool((c[1:] > c[:-1]).all()), "c_noise must increase with sigma"
    assert float(c.abs().max()) < 5, "c_noise should stay within a few units"
    if name == "vp":
        torch.testing.assert_close(vp_sigma_of_t(c.double()), sigma.double(), rtol=1e-4, atol=1e-6)
    if name == "flow":
        torch.testing.assert_close(c, sigma / (1 + sigma))
    if name == "subvp":  # c_noise is the SDE's t, whose marginal has std / mean = sigma
        alpha, std = subvp_marginal(c.double())
        torch.testing.assert_close(std / alpha, sigma.double(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_ideal_backbone_has_zero_loss(name):
    """The loss's target is the target the denoiser reads: an oracle for it scores (almost) zero,
    while a backbone that outputs zeros does not."""
    x0, _ = _batch(64, seed=3)
    ideal = Denoiser(Oracle(name, x0), name).loss(x0, torch.Generator().manual_seed(0)).detach()
    zero = Denoiser(Oracle(name, torch.zeros_like(x0)), name)
    with torch.no_grad():
        baseline = Denoiser(lambda x, c, labels=None: torch.zeros_like(x), name).loss(
            x0, torch.Generator().manual_seed(0))
    assert float(baseline) > 1e-2
    assert float(ideal) < 1e-5 * float(baseline) + 1e-6, (float(ideal), float(baseline))
    assert float(zero.loss(x0, torch.Generator().manual_seed(0)).detach()) > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_loss_weighting_is_unit_in_the_network_output(name):
    """Each loss weights so that an error of delta in the backbone's own output costs delta^2 at every
    noise level (EDM eq. 8: lambda = 1 / c_out^2; the eps and velocity losses are plain MSE). An oracle
    off by a constant delta must therefore score exactly delta^2, whatever sigmas were drawn."""
    x0, _ = _batch(64, seed=5)
    for delta in (0.1, 0.5):
        loss = Denoiser(Oracle(name, x0, offset=delta), name).loss(x0, torch.Generator().manual_seed(2))
        assert float(loss.detach()) == pytest.approx(delta**2, rel=1e-3)


# ---------------------------------------------------------------- sub-VP specifics


def test_subvp_matches_a_simulation_of_its_sde(monkeypatch):
    """The sigma the formulation uses for time t, read back as (alpha, std), against Euler-Maruyama paths of the
    sub-VP SDE dx = -beta x / 2 dt + sqrt(beta (1 - exp(-2 int_0^t beta))) dw (Song et al. 2021, eq. 29) started
    from x0 = 0.7: the paths' mean and std at t are alpha x0 and 1 - alpha^2."""
    f = formulations.build("subvp")
    x0, dt, g = 0.7, 1 / 1000, torch.Generator().manual_seed(0)
    x = torch.full((50_000,), x0, dtype=torch.float64)
    for k in range(600):
        t = (k + 0.5) * dt
        integral = 0.5 * 19.9 * t**2 + 0.1 * t
        beta = 0.1 + 19.9 * t
        x = x - 0.5 * beta * x * dt + math.sqrt(beta * -math.expm1(-2 * integral) * dt) * torch.randn(
            x.shape, generator=g, dtype=torch.float64)
        t1 = (k + 1) * dt
        if k + 1 in (100, 300, 600):
            # the formulation's own draw at this t (sample_sigma with u such that t = t1) ...
            u = torch.tensor([(t1 - f.eps_t) / (1 - f.eps_t)], dtype=torch.float64)
            monkeypatch.setattr(formulations, "_rand", lambda n, gen, device: u)
            s = f.sample_sigma(1, None, "cpu")
            # ... read back through its denoiser's coefficients: the network sees alpha x at time t
            _, c_out, c_in, c_noise = f.coefficients(s)
            alpha = float(c_in)
            assert float(c_noise) == pytest.approx(t1, rel=1e-4)
            assert float(c_out) == pytest.approx(-float(s))
            assert float(x.mean()) == pytest.approx(alpha * x0, abs=0.015)
            assert float(x.std()) == pytest.approx(1 - alpha**2, rel=0.02)


def test_subvp_draws_sigma_from_uniform_t():
    """Training levels: t ~ U(eps_t, 1) mapped through the closed-form marginal, sigma = std / mean."""
    f = formulations.build("subvp")
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    sigma = f.sample_sigma(1000, g1, "cpu").double()
    t = f.eps_t + (1 - f.eps_t) * torch.rand(1000, generator=g2).double()
    alpha, std = subvp_marginal(t)
    torch.testing.assert_close(sigma, std / alpha, rtol=1e-5, atol=1e-9)
    assert float(sigma.max()) > 80  # t = 1 reaches beyond the samplers' sigma_max


# ---------------------------------------------------------------- DDPM specifics


def test_ddpm_table_matches_ho_et_al():
    d = DDPM()
    np.testing.assert_allclose(d.sigmas.numpy(), np.sqrt((1 - ABAR) / ABAR), rtol=1e-12)
    assert d.sigma_min == pytest.approx(math.sqrt(1e-4 / (1 - 1e-4)))
    assert d.sigma_max == pytest.approx(float(np.sqrt((1 - ABAR[-1]) / ABAR[-1])))


def test_ddpm_t_of_sigma_hits_integer_steps():
    d = DDPM()
    ks = torch.tensor([0, 1, 2, 10, 250, 500, 998, 999])
    t = d.t_of_sigma(d.sigmas[ks].float())
    torch.testing.assert_close(t.double(), ks.double(), rtol=0, atol=2e-3)
    # half-way in log sigma is half-way in t
    mid = torch.exp((d.sigmas[100].log() + d.sigmas[101].log()) / 2).float()
    assert float(d.t_of_sigma(mid.view(1))) == pytest.approx(100.5, abs=2e-3)
    # outside the table: clamped to its ends
    torch.testing.assert_close(d.t_of_sigma(torch.tensor([1e-4, 1e4])), torch.tensor([0.0, 999.0]))
    # monotone in between
    t = d.t_of_sigma(torch.logspace(-2, 2.19, 200))
    assert bool((t[1:] >= t[:-1]).all())


def test_ddpm_native_sigmas_are_ddim_timesteps():
    d = DDPM()
    table = np.sqrt((1 - ABAR) / ABAR)
    ts = np.round(np.linspace(999, 0, 10)).astype(int)  # the whole table when sigma_max admits it
    np.testing.assert_allclose(d.native_sigmas(10, sigma_max=1e3).double().numpy(), table[ts], rtol=1e-6)
    t_max = int(np.nonzero(table <= 80.0)[0].max())  # else from the last t within sigma_max
    ts = np.round(np.linspace(t_max, 0, 10)).astype(int)
    np.testing.assert_allclose(d.native_sigmas(10).double().numpy(), table[ts], rtol=1e-6)


def test_only_ddpm_and_flow_have_native_schedules():
    for name in ("edm", "ve", "vp"):
        assert formulations.build(name).native_sigmas(10) is None
    for name in ("ddpm", "flow"):
        s = formulations.build(name).native_sigmas(10)
        assert s.shape == (10,) and bool((s[1:] < s[:-1]).all())


# ---------------------------------------------------------------- names


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="edm") as err:
        formulations.build("score_sde")
    assert "score_sde" in str(err.value)
    with pytest.raises(ValueError):
        Denoiser(networks.build("mlp", width=8, depth=1), "nope")
    with pytest.raises(ValueError):
        formulations.Preconditioned("ddpm")
    with pytest.raises(ValueError, match="unet"):
        networks.build("resnet")


@pytest.mark.parametrize("name", NAMES)
def test_build_returns_the_named_formulation(name):
    f = formulations.build(name)
    assert f.name == name
    assert Denoiser(networks.build("mlp", width=8, depth=1), name).formulation.name == name


def test_ddpm_takes_a_given_beta_table():
    """A released model's own betas (any rule, any length) define its table; the default is the linear one."""
    betas = np.linspace(1e-4, 0.02, 1000)
    torch.testing.assert_close(DDPM(betas=torch.tensor(betas)).sigmas, DDPM().sigmas, rtol=1e-12, atol=0)
    cosine = 1 - np.cos((np.arange(1, 51) / 50 + 0.008) / 1.008 * np.pi / 2) ** 2 / np.cos(
        (np.arange(50) / 50 + 0.008) / 1.008 * np.pi / 2) ** 2
    d = DDPM(betas=np.clip(cosine, 0, 0.999))
    abar = np.cumprod(1 - np.clip(cosine, 0, 0.999))
    assert d.T == 50
    np.testing.assert_allclose(d.sigmas.numpy(), np.sqrt((1 - abar) / abar), rtol=1e-12)
    torch.testing.assert_close(d.t_of_sigma(d.sigmas[[0, 7, 49]].float()), torch.tensor([0.0, 7.0, 49.0]),
                               rtol=0, atol=2e-3)

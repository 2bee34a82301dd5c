"""Consistency training (formulation "ct"): its boundary condition, curriculum, proposal and loss, each against
the formulas of Song et al. 2023 / Song & Dhariwal 2023 written out here."""

from __future__ import annotations

import math

import pytest
import torch

from reprolib import formulations, networks
from reprolib.formulations import Denoiser

SD, S_MIN, S_MAX, RHO = 0.5, 0.002, 80.0, 7.0


def _model(seed=0):
    torch.manual_seed(seed)
    net = networks.build("unet", in_channels=1, resolution=8, width=8)
    with torch.no_grad():  # an untrained net whose output is far from zero, so that c_out = 0 is what matters
        for p in net.parameters():
            p.add_(torch.randn(p.shape) * 0.05)
    return Denoiser(net, "ct")


def _batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g) * 2 - 1


def test_boundary_condition_is_exact_for_an_untrained_net():
    """f(x, sigma_min) = x bit for bit (c_skip = 1, c_out = 0), and not above sigma_min."""
    den = _model()
    x = torch.randn(5, 1, 8, 8) * 3
    assert torch.equal(den(x, S_MIN), x)
    assert (den(x, 0.01) - x).abs().max() > 1e-4
    out = den(x, torch.tensor([S_MIN, 1.0, S_MIN, 10.0, 80.0]))
    assert torch.equal(out[[0, 2]], x[[0, 2]])


def _n_of_k(k, K, s0=10, s1=1280):
    """iCT eq. 8: N(k) = min(s0 2^floor(k / K'), s1) + 1, K' = floor(K / (log2(s1 / s0) + 1))."""
    k_prime = math.floor(K / (math.log2(s1 / s0) + 1))
    return min(s0 * 2 ** math.floor(k / k_prime), s1) + 1


def test_curriculum_and_levels_follow_ict():
    f = formulations.build("ct")
    K = 8000
    ns = [len(f.levels(k, K)) for k in (0, 999, 1000, 2000, 6999, 7000, 7999)]
    assert ns == [_n_of_k(k, K) for k in (0, 999, 1000, 2000, 6999, 7000, 7999)] == [11, 11, 21, 41, 641, 1281, 1281]
    lv = f.levels(0, K)
    i = torch.arange(11, dtype=torch.float64)
    karras = (S_MIN ** (1 / RHO) + i / 10 * (S_MAX ** (1 / RHO) - S_MIN ** (1 / RHO))) ** RHO
    torch.testing.assert_close(lv, karras)


def test_proposal_is_the_lognormal_mass_of_each_interval():
    """p(i) is the lognormal(P_mean = -1.1, P_std = 2) probability of (sigma_i, sigma_{i+1}), renormalised."""
    f = formulations.build("ct")
    lv = f.levels(0, 100)
    normal = torch.distributions.Normal(torch.tensor(-1.1, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64))
    mass = normal.cdf(lv[1:].log()) - normal.cdf(lv[:-1].log())
    torch.testing.assert_close(f.proposal(lv), mass / mass.sum())
    # and the draws follow it
    x0 = torch.zeros(20_000, 1, 1, 1)
    d = f.draw(x0, torch.Generator().manual_seed(0), 0, 100)
    idx = torch.searchsorted(lv.float(), d["sigma"])
    freq = torch.bincount(idx, minlength=10)[:10].double() / len(x0)
    torch.testing.assert_close(freq, mass / mass.sum(), atol=0.015, rtol=0)
    torch.testing.assert_close(d["sigma_next"], lv[idx + 1].float())


def test_loss_equals_a_direct_computation():
    """lambda (sigma_{i+1} - sigma_i)^-1 pseudo-Huber(f(x0 + sigma_{i+1} z, sigma_{i+1}), f(x0 + sigma_i z, sigma_i)),
    c = 0.00054 sqrt(64), f written out from its c_skip and c_out; the gradient flows through the first term only."""
    den = _model(1)
    x0 = _batch()
    draws = den.formulation.draw(x0, torch.Generator().manual_seed(2), 500, 1000)
    loss = den.formulation.objective(den.net, x0, **draws)

    def f(x, s):
        s4 = s.view(-1, 1, 1, 1)
        c_skip = SD**2 / ((s4 - S_MIN) ** 2 + SD**2)
        c_out = SD * (s4 - S_MIN) / torch.sqrt(SD**2 + s4**2)
        return c_skip * x + c_out * den.net(x / torch.sqrt(s4**2 + SD**2), torch.log(s) / 4)

    s, s_next, z = draws["sigma"], draws["sigma_next"], draws["noise"]
    a = f(x0 + s_next.view(-1, 1, 1, 1) * z, s_next)
    b = f(x0 + s.view(-1, 1, 1, 1) * z, s).detach()
    c = 0.00054 * 8
    direct = (((a - b) ** 2).sum((1, 2, 3)) + c**2).sqrt() - c
    direct = (direct / (s_next - s)).mean()
    torch.testing.assert_close(loss, direct, rtol=1e-5, atol=0)
    g1 = torch.autograd.grad(loss, list(den.parameters()))
    g2 = torch.autograd.grad(direct, list(den.parameters()))
    scale = max(float(v.abs().max()) for v in g2)
    for u, v in zip(g1, g2):  # float32 round-off, relative to the gradient's scale
        torch.testing.assert_close(u, v, rtol=0, atol=1e-4 * scale)
    # the levels come from the curriculum at step 500 of 1000 (K' = 125): adjacent levels of N = 161
    lv = den.formulation.levels(500, 1000).float()
    assert len(lv) == _n_of_k(500, 1000) == 161
    i = torch.searchsorted(lv, s)
    torch.testing.assert_close(lv[i], s)
    torch.testing.assert_close(lv[i + 1], s_next)


def test_loss_vanishes_for_a_consistent_function():
    """A function that returns x0 whatever the noise level (the ideal f for one image) has zero loss."""
    x0 = _batch(8)
    f = formulations.build("ct")
    sd = SD

    def ideal(inp, c_noise, labels=None):  # F such that c_skip x + c_out F = x0
        s = torch.exp(4 * c_noise).view(-1, 1, 1, 1)
        x = inp * torch.sqrt(s**2 + sd**2)
        c_skip = sd**2 / ((s - S_MIN) ** 2 + sd**2)
        c_out = sd * (s - S_MIN) / torch.sqrt(sd**2 + s**2)
        return (x0 - c_skip * x) / c_out

    loss = f.loss(ideal, x0, torch.Generator().manual_seed(0), None, 0, 100)
    zero = f.loss(lambda inp, c, labels=None: torch.zeros_like(inp), x0, torch.Generator().manual_seed(0), None, 0, 100)
    assert float(loss) < 1e-3 * float(zero)


@pytest.mark.parametrize("step", [0, 900])
def test_draws_are_deterministic_given_the_generator(step):
    f = formulations.build("ct")
    x0 = _batch()
    a = f.draw(x0, torch.Generator().manual_seed(3), step, 1000)
    b = f.draw(x0, torch.Generator().manual_seed(3), step, 1000)
    assert all(torch.equal(a[k], b[k]) for k in a)

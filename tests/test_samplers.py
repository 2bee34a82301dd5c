"""Samplers against closed forms: the PF-ODE of a Gaussian, DDIM in DDPM's own variables, eq. 5 of EDM.

Data N(mu, s^2 I) has the exact denoiser D(x, sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu), and the
PF-ODE dx/dsigma = (x - D) / sigma is then solved by x(sigma) = mu + sqrt(s^2 + sigma^2) / sqrt(s^2 +
sigma_max^2) (x(sigma_max) - mu). Everything numerical here runs in float64 so that discretisation error,
not round-off, is what the order tests see.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reprolib import formulations, networks, samplers
from reprolib.samplers import SAMPLERS, karras_sigmas, noise, sample, schedule, slerp


MU, S = 0.3, 0.5


def gauss_denoiser(x, sigma):
    return MU + S**2 / (S**2 + sigma**2) * (x - MU)


def gauss_exact(x_start, sigma_start, sigma_end):
    return MU + np.sqrt(S**2 + sigma_end**2) / np.sqrt(S**2 + sigma_start**2) * (x_start - MU)


def eq5(n, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    """Karras et al. 2022, eq. 5, written out in numpy, with sigma_N = 0 appended."""
    i = np.arange(n, dtype=np.float64)
    s = (sigma_max ** (1 / rho) + i / (n - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return np.append(s, 0.0)


def levels(n, with_zero=True):
    """The eq. 5 schedule as a float64 tensor (optionally without the final 0)."""
    s = eq5(n)
    return torch.tensor(s if with_zero else s[:-1], dtype=torch.float64)


@pytest.fixture(scope="module")
def x_start():
    g = torch.Generator().manual_seed(0)
    return torch.randn(400, generator=g, dtype=torch.float64) * 80.0


def _error(name, x_start, sigmas):
    x = SAMPLERS[name](gauss_denoiser, x_start.clone(), sigmas)
    exact = gauss_exact(x_start, float(sigmas[0]), float(sigmas[-1]))
    return float((x - exact).abs().max())


# ---------------------------------------------------------------- karras_sigmas


@pytest.mark.parametrize("n", [2, 5, 18, 40])
def test_karras_sigmas_is_eq5(n):
    s = karras_sigmas(n)
    assert s.shape == (n + 1,)
    np.testing.assert_allclose(s.double().numpy(), eq5(n), rtol=1e-6, atol=0)
    assert float(s[0]) == pytest.approx(80.0, rel=1e-6)
    assert float(s[-2]) == pytest.approx(0.002, rel=1e-5)
    assert float(s[-1]) == 0.0
    assert bool((s[1:] < s[:-1]).all()), "levels must strictly decrease"


def test_karras_sigmas_custom_range_and_rho():
    s = karras_sigmas(10, sigma_min=0.01, sigma_max=10.0, rho=3.0)
    np.testing.assert_allclose(s.double().numpy(), eq5(10, 0.01, 10.0, 3.0), rtol=1e-6)
    # rho = 1 is a linear ramp
    lin = karras_sigmas(5, sigma_min=1.0, sigma_max=5.0, rho=1.0)
    np.testing.assert_allclose(lin.numpy(), [5, 4, 3, 2, 1, 0], rtol=1e-6)


# ---------------------------------------------------------------- accuracy on a Gaussian


@pytest.mark.parametrize("name,tol", [("euler", 3e-2), ("ddim", 3e-2), ("heun", 1e-3), ("dpmpp_2m", 1e-3)])
def test_samplers_converge_to_exact_pf_ode_solution(name, tol, x_start):
    err = _error(name, x_start, levels(256))
    assert err < tol
    # and far from it with very few steps: the test can tell a sampler that does nothing from one that works
    assert _error(name, x_start, levels(4)) > 10 * err


def test_heun_is_second_order(x_start):
    e = [_error("heun", x_start, levels(n, with_zero=False)) for n in (32, 64, 128)]
    for coarse, fine in zip(e, e[1:]):
        assert 3.5 < coarse / fine < 4.6, e


def test_euler_is_first_order(x_start):
    e = [_error("euler", x_start, levels(n, with_zero=False)) for n in (32, 64, 128)]
    for coarse, fine in zip(e, e[1:]):
        assert 1.8 < coarse / fine < 2.2, e


def test_dpmpp_2m_is_second_order(x_start):
    e = [_error("dpmpp_2m", x_start, levels(n, with_zero=False)) for n in (32, 64, 128)]
    for coarse, fine in zip(e, e[1:]):
        assert 3.5 < coarse / fine < 4.8, e


@pytest.mark.parametrize("n", [8, 16, 32, 64])
def test_dpmpp_2m_beats_euler_at_equal_steps(n, x_start):
    sig = levels(n)
    assert _error("dpmpp_2m", x_start, sig) < 0.75 * _error("euler", x_start, sig)


def test_final_step_to_zero_returns_the_denoised_image():
    """Euler and DDIM's last step to sigma = 0 is x = D(x, sigma_last)."""
    x = torch.randn(50, dtype=torch.float64)
    sig = torch.tensor([0.7, 0.0], dtype=torch.float64)
    for name in ("euler", "ddim", "heun", "dpmpp_2m"):
        torch.testing.assert_close(SAMPLERS[name](gauss_denoiser, x.clone(), sig), gauss_denoiser(x, 0.7))


# ---------------------------------------------------------------- DDIM


def _nonlinear_eps_model(x_t, abar):
    """A known eps-prediction model in DDPM's variance-preserving variables (any smooth function will do)."""
    return torch.tanh(1.3 * x_t) * (1 - abar) ** 0.5 + 0.2 * abar * torch.sin(x_t)


def _ve_denoiser_from_eps(x, sigma):
    """The same model read as a VE denoiser: x_t = sqrt(abar) x, x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)."""
    abar = 1 / (1 + sigma**2)
    x_t = abar**0.5 * x
    eps = _nonlinear_eps_model(x_t, abar)
    return (x_t - (1 - abar) ** 0.5 * eps) / abar**0.5


def _ddim_in_ddpm_variables(x_T, abars):
    """Song et al. 2021 eq. 12 with sigma_t = 0, stepping through ``abars`` (increasing, ending at 1)."""
    x_t = x_T
    for a, a_prev in zip(abars[:-1], abars[1:]):
        eps = _nonlinear_eps_model(x_t, a)
        x0_pred = (x_t - np.sqrt(1 - a) * eps) / np.sqrt(a)
        x_t = np.sqrt(a_prev) * x0_pred + np.sqrt(1 - a_prev) * eps
    return x_t


def test_ddim_matches_eq12_in_ddpm_variables():
    # DDPM's linear-beta alpha-bar at evenly spaced timesteps, then alpha-bar = 1 (clean data)
    abar_table = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    ts = np.round(np.linspace(999, 0, 12)).astype(int)
    abars = np.append(abar_table[ts], 1.0)
    g = torch.Generator().manual_seed(1)
    x_T_vp = torch.randn(64, generator=g, dtype=torch.float64)  # x_T ~ N(0, I) in VP variables
    expected = _ddim_in_ddpm_variables(x_T_vp, abars)

    sigmas = torch.tensor(np.sqrt((1 - abars) / abars), dtype=torch.float64)
    assert float(sigmas[-1]) == 0.0
    x_ve = x_T_vp / np.sqrt(abars[0])  # x = x_t / sqrt(abar)
    got = samplers.ddim(_ve_denoiser_from_eps, x_ve, sigmas)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_ddim_equals_euler_in_x_sigma_variables():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64) * 80
    den = lambda x, s: torch.tanh(x) * s / (1 + s) + 0.1 * torch.cos(x)  # noqa: E731
    for n in (3, 10, 25):
        sig = levels(n)
        torch.testing.assert_close(samplers.ddim(den, x.clone(), sig), samplers.euler(den, x.clone(), sig),
                                   rtol=1e-10, atol=1e-10)


def test_evaluations_counts_denoiser_calls():
    for name in SAMPLERS:
        calls = []

        def den(x, s):
            calls.append(float(s))
            return gauss_denoiser(x, s)

        extra = {"noises": torch.randn(6, 4, dtype=torch.float64)} if name == "consistency" else {}
        SAMPLERS[name](den, torch.randn(4, dtype=torch.float64), levels(7), **extra)
        assert len(calls) == samplers.evaluations(name, 7), name


# ---------------------------------------------------------------- sample(), noise()


def _small_net_denoiser(formulation="edm", seed=0):
    torch.manual_seed(seed)
    net = networks.build("unet", in_channels=1, resolution=8, width=8, channel_mult=(1, 2))
    with torch.no_grad():  # the head is zero-initialised; make the network matter
        for p in net.head.parameters():
            p.normal_(0, 0.3)
    return formulations.Denoiser(net, formulation).eval()


@pytest.fixture(scope="module")
def net_denoiser():
    return _small_net_denoiser()


def test_noise_is_per_seed_standard_normal():
    z = noise([1, 2, 3], (2, 5))
    assert z.shape == (3, 2, 5) and z.dtype == torch.float32
    assert torch.equal(z[1], noise([2], (2, 5))[0])
    assert torch.equal(noise([3, 9], (2, 5))[0], z[2])
    assert not torch.equal(z[0], z[1])
    big = noise(range(200), (50,))
    assert abs(float(big.mean())) < 0.03 and abs(float(big.std()) - 1) < 0.03


def test_sample_starts_at_sigma_max_times_seed_noise():
    """With the exact Gaussian denoiser, sample() must return the PF-ODE solution from sigma_max * z(seed)."""
    seeds, shape = [11, 12, 13], (1, 4, 4)
    out = sample(gauss_denoiser, seeds, shape, sampler="heun", steps=128)
    z = noise(seeds, shape).double()
    expected = gauss_exact(80.0 * z, 80.0, 0.0).float()
    torch.testing.assert_close(out, expected, atol=2e-3, rtol=0)


def test_sample_is_deterministic_per_seed(net_denoiser):
    a = sample(net_denoiser, [0, 1, 2, 3], (1, 8, 8), steps=6)
    b = sample(net_denoiser, [0, 1, 2, 3], (1, 8, 8), steps=6)
    assert torch.equal(a, b)
    assert not torch.equal(a[0], a[1])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("sampler", ["heun", "dpmpp_2m"])
def test_same_seeds_batches_and_threads_give_the_same_bits(net_denoiser, sampler, threads):
    """What samplers.py promises, exactly: the same seeds in the same batches at the same thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        runs = [sample(net_denoiser, range(40), (1, 8, 8), sampler=sampler, steps=4, batch_size=16)
                for _ in range(2)]
    finally:
        torch.set_num_threads(before)
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("sampler", ["heun", "dpmpp_2m"])
def test_sample_in_other_batches_differs_by_round_off_only(net_denoiser, sampler):
    seeds = list(range(100))
    full = sample(net_denoiser, seeds, (1, 8, 8), sampler=sampler, steps=4, batch_size=100)
    assert full.shape == (100, 1, 8, 8)
    # float32 starting at x = 80 z carries ~1e-5 of round-off (ulp(80) = 8e-6) that BLAS may split
    # differently per batch shape; a batch-dependent bug (noise from the wrong seed) is off by O(1).
    sevens = sample(net_denoiser, seeds, (1, 8, 8), sampler=sampler, steps=4, batch_size=7)
    torch.testing.assert_close(sevens, full, rtol=1e-5, atol=5e-5)
    ones = sample(net_denoiser, seeds[:15], (1, 8, 8), sampler=sampler, steps=4, batch_size=1)
    torch.testing.assert_close(ones, full[:15], rtol=1e-5, atol=5e-5)


def test_sample_depends_only_on_its_seed(net_denoiser):
    many = sample(net_denoiser, [3, 4, 5], (1, 8, 8), steps=6)
    one = sample(net_denoiser, [5], (1, 8, 8), steps=6)
    torch.testing.assert_close(one[0], many[2], rtol=1e-5, atol=5e-5)
    assert not torch.allclose(many[0], many[2])


def test_sample_z_override_replaces_seed_noise(net_denoiser):
    z = noise([42], (1, 8, 8))
    torch.testing.assert_close(sample(net_denoiser, [0], (1, 8, 8), steps=5, z=z),
                               sample(net_denoiser, [42], (1, 8, 8), steps=5), rtol=1e-6, atol=1e-6)


def test_sample_passes_each_seed_its_own_label():
    def den(x, sigma, labels=None):  # D = the label everywhere: the last step to 0 returns it
        assert labels is not None and len(labels) == len(x)
        return labels.to(x.dtype).view(-1, 1, 1, 1).expand_as(x)

    labels = torch.tensor([4, 1, 7, 2, 9])
    out = sample(den, range(5), (1, 2, 2), sampler="heun", steps=4, batch_size=2, labels=labels)
    torch.testing.assert_close(out, labels.float().view(-1, 1, 1, 1).expand(5, 1, 2, 2))


def test_unknown_sampler_and_schedule_raise_helpful_errors(net_denoiser):
    with pytest.raises(ValueError, match="euler") as err:
        sample(net_denoiser, [0], (1, 8, 8), sampler="rk45")
    assert "rk45" in str(err.value)
    with pytest.raises(ValueError, match="karras") as err:
        schedule(net_denoiser, 5, kind="cosine")
    assert "cosine" in str(err.value)
    with pytest.raises(ValueError, match="native"):
        sample(net_denoiser, [0], (1, 8, 8), schedule_kind="linear")
    # EDM has no schedule of its own: say so and point at karras
    with pytest.raises(ValueError, match="karras"):
        schedule(net_denoiser, 5, kind="native")


# ---------------------------------------------------------------- native schedules


def _ddpm_sigma_table():
    abar = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))
    return np.sqrt((1 - abar) / abar)


@pytest.mark.parametrize("steps", [10, 18, 50])
def test_native_schedule_of_ddpm(steps):
    den = formulations.Denoiser(networks.build("mlp", width=8, depth=1), "ddpm")
    s = schedule(den, steps, kind="native").double().numpy()
    table = _ddpm_sigma_table()
    t_max = int(np.nonzero(table <= 80.0)[0].max())  # the last timestep whose sigma is within sigma_max
    ts = np.round(np.linspace(t_max, 0, steps)).astype(int)
    expected = np.append(table[ts], 0.0)
    assert s.shape == (steps + 1,)
    np.testing.assert_allclose(s, expected, rtol=1e-5)
    assert 79.0 < s[0] <= 80.0 and s[-1] == 0.0
    assert s[-2] == pytest.approx(_ddpm_sigma_table()[0], rel=1e-5)  # DDPM's smallest level, t = 0
    assert (np.diff(s) < 0).all()  # no zero-length steps


def test_native_schedule_of_flow_is_even_in_t():
    den = formulations.Denoiser(networks.build("mlp", width=8, depth=1), "flow")
    s = schedule(den, 9, kind="native").double().numpy()
    t = s[:-1] / (1 + s[:-1])
    np.testing.assert_allclose(np.diff(t), np.full(8, (0.002 / 1.002 - 80 / 81) / 8), rtol=1e-4)
    assert s[0] == pytest.approx(80.0, rel=1e-5) and s[-1] == 0.0


@pytest.mark.parametrize("sampler", ["euler", "heun", "ddim", "dpmpp_2m"])
def test_native_ddpm_schedule_gives_finite_samples(sampler):
    den = _small_net_denoiser("ddpm")
    out = sample(den, [0, 1, 2], (1, 8, 8), sampler=sampler, steps=18, schedule_kind="native")
    assert torch.isfinite(out).all()


class _GaussWithNativeSchedule:
    """The exact Gaussian denoiser, carrying a formulation's native schedule (as a trained model would)."""

    def __init__(self, formulation):
        self.formulation = formulation

    def __call__(self, x, sigma):
        return gauss_denoiser(x, sigma)

    def native_sigmas(self, n, sigma_max=80.0):
        return self.formulation.native_sigmas(n, sigma_max)


@pytest.mark.parametrize("steps", [18, 35, 50, 100])
@pytest.mark.parametrize("formulation", ["ddpm", "flow"])
def test_dpmpp_2m_beats_euler_on_native_schedules(formulation, steps):
    """On a native schedule the step into the last level (DDPM's t = 0) is long in log sigma; taken at second
    order it overshoots and 2M lost to Euler. Against the exact PF-ODE solution, 2M must halve Euler's error."""
    den, seeds, shape = _GaussWithNativeSchedule(formulations.build(formulation)), range(200), (1, 4, 4)
    sigma_max = float(schedule(den, steps, kind="native")[0])
    exact = gauss_exact(sigma_max * noise(seeds, shape).double(), sigma_max, 0.0)

    def error(sampler):
        return float((sample(den, seeds, shape, sampler, steps, "native").double() - exact).abs().max())

    assert error("dpmpp_2m") < 0.5 * error("euler")


def _algorithm_2(denoise, x, sigmas):
    """DPM-Solver++(2M) as Lu et al. 2022 write it (Algorithm 2), with no rule for long steps."""
    prev = None
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        d = denoise(x, s)
        if s_next == 0:
            return d
        h = torch.log(s / s_next)
        d_hat = d if prev is None else d + (d - prev[0]) * h / (2 * prev[1])
        x, prev = (s_next / s) * x - torch.expm1(-h) * d_hat, (d, h)
    return x


@pytest.mark.parametrize("steps", [2, 4, 6, 11, 18, 35])
def test_dpmpp_2m_on_karras_is_algorithm_2(net_denoiser, steps):
    """On Karras's schedule (every notebook's) no step is twice as long as the one before from 4 steps on, so 2M is
    Algorithm 2 bit for bit: first order on the first step and on the step to 0, second order on all others."""
    seeds, shape = range(12), (1, 8, 8)
    got = sample(net_denoiser, seeds, shape, "dpmpp_2m", steps, batch_size=12)
    sigmas = karras_sigmas(steps)
    with torch.no_grad():
        assert torch.equal(got, _algorithm_2(net_denoiser, noise(seeds, shape) * sigmas[0], sigmas))


@pytest.mark.parametrize("steps", [18, 50])
@pytest.mark.parametrize("formulation", ["ddpm", "flow"])
def test_dpmpp_2m_called_directly_takes_the_long_step_as_sample_does(formulation, steps):
    """The rule for a native schedule's long last step lives in the step itself: a direct call gives ``sample``'s
    bits, and both differ from Algorithm 2, whose second-order long step is the one that overshoots."""
    den, seeds, shape = _GaussWithNativeSchedule(formulations.build(formulation)), range(50), (1, 4, 4)
    sigmas = schedule(den, steps, kind="native")
    x = noise(seeds, shape) * sigmas[0]
    direct = samplers.dpmpp_2m(den, x, sigmas)
    assert torch.equal(direct, sample(den, seeds, shape, "dpmpp_2m", steps, "native"))
    assert not torch.allclose(direct, _algorithm_2(den, x, sigmas), atol=1e-3)


def test_dpmpp_2m_survives_a_repeated_level():
    """DDPM's 1,000 timesteps rounded to 1,000 levels repeat one (a zero-length step); the step after it is then
    infinitely longer than the one before and is taken at first order, not divided by zero."""
    den = _GaussWithNativeSchedule(formulations.build("ddpm"))
    sigmas = schedule(den, 1000, kind="native")
    assert (sigmas[1:] == sigmas[:-1]).any()
    assert torch.isfinite(sample(den, range(20), (1, 4, 4), "dpmpp_2m", 1000, "native")).all()


def _diffusers_dpmpp_2m(steps, x):
    """diffusers' own DPM-Solver++(2M) (DPMSolverMultistepScheduler with its defaults: timestep_spacing "linspace",
    final_sigmas_type "zero") on DDPM's schedule, driving the exact Gaussian denoiser as an epsilon model from
    x = sigma_max z: its levels (sigmas, ours) and its sample, in our variance-exploding scale."""
    import diffusers  # in the test extra, as for test_hub.py

    scheduler = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02,
                                                      beta_schedule="linear")
    scheduler.set_timesteps(steps)
    sigmas = scheduler.sigmas.double()
    x_vp = x * sigmas[0] / (1 + sigmas[0] ** 2).sqrt()  # x_VP = sqrt(abar) x_VE
    for sigma, t in zip(sigmas, scheduler.timesteps):
        x_ve = x_vp * (1 + sigma**2).sqrt()
        x_vp = scheduler.step((x_ve - gauss_denoiser(x_ve, sigma)) / sigma, t, x_vp).prev_sample
    return sigmas, x_vp  # at sigma = 0 the two scales agree


@pytest.mark.parametrize("steps", [50, 100])
def test_dpmpp_2m_error_on_native_ddpm_against_diffusers(steps):
    """Why 2M's error against the exact Gaussian ODE on our native DDPM schedule (about 4e-3 at 50 and 100 steps)
    is several times diffusers' own (7e-4 at 50 steps, 1e-3 at 100): the steps are the same, the levels are not.

    On diffusers' levels our 2M gives diffusers' sample (to 1e-5). Its levels end at t = 999 / steps (sigma 0.079
    at 50 steps), not at DDPM's t = 0, and its small error is a cancellation: up to that level 2M lags the exact
    solution by about as much as ours does up to the level before t = 0 (2e-2 at 50 steps), and its last step,
    x = D(x; 0.079), shrinks x - mu by S^2 / (S^2 + sigma^2) where the ODE shrinks it by S / sqrt(S^2 + sigma^2):
    too much, by nearly the same amount, the other way. Our schedule instead steps into sigma = 0.01 (t = 0),
    where D is nearly exact, and its first-order step there leaves 4e-3 of the lag standing."""
    x = torch.randn(400, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    theirs, by_diffusers = _diffusers_dpmpp_2m(steps, x)
    ours = torch.cat([formulations.build("ddpm").native_sigmas(steps).double(), torch.zeros(1, dtype=torch.float64)])

    def error(levels, end=0.0, got=None):
        x0 = x * levels[0]
        got = samplers.dpmpp_2m(gauss_denoiser, x0.clone(), levels) if got is None else got
        return got - gauss_exact(x0, float(levels[0]), end)

    assert torch.allclose(error(theirs), error(theirs, got=by_diffusers), atol=1e-5)  # the same solver
    total_ours, total_theirs = float(error(ours).abs().max()), float(error(theirs).abs().max())
    assert 2e-3 < total_ours < 6e-3
    assert total_theirs < 1.5e-3 and total_ours > 2.5 * total_theirs
    lag = error(theirs[:-1], float(theirs[-2]))  # up to diffusers' smallest level, before its x = D step
    lag_ours = error(ours[:-2], float(ours[-3]))  # up to the level before DDPM's t = 0
    assert float(lag.abs().max()) > 5 * total_theirs
    assert 0.5 < float(lag.abs().max()) / float(lag_ours.abs().max()) < 2


# ---------------------------------------------------------------- slerp


def test_slerp_endpoints_and_norm():
    g = torch.Generator().manual_seed(3)
    z0, z1 = torch.randn(1, 8, 8, generator=g), torch.randn(1, 8, 8, generator=g)
    torch.testing.assert_close(slerp(z0, z1, 0.0), z0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(slerp(z0, z1, 1.0), z1, rtol=1e-5, atol=1e-5)
    # Gaussian norms: roughly kept for independent draws (a straight line would lose ~30% at t = 0.5)
    mid = slerp(z0, z1, 0.5)
    lerp_norm = float((0.5 * (z0 + z1)).norm())
    assert abs(float(mid.norm()) / float(z0.norm()) - 1) < 0.15
    assert float(mid.norm()) > 1.2 * lerp_norm
    # exactly kept for two vectors of equal norm
    z1e = z1 / z1.norm() * z0.norm()
    for t in (0.1, 0.3, 0.5, 0.9):
        assert float(slerp(z0, z1e, t).norm()) == pytest.approx(float(z0.norm()), rel=1e-5)
    # the angle to z0 grows linearly in t
    cos = lambda a, b: float((a.flatten() @ b.flatten()) / (a.norm() * b.norm()))  # noqa: E731
    omega = np.arccos(cos(z0, z1e))
    assert np.arccos(np.clip(cos(z0, slerp(z0, z1e, 0.25)), -1, 1)) == pytest.approx(0.25 * omega, rel=1e-3)


def test_slerp_of_parallel_noises_is_linear():
    z = torch.randn(16)
    torch.testing.assert_close(slerp(z, 2 * z, 0.5), 1.5 * z)


# ---------------------------------------------------------------- consistency sampling


def test_noise_draws_continue_each_seeds_generator():
    zs = noise([5, 6], (1, 3, 3), draws=3)
    assert zs.shape == (3, 2, 1, 3, 3)
    assert torch.equal(zs[0], noise([5, 6], (1, 3, 3)))
    g = torch.Generator().manual_seed(6)
    direct = [torch.randn((1, 3, 3), generator=g) for _ in range(3)]
    assert all(torch.equal(zs[k, 1], direct[k]) for k in range(3))


def test_one_step_consistency_sample_is_the_denoiser_once_at_sigma_max(net_denoiser):
    """A one-step model: D(sigma_max z(seed); sigma_max), with every other model's z for that seed."""
    seeds = [3, 7, 11]
    out = sample(net_denoiser, seeds, (1, 8, 8), sampler="consistency", steps=1, schedule_kind="consistency")
    z = noise(seeds, (1, 8, 8))
    torch.testing.assert_close(out, net_denoiser(80.0 * z, 80.0), rtol=0, atol=0)


def test_two_step_consistency_sample_renoises_with_the_seeds_next_draw(net_denoiser):
    """Song et al. 2023, Algorithm 1 with one intermediate level: x0 = D(80 z1, 80), then
    D(x0 + sqrt(s^2 - sigma_min^2) z2, s), s = 0.821, z1 and z2 the first two draws of the seed's generator."""
    seeds = list(range(20, 30))
    out = sample(net_denoiser, seeds, (1, 8, 8), sampler="consistency", steps=2, schedule_kind="consistency",
                 batch_size=4)
    rows = []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        z1, z2 = torch.randn((1, 1, 8, 8), generator=g), torch.randn((1, 1, 8, 8), generator=g)
        x0 = net_denoiser(80.0 * z1, 80.0)
        s = torch.tensor(samplers.CONSISTENCY_MID)
        rows.append(net_denoiser(x0 + (s**2 - 0.002**2).sqrt() * z2, s))
    torch.testing.assert_close(out, torch.cat(rows), rtol=1e-5, atol=5e-5)  # batches of 4 against 1
    one = sample(net_denoiser, seeds, (1, 8, 8), sampler="consistency", steps=1, schedule_kind="consistency")
    assert (out - one).abs().max() > 1e-3  # the second step does something


def test_consistency_schedule_and_missing_noises_raise():
    assert schedule(None, 1, "consistency").tolist() == [80.0, 0.0]
    assert schedule(None, 2, "consistency").tolist() == pytest.approx([80.0, samplers.CONSISTENCY_MID, 0.0])
    with pytest.raises(ValueError, match="1 or 2"):
        schedule(None, 3, "consistency")
    with pytest.raises(ValueError, match="noises"):
        samplers.consistency(gauss_denoiser, torch.zeros(2), torch.tensor([80.0, 1.0, 0.0]))


# ---------------------------------------------------------------- precision


def test_precision_none_is_todays_float32_bit_for_bit(net_denoiser):
    """No precision leaves the path as it was: the same bits as Heun called directly on float32."""
    seeds, shape = range(12), (1, 8, 8)
    sigmas = karras_sigmas(6)
    with torch.no_grad():
        direct = samplers.heun(net_denoiser, noise(seeds, shape) * sigmas[0], sigmas)
    assert torch.equal(sample(net_denoiser, seeds, shape, steps=6, precision=None), direct)
    assert torch.equal(sample(net_denoiser, seeds, shape, steps=6), direct)


def test_precision_runs_the_denoiser_in_autocast_and_the_ode_in_float32():
    seen = []

    def den(x, sigma):  # a matmul, which autocast runs in bf16
        seen.append((x.dtype, sigma.dtype, torch.is_autocast_enabled("cpu")))
        return (x.flatten(1) @ torch.eye(x[0].numel())).view_as(x) * 0.5

    out = sample(den, range(3), (1, 2, 2), steps=3, precision="bf16")
    assert out.dtype == torch.float32
    assert seen and all(s == (torch.float32, torch.float32, True) for s in seen)  # x and sigma stay float32
    assert not torch.is_autocast_enabled("cpu")


def test_unknown_precision_names_the_choices(net_denoiser):
    with pytest.raises(ValueError, match="bf16") as err:
        sample(net_denoiser, [0], (1, 8, 8), precision="fp8")
    assert "fp8" in str(err.value) and "fp16" in str(err.value)


@pytest.fixture(scope="module")
def trained_unet(tmp_path_factory):
    """A tiny U-Net trained for a few seconds on 64 digits: a denoiser whose samples mean something."""
    from reprolib.store import Store
    from reprolib.train import TrainConfig, train

    cfg = TrainConfig(n=64, net={"kind": "unet", "width": 8}, steps=400, batch=32, warmup=20, ckpt_every=10**6)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(cfg, Store(tmp_path_factory.mktemp("unet")), progress=False)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_samples_reproduce_float32_ones(trained_unet, precision):
    """The same seeds in float32 and in bf16/fp16 give the same images: RP between them (Pearson > 0.9) is
    high, far above chance; the bits differ, so autocast took effect."""
    from reprolib import metrics

    seeds, shape = range(128), (1, 8, 8)
    ref = sample(trained_unet, seeds, shape, steps=18)
    half = sample(trained_unet, seeds, shape, steps=18, precision=precision)
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert not torch.equal(half, ref)
    sim = metrics.PixelSimilarity()
    assert metrics.rp_score(sim, half, ref) >= 0.9
    assert metrics.chance_rp(sim, half, ref) < 0.5

"""The generalization regime's closed-form denoisers: the Gaussian against the posterior mean of Gaussian data,
the patch denoiser against D* and against a pixel-by-pixel reading of its formula, and notebook 08's helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from reprolib import closed_form
from reprolib.gaussian import GaussianDenoiser, moments
from reprolib.optimal import OptimalDenoiser
from reprolib.patches import PatchDenoiser, classes
from reprolib.store import Store
from reprolib.train import TrainConfig


def _images(n, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g, dtype=torch.float64) * 2 - 1


def _noisy(train, sigma, n=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    idx = torch.arange(n) % len(train)
    return train[idx] + sigma * torch.randn(n, *train.shape[1:], generator=g, dtype=torch.float64)


# --- Gaussian -------------------------------------------------------------------------------------------------

def _posterior_mean_solve(x, mean, cov, sigma):
    """mu + Sigma (Sigma + sigma^2 I)^-1 (x - mu) with a linear solve, no eigendecomposition."""
    flat = x.reshape(len(x), -1).numpy() - mean
    a = cov + sigma**2 * np.eye(len(mean))
    return mean + (cov @ np.linalg.solve(a, flat.T)).T


@pytest.mark.parametrize("n", [5, 200])  # rank-deficient (N < d = 12) and full-rank covariance
@pytest.mark.parametrize("sigma", [0.01, 0.3, 2.0, 50.0])
def test_gaussian_is_the_linear_posterior_mean(n, sigma):
    train = _images(n, (3, 2, 2))
    flat = train.reshape(n, -1).numpy()
    mean, cov = flat.mean(0), np.cov(flat.T, bias=True)
    x = _noisy(train, sigma)
    got = GaussianDenoiser(train, chunk=7)(x, sigma)
    assert got.shape == x.shape and got.dtype == torch.float64
    np.testing.assert_allclose(got.reshape(len(x), -1).numpy(), _posterior_mean_solve(x, mean, cov, sigma),
                               rtol=1e-9, atol=1e-9)


def test_moments_chunked_match_numpy():
    train = _images(50, (1, 3, 3))
    mean, cov = moments(train, chunk=8)
    flat = train.reshape(50, -1).numpy()
    np.testing.assert_allclose(mean.numpy(), flat.mean(0), atol=1e-12)
    np.testing.assert_allclose(cov.numpy(), np.cov(flat.T, bias=True), atol=1e-12)


def test_gaussian_matches_the_posterior_mean_of_gaussian_data():
    """For data drawn from a Gaussian, D* of a very large sample is that Gaussian's posterior mean E[y | x]:
    the Gaussian denoiser of the sample's moments must agree with it (up to Monte Carlo error)."""
    g = torch.Generator().manual_seed(3)
    d = 4
    a = torch.randn(d, d, generator=g, dtype=torch.float64) * 0.4
    big = (torch.randn(200_000, d, generator=g, dtype=torch.float64) @ a.T + 0.3).reshape(-1, 1, 2, 2)
    x = _noisy(big[:8], 0.6, n=8, seed=4)
    gauss = GaussianDenoiser(big)(x, 0.6)
    mc = OptimalDenoiser(big)(x, 0.6)
    torch.testing.assert_close(gauss, mc, rtol=0, atol=0.02)
    # and the check can fail: a Gaussian of other moments is off by far more than that
    other = GaussianDenoiser(big * 0.5)(x, 0.6)
    assert (other - mc).abs().max() > 0.1


@pytest.mark.parametrize("sigma", [1e-6, 1e-4, 1e4, 1e8])
def test_gaussian_limits_without_nan(sigma):
    train = _images(5, (1, 2, 4))  # rank 4 < d = 8: null directions
    den = GaussianDenoiser(train)
    x = 30 * torch.randn(6, 1, 2, 4, dtype=torch.float64)
    out = den(x, sigma)
    assert torch.isfinite(out).all()
    mean = train.mean(0, keepdim=True).expand_as(x)
    if sigma >= 1e4:  # everything shrinks to the mean
        torch.testing.assert_close(out, mean, rtol=0, atol=1e-5)
    else:  # the projection of x onto the affine span of the training images
        centred = (train - train.mean(0)).reshape(5, -1).T
        basis, _ = torch.linalg.qr(centred)
        basis = basis[:, :4]
        proj = mean.reshape(6, -1) + (x.reshape(6, -1) - mean.reshape(6, -1)) @ basis @ basis.T
        torch.testing.assert_close(out.reshape(6, -1), proj, rtol=0, atol=1e-3)
    assert torch.isfinite(den(x, 0.0)).all()


def test_gaussian_per_row_sigmas_and_float32():
    train = _images(30, (1, 3, 3))
    den = GaussianDenoiser(train)
    sigmas = torch.tensor([0.01, 0.5, 5.0], dtype=torch.float64)
    x = _noisy(train, 0.5, n=3)
    got = den(x, sigmas)
    for r in range(3):
        torch.testing.assert_close(got[r:r + 1], den(x[r:r + 1], float(sigmas[r])), rtol=1e-12, atol=1e-12)
    assert den(x.float(), torch.tensor(0.5)).dtype == torch.float32


# --- patches --------------------------------------------------------------------------------------------------

def naive_patch(x, train, sigma, k):
    """The patch denoiser read literally: for each pixel, its window cut to the image; every (image, position)
    whose cut window has the same offsets is a candidate; softmax of -||difference||^2 / (2 sigma^2)."""
    x, train = x.numpy(), train.numpy()
    _, c, h, w = x.shape
    half = k // 2

    def cut(i, j):
        return (max(-i, -half), min(h - 1 - i, half), max(-j, -half), min(w - 1 - j, half))

    def patch(img, i, j, o):
        return img[:, i + o[0]:i + o[1] + 1, j + o[2]:j + o[3] + 1].ravel()

    out = np.empty_like(x)
    for b in range(len(x)):
        for i in range(h):
            for j in range(w):
                o = cut(i, j)
                query = patch(x[b], i, j, o)
                cands, centres = [], []
                for y in train:
                    for p in range(h):
                        for q in range(w):
                            if cut(p, q) == o:
                                cands.append(patch(y, p, q, o))
                                centres.append(y[:, p, q])
                d2 = np.array([np.sum((query - cnd) ** 2) for cnd in cands])
                logits = -d2 / (2 * sigma**2)
                wts = np.exp(logits - logits.max())
                out[b, :, i, j] = (wts / wts.sum()) @ np.array(centres)
    return out


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("sigma", [0.05, 0.4, 3.0])
def test_patch_matches_its_formula_pixel_by_pixel(k, sigma):
    train = _images(4, (2, 5, 6))  # two channels, not square: rows and columns are not mixed up
    x = _noisy(train, sigma, n=3)
    got = PatchDenoiser(train, k, budget=37)(x, sigma)  # tiny budget: many chunks and query blocks
    np.testing.assert_allclose(got.numpy(), naive_patch(x, train, sigma, k), rtol=2e-5, atol=2e-5)


def test_patch_float64_below_threshold_is_exact():
    train = _images(4, (1, 5, 5))
    x = _noisy(train, 0.05, n=3)
    got = PatchDenoiser(train, 3)(x, 0.05)  # below float64_below: float64 logits
    np.testing.assert_allclose(got.numpy(), naive_patch(x, train, 0.05, 3), rtol=1e-10, atol=1e-10)


def test_classes_partition_every_pixel_once():
    for shape, k in (((1, 8, 8), 3), ((3, 5, 7), 5), ((1, 8, 8), 15)):
        cls = classes(shape, k)
        centres = torch.cat([c.centre.reshape(-1) for c in cls])
        assert sorted(centres.tolist()) == list(range(int(np.prod(shape))))
    assert len(classes((1, 8, 8), 3)) == 9  # interior, four edges, four corners
    with pytest.raises(ValueError):
        classes((1, 8, 8), 4)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 4, 6)])
@pytest.mark.parametrize("sigma", [0.002, 0.05, 0.7, 5.0, 80.0])
def test_patch_covering_the_image_is_the_optimal_denoiser(shape, sigma):
    """A window of side 2 max(H, W) - 1 covers the whole image from every pixel: D_k is D*."""
    train = _images(12, shape)
    x = _noisy(train, sigma, n=6)
    k = 2 * max(shape[1:]) - 1
    expected = OptimalDenoiser(train)(x, sigma)
    exact = PatchDenoiser(train, k, float64_below=float("inf"))(x, sigma)
    torch.testing.assert_close(exact, expected, rtol=0, atol=1e-12)
    fast = PatchDenoiser(train, k, budget=50)(x, sigma)  # float32 logits above 0.1, chunked
    torch.testing.assert_close(fast, expected, rtol=0, atol=1e-5)
    if sigma == 0.7:  # a local window is a different denoiser at moderate noise (the comparison can fail)
        assert (PatchDenoiser(train, 3)(x, sigma) - expected).abs().max() > 1e-3


@pytest.mark.parametrize("sigma", [1e-5, 1e-3, 1e4, 1e7])
def test_patch_limits_without_nan(sigma):
    train = _images(6, (1, 6, 6))
    den = PatchDenoiser(train, 3, budget=100)
    far = 40 * torch.randn(4, 1, 6, 6, dtype=torch.float64)
    out = den(far, sigma)
    assert torch.isfinite(out).all()
    assert out.min() >= -1 - 1e-6 and out.max() <= 1 + 1e-6  # a weighted mean of training pixels
    if sigma >= 1e4:  # every candidate weighs the same: interior pixels get the mean of interior centres
        inner = out[:, :, 1:-1, 1:-1]
        torch.testing.assert_close(inner, torch.full_like(inner, float(train[:, :, 1:-1, 1:-1].mean())),
                                   rtol=0, atol=1e-3)
    else:  # the centre of the nearest candidate window (here: the interior ones)
        nearest = torch.stack([
            min(((far[b, :, i - 1:i + 2, j - 1:j + 2] - y[:, p - 1:p + 2, q - 1:q + 2]).pow(2).sum().item(), y[:, p, q])
                for y in train for p in range(1, 5) for q in range(1, 5))[1]
            for b in range(4) for i, j in ((2, 3), (4, 1))])
        got = torch.stack([out[b, :, i, j] for b in range(4) for i, j in ((2, 3), (4, 1))])
        torch.testing.assert_close(got, nearest, rtol=0, atol=1e-9)


def test_patch_size_can_depend_on_sigma():
    train = _images(5, (1, 6, 6))
    x = _noisy(train, 0.5, n=3)
    schedule = PatchDenoiser(train, lambda s: 5 if s > 1 else 3)
    torch.testing.assert_close(schedule(x, 2.0), PatchDenoiser(train, 5)(x, 2.0))
    torch.testing.assert_close(schedule(x, 0.5), PatchDenoiser(train, 3)(x, 0.5))
    assert schedule.side(2.0) == 5
    with pytest.raises(ValueError):
        schedule(x, torch.tensor([0.5, 2.0, 2.0], dtype=torch.float64))


def test_patch_float32_in_float32_out():
    train = _images(5, (1, 6, 6)).float()
    out = PatchDenoiser(train, 3)(_noisy(train.double(), 0.5, n=2).float(), torch.tensor(0.5))
    assert out.dtype == torch.float32 and out.shape == (2, 1, 6, 6)


# --- notebook 08's helpers ------------------------------------------------------------------------------------

def test_build_names():
    train = _images(4, (1, 4, 4))
    assert closed_form.names([3, 5]) == ["D*", "Gaussian", "patch 3", "patch 5"]
    assert isinstance(closed_form.build("D*", train), OptimalDenoiser)
    assert isinstance(closed_form.build("Gaussian", train), GaussianDenoiser)
    assert closed_form.build("patch 5", train).size == 5
    with pytest.raises(ValueError):
        closed_form.build("wiener", train)


def test_r2():
    t = _images(10, (1, 3, 3))
    assert closed_form.r2(t, t) == pytest.approx(1.0)
    assert closed_form.r2(t.mean(0, keepdim=True).expand_as(t), t) == pytest.approx(0.0, abs=1e-12)
    assert closed_form.r2(-t, t) < 0


def test_switch_point():
    def table(gen, opt):
        return pd.DataFrame({"generalization": gen, "D*": opt}, index=[16, 32, 64, 128])

    assert closed_form.switch_point(table([0.1, 0.2, 0.5, 0.6], [0.9, 0.8, 0.3, 0.1])) == 64
    # a later loss moves the switch past it; a win at the smallest N does not count once it is lost again
    assert closed_form.switch_point(table([0.1, 0.6, 0.2, 0.6], [0.9, 0.3, 0.3, 0.1])) == 128
    assert closed_form.switch_point(table([0.9, 0.9, 0.9, 0.9], [0.1, 0.1, 0.1, 0.1])) == 16
    assert np.isnan(closed_form.switch_point(table([0.1, 0.6, 0.6, 0.1], [0.9, 0.3, 0.3, 0.2])))


def test_ratio_to_chance_floors_chance():
    assert closed_form.ratio_to_chance(0.5, 0.0, 200) == pytest.approx(100.0)
    assert closed_form.ratio_to_chance(0.5, 0.05, 200) == pytest.approx(10.0)


def test_require_models_fails_with_the_remedy(tmp_path):
    cfg = TrainConfig(data="digits", n=16, net={"kind": "unet", "width": 4}, steps=1)
    with pytest.raises(RuntimeError, match="run notebook 02 first"):
        closed_form.require_models({(16, 4, 0): cfg}, Store(tmp_path))


def test_probe_images_split_the_permutation():
    P = {"data": "digits"}
    probe = closed_form.probe_images(P, 64, 10)
    from reprolib import data

    sub = data.load("digits").subset(74).images
    torch.testing.assert_close(probe["training"], sub[:10])
    torch.testing.assert_close(probe["held-out"], sub[64:74])
    assert len(closed_form.probe_images(P, 1797, 10)["held-out"]) == 0


def test_theory_samples_are_cached_and_deterministic(tmp_path):
    P = {"data": "digits", "shape": (1, 8, 8), "sample_steps": 4, "device": "cpu"}
    store = Store(tmp_path)
    a = closed_form.samples("Gaussian", P, 16, [5, 6, 7], store)
    assert a.shape == (3, 1, 8, 8) and a.abs().max() <= 1
    assert len(list((tmp_path / "samples").iterdir())) == 1
    b = closed_form.samples("Gaussian", P, 16, [5, 6, 7], store)  # from the store
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    c = closed_form.samples("Gaussian", P, 16, [5, 6, 7], Store(tmp_path / "other"))  # recomputed
    torch.testing.assert_close(a, c, rtol=0, atol=0)

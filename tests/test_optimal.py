"""The closed-form optimal denoiser against the textbook formula, and the paper's Theorem 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reprolib.optimal import OptimalDenoiser
from reprolib.samplers import noise, sample


def naive(x: np.ndarray, train: np.ndarray, sigma) -> np.ndarray:
    """sum_i softmax_i(-||x - y_i||^2 / (2 sigma^2)) y_i, one row at a time, with explicit differences."""
    x, y = x.reshape(len(x), -1).astype(np.float64), train.reshape(len(train), -1).astype(np.float64)
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (len(x),))
    out = np.empty_like(x)
    for r in range(len(x)):
        d2 = np.array([np.sum((x[r] - y[i]) ** 2) for i in range(len(y))])
        logits = -d2 / (2 * sig[r] ** 2)
        w = np.exp(logits - logits.max())
        out[r] = (w / w.sum()) @ y
    return out


@pytest.fixture(scope="module")
def train():
    g = torch.Generator().manual_seed(0)
    return torch.rand(10, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1


def _noisy(train, sigma, n=6, seed=1):
    """Points the ODE would visit at this sigma: training images plus sigma-sized noise."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.arange(n) % len(train)
    return train[idx] + sigma * torch.randn(n, *train.shape[1:], generator=g, dtype=torch.float64)


@pytest.mark.parametrize("chunk", [1, 3, 4096])
@pytest.mark.parametrize("sigma", [0.002, 0.05, 0.3, 1.0, 5.0, 80.0])
def test_matches_naive_softmax(train, sigma, chunk):
    x = _noisy(train, sigma)
    got = OptimalDenoiser(train, chunk=chunk)(x, sigma)
    assert got.shape == x.shape and got.dtype == torch.float64
    np.testing.assert_allclose(got.reshape(len(x), -1).numpy(), naive(x.numpy(), train.numpy(), sigma),
                               rtol=1e-9, atol=1e-9)


def test_limits(train):
    den = OptimalDenoiser(train, chunk=3)
    # huge sigma: every image weighs the same, D = the mean image
    x = _noisy(train, 80.0)
    mean = train.mean(0, keepdim=True).expand_as(x)
    torch.testing.assert_close(den(x, 1e4), mean, rtol=0, atol=1e-5)
    # tiny sigma: D = the nearest training image, even far from all of them (no overflow, no NaN)
    far = 50 * torch.randn(5, 1, 4, 4, dtype=torch.float64)
    nearest = torch.cdist(far.flatten(1), train.flatten(1)).argmin(1)
    torch.testing.assert_close(den(far, 0.002), train[nearest], rtol=0, atol=1e-12)
    assert torch.isfinite(den(far, 1e-4)).all()


def test_weights_are_nontrivial_at_the_levels_tested(train):
    """Guard against a vacuous comparison: at sigma 1 the answer is neither one image nor the mean."""
    x = _noisy(train, 1.0)
    d = OptimalDenoiser(train)(x, 1.0).flatten(1)
    assert torch.cdist(d, train.flatten(1)).min(1).values.min() > 1e-2
    assert (d - train.mean(0).flatten()).norm(dim=1).min() > 1e-2


@pytest.mark.parametrize("chunk", [1, 4096])
@pytest.mark.parametrize("sigma", [0.002, 0.05])
def test_near_tie_at_tiny_sigma_keeps_both_images(train, sigma, chunk):
    """Between y0 and y1, offset so that their logits differ by exactly 1/2: D mixes them e^0.5 : 1,
    though each logit is ~1e5 at sigma = 0.002 and the two sit in different chunks when chunk = 1."""
    y0, y1 = train[0], train[1]
    gap2 = float(((y0 - y1) ** 2).sum())
    delta = 0.5 * sigma**2 / gap2
    x = ((y0 + y1) / 2 + delta * (y0 - y1))[None]
    assert torch.cdist(x.flatten(1), train.flatten(1)).topk(3, largest=False).indices[0, :2].sort().values.tolist() == [0, 1]
    w0 = np.exp(0.5) / (1 + np.exp(0.5))
    expected = w0 * y0 + (1 - w0) * y1
    got = OptimalDenoiser(train, chunk=chunk)(x, sigma)[0]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)
    np.testing.assert_allclose(got.flatten().numpy(), naive(x.numpy(), train.numpy(), sigma)[0], atol=1e-7)


@pytest.mark.parametrize("chunk", [3, 4096])
def test_per_row_sigmas(train, chunk):
    sigmas = torch.tensor([0.002, 0.05, 0.3, 1.0, 5.0, 80.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    x = train[:6] + sigmas.view(-1, 1, 1, 1) * torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64)
    den = OptimalDenoiser(train, chunk=chunk)
    got = den(x, sigmas)
    np.testing.assert_allclose(got.flatten(1).numpy(), naive(x.numpy(), train.numpy(), sigmas.numpy()),
                               rtol=1e-9, atol=1e-9)
    for r in range(6):  # row r is the scalar-sigma answer for that row
        torch.testing.assert_close(got[r:r + 1], den(x[r:r + 1], float(sigmas[r])), rtol=1e-12, atol=1e-12)


def test_float32_in_float32_out(train):
    x = _noisy(train, 0.5).float()
    got = OptimalDenoiser(train.float(), chunk=3)(x, torch.tensor(0.5))
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.flatten(1).numpy(), naive(x.numpy(), train.numpy().astype(np.float32), 0.5),
                               rtol=1e-5, atol=1e-5)


def test_many_images_chunked_equals_unchunked():
    g = torch.Generator().manual_seed(7)
    train = torch.rand(500, 3, 4, 4, generator=g) * 2 - 1
    x = torch.randn(8, 3, 4, 4, generator=g) * 0.4
    a, b = OptimalDenoiser(train, chunk=37)(x, 0.4), OptimalDenoiser(train, chunk=10_000)(x, 0.4)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_theorem1_optimal_ode_reproduces_training_images():
    """Heun, 18 steps, sigma 80 -> 0.002 on D*: every sample lands on a training image."""
    g = torch.Generator().manual_seed(11)
    train = torch.rand(10, 1, 8, 8, generator=g) * 2 - 1
    den = OptimalDenoiser(train, chunk=3)
    seeds = list(range(40))
    out = sample(den, seeds, (1, 8, 8), sampler="heun", steps=18)
    d = torch.cdist(out.flatten(1).double(), train.flatten(1).double())
    best = d.min(1)
    assert best.values.max() < 1e-3, "every sample should be a copy of a training image"
    # ... which depends on the seed: several different training images are reached
    assert len(set(best.indices.tolist())) >= 4
    # and the start really was noise, far from any training image
    start = 80 * noise(seeds, (1, 8, 8))
    assert torch.cdist(start.flatten(1).double(), train.flatten(1).double()).min() > 100

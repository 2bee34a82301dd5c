"""Similarity backends and the paper's scores against numpy and hand-built cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from reprolib import metrics
from reprolib.metrics import (PixelSimilarity, SSCDSimilarity, chance_rp, derangement, distance_ratio, gl_score, mae,
                              memorized, nearest, paired, rp_curve, rp_score, score_matrix, threshold_for_chance,
                              unpaired)


def rand_images(n, seed, shape=(1, 8, 8)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g) * 2 - 1


def pearson(a, b):
    return np.corrcoef(a.reshape(-1).numpy().astype(np.float64), b.reshape(-1).numpy().astype(np.float64))[0, 1]


SIM = PixelSimilarity()


# ---------------------------------------------------------------- pixel similarity


def test_pixel_similarity_is_pearson():
    a, b = rand_images(20, 0, (3, 5, 5)), rand_images(20, 1, (3, 5, 5))
    b[:5] = 0.7 * a[:5] + 0.3 * b[:5]  # some strongly correlated pairs too
    got = paired(SIM, a, b).numpy()
    np.testing.assert_allclose(got, [pearson(a[i], b[i]) for i in range(20)], rtol=1e-10, atol=1e-12)
    assert got[:5].min() > 0.8
    e = SIM.embed(a)
    np.testing.assert_allclose(e.norm(dim=1).numpy(), 1.0, rtol=1e-12)
    # invariant to brightness and contrast, as a correlation should be
    np.testing.assert_allclose(paired(SIM, a, 0.5 * a - 0.2).numpy(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(paired(SIM, a, -a).numpy(), -1.0, rtol=1e-12)


def test_constant_image_does_not_crash():
    a = torch.zeros(2, 1, 4, 4)
    assert torch.isfinite(SIM.embed(a)).all()


# ---------------------------------------------------------------- RP


def test_rp_identical_sets_is_one():
    a = rand_images(50, 2)
    assert rp_score(SIM, a, a.clone()) == 1.0
    assert rp_score(SIM, a, a + 0.01 * torch.randn_like(a)) == 1.0


def test_rp_of_independent_noise_is_zero():
    a, b = rand_images(200, 3), rand_images(200, 4)
    assert rp_score(SIM, a, b) == 0.0
    assert chance_rp(SIM, a, b) == 0.0


def test_rp_counts_the_pairs_above_threshold():
    a, b = rand_images(40, 5), rand_images(40, 6)
    b[:10] = a[:10]  # exactly a quarter of the seeds reproduce
    assert rp_score(SIM, a, b) == 0.25
    # with an explicit threshold: count by hand
    s = np.array([pearson(a[i], b[i]) for i in range(40)])
    for t in (-0.2, 0.0, 0.1, 0.95):
        assert rp_score(SIM, a, b, threshold=t) == pytest.approx((s > t).mean())


def test_chance_rp_pairs_different_seeds():
    """On one set of distinct images against itself, RP is 1 and the chance level is 0:
    the chance baseline never compares a seed with itself."""
    a = rand_images(60, 7)
    assert rp_score(SIM, a, a) == 1.0
    assert chance_rp(SIM, a, a) == 0.0
    # but if every image is the same, mismatched seeds match too
    same = a[:1].expand(60, -1, -1, -1)
    assert chance_rp(SIM, same, same) == 1.0
    # unpaired equals paired against the deranged set
    pi = derangement(60, seed=3)
    torch.testing.assert_close(unpaired(SIM, a, rand_images(60, 8), seed=3), paired(SIM, a, rand_images(60, 8)[pi]))


@pytest.mark.parametrize("n", [2, 3, 10, 257])
@pytest.mark.parametrize("seed", [0, 1, 5])
def test_derangement(n, seed):
    p = derangement(n, seed)
    assert sorted(p.tolist()) == list(range(n)), "not a permutation"
    assert not bool((p == torch.arange(n)).any()), "has a fixed point"
    assert torch.equal(p, derangement(n, seed))


def test_derangement_depends_on_seed():
    assert len({tuple(derangement(50, s).tolist()) for s in range(10)}) > 1


def test_rp_curve():
    s = torch.tensor([0.1, 0.5, 0.5, 0.9, -0.3, 0.7])
    t = np.linspace(-1, 1, 41)
    curve = rp_curve(s, t)
    np.testing.assert_allclose(curve, [(s.numpy() > x).mean() for x in t])
    assert (np.diff(curve) <= 0).all()
    assert curve[0] == 1.0 and curve[-1] == 0.0
    assert rp_curve(s, [0.5])[0] == pytest.approx(2 / 6)  # strictly above


# ---------------------------------------------------------------- nearest, GL, memorisation


def test_nearest_matches_brute_force_across_chunks():
    train, samples = rand_images(23, 9), rand_images(7, 10)
    samples[2] = 0.9 * train[17] + 0.1 * samples[2]  # a clear winner in the last chunk
    samples[4] = train[0]
    brute = np.array([[pearson(s, t) for t in train] for s in samples])
    for chunk in (1, 3, 5, 4096):
        best, idx = nearest(SIM, samples, train, chunk=chunk)
        np.testing.assert_allclose(best.numpy(), brute.max(1), rtol=1e-10)
        assert idx.tolist() == brute.argmax(1).tolist()
    assert idx[2] == 17 and idx[4] == 0


def test_gl_score():
    train = rand_images(30, 11)
    assert gl_score(SIM, train[[2, 5, 7, 29]], train) == 0.0
    assert gl_score(SIM, rand_images(20, 12), train) == 1.0
    mixed = torch.cat([train[:3], rand_images(5, 13)])
    assert gl_score(SIM, mixed, train) == pytest.approx(5 / 8)


def test_memorized_copies_but_not_averages():
    train = rand_images(30, 14)
    copies = train[[0, 4, 9]]
    assert memorized(copies, train).all()
    assert memorized(copies + 0.01 * torch.randn_like(copies), train).all()
    averages = torch.stack([(train[i] + train[i + 1]) / 2 for i in range(0, 10, 2)])
    assert not memorized(averages, train).any()
    assert memorized(copies, train).dtype == torch.bool


def test_distance_ratio_on_known_points():
    train = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]]).view(3, 1, 1, 2)
    samples = torch.tensor([[0.5, 0.0], [0.2, 0.0], [0.0, 0.0], [0.0, 2.0]]).view(4, 1, 1, 2)
    # nearest / second nearest: 0.5/0.5, 0.2/0.8, 0/1, 1/2 (to (0,3) then (0,0))
    torch.testing.assert_close(distance_ratio(samples, train), torch.tensor([1.0, 0.25, 0.0, 0.5], dtype=torch.float64))
    assert memorized(samples, train).tolist() == [False, True, True, False]


def test_distance_ratio_matches_brute_force():
    train, samples = rand_images(15, 15), rand_images(6, 16)
    d = np.linalg.norm(samples.flatten(1).numpy()[:, None] - train.flatten(1).numpy()[None], axis=2)
    d.sort(1)
    np.testing.assert_allclose(distance_ratio(samples, train).numpy(), d[:, 0] / d[:, 1], rtol=1e-5)


# ---------------------------------------------------------------- MAE, matrices, thresholds


def test_mae_known_values():
    ones = torch.ones(3, 1, 2, 2)
    torch.testing.assert_close(mae(ones, -ones), torch.ones(3))
    torch.testing.assert_close(mae(ones, ones), torch.zeros(3))
    a = torch.zeros(2, 1, 2, 2)
    b = torch.tensor([0.5, -0.5, 1.0, 0.0] * 2).view(2, 1, 2, 2)  # |diff| / 2 = .25 .25 .5 0 -> mean .25
    torch.testing.assert_close(mae(a, b), torch.tensor([0.25, 0.25]))
    x, y = rand_images(5, 17), rand_images(5, 18)
    np.testing.assert_allclose(mae(x, y).numpy(), np.abs((x.numpy() + 1) / 2 - (y.numpy() + 1) / 2).reshape(5, -1).mean(1),
                               rtol=1e-6)


def test_score_matrix():
    sets = {"a": torch.zeros(2), "b": torch.ones(2), "c": 2 * torch.ones(2)}
    m = score_matrix(lambda p, q: float((p - q).sum()), sets)
    np.testing.assert_allclose(m, [[0, -2, -4], [2, 0, -2], [4, 2, 0]])


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5])
def test_threshold_for_chance(rate):
    from reprolib.data import load

    images = load("digits").images[:400]
    t = threshold_for_chance(SIM, images, rate, pairs=4000, seed=0)
    # fresh random pairs of distinct images (another generator) exceed t about `rate` of the time
    rng = np.random.default_rng(123)
    i = rng.integers(0, 400, 3000)
    j = (i + rng.integers(1, 400, 3000)) % 400
    flat = images.flatten(1).numpy().astype(np.float64)
    a, b = flat[i] - flat[i].mean(1, keepdims=True), flat[j] - flat[j].mean(1, keepdims=True)
    corr = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert (corr > t).mean() == pytest.approx(rate, abs=0.03)
    assert threshold_for_chance(SIM, images, rate, pairs=4000, seed=0) == t


def test_backend_names():
    assert isinstance(metrics.backend("pixel"), PixelSimilarity)
    with pytest.raises(ValueError, match="pixel"):
        metrics.backend("lpips")


# ---------------------------------------------------------------- SSCD
# SSCD ships as TorchScript, so torch.jit.load is the only way in; torch 2.14 flags it as deprecated.
JIT_DEPRECATED = pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:FutureWarning")


class _FakeSSCD(nn.Module):
    """Checks its input is (B, 3, 320, 320) and returns its per-channel means next to a constant 1,
    so that the (normalised) descriptor still tells what the model was fed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != 320 or x.shape[3] != 320:
            raise RuntimeError("SSCD expects (B, 3, 320, 320)")
        means = x.mean(dim=(2, 3))
        ones = torch.ones(x.shape[0], 1, dtype=x.dtype)
        return torch.cat([means, ones, torch.zeros(x.shape[0], 4, dtype=x.dtype)], dim=1)


@pytest.fixture(scope="module")
def sscd_file(tmp_path_factory):
    import warnings

    path = tmp_path_factory.mktemp("sscd") / "fake_sscd.torchscript.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(_FakeSSCD()).save(str(path))
    return path


MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def _fed(emb):
    """Recover the channel means fed to the fake model from its unit-norm descriptor."""
    e = emb.numpy()
    return e[:, :3] / e[:, 3:4]


@JIT_DEPRECATED
def test_sscd_preprocessing(sscd_file):
    sim = SSCDSimilarity(sscd_file, batch_size=2)
    assert sim.default_threshold == 0.6
    # constant RGB images: after resizing, each channel is ((v + 1) / 2 - mean) / std
    vals = torch.tensor([[-1.0, 0.0, 1.0], [0.5, -0.5, 0.2], [1.0, 1.0, -1.0]])
    rgb = vals.view(3, 3, 1, 1).expand(3, 3, 32, 32).contiguous()
    emb = sim.embed(rgb)
    assert emb.shape == (3, 8)
    np.testing.assert_allclose(emb.norm(dim=1).numpy(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(_fed(emb), ((vals.numpy() + 1) / 2 - MEAN) / STD, rtol=1e-4, atol=1e-5)
    # grey 8x8 images become three equal channels, each normalised with its own mean and std
    grey = torch.tensor([-0.6, 0.4]).view(2, 1, 1, 1).expand(2, 1, 8, 8).contiguous()
    v = np.array([[-0.6] * 3, [0.4] * 3])
    np.testing.assert_allclose(_fed(sim.embed(grey)), ((v + 1) / 2 - MEAN) / STD, rtol=1e-4, atol=1e-5)
    # out-of-range pixels are clipped to [0, 1] first
    np.testing.assert_allclose(_fed(sim.embed(torch.full((1, 3, 4, 4), 3.0))), ((1.0 - MEAN) / STD)[None], rtol=1e-4)


@JIT_DEPRECATED
def test_sscd_similarity_is_cosine_of_descriptors(sscd_file):
    sim = SSCDSimilarity(sscd_file, batch_size=3)
    a, b = rand_images(5, 20, (3, 8, 8)), rand_images(5, 21, (3, 8, 8))
    ea, eb = sim.embed(a), sim.embed(b)
    torch.testing.assert_close(paired(sim, a, b), (ea * eb).sum(1))
    assert rp_score(sim, a, a) == 1.0


@JIT_DEPRECATED
def test_sscd_from_environment(sscd_file, monkeypatch):
    monkeypatch.setenv("REPRO_SSCD", str(sscd_file))
    sim = metrics.backend("sscd")
    assert isinstance(sim, SSCDSimilarity) and sim.embed(rand_images(2, 0, (3, 8, 8))).shape == (2, 8)


def test_sscd_missing_file(tmp_path, monkeypatch):
    monkeypatch.delenv("REPRO_SSCD", raising=False)
    with pytest.raises(FileNotFoundError, match="REPRO_SSCD") as err:
        SSCDSimilarity(tmp_path / "nope.pt")
    assert "nope.pt" in str(err.value)
    with pytest.raises(FileNotFoundError, match="REPRO_SSCD"):
        SSCDSimilarity()
    monkeypatch.setenv("REPRO_SSCD", str(tmp_path / "also_missing.pt"))
    with pytest.raises(FileNotFoundError, match="also_missing"):
        metrics.backend("sscd")

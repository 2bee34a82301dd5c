"""The regime analysis (tables, bounds, claims) and the noise-hyperplane helpers, on constructed inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from reprolib import banks, data, hyperplane, metrics, regimes, samplers
from reprolib.claims import Claims
from reprolib.train import TrainConfig


def test_loss_drift_is_zero_on_a_plateau_and_negative_while_falling():
    assert regimes.loss_drift([5.0] * 20 + [1.0] * 20) == pytest.approx(0.0)
    assert regimes.loss_drift(np.linspace(2, 1, 40)) < -0.05
    assert np.isnan(regimes.loss_drift([1.0]))


def test_training_curves_read_every_snapshot_then_the_final_samples(monkeypatch):
    train = data.load("digits").subset(16).images
    blends = (train[:8] + train[8:16]) / 2  # halfway between two training images: no copy
    final = train[[1, 0, 2, 3, 4, 5, 6, 7]]  # copies, two of them swapped against D*'s
    monkeypatch.setattr(banks, "snapshot_samples", lambda cfg, step, store, seeds, P: blends)
    monkeypatch.setattr(banks, "samples", lambda cfg, store, seeds, P: final)
    cfg = TrainConfig(n=16, net={"kind": "mlp", "width": 16, "depth": 1}, steps=30, snapshot_every=10)
    models = {(16, 4, 0): cfg, (16, 8, 0): cfg.replace(snapshot_every=None)}
    curves = regimes.training_curves(models, None, range(8), dict(data="digits"), theory={16: train[:8]})
    snapshots = curves[curves.width == 4]
    assert list(snapshots.step) == [10, 20, 30]
    assert list(snapshots.memorized) == [0.0, 0.0, 1.0]
    assert list(snapshots.same_copy) == [0.0, 0.0, 0.75]
    assert list(curves[curves.width == 8].step) == [30]
    change = regimes.last_change(curves)
    assert change[(16, 4, 0)] == 1.0 and np.isnan(change[(16, 8, 0)])
    assert "same_copy" not in regimes.training_curves(models, None, range(8), dict(data="digits")).columns


def _models(mem_by_n):
    return pd.DataFrame([dict(n=n, width=w, seed=0, memorized=m, gl=1 - m) for n, ms in mem_by_n.items()
                         for w, m in zip((4, 8), ms)])


def test_regime_bounds_read_from_the_memorized_fractions():
    models = _models({16: (1.0, 0.95), 64: (0.92, 0.9), 256: (0.5, 0.2), 1024: (0.05, 0.1), 1797: (0.0, 0.0)})
    assert regimes.regime_bounds(models) == (64, 1024)
    assert regimes.regime_bounds(_models({16: (0.5, 0.5), 64: (0.4, 0.6)})) == (None, None)


def _summary(rp_by_n):
    return pd.DataFrame([dict(pair="4 vs 8", n=n, rp=r, rp_err=0.0, chance=0.01) for n, r in rp_by_n.items()])


def _checked(models, summary):
    record = Claims("02", "cpu", judged=True, expected_file="/nonexistent")
    regimes.claims(models, summary, record)
    return {c.id.removeprefix("02."): c for c in record.items}


def test_claims_record_the_extreme_values_and_their_verdicts():
    models = _models({16: (1.0, 0.88), 256: (0.5, 0.4), 1797: (0.0, 0.02)})
    summary = pd.concat([_summary({16: 0.9, 256: 0.5, 1797: 0.8}),
                         _summary({16: 0.7, 256: 0.4, 1797: 0.5}).assign(pair="4 vs 16")])
    c = _checked(models, summary)
    assert list(c) == ["rp_smallest_n", "rp_largest_n", "dip", "gl_smallest_n", "gl_largest_n",
                       "memorized_smallest_n"]
    assert c["rp_smallest_n"].value == 0.7 and c["rp_smallest_n"].holds  # the lower pair
    assert c["rp_largest_n"].value == 0.5 and not c["rp_largest_n"].holds
    assert c["dip"].value == pytest.approx(0.65 - 0.45) and c["dip"].holds  # lower end (N = 1797) minus N = 256
    assert c["gl_smallest_n"].value == pytest.approx(0.06) and c["gl_smallest_n"].holds
    assert c["gl_largest_n"].value == pytest.approx(0.99) and c["gl_largest_n"].holds
    assert c["memorized_smallest_n"].value == 0.88 and not c["memorized_smallest_n"].holds  # width 8


def test_claims_find_no_dip_in_a_flat_curve_or_without_middle_sizes():
    models = _models({16: (1.0, 0.98), 256: (0.5, 0.4), 1797: (0.0, 0.02)})
    flat = _checked(models, _summary({16: 0.9, 256: 0.85, 1797: 0.8}))["dip"]
    assert flat.value == pytest.approx(-0.05) and not flat.holds
    ends_only = _checked(models[models.n != 256], _summary({16: 0.9, 1797: 0.8}))["dip"]
    assert np.isnan(ends_only.value) and not ends_only.holds


def test_pair_table_pairs_widths_or_a_reference():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 1, 8, 8, generator=g)
    samples = {(16, 4, 0): a, (16, 8, 0): a.clone(), (16, 16, 0): torch.randn(50, 1, 8, 8, generator=g)}
    sim = metrics.PixelSimilarity()
    t = regimes.pair_table(samples, sim).set_index("pair")
    assert list(t.index) == ["4 vs 8", "4 vs 16", "8 vs 16"]
    assert t.loc["4 vs 8", "rp"] == 1.0 and t.loc["4 vs 16", "rp"] == 0.0
    ref = regimes.pair_table(samples, sim, reference={16: a}).set_index("pair")
    assert ref.loc["4 vs optimal", "rp"] == 1.0 and ref.loc["16 vs optimal", "rp"] == 0.0


def test_same_copy_needs_a_copy_of_the_same_training_image():
    train = torch.randn(10, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    theory = train[[0, 1, 2, 3]]
    assert regimes.same_copy(train[[0, 1, 2, 3]], theory, train) == 1.0
    assert regimes.same_copy(train[[0, 1, 5, 6]], theory, train) == 0.5  # copies, of other images
    blends = (train[[0, 1, 2, 3]] + train[[4, 5, 6, 7]]) / 2  # between two images: no copy
    assert regimes.same_copy(blends, theory, train) == 0.0


def test_handoff_switches_denoisers_at_the_cut_and_locates_where_a_model_departs():
    from reprolib.optimal import OptimalDenoiser

    torch.manual_seed(0)
    train = torch.rand(6, 1, 4, 4) * 2 - 1
    optimal = OptimalDenoiser(train)
    other = OptimalDenoiser(torch.flip(train, dims=[-1]))  # the mirrored set: every copy is of a foreign image
    x, sigma = torch.randn(3, 1, 4, 4), torch.tensor(0.5)
    assert torch.equal(regimes.Handoff(optimal, other, 1.0)(x, sigma), other(x, sigma).float())
    assert torch.equal(regimes.Handoff(optimal, other, 0.1)(x, sigma), optimal(x, sigma).float())
    assert regimes.Handoff(optimal, other, 1.0)(x, sigma).dtype == x.dtype

    P = dict(shape=(1, 4, 4), sample_steps=8, device="cpu")
    seeds = range(40)
    theory = samplers.sample(optimal, seeds, P["shape"], "heun", 8)
    t = regimes.handoff_table(other, optimal, theory, train, seeds, [1e-3, 1e3], P).set_index(["cut", "order"])
    # D* everywhere (model below 1e-3 never called; model above 1e3 never called) reproduces the theory
    assert t.loc[(1e-3, "D* above"), "same_copy"] == 1.0 and t.loc[(1e3, "model above"), "same_copy"] == 1.0
    # the mirrored model alone copies none of the theory's images
    assert t.loc[(1e3, "D* above"), "same_copy"] == 0.0 and t.loc[(1e-3, "model above"), "same_copy"] == 0.0


def test_plane_points_have_gaussian_norm_and_pass_through_the_corner_noises():
    shape, seeds = (1, 8, 8), [7, 8, 9]
    z = hyperplane.points(seeds, shape, torch.tensor(hyperplane.CORNERS))
    raw = samplers.noise(seeds, shape)
    for k in range(3):  # the corners are the seeds' own noises, rescaled
        cos = torch.nn.functional.cosine_similarity(z[k].flatten(), raw[k].flatten(), dim=0)
        assert cos == pytest.approx(1.0, abs=1e-6)
    grid = hyperplane.plane(seeds, shape, 5)
    assert grid.shape == (25, *shape)
    assert torch.allclose(grid.reshape(25, -1).norm(dim=1), torch.full((25,), 8.0), atol=1e-4)


def test_nearest_corner_labels_each_corner_with_itself_and_agreement_counts_chance():
    def gaussian(x, sigma):  # exact denoiser of N(0, I): its samples are the noises, scaled
        return x / (1 + sigma**2)

    P = dict(sample_steps=8, device="cpu")
    corners = hyperplane.points([1, 2, 3], (1, 8, 8), torch.tensor(hyperplane.CORNERS))
    labels = hyperplane.nearest_corner(*hyperplane.generate(gaussian, corners, [1, 2, 3], P), metrics.PixelSimilarity())
    assert list(labels) == [0, 1, 2]
    mixed = hyperplane.points([1, 2, 3], (1, 8, 8), torch.tensor([[0.9, 0.05], [0.05, 0.9]]))
    assert list(hyperplane.nearest_corner(*hyperplane.generate(gaussian, mixed, [1, 2, 3], P),
                                         metrics.PixelSimilarity())) == [1, 2]
    table = hyperplane.agreement_table({"a": np.array([0, 0, 1, 2]), "b": np.array([0, 1, 1, 2])})
    agree, chance = table[("a", "b")]
    assert agree == 0.75 and chance == pytest.approx(0.5 * 0.25 + 0.25 * 0.5 + 0.25 * 0.25)


def test_reached_labels_each_image_by_its_nearest_training_image_and_chance_counts_every_label():
    train = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    x = train[[4, 0, 0, 3]] + 0.01
    assert list(hyperplane.reached(x, train)) == [4, 0, 0, 3]
    table = hyperplane.agreement_table({"a": np.array([4, 0, 0, 3]), "b": np.array([4, 0, 1, 1])})
    agree, chance = table[("a", "b")]
    assert agree == 0.5 and chance == pytest.approx(0.5 * 0.25 + 0.25 * 0.25)  # labels 0 and 4 shared


def test_pick_corners_skips_seeds_whose_images_coincide():
    P, shape, sim = dict(sample_steps=6, device="cpu"), (1, 8, 8), metrics.PixelSimilarity()

    def gaussian(x, sigma):
        return x / (1 + sigma**2)

    assert hyperplane.pick_corners({"g": gaussian}, [5, 6, 7, 8], shape, P, sim) == [5, 6, 7]
    images = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    from reprolib.optimal import OptimalDenoiser

    with pytest.raises(ValueError, match="pairwise different"):  # two training images: never three corners
        hyperplane.pick_corners({"opt": OptimalDenoiser(images)}, [5, 6, 7, 8], shape, P, sim)


def test_pick_corners_takes_only_seeds_that_every_model_maps_to_one_image():
    """Two optimal denoisers, one missing a training image: seeds that reach it with the first land elsewhere
    with the second, and must not become corners."""
    from reprolib.optimal import OptimalDenoiser

    P, shape, sim = dict(sample_steps=10, device="cpu"), (1, 8, 8), metrics.PixelSimilarity()
    images = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    models = {"all": OptimalDenoiser(images), "five": OptimalDenoiser(images[:5])}
    candidates = list(range(40))
    corners = hyperplane.pick_corners(models, candidates, shape, P, sim)
    x = {name: samplers.sample(d, candidates, shape, "heun", 10) for name, d in models.items()}
    shared = metrics.paired(sim, x["all"], x["five"]) > sim.default_threshold
    differ = [s for s in candidates if not shared[s]]
    assert differ and differ[0] < corners[-1], "the test needs a disagreeing seed before the last corner"
    assert not set(differ) & set(corners)
    # models that share no image: a warning, and corners that are at least distinct for each model
    pick = {"all": models["all"], "noise": lambda z, sigma: z / (1 + sigma**2)}
    with pytest.warns(UserWarning, match="every model shares"):
        corners = hyperplane.pick_corners(pick, candidates, shape, P, sim)
    for x in (samplers.sample(d, corners, shape, "heun", 10) for d in pick.values()):
        e = sim.embed(x)
        assert ((e @ e.T) <= sim.default_threshold).sum() == 6  # only the diagonal is similar


def test_the_intervals_resample_the_very_quantity_each_claim_reports(monkeypatch):
    """On all the seeds (no resampling) each interval's statistic gives its claim's value: the per-seed rows
    (``regimes.per_seed``) are the ones the tables average."""
    from reprolib import profiles

    P = profiles.settings("02", "smoke")
    sim, digits, g = metrics.PixelSimilarity(), data.load("digits"), torch.Generator().manual_seed(0)
    samples = {}
    for n in (16, 64, 256):
        train = digits.subset(n).images
        for w, copied in ((4, 30 if n == 16 else 10), (8, 25 if n < 256 else 2)):
            x = torch.randn((40, *train.shape[1:]), generator=g).clamp(-1, 1)
            x[:copied] = train[torch.arange(copied) % n]  # copies of training images; the rest noise
            samples[(n, w, 0)] = x
    table, summary = regimes.model_table(samples, P, sim), regimes.summarise(regimes.pair_table(samples, sim))
    at_all = {}

    def full_seeds(statistic, n, **_):
        at_all[len(at_all)] = statistic(np.arange(n))
        return 0.0, 1.0

    monkeypatch.setattr(regimes.claims_lib, "bootstrap", full_seeds)
    record = Claims("02", "cpu", judged=True, expected_file="/nonexistent")
    regimes.claims(table, summary, record, regimes.per_seed(samples, P, sim))
    assert len(at_all) == len(record.items) == 6
    for k, c in enumerate(record.items):
        assert at_all[k] == pytest.approx(c.value), c.id
        assert (c.low, c.high) == (0.0, 1.0)

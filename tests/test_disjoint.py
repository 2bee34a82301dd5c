"""The disjoint-data pairs of notebook 02 (replications/02_disjoint_data.md): set B shares no image with set A at
any N, is nested in N, and is the same draw on every run."""

import numpy as np
import pandas as pd
import pytest
import torch

from reprolib import claims, data, disjoint, loop, metrics, profiles, zoo


def _rows(images: torch.Tensor) -> set:
    return {tuple(x.flatten().tolist()) for x in images}


@pytest.fixture(scope="module")
def pairs():
    P = profiles.settings("02", "cpu")
    return P, zoo.disjoint(P)


def test_b_is_disjoint_from_a_and_both_are_nested(pairs):
    P, cfgs = pairs
    w = P["disjoint_widths"][0]
    sets = {(n, s): loop.training_set(cfgs[(n, w, s)]) for n in P["disjoint_sizes"] for s in "AB"}
    sizes = sorted(P["disjoint_sizes"])
    for n in sizes:
        a, b = _rows(sets[(n, "A")].images), _rows(sets[(n, "B")].images)
        assert len(a) == len(b) == n  # the 8x8 digits hold no duplicate image among these draws
        assert not a & b
        assert not b & _rows(sets[(max(sizes), "A")].images)  # outside A's largest set, so outside every A
    for small, large in zip(sizes, sizes[1:]):
        for s in "AB":
            assert torch.equal(sets[(large, s)].images[:small], sets[(small, s)].images)


def test_the_draw_is_the_same_on_every_run():
    full = data.load("digits")
    assert torch.equal(full.outside(896, 0).subset(64).images, full.outside(896, 0).subset(64).images)
    assert not torch.equal(full.outside(896, 0).images, full.outside(896, 1).images)


def test_a_is_the_sweeps_own_model_and_b_differs_only_in_data_and_seed(pairs):
    P, cfgs = pairs
    sweep = zoo.regimes(P)
    for (n, w, s), cfg in cfgs.items():
        if s == "A" and n in P["sizes"]:
            assert cfg.key_dict() == sweep[(n, w, 0)].key_dict()  # trained once, for the sweep and the pair
        if s == "B":
            a = cfgs[(n, w, "A")]
            assert cfg.replace(exclude=None, seed=a.seed) == a and cfg.seed != a.seed
    plan = zoo.plan("02", P, None)
    assert {c.key_dict()["seed"] for c in plan if c.exclude} == {1}
    assert len({repr(c.key_dict()) for c in plan}) == len(plan) == len(sweep) + 8  # 7 B models and A(896)
    wider = profiles.settings("02", "cpu", disjoint_widths=[8, 32])  # a width outside the sweep trains A too
    assert len(zoo.plan("02", wider, None)) == len(sweep) + 8 + 14


def test_outside_rejects_what_leaves_nothing():
    full = data.load("digits")
    with pytest.raises(ValueError, match="leave out 1..1796"):
        full.outside(len(full))


def test_two_disjoint_sets_must_fit_the_data():
    with pytest.raises(ValueError, match="at most 898"):
        profiles.settings("02", "cpu", disjoint_sizes=[16, 900])
    with pytest.raises(ValueError, match="training length for every N of disjoint_sizes"):
        profiles.settings("02", "cpu", disjoint_sizes=[16, 700])


def test_first_reaching_interpolates_in_log_n():
    curve = pd.Series({16: 0.0, 64: 1.0, 256: 1.0})
    assert disjoint.first_reaching(curve, 0.5) == pytest.approx(32.0)
    assert disjoint.first_reaching(curve, 0.0) == 16.0
    assert np.isnan(disjoint.first_reaching(curve, 1.5))
    assert disjoint.half_way(pd.Series({16: 0.2, 32: 0.2, 64: 0.8})) == pytest.approx(32 * 2 ** 0.5)
    assert disjoint.doublings(32.0, 128.0) == pytest.approx(2.0)


def test_pair_table_tells_one_copying_model_from_two(pairs):
    P, cfgs = pairs
    n, w = 16, P["disjoint_widths"][0]
    own_a = loop.training_set(cfgs[(n, w, "A")]).images[:8]
    own_b = loop.training_set(cfgs[(n, w, "B")]).images[:8]
    elsewhere = loop.training_set(cfgs[(512, w, "B")]).images[-8:]  # images of neither 16-image set
    sim = metrics.backend("pixel", pixel_threshold=0.9)
    one = disjoint.pair_table({(n, w, "A"): own_a, (n, w, "B"): elsewhere}, cfgs, sim).iloc[0]
    both = disjoint.pair_table({(n, w, "A"): own_a, (n, w, "B"): own_b}, cfgs, sim).iloc[0]
    same = disjoint.pair_table({(n, w, "A"): own_a, (n, w, "B"): own_a.clone()}, cfgs, sim).iloc[0]
    assert (one["one copies"], one["both copy"]) == (1.0, 0.0)
    assert (both["both copy"], both["one copies"], both["neither copies"]) == (1.0, 0.0, 0.0)
    assert same["rp"] == 1.0 and same["one copies"] == 1.0  # B's samples are A's images: B copies nothing of its own
    assert both["rp"] < 1.0


def _record():
    return claims.Claims("02", "cpu", judged=True, expected_file=None)


def test_the_disjoint_claims_read_their_ends_and_the_crossing():
    rng = np.random.default_rng(0)
    ns, seeds = [16, 64, 256, 896], 400
    rates = {16: 0.02, 64: 0.3, 256: 0.8, 896: 0.85}
    agreed = {(n, 8): rng.random(seeds) < rates[n] for n in ns}
    table = pd.DataFrame([{"n": n, "width": 8, "rp": agreed[(n, 8)].mean(), "chance": 0.01, "both copy": 0.5,
                           "one copies": 0.3, "neither copies": 0.2} for n in ns])
    same = {1024: {"4 vs 8": rng.random((1, seeds)) < 0.9, "8 vs 16": rng.random((1, seeds)) < 0.88}}
    gl = {8: {n: rng.random((1, seeds)) < p for n, p in {16: 1.0, 64: 0.6, 256: 0.1, 1024: 0.0}.items()}}
    record = _record()
    disjoint.claims(table, agreed, same, gl, record)
    got = {c.id: c for c in record.items}
    small, large, tracks = got["02.disjoint_small_n"], got["02.disjoint_large_n"], got["02.disjoint_tracks_gl"]
    assert small.value == pytest.approx(agreed[(16, 8)].mean()) and small.threshold == pytest.approx(0.08)
    assert small.holds
    lowest = min(h.mean() for h in same[1024].values())
    assert large.threshold == pytest.approx(lowest - 0.1) and large.holds
    assert large.low <= large.value <= large.high
    # RP's half-way (0.435) falls between 64 and 256; GL's 0.5 (copies 0.5) between 64 and 256 too
    assert 0 <= tracks.value < 1 and tracks.holds


def test_optimal_pairs_above_chance_fail_their_claim():
    theory_rp = pd.DataFrame([{"theory": "D*", "n": 16, "rp": 0.0, "chance": 0.0},
                              {"theory": "D*", "n": 896, "rp": 0.3, "chance": 0.01},
                              {"theory": "Gaussian", "n": 16, "rp": 0.1, "chance": 0.0},
                              {"theory": "Gaussian", "n": 896, "rp": 0.7, "chance": 0.0}])
    gauss = np.r_[np.ones(70, bool), np.zeros(30, bool)]
    record = _record()
    disjoint.theory_claims(theory_rp, gauss, {8: np.r_[np.ones(80, bool), np.zeros(20, bool)]}, record)
    got = {c.id: c for c in record.items}
    assert not got["02.optimal_disjoint_chance"].holds and got["02.optimal_disjoint_chance"].value == 0.3
    assert got["02.gaussian_predicts_disjoint"].value == pytest.approx(0.1)
    assert got["02.gaussian_predicts_disjoint"].holds


def test_a_sweep_given_without_pairs_takes_them_from_itself():
    P = profiles.settings("02", "cpu", sizes=[16, 512, 1024], steps={16: 5, 512: 5, 1024: 5}, widths=[4, 16])
    assert P.disjoint_sizes == [16, 512] and P.disjoint_widths == [4]  # two sets of 1,024 do not fit 1,797 digits
    kept = profiles.settings("02", "cpu", widths=[8, 16])
    assert kept.disjoint_widths == [8] and kept.disjoint_sizes == profiles.SETTINGS["02"]["cpu"]["disjoint_sizes"]
    given = profiles.settings("02", "cpu", sizes=[16, 32], steps={16: 5, 32: 5}, disjoint_sizes=[32])
    assert given.disjoint_sizes == [32]

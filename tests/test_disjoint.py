"""The disjoint-data pairs of notebook 02 (replications/02_disjoint_data.md): set B shares no image with set A at
any N, is nested in N, and is the same draw on every run."""

import pytest
import torch

from reprolib import data, loop, profiles, zoo


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

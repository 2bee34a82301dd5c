"""Notebook 04's class-split RP and notebook 05's same-noise comparisons, on constructed inputs."""

from __future__ import annotations

import math

import pytest
import torch

from reprolib import banks, conditional, inverse, metrics, profiles, zoo
from reprolib.store import Store
from reprolib.train import TrainConfig

SIM = metrics.PixelSimilarity()


def _random(n, seed):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_cycle_labels_give_every_class_the_same_number_of_seeds():
    labels = conditional.cycle_labels(100)
    assert torch.equal(torch.bincount(labels), torch.full((10,), 10))
    assert labels[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_within_group_derangement_stays_in_the_group_and_moves_every_seed():
    groups = torch.tensor([0, 1, 0, 1, 1, 2, 0, 2, 3])
    pi = conditional.within_group_derangement(groups, seed=3)
    assert torch.equal(groups[pi], groups)
    assert sorted(pi.tolist()) == list(range(len(groups)))
    alone = groups == 3  # a group of one cannot move
    assert torch.all(pi[~alone] != torch.arange(len(groups))[~alone])


def test_rp_by_class_separates_a_reproducing_class_from_a_random_one():
    labels = torch.tensor([0, 1] * 20)
    a = _random(40, 0)
    b = torch.where((labels == 0).view(-1, 1, 1, 1), a, _random(40, 1))  # class 0 identical, class 1 not
    out = conditional.rp_by_class(SIM, a, b, labels, 0.9)
    assert out[0][0] == 1.0 and out[0][2] == 20
    assert out[1][0] == 0.0
    assert out[0][1] < 0.2  # mismatched random images of class 0 do not correlate


def test_within_class_chance_sees_what_the_pooled_chance_misses():
    """Two models that draw one fixed image per class, independent of the noise: RP is 1, and so is the
    within-class chance, while the pooled chance is only the share of same-class mismatches."""
    labels = conditional.cycle_labels(50, classes=5)
    protos = _random(5, 2)
    a = protos[labels]
    rp, within = conditional.rp_and_chance(SIM, a, a.clone(), 0.9, groups=labels)
    _, pooled = conditional.rp_and_chance(SIM, a, a.clone(), 0.9)
    assert rp == 1.0 and within == 1.0 and pooled < 0.5


def test_rp_split_by_match():
    labels = conditional.cycle_labels(30)
    uncond = _random(30, 4)
    judged = labels.clone()
    judged[10:] = (labels[10:] + 1) % 10  # seeds 0..9 match, the rest do not
    cond = torch.cat([uncond[:10], _random(20, 5)])  # agree exactly where the classes match
    out = conditional.rp_split_by_match(SIM, cond, uncond, labels, judged, 0.9)
    assert out["match"][0] == 1.0 and out["match"][2] == 10
    assert out["mismatch"][0] == 0.0 and out["mismatch"][2] == 20
    none = conditional.rp_split_by_match(SIM, cond, uncond, labels, labels, 0.9)
    assert none["mismatch"][2] == 0 and math.isnan(none["mismatch"][0]) and none["match"][2] == 30


def test_class_fidelity():
    assert conditional.class_fidelity(torch.tensor([1, 2, 3, 0]), torch.tensor([1, 2, 0, 0])) == 0.75


def test_judge_refuses_data_it_has_no_classifier_for():
    with pytest.raises(NotImplementedError, match="fashion"):
        conditional.judge("fashion")


def test_same_noise_rp_and_its_other_noise_baseline():
    a1, a2 = _random(20, 6), _random(20, 7)
    same, other = inverse.rp_same_and_other_noise(SIM, (a1, a2), (a1 + 0.01, a2 - 0.01), 0.9)
    assert same == 1.0 and other == 0.0
    # a measurement that fixes the answer whatever the noise: the baseline is as high as RP
    same, other = inverse.rp_same_and_other_noise(SIM, (a1, a1), (a1, a1), 0.9)
    assert same == other == 1.0


def test_residual_of_the_truth_is_the_measurement_noise():
    A = inverse.Downsample(2)
    x = _random(5, 8)
    y = inverse.measure(A, x, 0.1, seed=3)
    noise = y - A(x)
    torch.testing.assert_close(inverse.residual(A, x, y), noise.flatten(1).norm(dim=1))
    assert float(inverse.residual(A, x, A(x)).max()) == 0.0


def test_cached_reconstruct_computes_once(tmp_path, monkeypatch):
    store = Store(tmp_path)
    truth = _random(3, 9).clamp(-1, 1)
    args = (store, {"m": 1}, lambda x, s: x / (1 + s**2), {"t": 1}, truth, "inpaint", 0.05, [1, 2, 3], 4, 0.5,
            "dpmpp_2m")
    first = inverse.cached_reconstruct(*args)
    assert first.shape == truth.shape
    monkeypatch.setattr(inverse, "reconstruct", lambda *a, **k: pytest.fail("recomputed a cached result"))
    torch.testing.assert_close(inverse.cached_reconstruct(*args), first)


def test_section4_is_section1s_unet_and_mlp_with_labels():
    P = profiles.settings("04", "cpu")
    base = {v.name: v.cfg for v in zoo.section1(P)}
    un = zoo.unconditional(P)
    assert [v.cfg for v in un] == [base["U-Net EDM (Heun)"], base["MLP EDM (Heun)"]]
    for v, u in zip(zoo.section4(P), un):
        assert v.cfg.conditional and not u.cfg.conditional
        # the same model with labels; only notebook 01's pair keeps notebook 07's EMA snapshots
        assert v.cfg.snapshot_every is None and u.cfg.snapshot_every is not None
        assert v.cfg.replace(conditional=False, snapshot_every=u.cfg.snapshot_every) == u.cfg
    # notebook 05 uses the same backbones, and both reuse notebook 01's stored models
    assert [v.cfg for v in zoo.unconditional(profiles.settings("05", "cpu"))] == [v.cfg for v in un]


def test_guided_samples_are_cached_per_guidance_scale(tmp_path):
    store = Store(tmp_path)
    cfg = TrainConfig(net={"kind": "mlp", "width": 16, "depth": 1}, steps=3, batch=8, conditional=True)
    v = zoo.Variant("tiny", cfg)
    P = dict(sample_steps=3, shape=(1, 8, 8), device="cpu")
    labels = conditional.cycle_labels(4)
    x0 = banks.guided_samples(v, store, range(4), labels, 0.0, P)
    x2 = banks.guided_samples(v, store, range(4), labels, 2.0, P)
    assert x0.shape == (4, 1, 8, 8) and not torch.equal(x0, x2)
    torch.testing.assert_close(banks.guided_samples(v, store, range(4), labels, 2.0, P), x2)
    assert len(list((tmp_path / "samples").iterdir())) == 2

"""Figure 2's dip taken apart (regimes: pair types, one-rule copies and RP, t_copy, straddling, depth, verdicts),
on hand-made cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from reprolib import data, metrics, regimes
from reprolib.store import Store

SIM = metrics.PixelSimilarity()


def test_pair_types_tell_same_diff_one_and_none():
    copy_a = [True, True, True, False, False]
    copy_b = [True, True, False, True, False]
    img_a, img_b = [3, 3, 1, 0, 2], [3, 4, 1, 1, 2]
    assert list(regimes.pair_types(copy_a, img_a, copy_b, img_b)) == ["SAME", "DIFF", "ONE", "ONE", "NONE"]


def test_near_same_marks_one_seeds_whose_other_sample_sits_by_the_copied_image():
    copy_a, img_a = np.array([True, True, False, True]), np.array([5, 5, 0, 2])
    copy_b, img_b = np.array([False, False, True, True]), np.array([0, 0, 7, 2])
    l2_a, l2_b = np.array([5, 5, 7, 2]), np.array([5, 6, 7, 2])
    # seed 0: b's nearest is a's copy; 1: it is not; 2: a's nearest is b's copy; 3: both copy (not ONE)
    assert list(regimes.near_same(copy_a, img_a, copy_b, img_b, l2_a, l2_b)) == [True, False, True, False]


def test_type_table_shares_sum_to_one_and_contributions_to_rp():
    types = np.array(["SAME"] * 4 + ["ONE"] * 4 + ["NONE"] * 2)
    agree = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0], bool)
    near = np.array([0, 0, 0, 0, 1, 0, 1, 0, 0, 0], bool)
    t = regimes.type_table(types, agree, near).set_index("type")
    main = t.loc[list(regimes.TYPES)]
    assert main["share"].sum() == pytest.approx(1.0)
    assert main["contribution"].sum() == pytest.approx(agree.mean())
    assert t.loc["SAME", "rp"] == 0.75 and t.loc["ONE", "rp"] == 0.5 and t.loc["NONE", "rp"] == 0.0
    assert np.isnan(t.loc["DIFF", "rp"]) and t.loc["DIFF", "seeds"] == 0
    assert t.loc["ONE", "near_same"] == 0.5
    assert t.loc["ONE near-same", "rp"] == 0.5 and t.loc["ONE rest", "rp"] == 0.5
    assert t.loc["ONE near-same", "seeds"] + t.loc["ONE rest", "seeds"] == t.loc["ONE", "seeds"]
    assert np.isnan(regimes.type_table(types, np.zeros(10, bool))["share"]).all()  # nothing agrees


def test_copies_follow_the_ratio_test_or_the_correlation_threshold():
    train = data.load("digits").subset(16).images
    x = torch.cat([train[[3, 7]], (train[[0]] + train[[1]]) / 2])  # two copies and a blend of two images
    ev = regimes.evidence(SIM, x, train)
    copy, img = regimes.copies(ev)
    assert list(copy) == [True, True, False] and list(img[:2]) == [3, 7]
    copy_t, img_t = regimes.copies(ev, 0.99)
    assert list(copy_t[:2]) == [True, True] and list(img_t[:2]) == [3, 7]
    blend_corr = ev["corr"][2]
    assert list(regimes.copies(ev, blend_corr - 1e-6)[0]) == [True, True, True]  # one rule: any t below calls it
    assert not regimes.copies(ev, blend_corr + 1e-6)[0][2]


def test_t_copy_is_the_quantile_of_each_images_best_other_correlation():
    images = torch.randn(30, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    flat = images.reshape(30, -1).numpy()
    c = np.corrcoef(flat)
    np.fill_diagonal(c, -np.inf)  # leave-one-out: an image is not its own nearest
    best = c.max(1)
    assert regimes.t_copy(SIM, images, 0.95) == pytest.approx(np.quantile(best, 0.95))
    assert regimes.t_copy(SIM, images, 0.5) == pytest.approx(np.median(best))
    twins = torch.cat([images, images[:1]])  # a duplicated image: its twin correlates 1
    assert regimes.t_copy(SIM, twins, 1.0) == pytest.approx(1.0)


def test_straddles_needs_one_width_copying_and_the_other_not():
    assert regimes.straddles(0.9, 0.1) and regimes.straddles(0.02, 0.97)
    assert not regimes.straddles(0.95, 0.2) and not regimes.straddles(0.5, 0.5) and not regimes.straddles(1.0, 0.95)


def test_decompose_scores_copies_and_agreement_under_both_rules():
    train = data.load("digits").subset(16).images
    a = train[:8]
    b = train[:8].clone()
    b[4:] = train[8:12]  # four seeds copy another image: DIFF under either rule
    blend = (train[:8] + train[8:16]) / 2  # copies nothing by the ratio test
    samples = {(16, 4, 0): a, (16, 8, 0): b, (16, 16, 0): blend}
    d = regimes.decompose(samples, dict(data="digits"), SIM, [0.999])
    pairs = d["pairs"].set_index(["rule", "pair"])
    assert pairs.loc[("ratio", "4 vs 8"), "rp"] == 0.5
    assert pairs.loc[("one", "4 vs 8"), "rp"] == 0.5 and pairs.loc[("one", "4 vs 8"), "t"] == 0.999
    types = d["types"].set_index(["rule", "pair", "type"])
    assert types.loc[("ratio", "4 vs 8", "SAME"), "seeds"] == 4 and types.loc[("ratio", "4 vs 8", "DIFF"), "seeds"] == 4
    assert types.loc[("ratio", "4 vs 16", "ONE"), "seeds"] == 8
    models = d["models"].set_index(["rule", "width"])
    assert models.loc[("ratio", 16), "copy"] == 0.0 and models.loc[("ratio", 4), "gl"] == 0.0
    assert pairs.loc[("ratio", "4 vs 16"), "straddles"] and not pairs.loc[("ratio", "4 vs 8"), "straddles"]
    assert d["alike"]["alike"].iloc[0] == 1.0  # exact copies and blends: both rules agree at t = 0.999


def test_dip_depth_and_the_depth_table():
    assert regimes.dip_depth(pd.Series({16: 0.8, 64: 0.3, 256: 0.5, 1797: 0.6})) == pytest.approx((0.3, 0.5))
    assert np.isnan(regimes.dip_depth(pd.Series({16: 0.8, 1797: 0.6}))[0])
    rows = [dict(rule="one", t=0.97, n=n, pair=p, rp=rp, chance=ch, straddles=st)
            for n, p, rp, ch, st in [(16, "4 vs 8", 0.7, 0.1, False), (16, "4 vs 16", 0.65, 0.1, False),
                                     (64, "4 vs 8", 0.3, 0.0, True), (64, "4 vs 16", 0.2, 0.05, True),
                                     (1797, "4 vs 8", 0.5, 0.0, False), (1797, "4 vs 16", 0.4, 0.0, False)]]
    t = regimes.depth_table(pd.DataFrame(rows)).iloc[0]
    assert t.end_small == 0.65 and t.end_large == 0.4 and t.ends == 0.4
    assert t.E == pytest.approx(0.3) and t.depth == pytest.approx(0.45 - 0.25)
    none = pd.DataFrame(rows).assign(straddles=False)
    assert np.isnan(regimes.depth_table(none).iloc[0].E)


def test_convergence_and_the_first_snapshot_where_every_width_passes():
    flat = [1.0] * 90
    c = regimes.convergence({3000: 0.5, 4000: 0.53}, flat, 4000)
    assert c["converged"] and c["change"] == pytest.approx(0.03)
    assert not regimes.convergence({3000: 0.5, 4000: 0.6}, flat, 4000)["converged"]
    falling = np.geomspace(2, 0.01, 90)
    assert not regimes.convergence({3000: 0.5, 4000: 0.5}, falling, 4000)["converged"]  # the loss still falls
    late = np.r_[[1.0] * 40, falling[:50]]  # flat until step 4,000, falling after: the curve is cut at the snapshot
    assert regimes.convergence({3000: 0.5, 4000: 0.5}, late, 4000)["converged"]
    assert not regimes.convergence({8000: 0.5, 9000: 0.5}, late, 9000)["converged"]
    table = pd.DataFrame([dict(n=64, width=w, step=s, converged=ok) for w, s, ok in
                          [(4, 4000, True), (16, 4000, False), (4, 5000, False), (16, 5000, True),
                           (4, 6000, True), (16, 6000, True)]]
                         + [dict(n=128, width=4, step=4000, converged=False)])
    assert regimes.first_converged(table, 4000) == {64: 6000, 128: None}


def test_verdicts_follow_the_protocols_bounds():
    assert regimes.shift([0.3, 0.5], [0.45, 0.6]) == pytest.approx(-0.15)
    assert [regimes.shift_verdict(d) for d in (-0.1, -0.07, -0.05, 0.2)] == \
        ["supported", "inconclusive", "refuted", "refuted"]
    assert regimes.shift_verdict(0.1, opposite=True) == "opposite"
    assert regimes.shift_verdict(float("nan")) == "not testable"
    assert regimes.rules_verdict(True, 0.1, 0.7) == "supported"
    assert regimes.rules_verdict(True, 0.1, 0.5) == "partly"
    assert regimes.rules_verdict(True, 0.3, 0.7) == "partly"
    assert regimes.rules_verdict(True, 0.45, 0.7) == "refuted"
    assert regimes.rules_verdict(False, float("nan"), 0.7) == "not testable"
    assert regimes.digits_verdict("refuted", "refuted", "opposite", 0.5) == "supported"
    assert regimes.digits_verdict("partly", "refuted", "refuted", 0.3) == "supported"
    assert regimes.digits_verdict("partly", "refuted", "refuted", 0.1) == "refuted"
    assert regimes.digits_verdict("refuted", "supported", "refuted", 0.5) == "refuted"
    assert regimes.digits_verdict("refuted", "inconclusive", "refuted", 0.5) == "inconclusive"


def test_sealed_store_reads_and_never_writes(tmp_path):
    store = Store(tmp_path)
    store.save("samples", {"a": 1}, "x", {"x": torch.ones(2)})
    sealed = regimes.Sealed(store)
    assert sealed.exists("samples", {"a": 1}, "x")
    assert torch.equal(sealed.load("samples", {"a": 1}, "x")["x"], torch.ones(2))
    with pytest.raises(regimes.Missing):
        sealed.exists("samples", {"a": 2}, "x")
    with pytest.raises(regimes.Missing):
        sealed.save("samples", {"a": 2}, "x", {"x": torch.ones(2)})
    assert not store.exists("samples", {"a": 2}, "x")

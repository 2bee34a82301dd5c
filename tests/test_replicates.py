"""Training replicates: what the setting moves (every training seed, nothing else), and how claims are combined
over replicates (two-level intervals, the majority's verdict, unstable claims)."""

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reprolib import baselines, claims, metrics, profiles, replicates, train, zoo
from reprolib.store import Store


def _plans(replicate: int) -> dict:
    """{notebook: its training plan} at smoke in ``replicate``."""
    store = Store()
    return {nid: zoo.plan(nid, profiles.settings(nid, "smoke", replicate=replicate), store)
            for nid in ("01", "02", "04", "05", "06", "07")}


def _seeds(cfg) -> list[int]:
    """The training seeds of a config and of the parents it starts from."""
    out = [cfg.seed]
    while getattr(cfg, "init", None) is not None:
        cfg = train.TrainConfig(**cfg.init)
        out.append(cfg.seed)
    return out


def _without_seeds(cfg) -> dict:
    d = dataclasses.asdict(cfg)
    d.pop("seed")
    parent = d
    while parent.get("init") is not None:
        parent["init"] = {k: v for k, v in parent["init"].items() if k != "seed"}
        parent = parent["init"]
    return d


def test_replicate_1_moves_every_training_seed_by_the_stride_and_nothing_else():
    first, second = _plans(0), _plans(1)
    for nid in first:
        assert len(first[nid]) == len(second[nid]) > 0
        for a, b in zip(first[nid], second[nid]):
            assert all(s < profiles.REPLICATE_STRIDE for s in _seeds(a))  # the record's own seeds
            assert _seeds(b) == [s + profiles.REPLICATE_STRIDE for s in _seeds(a)]
            assert _without_seeds(a) == _without_seeds(b)  # the same data, sizes, lengths, subsets
            assert a.key_dict() != b.key_dict()


def test_replicate_0_keeps_the_keys_it_had_before_the_setting():
    """Configs built from settings that lack ``replicate`` (as before the setting existed) have the keys of
    replicate 0's: no stored model retrains because of the setting itself."""
    store = Store()
    for nid in ("01", "02", "04", "06", "07"):
        P = profiles.settings(nid, "smoke")
        assert P["replicate"] == 0
        before = {k: v for k, v in P.items() if k != "replicate"}
        assert [c.key_dict() for c in zoo.plan(nid, P, store)] == [c.key_dict() for c in zoo.plan(nid, before, store)]
    assert zoo.judge(profiles.settings("04", "smoke")) == {"seed": 0}


def test_the_sampling_seeds_are_the_same_in_every_replicate():
    """Every setting but ``replicate`` is the same in replicate 1, so every sampling seed (``seeds``,
    ``curve_seeds``, ``theory_seeds``, ``direction_seed``, ...) and so every initial noise is replicate 0's."""
    for nid in profiles.SETTINGS:
        a, b = profiles.settings(nid, "smoke"), profiles.settings(nid, "smoke", replicate=1)
        assert {k: v for k, v in a.items() if k != "replicate"} == {k: v for k, v in b.items() if k != "replicate"}
    assert zoo.sweep_settings(profiles.settings("08", "smoke", replicate=2))["replicate"] == 2  # 08 reads 02's r=2


def test_a_negative_or_fractional_replicate_is_refused():
    for bad in (-1, 0.5, "one"):
        with pytest.raises(ValueError, match="replicate"):
            profiles.settings("01", "smoke", replicate=bad)


def _first_draws(monkeypatch, run):
    """The first ``torch.randint`` (a minibatch's indices) and ``torch.randn`` (training noise or latents) that
    ``run()`` draws from an explicit generator."""
    seen = {}
    randint, randn = torch.randint, torch.randn

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            out = fn(*args, **kwargs)
            if "generator" in kwargs and name not in seen:
                seen[name] = out.clone()
            return out
        return wrapped

    monkeypatch.setattr(torch, "randint", spy("randint", randint))
    monkeypatch.setattr(torch, "randn", spy("randn", randn))
    result = run()
    monkeypatch.setattr(torch, "randint", randint)
    monkeypatch.setattr(torch, "randn", randn)
    return result, seen


def test_replicate_1_moves_a_unets_initial_weights_minibatch_and_noise(tmp_path):
    cfgs = [zoo.section1(profiles.settings("01", "smoke", replicate=r))[0].cfg for r in (0, 1)]
    store = Store(tmp_path)
    jobs = [train.Single(cfg, store, torch.device("cpu"), progress=False) for cfg in cfgs]
    w0, w1 = (torch.cat([p.flatten() for p in j.model.parameters()]) for j in jobs)
    assert not torch.equal(w0, w1)
    draws = [train.minibatch(cfg, j.gen, j.images, j.labels, j.model.formulation, 0, torch.device("cpu"))
             for cfg, j in zip(cfgs, jobs)]
    assert not torch.equal(draws[0][0], draws[1][0])  # the first minibatch
    noise = [torch.cat([t.flatten().float() for t in d[2].values()]) for d in draws]
    assert not torch.equal(noise[0], noise[1])  # its noise levels and noise


@pytest.mark.parametrize("which", [0, 1], ids=["gan", "vae"])
def test_replicate_1_moves_a_gans_and_a_vaes_weights_minibatch_and_latents(tmp_path, monkeypatch, which):
    fit = (baselines.train_gan, baselines.train_vae)[which]
    out = []
    for r in (0, 1):
        cfg = dataclasses.replace(zoo.section1_baselines(profiles.settings("01", "smoke", replicate=r))[which][0],
                                  steps=1)
        out.append(_first_draws(monkeypatch, lambda: fit(cfg, Store(tmp_path / str(r)), progress=False)))
    (m0, d0), (m1, d1) = out
    assert not torch.equal(d0["randint"], d1["randint"])  # the first minibatch's indices
    assert not torch.equal(d0["randn"], d1["randn"])  # a GAN's latents, a VAE's reparameterisation noise
    w0, w1 = (torch.cat([p.flatten() for p in m.parameters()]) for m in (m0, m1))
    assert not torch.equal(w0, w1)


def test_the_judge_moves_with_the_replicate():
    a = zoo.judge(profiles.settings("04", "smoke", replicate=0))
    b = zoo.judge(profiles.settings("04", "smoke", replicate=2))
    assert b["seed"] == a["seed"] + 2 * profiles.REPLICATE_STRIDE


# ---------------------------------------------------------------------------------------------------------------
# Combining claims over replicates.


def test_the_two_level_interval_covers_the_truth_95_percent_of_the_time():
    """1,000 simulated studies of 3 training replicates each: a claim's value in a replicate is the truth plus a
    training effect (sd 0.05) plus its seeds' noise (sd 0.01), and each replicate's seed bootstrap is 50 draws
    around its value with that sd. The two-level 95% interval covers the truth in 93-97% of them."""
    rng = np.random.default_rng(7)
    truth, studies, R = 0.7, 1000, 3
    values = truth + rng.normal(0, 0.05, (studies, R)) + rng.normal(0, 0.01, (studies, R))
    draws = values[..., None] + rng.normal(0, 0.01, (studies, R, 50))
    _, low, high = replicates.two_level(values, draws, resamples=1000)
    coverage = np.mean((low <= truth) & (truth <= high))
    assert 0.93 <= coverage <= 0.97, coverage
    # the seed level alone (what a single run reports) covers the truth far less often
    one = [replicates.two_level(values[i, :1], draws[i, :1]) for i in range(200)]
    assert np.mean([lo <= truth <= hi for _, lo, hi in one]) < 0.5


def test_one_replicate_gives_its_seed_interval_and_agreeing_replicates_keep_the_seed_width():
    draws = np.linspace(0.6, 0.8, 50)
    mean, low, high = replicates.two_level([0.7], draws[None])
    assert mean == 0.7 and 0.6 <= low < 0.62 and 0.78 < high <= 0.8
    mean, low, high = replicates.two_level([0.7, 0.7, 0.7], np.stack([draws] * 3))
    assert low < 0.69 and high > 0.71  # three equal values: the seeds' spread remains


def _crossed_study(sds, studies=1000, R=3, seed=11):
    """Simulated studies of a claim between three trainings (lineages): the mean over the three pairs of their
    rates, each rate the pair's truth plus both trainings' effects (sd ``sds``) plus seed noise (sd 0.01)."""
    rng = np.random.default_rng(seed)
    truth, groups = np.array([0.7, 0.8, 0.75]), np.array([[0, 1], [0, 2], [1, 2]])
    u = rng.normal(0, 1, (studies, 3, R)) * np.array(sds)[None, :, None]
    rates = truth[None, :, None, None] + u[:, groups[:, 0], :, None] + u[:, groups[:, 1], None, :] \
        + rng.normal(0, 0.01, (studies, 3, R, R))
    values = rates[:, :, np.arange(R), np.arange(R)].mean(1)  # replicate r of every training
    draws = values[..., None] + rng.normal(0, 0.01 / math.sqrt(3), (studies, R, 50))
    return truth.mean(), groups, rates, values, draws


def test_each_training_resampled_on_its_own_covers_the_truth_95_percent_of_the_time():
    """1,000 simulated studies of three trainings of unequal between-run sd: the crossed interval covers the truth
    in 93-97% of them, and is narrower than the one that resamples whole replicates (more degrees of freedom)."""
    truth, groups, rates, values, draws = _crossed_study((0.05, 0.03, 0.02))
    cross = replicates.crossed(rates, groups, reduce=np.mean, resamples=1000)
    _, low, high = replicates.two_level(values, draws, resamples=1000, between=cross.draws, dof=cross.dof)
    assert 0.93 <= np.mean((low <= truth) & (truth <= high)) <= 0.97
    _, low2, high2 = replicates.two_level(values, draws, resamples=1000)
    assert np.median(high - low) < 0.85 * np.median(high2 - low2)
    assert 2 < np.median(cross.dof) < 6 and np.allclose(cross.shares.sum(1), 1)
    assert np.all(cross.shares.mean(0)[:1] > cross.shares.mean(0)[1:])  # the training with the largest sd


def test_one_dominant_training_gives_r_minus_one_degrees_of_freedom_and_its_share():
    _, groups, rates, values, _ = _crossed_study((0.06, 0.0, 0.0), studies=200)
    cross = replicates.crossed(rates, groups, reduce=np.mean, resamples=500)
    assert 2 <= np.median(cross.dof) < 2.5 and np.median(cross.shares[:, 0]) > 0.85


def test_rows_of_one_training_share_its_replicate():
    """A pair of two rows of one lineage (two samplers of one network) is only read on its diagonal."""
    rates = np.full((2, 3, 3), -100.0)
    rates[:, np.arange(3), np.arange(3)] = [[0.6, 0.7, 0.8], [0.9, 0.9, 0.9]]
    rates[1] = np.where(rates[1] == -100, 0.5, rates[1])  # the second pair crosses two trainings
    groups = [(0, 0), (0, 1)]
    cross = replicates.crossed(rates, groups, resamples=300)
    assert cross.draws.min() >= 0.5 - 1e-12
    values, idx = replicates.every_world(rates, groups)
    assert len(values) == 9 and idx.shape == (9, 2)
    expected = [min(0.6 + 0.1 * r, 0.9 if r == s else 0.5) for r, s in idx]
    assert np.allclose(values, expected)
    values, idx = replicates.every_world(rates, groups, most=5)  # too many worlds to list: a random few
    assert len(values) == 5 and np.allclose(values, [min(0.6 + 0.1 * r, 0.9 if r == s else 0.5) for r, s in idx])


def test_crossed_rates_pair_replicate_r_of_one_row_with_s_of_the_other():
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.rand(40, 1, 4, 4, generator=g), torch.rand(40, 1, 4, 4, generator=g)
    by_replicate = [{"a": x0, "b": x0}, {"a": x1, "b": x1}]
    sim = metrics.PixelSimilarity(0.9)
    rates = claims.crossed_rates(sim, [("a", "b")], by_replicate, 0.9)
    assert rates.shape == (1, 2, 2) and rates[0, 0, 0] == rates[0, 1, 1] == 1.0 and rates[0, 0, 1] < 0.2
    chance = claims.crossed_rates(sim, [("a", "b")], by_replicate, 0.9, chance=True)
    assert chance.shape == (1, 2, 2) and chance.max() < 0.2


def test_a_distilled_student_shares_its_teachers_lineage():
    by_name = {v.name: zoo.lineage(v.cfg) for v in zoo.section1(profiles.settings("01", "smoke"))}
    assert by_name["U-Net distilled (4 steps)"] == by_name["U-Net EDM (Heun)"] == by_name["U-Net EDM (DPM++)"]
    assert by_name["U-Net CT (1 step)"] == by_name["U-Net CT (2 steps)"]
    assert len(set(by_name.values())) == len(by_name) - 3


def test_combine_takes_a_claims_crossed_level_when_every_replicate_carries_it():
    rng = np.random.default_rng(0)
    cross = replicates.crossed(0.7 + rng.normal(0, 0.05, (3, 3, 3)), [(0, 1), (0, 2), (1, 2)], resamples=500)
    runs = [{"01_x": [_claim("01.a", v, between=claims._quantiles(cross.draws), between_dof=cross.dof),
                      _claim("01.b", v)]} for v in (0.65, 0.62, 0.7)]
    a, b = replicates.combine(runs)["01_x"]
    assert a.crossed and not b.crossed and (a.low, a.high) != (b.low, b.high) and a.mean == b.mean
    assert "x | 3 of 3 |" in replicates.report(replicates.combine(runs), "cpu")
    back = replicates.from_json(replicates.to_json(replicates.combine(runs), {}))
    assert back["01_x"][0].crossed and not back["01_x"][1].crossed
    assert not replicates.combine(runs[:1])["01_x"][0].crossed  # one replicate: nothing to cross
    c = claims.Claims("01", "cpu", judged=True, expected_file="/nonexistent.toml")
    claim = c.check("a", "RP >= 0.6", 0.65, ">=", 0.6, between=cross)
    assert len(claim.between) == claims.DRAW_QUANTILES and claim.between_dof == pytest.approx(cross.dof)
    assert claims._from_json(json.loads(json.dumps(claims._jsonable(claim)))) == claim


def _claim(cid: str, value: float, op: str = ">=", threshold: float = 0.6, expected: bool = True, **kw):
    holds = not math.isnan(value) and (value >= threshold if op == ">=" else value <= threshold)
    return claims.Claim(id=cid, statement="s", source="paper", value=value, op=op, threshold=threshold, holds=holds,
                        profile="cpu", judged=True, expected=expected, **kw)


def test_combine_takes_the_majoritys_verdict_and_marks_a_split_unstable():
    runs = [{"01_x": [_claim("01.a", v), _claim("01.b", w), _claim("01.c", u)]}
            for v, w, u in ((0.65, 0.9, 0.5), (0.32, 0.91, 0.5), (0.7, 0.92, math.nan))]
    rows = {r.id: r for r in replicates.combine(runs)["01_x"]}
    a, b, c = rows["01.a"], rows["01.b"], rows["01.c"]
    assert (a.k, a.verdict, a.unstable) == (2, True, True) and a.spread() == "2 of 3 replicates hold, range 0.320-0.700"
    assert (b.k, b.verdict, b.unstable) == (3, True, False) and b.low < 0.9 < 0.92 < b.high
    assert (c.k, c.verdict, c.unstable) == (0, False, False) and c.unexpected and math.isnan(c.values[2])
    text = replicates.report(replicates.combine(runs), "cpu")
    assert "| 01.a | >= 0.600 | 0.650 | 0.320 | 0.700 |" in text and "2 of 3 | holds (unstable) |" in text
    assert "- Unstable (the replicates' verdicts differ): 1" in text
    two = {r.id: r for r in replicates.combine(runs[:2])["01_x"]}
    assert not two["01.a"].decided and not two["01.a"].unexpected  # 1 of 2: no majority, no regression
    assert "| 1 of 2 | tie (unstable) |" in replicates.report(replicates.combine(runs[:2]), "cpu")
    data = json.loads(replicates.to_json(replicates.combine(runs), {"describe": "here"}))
    assert data["replicates"] == 3 and data["claims"]["01_x"][2]["values"][2] is None
    back = replicates.from_json(replicates.to_json(replicates.combine(runs), {}))
    assert replicates.summary(back, "cpu") == replicates.summary(replicates.combine(runs), "cpu")
    assert back["01_x"][0].values == a.values and math.isnan(back["01_x"][2].values[2])


def test_a_single_run_reads_which_claims_are_unstable(tmp_path, monkeypatch):
    runs = [{"01_x": [_claim("01.a", v, expected=False)]} for v in (0.65, 0.32, 0.7)]
    path = tmp_path / "replicates.json"
    path.write_text(replicates.to_json(replicates.combine(runs), {}))
    monkeypatch.setenv("REPRO_REPLICATES", str(path))
    monkeypatch.setenv("REPRO_EXPECTED", str(tmp_path / "none.toml"))
    c = claims.Claims("01", "cpu", judged=True)
    claim = c.check("a", "RP >= 0.6", 0.321, ">=", 0.6)
    assert claim.unstable == "2 of 3 replicates hold, range 0.320-0.700"
    assert "unstable across training replicates: 2 of 3" in claim.verdict()
    path.write_text("{not json")
    assert replicates.unstable("cpu") == {}  # a bad record is ignored, with a line


def test_a_claim_keeps_its_seed_bootstrap_for_a_second_level():
    c = claims.Claims("01", "cpu", judged=True, expected_file="/nonexistent.toml")
    rates = (np.arange(200) % 3 == 0)[None]
    claim = c.check("a", "RP >= 0.3", rates.mean(), ">=", 0.3, interval=claims.rate_interval(rates))
    assert claim.draws is not None and len(claim.draws) == claims.DRAW_QUANTILES
    assert claim.low <= np.median(claim.draws) <= claim.high
    again = claims._from_json(json.loads(json.dumps(claims._jsonable(claim))))
    assert again == claim


def test_the_layout_names_the_cpu_and_a_record_without_one_is_another_machine(monkeypatch):
    from reprolib import machine

    P = {"device": "cpu", "threads": 2}
    here = machine.layout(P)
    assert here["cpu"] == machine.cpu() and torch.backends.cpu.get_cpu_capability() in here["cpu"]
    assert machine.cpu() in machine.describe(P)
    assert not claims.is_replicate(here, claims.Record(dict(here), "", {}))
    assert claims.is_replicate(here, claims.Record({**here, "cpu": "AMD EPYC 7B13 (AVX2)"}, "", {}))
    assert claims.is_replicate(here, claims.Record({k: v for k, v in here.items() if k != "cpu"}, "", {}))
    monkeypatch.setattr(machine, "cpu", lambda: "AMD EPYC 7B13 (AVX2)")
    assert claims.is_replicate(machine.layout(P), claims.Record(dict(here), "", {}))


def test_the_consistency_study_reads_a_store_and_says_what_is_missing(tmp_path, capsys):
    """replications/scripts/consistency_replicates.py trains and samples nothing: on a store without notebook 01's
    samples it stops with the command that makes them, and leaves the store empty."""
    from tests import _scripts

    study = _scripts.load("replications/scripts/consistency_replicates.py")
    with pytest.raises(SystemExit) as stop:
        study.main(["--store", str(tmp_path), "--replicates", "0", "1", "--profile", "smoke"])
    assert "lacks a replicate's notebook 01 samples" in str(stop.value)
    assert "--profile smoke --replicates R" in str(stop.value) and f"REPRO_STORE={tmp_path}" in str(stop.value)
    assert not any(tmp_path.rglob("*.pt"))


def test_notebook_01_pairs_every_training_across_replicates_at_smoke(tmp_path):
    """The real notebook 01 in a run of two replicates at smoke: its claims between models carry the crossed
    replicate level (marked in the replicates record), the others do not, and it draws every world."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "REPRO_STORE": str(tmp_path / "store"), "REPRO_PROFILE": "smoke"}
    proc = subprocess.run([sys.executable, str(root / "paper_figures.py"), "--only", "01", "--profile", "smoke",
                           "--replicates", "2", "--figures", str(tmp_path / "figures"), "--executed",
                           str(tmp_path / "executed"), "--override", "seeds=32"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((tmp_path / "figures" / "claims_smoke_replicates.json").read_text())
    crossed = {row["id"]: row["crossed"] for row in record["claims"]["01_reproducibility"]}
    assert crossed["01.diffusion_rp"] and crossed["01.consistency_rp"] and crossed["01.subvp_vs_chance"]
    assert not crossed["01.gan_not_reproducible"] and not crossed["01.self_agreement_diffusion"]
    assert (tmp_path / "figures" / "01_crossed_replicates.png").stat().st_size > 1000
    executed = (tmp_path / "executed" / "01_reproducibility.ipynb").read_text()
    assert "the variance between replicates, by training" in executed

"""Claims as data (reprolib.claims): verdicts, records of expected verdicts, the table and the summary."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from reprolib import claims, machine, metrics


@pytest.fixture
def record(tmp_path):
    path = tmp_path / "expected.toml"
    path.write_text('[cpu."91.low"]\nholds = false\nwhy = "measured 0.4"\n\n[cpu."91.other"]\nholds = true\n')
    return path


def test_check_compares_value_with_threshold(record):
    c = claims.Claims("91", "cpu", judged=True, expected_file=record)
    assert c.check("high", "RP >= 0.6", 0.7, ">=", 0.6).holds
    assert not c.check("edge", "RP > 0.6", 0.6, ">", 0.6).holds
    assert c.check("small", "RP <= 0.05", 0.05, "<=", 0.05).holds
    assert not c.check("nan", "kappa >= 0.5", math.nan, ">=", 0.5).holds  # unmeasurable is not met
    assert not c.check("none", "x >= 0", None, ">=", 0).holds
    assert [x.id for x in c.items] == ["91.high", "91.edge", "91.small", "91.nan", "91.none"]


def test_a_value_on_its_threshold_is_on_it_whatever_the_round_off(record):
    """A difference of two fractions of seeds that equals the threshold is judged as equal (a float gives
    0.745 - 0.645 = 0.09999999999999998); a value one seed in 10^4 below it is not."""
    c = claims.Claims("91", "cpu", judged=True, expected_file=record)
    assert 0.745 - 0.645 < 0.1
    assert c.check("edge_diff", "gap >= 0.1", 0.745 - 0.645, ">=", 0.1).holds
    assert not c.check("below", "gap >= 0.1", 0.1 - 1e-4, ">=", 0.1).holds
    assert not c.check("strict", "gap > 0.1", 0.745 - 0.645, ">", 0.1).holds
    straddle = c.check("ends", "gap >= 0.1", 0.12, ">=", 0.1, interval=(0.745 - 0.645, 0.2))
    assert not straddle.marginal  # its low end is on the threshold, so both ends hold


def test_bad_comparison_and_repeated_id_are_refused(record):
    c = claims.Claims("91", "cpu", judged=True, expected_file=record)
    with pytest.raises(ValueError, match="unknown comparison"):
        c.check("a", "a", 1, "=>", 0)
    c.check("a", "a", 1, ">=", 0)
    with pytest.raises(ValueError, match="twice"):
        c.check("a", "a", 1, ">=", 0)


def test_expected_verdicts_come_from_the_record(record):
    assert claims.expected("cpu", record) == {"91.low": "measured 0.4"}  # holds = true is no exception
    assert claims.expected("paper", record) == {}
    c = claims.Claims("91", "cpu", judged=True, expected_file=record)
    low = c.check("low", "RP >= 0.6", 0.4, ">=", 0.6)
    assert not low.expected and not low.unexpected and "recorded finding" in low.verdict()
    fixed = claims.Claims("91", "cpu", judged=True, expected_file=record).check("low", "RP >= 0.6", 0.7, ">=", 0.6)
    assert fixed.unexpected and "UNEXPECTED" in fixed.verdict()  # a change in either direction
    new_fail = c.check("new", "RP >= 0.6", 0.5, ">=", 0.6)
    assert new_fail.unexpected


def test_unjudged_claims_are_never_unexpected(record):
    c = claims.Claims("91", "smoke", judged=False, expected_file=record)
    x = c.check("new", "RP >= 0.6", 0.1, ">=", 0.6)
    assert not x.holds and not x.unexpected and "not judged at smoke" in x.verdict()
    assert claims.summary(c.items, "smoke")[0].startswith("- Not judged at smoke")


def test_table_summary_and_round_trip_through_a_notebook(record):
    c = claims.Claims("91", "cpu", judged=True, expected_file=record)
    c.check("low", "RP >= 0.6", 0.4, ">=", 0.6, paper="0.65", detail="pair a/b")
    c.check("mine", "gap >= 0.3", 0.1, ">=", 0.3, source="ours, replications/x.md")
    c.check("ok", "RP >= 0.6", 0.9, ">=", 0.6)
    c.check("nan", "kappa >= 0.5", math.nan, ">=", 0.5)
    bundle = json.loads(json.dumps(c._repr_mimebundle_(), allow_nan=False))  # what a notebook file can hold
    # one string: JupyterLab's save rewrites JSON numbers (10.0 as 10), never the characters of a string
    assert isinstance(bundle[claims.MIME], str)
    assert "| 91.low | paper | RP >= 0.6 | 0.400 (pair a/b) | >= 0.600 | -0.200 | 0.65 |" in bundle["text/markdown"]
    nb = {"cells": [{"cell_type": "code", "outputs": [{"output_type": "display_data", "data": bundle}]}]}
    back = claims.from_notebook(nb)
    assert back[:3] == c.items[:3] and math.isnan(back[3].value) and back[3].id == "91.nan"
    lines = claims.summary(back, "cpu")
    assert lines[0] == "- The paper's claims: 1 of 3 hold at cpu."
    assert "91.low: 0.400, needs >= 0.600" in lines[1] and "a recorded finding" in lines[1]
    assert "91.nan: n/a, needs >= 0.500" in lines[2]
    assert lines[3] == "- Claims of ours: 0 of 1 hold."
    assert "91.mine" in lines[4] and "Verdicts that differ" in lines[5]
    report = claims.report({"91_test": back}, "cpu")
    assert "## 91_test" in report and "91.ok" in report


def test_the_bootstrap_interval_of_a_binomial_rate_is_its_normal_interval():
    """RP is a rate over seeds: with 1,000 seeds at p = 0.3 the percentile interval is p +- 1.96 sqrt(p(1-p)/n)."""
    hits = np.random.default_rng(7).random(1000) < 0.3
    p, half = hits.mean(), 1.96 * math.sqrt(hits.mean() * (1 - hits.mean()) / 1000)
    low, high = claims.bootstrap(lambda idx: hits[idx].mean(), len(hits), replicates=4000)
    assert low == pytest.approx(p - half, abs=0.004) and high == pytest.approx(p + half, abs=0.004)
    assert claims.bootstrap(lambda idx: hits[idx].mean(), len(hits)) == \
        claims.bootstrap(lambda idx: hits[idx].mean(), len(hits))  # a fixed generator: the same interval each run


def test_the_interval_of_a_minimum_over_pairs_is_the_minimums():
    rng = np.random.default_rng(0)
    hits = np.stack([rng.random(500) < 0.8, rng.random(500) < 0.62])
    low, high = claims.bootstrap(lambda idx: hits[:, idx].mean(1).min(), 500)
    assert low < hits[1].mean() < high and high < 0.8 - 0.1  # the interval of the lower pair, not of the other


def test_a_claim_whose_interval_straddles_its_threshold_is_marked_marginal(record):
    c = claims.Claims("91", "cpu", judged=True, expected_file=record)
    near = c.check("near", "RP >= 0.6", 0.62, ">=", 0.6, interval=(0.58, 0.66))
    clear = c.check("clear", "RP >= 0.6", 0.9, ">=", 0.6, interval=(0.88, 0.92))
    bare = c.check("bare", "RP >= 0.6", 0.61, ">=", 0.6)
    edge = c.check("edge", "switch at N <= 512", 512, "<=", 512, interval=(256, 512))  # every resample holds
    strict = c.check("strict", "N > 32", 64, ">", 32, interval=(32, 64))  # the low end does not
    assert near.marginal and near.holds and near.verdict() == "holds (marginal)"
    assert not clear.marginal and not bare.marginal and not edge.marginal and strict.marginal
    row = "| 91.near | paper | RP >= 0.6 | 0.620 [0.580, 0.660] | >= 0.600 | +0.020 |"
    assert row in claims.markdown_table(c.items)
    lines = claims.summary(c.items, "cpu")
    assert "- Marginal (the 95% interval over seeds straddles the threshold): 2" in lines
    assert "  - 91.near: 0.620 [0.580, 0.660], needs >= 0.600" in lines
    bundle = json.loads(json.dumps(c._repr_mimebundle_(), allow_nan=False))
    back = claims.from_notebook({"cells": [{"cell_type": "code", "outputs": [{"data": bundle}]}]})
    assert back == c.items  # the interval survives the executed notebook


@pytest.mark.parametrize("op, value, threshold, margin", [
    (">=", 0.7, 0.6, 0.1), (">", 0.5, 0.6, -0.1), ("<=", 0.03, 0.05, 0.02), ("<", 0.08, 0.05, -0.03)])
def test_margin_is_how_much_a_claim_holds_by(record, op, value, threshold, margin):
    c = claims.Claims("91", "cpu", judged=True, expected_file=record).check("x", "x", value, op, threshold)
    assert c.margin == pytest.approx(margin) and (c.margin > 0) == c.holds


def test_margin_of_an_unmeasured_value_is_nan(record):
    assert math.isnan(claims.Claims("91", "cpu", judged=True, expected_file=record).check(
        "x", "x", None, "<", 1).margin)


LAYOUT = {"device": "cpu", "cpu": machine.cpu(), "accelerator": None, "train_threads": 1, "threads": 2}
HERE = f"cpu ({machine.cpu()}) · 2 training workers of 1 thread · kernel 2 threads"


def test_json_names_the_machine_and_old_records_still_read(record, tmp_path):
    c = claims.Claims("91", "cpu", judged=True, expected_file=record)
    c.check("low", "RP >= 0.6", 0.4, ">=", 0.6)
    c.check("nan", "kappa >= 0.5", math.nan, ">=", 0.5)
    P = {"profile": "cpu", "device": "cpu", "n_jobs": 2, "threads": 2}
    text = claims.to_json({"91_test": c.items}, P)
    assert json.loads(text)["machine"] == {"layout": LAYOUT, "describe": HERE}
    made_on, back = claims.read_json(text)
    assert made_on["layout"] == LAYOUT and back["91_test"][0] == c.items[0]
    (tmp_path / "new.json").write_text(text)
    rec = claims.record("cpu", tmp_path / "new.json")
    assert rec.layout == LAYOUT and rec.machine == HERE and rec.values["91.low"] == 0.4
    assert math.isnan(rec.values["91.nan"])
    # the format before the machine was recorded: {stem: [claim dicts]}, without the replicate field
    old = {"91_test": [{k: v for k, v in d.items() if k != "replicate"} for d in json.loads(text)["claims"]["91_test"]]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert claims.read_json((tmp_path / "old.json").read_text()) == (None, back)
    rec = claims.record("cpu", tmp_path / "old.json")
    assert rec.layout is None and rec.values["91.low"] == 0.4
    assert not claims.is_replicate({**LAYOUT, "threads": 64}, rec)  # a record that names no machine
    assert claims.record("cpu", tmp_path / "none.json") == claims.Record(None, "", {})


def test_a_replicate_lists_differing_verdicts_beside_the_record(record):
    rec = claims.Record(LAYOUT, HERE, {"91.low": 0.41})
    assert claims.is_replicate({**LAYOUT, "threads": 64}, rec) and not claims.is_replicate(dict(LAYOUT), rec)
    c = claims.Claims("91", "cpu", judged=True, expected_file=record, replicate=True)
    moved = c.check("low", "RP >= 0.6", 0.7, ">=", 0.6)  # recorded as not holding
    new = c.check("new", "RP <= 0.05", 0.06, "<=", 0.05)  # not in the record's values
    assert moved.unexpected and moved.replicate and new.unexpected and new.replicate
    assert "UNEXPECTED" not in moved.verdict()
    assert moved.verdict() == ("holds: differs from the record (a replicate: another machine layout or training run; "
                               "recorded as not holding at cpu)")
    here = "cpu · kernel 64 threads"
    lines = claims.summary(c.items, "cpu", here, rec)
    assert lines[0] == f"- Machine: {here}; a replicate: the record was made on {HERE}"
    assert any(f"2, in a replicate on {here} (the record was made on {HERE})" in line for line in lines)
    assert "  - 91.low: record 0.410 (does not hold), this run 0.700 (holds); needs >= 0.600, margin +0.100 " \
           "(RP >= 0.6)" in lines
    assert any(line.startswith("  - 91.new: record n/a (holds), this run 0.060 (does not hold); needs <= 0.050, "
                               "margin -0.01 ") for line in lines)
    report = claims.report({"91_test": c.items}, "cpu", here=here, replicate_of=rec)
    assert report.splitlines()[2] == lines[0]  # the machine first, under the title
    assert "| margin |" in report and "| >= 0.600 | +0.100 |" in report


def test_the_report_names_the_machine_first(record):
    c = claims.Claims("91", "cpu", judged=True, expected_file=record)
    c.check("ok", "RP >= 0.6", 0.9, ">=", 0.6)
    report = claims.report({"91_test": c.items}, "cpu", here=HERE)
    assert report.splitlines()[:4] == ["# Claims at the `cpu` profile", "", f"- Machine: {HERE}",
                                       "- The paper's claims: 1 of 1 hold at cpu."]


@pytest.mark.parametrize("threads, replicate", [(2, False), (64, True)])
def test_a_notebook_marks_its_claims_as_a_replicate_of_another_layout(tmp_path, monkeypatch, capsys, threads,
                                                                      replicate):
    """notebook.start compares this machine's layout with the record's (REPRO_RECORD here)."""
    import torch

    from reprolib import machine, notebook, profiles

    P = profiles.settings("08", "cpu")
    (tmp_path / "record.json").write_text(json.dumps({"machine": {
        "layout": {**machine.layout(P), "threads": threads}, "describe": "the record's machine"}, "claims": {}}))
    (tmp_path / "expected.toml").write_text("")
    monkeypatch.setenv("REPRO_RECORD", str(tmp_path / "record.json"))
    monkeypatch.setenv("REPRO_EXPECTED", str(tmp_path / "expected.toml"))
    monkeypatch.setenv("REPRO_STORE", str(tmp_path / "store"))
    before = torch.get_num_threads()
    try:
        run = notebook.start("08", "cpu")
    finally:
        torch.set_num_threads(before)  # start pins this process's threads
    assert run.claims.replicate is replicate
    assert ("a replicate: the record of cpu was made on the record's machine" in capsys.readouterr().out) is replicate
    c = run.claims.check("x", "x <= 0", 1.0, "<=", 0)
    assert c.unexpected and ("UNEXPECTED" in c.verdict()) is not replicate


def test_agreement_rows_are_the_rps_of_the_pairs():
    rng = torch.Generator().manual_seed(0)
    a = torch.rand(50, 1, 8, 8, generator=rng) * 2 - 1
    sets = {"a": a, "near": a + 0.01 * torch.randn(50, 1, 8, 8, generator=rng),
            "other": torch.rand(50, 1, 8, 8, generator=rng) * 2 - 1}
    sim, pairs = metrics.PixelSimilarity(), [("a", "near"), ("a", "other")]
    hits = claims.agreement(sim, pairs, sets, 0.9)
    assert hits.shape == (2, 50) and hits.dtype == bool
    assert [h.mean() for h in hits] == [metrics.rp_score(sim, sets[p], sets[q], 0.9) for p, q in pairs]
    assert hits[0].all() and not hits[1].any()
    chance = claims.agreement(sim, pairs[:1], sets, 0.9, chance=True)[0].mean()
    assert chance == metrics.chance_rp(sim, a, sets["near"], 0.9)


def test_an_interval_over_resamples_without_a_value_is_nan():
    assert all(math.isnan(v) for v in claims.bootstrap(lambda idx: np.nan, 10))


@pytest.mark.parametrize("interval", [(math.nan, math.nan), (0.2, math.inf), (-math.inf, 0.5)])
def test_a_claim_with_an_interval_that_is_not_a_number_shows_none_and_survives_json(record, interval):
    c = claims.Claims("91", "cpu", judged=True, expected_file=record)
    claim = c.check("switch", "switch at N > 32", 64, ">", 32, interval=interval)
    assert claim.low is None and claim.high is None and not claim.marginal
    bundle = json.loads(json.dumps(c._repr_mimebundle_(), allow_nan=False))
    assert claims.from_notebook({"cells": [{"cell_type": "code", "outputs": [{"data": bundle}]}]}) == c.items

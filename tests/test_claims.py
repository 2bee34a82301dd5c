"""Claims as data (reprolib.claims): verdicts, records of expected verdicts, the table and the summary."""

from __future__ import annotations

import json
import math

import pytest

from reprolib import claims


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
    assert "| 91.low | paper | RP >= 0.6 | 0.400 (pair a/b) | >= 0.600 | 0.65 |" in bundle["text/markdown"]
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

"""benchmarks/gpu_hours.py: the paper profile's GPU hours from the rates measured on one H200. Its arithmetic is
checked (rows add up, measured rows are steps x batch / rate, hours scale as 1 / rate); the rates are data."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import _scripts
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_hours.py"


@pytest.fixture(scope="module")
def gh():
    yield _scripts.load("benchmarks/gpu_hours.py")
    sys.modules.pop("gpu_hours", None)


@pytest.fixture(scope="module")
def rates(gh):
    return gh.load_rates()


@pytest.fixture(scope="module")
def est(gh, rates):
    return gh.estimate(rates)


def _jobs(est, kind=None):
    return [(row["notebook"], job) for row in est["rows"] for job in row["jobs"] if kind in (None, job["kind"])]


def test_the_total_is_the_sum_of_the_rows_and_a_row_the_sum_of_its_jobs(gh, est):
    assert [row["notebook"] for row in est["rows"]] == list(gh.NOTEBOOKS)
    for p in gh.PRECISIONS:
        assert math.isclose(est["total"][p], sum(row["hours"][p] for row in est["rows"]), rel_tol=1e-12)
        for row in est["rows"]:
            assert math.isclose(row["hours"][p], sum(job["hours"][p] for job in row["jobs"]), rel_tol=1e-12,
                                abs_tol=1e-15)
    assert est["total"]["tf32"] > 0


def test_a_measured_training_is_steps_times_batch_over_the_rate(est, rates):
    unet = rates["measured"]["unet"]
    sweep = [job for nid, job in _jobs(est, "train") if nid == "02"]
    # 02's sweep (10 sizes x 3 widths) and its disjoint pairs: 30 models on other images, 3 on the first 25,000
    assert len(sweep) == 63 and all(job["basis"] == {"tf32": "measured", "bf16": "measured"} for job in sweep)
    widths = {int(job["label"].split()[1][1:]) for job in sweep}
    assert widths == {64, 128, 256}
    for job in sweep:
        width = job["label"].split()[1][1:]
        for p in ("tf32", "bf16"):
            assert job["hours"][p] == job["count"] * job["batch"] / unet["train_images_per_s"][p][width] / 3600
    assert sweep[0]["count"] == 60_000 and sweep[0]["batch"] == 128


def test_a_measured_bank_is_images_over_the_sampling_rate(est, rates):
    unet = rates["measured"]["unet"]
    banks = [job for nid, job in _jobs(est, "sample") if job["basis"]["tf32"] == "measured"]
    assert banks
    for job in banks:
        rate = unet["sample_images_per_s"][job["label"].split()[1][1:]]
        assert job["evals"] == unet["sample"]["evaluations_per_image"]
        assert math.isclose(job["hours"]["tf32"], job["count"] / rate / 3600, rel_tol=1e-12)
        assert job["hours"]["bf16"] == job["hours"]["tf32"]  # the library samples in float32 either way


def test_bf16_is_not_slower_than_tf32_where_measured(est, rates):
    train = rates["measured"]["unet"]["train_images_per_s"]
    assert all(train["bf16"][w] >= train["tf32"][w] for w in train["tf32"])
    measured = [job for _, job in _jobs(est) if job["basis"]["tf32"] == "measured"]
    assert measured and all(job["hours"]["bf16"] <= job["hours"]["tf32"] for job in measured)


def test_doubling_every_rate_halves_every_hour(gh, rates, est):
    fast = copy.deepcopy(rates)
    unet = fast["measured"]["unet"]
    for table in (*unet["train_images_per_s"].values(), unet["sample_images_per_s"]):
        for w in table:
            table[w] *= 2
    fast["derived"]["floor_steps_per_s"] *= 2
    halved = gh.estimate(fast)
    for p in gh.PRECISIONS:
        assert math.isclose(halved["total"][p], est["total"][p] / 2, rel_tol=1e-9)
        for a, b in zip(halved["rows"], est["rows"]):
            assert math.isclose(a["hours"][p], b["hours"][p] / 2, rel_tol=1e-9)


def test_unmeasured_networks_are_scaled_by_flops_or_floored(gh, est, rates):
    """Section 1's U-Net (width 128 without DDPM++'s norm and noise features: the same FLOPs) costs what the
    measured width 128 does; consistency training one forward more; the MLP and the GANs sit on the floor."""
    jobs = {job["label"]: job for nid, job in _jobs(est, "train") if nid == "01"}
    edm, ct = jobs["U-Net w128 edm, 150,000 steps"], jobs["U-Net w128 ct, 300,000 steps"]
    assert edm["basis"]["tf32"] == "scaled"
    rate = rates["measured"]["unet"]["train_images_per_s"]["tf32"]["128"]
    assert math.isclose(edm["hours"]["tf32"], 150_000 * 128 / rate / 3600, rel_tol=1e-12)
    assert math.isclose(ct["hours"]["tf32"], 2 * edm["hours"]["tf32"] * 4 / 3, rel_tol=1e-12)
    floor = rates["derived"]["floor_steps_per_s"]
    for label in ("MLP w2048 edm, 150,000 steps", "GAN mlp w256, 300,000 steps"):
        assert jobs[label]["basis"] == {"tf32": "floor", "bf16": "floor"}
        assert math.isclose(jobs[label]["hours"]["bf16"], jobs[label]["count"] / floor / 3600, rel_tol=1e-12)


def test_later_notebooks_reuse_what_earlier_ones_made(est):
    """In order, 03 and 07 train nothing (02's sweep and 01's pair); alone, 07 trains its pair and the privacy
    corner of 02's sweep, and 03 the whole sweep."""
    rows = {row["notebook"]: row for row in est["rows"]}
    for nid in ("03", "05", "07"):
        assert not [job for job in rows[nid]["jobs"] if job["kind"] == "train"]
    assert est["alone"]["07"]["tf32"] > rows["07"]["hours"]["tf32"] + 5
    # 03 alone trains 02's sweep: 10 of the 21 equally long trainings 02 runs at each width
    trained = sum(job["hours"]["tf32"] for job in rows["02"]["jobs"] if job["kind"] == "train")
    assert est["alone"]["03"]["tf32"] > trained * 10 / 21


def test_the_script_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "hours.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--json", str(out)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "| notebook | what it trains and samples | GPU hours TF32 | GPU hours bf16 |" in run.stdout
    lines = [line for line in run.stdout.splitlines() if line.startswith("| 0") or line.startswith("| all")]
    assert [line.split("|")[1].strip() for line in lines[:8]] == ["01", "02", "03", "04", "05", "06", "07", "all"]
    saved = json.loads(out.read_text())
    assert [row["notebook"] for row in saved["rows"]] == ["01", "02", "03", "04", "05", "06", "07"]
    assert {"measured", "scaled", "floor"} <= {job["basis"]["tf32"] for row in saved["rows"] for job in row["jobs"]}

"""The mnist rung: its settings, its similarity threshold calibrated by notebook 01's rule, its pilot's verdict,
and every notebook end to end on real MNIST at fixture sizes (models trained for a few steps)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import _scripts
import pytest

from reprolib import data, metrics, profiles, zoo

ROOT = Path(__file__).resolve().parents[1]
needs_mnist = pytest.mark.skipif(importlib.util.find_spec("zarr") is None,
                                 reason="MNIST needs `pip install 'reprolib[mnist]'` (the test extra has it)")


def _pilot():
    return _scripts.load("replications/scripts/mnist_pilot.py")


def test_the_rung_runs_notebook_02_over_the_papers_sizes_on_28x28_images():
    P = profiles.settings("02", "mnist", device="cpu")
    assert P["data"] == "mnist" and tuple(P["shape"]) == (1, 28, 28)
    assert P["sizes"] == [2**k for k in range(6, 16)] and len(P["widths"]) == 3
    assert all(zoo.nets(profiles.settings(nb, "mnist", device="cpu"))["unet"] == zoo.MNIST_NETS["unet"]
               for nb in ("01", "04", "06"))
    assert set(profiles.settings("07", "mnist")["privacy_widths"]) <= set(P["widths"])
    assert profiles.validate("02", "mnist", {"sizes": [64, 70_000], "steps": {64: 1, 70_000: 1}}) == [
        "notebook 02: sizes=[64, 70000] is not allowed with data='mnist': mnist has 60000 training images."]


@needs_mnist
def test_the_pixel_threshold_is_notebook_01s_rule_on_mnist():
    """Random pairs of different real images exceed it with probability 0.75%, as 0.9 does on 8x8 digits."""
    sim = metrics.PixelSimilarity()
    for name, profile in (("digits", "cpu"), ("mnist", "mnist")):
        t = metrics.threshold_for_chance(sim, data.load(name).images, 0.0075)
        assert abs(t - profiles.PIXEL_THRESHOLD[profile]) < 0.01, (name, t)
    P = profiles.settings("02", "mnist")
    assert metrics.backend(P["similarity"], pixel_threshold=P["pixel_threshold"]).default_threshold == 0.73
    assert metrics.backend("pixel").default_threshold == 0.9


def test_the_pilots_verdict_follows_the_protocol():
    pilot = _pilot()
    row = lambda n, w, m: dict(n=n, width=w, memorized=m)  # noqa: E731
    ok, fails = pilot.verdict([row(64, 8, 0.95), row(64, 32, 1.0), row(32768, 8, 0.0), row(32768, 32, 0.05)])
    assert ok and fails == []
    ok, fails = pilot.verdict([row(64, 8, 0.85), row(64, 32, 1.0), row(32768, 8, 0.0), row(32768, 32, 0.2)])
    assert not ok and len(fails) == 2
    assert "width 8 memorizes 0.850 at N = 64 (needs >= 0.9)" in fails[0]
    assert "width 32 memorizes 0.200 at N = 32768 (needs <= 0.1)" in fails[1]


def test_the_pilot_trains_the_two_ends_and_reports_a_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_STORE", str(tmp_path / "store"))
    out = tmp_path / "pilot.md"
    code = _pilot().main(["--profile", "smoke", "--seeds", "8", "--out", str(out), "--override",
                          "sizes=[16, 64, 256]", "steps={16: 3, 64: 3, 256: 3}", "widths=[4]", "n_jobs=1",
                          "device=cpu"])
    table = out.read_text()
    assert code in (0, 1) and "| 16 | 4 | 3 |" in table and "| 256 | 4 | 3 |" in table and "| 64 |" not in table
    assert ("accepted" if code == 0 else "not accepted") in table.splitlines()[-1]


@needs_mnist
@pytest.mark.slow
def test_every_notebook_runs_at_the_mnist_profile_on_real_mnist_at_fixture_sizes(tmp_path):
    """``paper_figures.py --all --profile mnist`` with tiny sizes: every notebook runs on 28x28 MNIST, its claims
    are computed (and, at these sizes, not judged)."""
    tiny = ["sizes=[64, 128]", "widths=[4, 8]", "steps={64: 4, 128: 4}", "privacy_sizes=[64, 128]",
            "privacy_widths=[8]", "steps_scale=0.0005", "seeds=16", "curve_seeds=16", "edit_seeds=8", "images=8",
            "theory_seeds=8", "r2_images=4", "sample_steps=3", "snapshot_every=2", "grid=4", "patch_sizes=[3]",
            "guidance_sweep=[0.0, 1.0]", "judge={'width': 4, 'epochs': 1}", "claims_strict=False", "n_jobs=2",
            "nets={'unet': {'width': 4}, 'mlp': {'width': 32, 'depth': 1}, 'uvit': {'width': 16, 'depth': 2}}"]
    env = {**os.environ, "REPRO_STORE": str(tmp_path / "store"), "REPRO_PROFILE": "mnist"}
    proc = subprocess.run([sys.executable, str(ROOT / "paper_figures.py"), "--all", "--profile", "mnist",
                           "--figures", str(tmp_path / "figures"), "--executed", str(tmp_path / "executed"),
                           "--override", *tiny], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "figures" / "claims.json").read_text())
    by_stem = report.get("claims", report)
    assert len(by_stem) == 8 and all(by_stem.values()), sorted(by_stem)
    trained = [json.loads(p.read_text()) for p in (tmp_path / "store" / "diffusion").glob("*/config.json")]
    assert trained and all(c["data"] == "mnist" for c in trained)
    assert (tmp_path / "figures" / "02_rp_gl_vs_n.png").stat().st_size > 1000


def test_the_runner_offers_every_profile_of_the_library():
    assert _scripts.load("paper_figures.py").PROFILES == profiles.NAMES

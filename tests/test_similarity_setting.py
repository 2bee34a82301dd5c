"""The ``similarity`` setting: every notebook scores with ``metrics.backend(P["similarity"])``, pixel correlation by
default, SSCD when asked (weights from ``REPRO_SSCD``), checked by running notebook 04 on a scripted stand-in."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reprolib import claims, metrics, profiles

ROOT = Path(__file__).resolve().parents[1]


class _PooledSSCD(nn.Module):
    """Stands in for SSCD: refuses anything but its (B, 3, 320, 320) input and returns the 8x8 average-pooled
    image as the descriptor, so that different digits get different descriptors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != 320 or x.shape[3] != 320:
            raise RuntimeError("SSCD expects (B, 3, 320, 320)")
        return F.adaptive_avg_pool2d(x, 8).flatten(1)


def _outputs(notebook: Path) -> str:
    nb = nbformat.read(notebook, as_version=4)
    return "".join(o.get("text", "") + o.get("evalue", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))


def _run_04(tmp_path, sscd_file):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPRO_")}
    env.update(REPRO_STORE=str(tmp_path / "store"), OMP_NUM_THREADS="1")
    if sscd_file is not None:
        env["REPRO_SSCD"] = str(sscd_file)
    args = [sys.executable, "paper_figures.py", "--profile", "smoke", "--only", "04", "--override", "similarity=sscd",
            "--override", "guidance_sweep=[1.0]", "--figures", str(tmp_path / "figures"),
            "--executed", str(tmp_path / "executed")]
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_every_notebook_scores_with_pixel_correlation_by_default():
    for notebook, by_profile in profiles.SETTINGS.items():
        for profile in by_profile:
            P = profiles.settings(notebook, profile)
            assert isinstance(metrics.backend(P["similarity"], device=P["device"]), metrics.PixelSimilarity)
    text = "".join((ROOT / "notebooks" / f"{stem}.py").read_text() for stem in
                   ("01_reproducibility", "02_regimes", "03_theory", "04_conditional", "05_inverse", "06_finetuning",
                    "07_implications"))
    assert "PixelSimilarity()" not in text and text.count("metrics.backend(P.similarity") == 7


@pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:FutureWarning")
def test_notebook_04_scores_with_sscd_when_asked(tmp_path):
    path = tmp_path / "sscd_stand_in.torchscript.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(_PooledSSCD()).save(str(path))

    missing = _run_04(tmp_path / "missing", None)  # asked for SSCD without the weights: a clear error
    assert missing.returncode == 1
    assert "REPRO_SSCD" in _outputs(tmp_path / "missing" / "executed" / "04_conditional.failed.ipynb")

    run = _run_04(tmp_path, path)
    assert run.returncode == 0, run.stdout + run.stderr
    out = _outputs(tmp_path / "executed" / "04_conditional.ipynb")
    assert "similarity: sscd, RP threshold 0.6" in out
    nb = nbformat.read(tmp_path / "executed" / "04_conditional.ipynb", as_version=4)
    assert len(claims.from_notebook(nb)) == 18  # the claims were computed with it

"""benchmarks/bench_gpu.py: its smoke mode runs every code path on the CPU and writes every row; it refuses bad
arguments, and a GPU run where there is no GPU, with exit status 2. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_smoke_measures_every_row_and_writes_results_and_json(bench, tmp_path):
    md, js = tmp_path / "results.md", tmp_path / "bench.json"
    assert bench.main(["--smoke", "--out", str(md), "--json", str(js)]) == 0
    env = json.loads(js.read_text())

    # Smoke: one width-4 U-Net of each profile's sweep; training in fp32 and bf16, then Heun sampling.
    assert {(r["profile"], r["width"], r["precision"]) for r in env["train"]} == {
        (p, 4, prec) for p in ("cpu", "paper") for prec in ("fp32", "bf16")}
    assert {(r["profile"], r["width"]) for r in env["sample"]} == {("cpu", 4), ("paper", 4)}
    assert len(env["train"]) == 4 and len(env["sample"]) == 2
    shapes = {r["profile"]: tuple(r["shape"]) for r in env["train"]}
    assert shapes == {"cpu": (1, 8, 8), "paper": (3, 32, 32)}

    # What a GPU-hour estimate reads: the device, the versions, the precision settings, and per row the
    # config, the batch, the rate and the cost of one step or one sample.
    assert env["mode"] == "smoke" and env["device"]["type"] == "cpu" and env["device"]["name"]
    assert env["torch"] == torch.__version__ and "tf32" in env and "cudnn_benchmark" in env
    s = env["settings"]
    assert (s["sampler"], s["sample_steps"], s["evaluations_per_sample"]) == ("heun", 18, 35)
    assert (s["warmup_steps"], s["window_steps"], s["windows"]) == (1, 2, 2)
    for r in env["train"] + env["sample"]:
        assert r["net"]["kind"] == "unet" and r["net"]["width"] == 4 and r["params"] > 0
        assert r["forward_gflop_per_image"] > 0 and r["batch"] == 4
        assert r["images_per_s"] > 0 and r["approx_tflops"] > 0
        assert all(v > 0 for v in r["window_images_per_s"])
    for r in env["train"]:
        assert len(r["window_images_per_s"]) == s["windows"] and r["losses_finite"] is True
        assert r["seconds_per_step"] == pytest.approx(r["batch"] / r["images_per_s"])
    for r in env["sample"]:
        assert len(r["window_images_per_s"]) == s["sample_windows"] and r["evaluations_per_sample"] == 35
        assert r["seconds_per_image"] == pytest.approx(1 / r["images_per_s"])
    # The paper rows' forward pass costs more than the digits rows' (bigger images, deeper U-Net).
    flops = {r["profile"]: r["forward_gflop_per_image"] for r in env["sample"]}
    assert flops["paper"] > flops["cpu"]

    text = md.read_text()
    assert text.count("GPU benchmark (smoke)") == 1
    assert bench.TRAIN_HEAD[0] in text and bench.SAMPLE_HEAD[0] in text
    for r in env["train"]:
        assert bench.train_line(r, env) in text
    for r in env["sample"]:
        assert bench.sample_line(r, env) in text


def test_smoke_without_out_writes_no_results_file(bench, tmp_path, monkeypatch):
    results = SCRIPT.with_name("results.md")
    before = results.read_bytes()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench, "measure", lambda *args, **kwargs: None)  # the writing, not the measuring
    assert bench.main(["--smoke"]) == 0
    assert results.read_bytes() == before and not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv", [["--bogus"], ["--smoke", "--quick"], ["--widths", "100"],
                                  ["--smoke", "--widths", "64"]])
def test_bad_arguments_exit_2(bench, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here: the full run would start")
@pytest.mark.parametrize("argv", [[], ["--quick"], ["--device", "cpu"]])
def test_gpu_run_without_cuda_refuses_with_exit_2(bench, argv, tmp_path, capsys):
    out, js = tmp_path / "r.md", tmp_path / "r.json"
    assert bench.main([*argv, "--out", str(out), "--json", str(js)]) == 2
    err = capsys.readouterr().err
    assert "CUDA" in err and "--smoke" in err
    assert not out.exists() and not js.exists()


@pytest.mark.parametrize("argv", [["--bogus"], pytest.param([], marks=pytest.mark.skipif(
    torch.cuda.is_available(), reason="a CUDA device is here: the full run would start"))])
def test_command_line_exit_status_is_2(argv):
    done = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip()

"""benchmarks/bench_gpu.py: its smoke mode runs every section on the CPU and writes every row; --levers and
--budget choose what runs; a failing row records its error and the others go on (exit 1); it refuses bad
arguments, and a GPU run where there is no GPU, with exit status 2. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import _scripts
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    yield _scripts.load("benchmarks/bench_gpu.py")
    sys.modules.pop("bench_gpu", None)


@pytest.fixture(scope="module")
def smoke(bench, tmp_path_factory):
    """One smoke run of every section: (exit status, the JSON, the results file's text)."""
    tmp = tmp_path_factory.mktemp("bench")
    md, js = tmp / "results.md", tmp / "bench.json"
    status = bench.main(["--smoke", "--out", str(md), "--json", str(js)])
    return status, json.loads(js.read_text()), md.read_text()


def test_smoke_measures_every_section(smoke):
    status, env, _ = smoke
    assert status == 0
    assert env["sections"] == ["syncs", "stack", "workers", "train", "sample", "channels-last", "compile",
                               "compile-ro"]
    assert not env["skipped"]
    for kind in ("train", "sample", "syncs", "stack", "workers", "levers"):
        assert env[kind] and not [r for r in env[kind] if "error" in r], kind
        assert all(r["wall_s"] >= 0 and r["what"] for r in env[kind])

    # Training and sampling: one width-4 U-Net of each profile's sweep, float32 and bf16.
    assert {(r["profile"], r["width"], r["precision"]) for r in env["train"]} == {
        (p, 4, prec) for p in ("cpu", "paper") for prec in ("fp32", "bf16")}
    assert {(r["profile"], r["precision"]) for r in env["sample"]} == {
        (p, prec) for p in ("cpu", "paper") for prec in ("fp32", "bf16")}
    shapes = {r["profile"]: tuple(r["shape"]) for r in env["train"]}
    assert shapes == {"cpu": (1, 8, 8), "paper": (3, 32, 32)}
    s = env["settings"]
    assert (s["sampler"], s["sample_steps"], s["evaluations_per_sample"]) == ("heun", 2, 3)
    assert (s["warmup_steps"], s["window_steps"], s["windows"]) == (1, 2, 2)
    for r in env["train"] + env["sample"] + env["levers"]:
        assert r["net"]["kind"] == "unet" and r["net"]["width"] == 4 and r["params"] > 0
        assert r["forward_gflop_per_image"] > 0 and r["batch"] == 4
        assert r["images_per_s"] > 0 and r["approx_tflops"] > 0
        assert all(v > 0 for v in r["window_images_per_s"])
    for r in env["train"] + env["levers"]:
        assert len(r["window_images_per_s"]) == s["windows"] and r["weights_finite"] is True
        assert r["seconds_per_step"] == pytest.approx(r["batch"] / r["images_per_s"])
    for r in env["sample"]:
        assert len(r["window_images_per_s"]) == s["sample_windows"] and r["evaluations_per_sample"] == 3
        assert r["seconds_per_image"] == pytest.approx(1 / r["images_per_s"])
        # bf16 sampling is scored against float32's samples of the same model and seeds
        assert ("rp_vs_fp32" in r) == (r["precision"] == "bf16")
        if r["precision"] == "bf16":
            assert 0 <= r["rp_vs_fp32"] <= 1 and -1 <= r["similarity_min"] <= r["similarity_median"] <= 1
    flops = {r["profile"]: r["forward_gflop_per_image"] for r in env["sample"]}
    assert flops["paper"] > flops["cpu"]

    # The paper U-Net levers, each against the plain row of its width and precision.
    assert {(r["lever"], r["precision"]) for r in env["levers"]} == {
        ("channels-last", "fp32"), ("channels-last", "bf16"), ("compile", "fp32"), ("compile-ro", "fp32")}
    plain = {r["precision"]: r["images_per_s"] for r in env["train"] if r["profile"] == "paper"}
    for r in env["levers"]:
        assert r["ratio_to_plain"] == pytest.approx(r["images_per_s"] / plain[r["precision"]])
        assert r["channels_last"] if r["lever"] == "channels-last" else r["compile_mode"] in ("default",
                                                                                              "reduce-overhead")


def test_smoke_small_models_and_syncs(smoke):
    _, env, _ = smoke
    # K stacked and W processes, widths 4 and 16, each against one model alone.
    for kind, count in (("stack", "k"), ("workers", "workers")):
        rows = env[kind]
        assert {(r["width"], r[count]) for r in rows} == {(w, n) for w in (4, 16) for n in (1, 2)}
        for r in rows:
            assert r["model_steps_per_s"] > 0 and r["weights_finite"] is True
            assert r["ratio_to_one"] == (1.0 if r[count] == 1 else pytest.approx(
                r["model_steps_per_s"] / next(o["model_steps_per_s"] for o in rows
                                              if o["width"] == r["width"] and o[count] == 1)))
    assert all(len(r["per_worker_steps_per_s"]) == r["workers"] for r in env["workers"])
    # One syncs row per formulation the profiles train; on the CPU the count is n/a.
    assert [r["formulation"] for r in env["syncs"]] == ["edm", "ddpm", "flow", "subvp", "ct", "edm conditional",
                                                        "distill16", "edm stack of 2"]
    for r in env["syncs"]:
        assert r["syncs_per_step"] is None and r["steps"] == [1, 2]
    assert [r["models"] for r in env["syncs"]][-1] == 2


def test_smoke_results_file_holds_every_row(bench, smoke):
    _, env, text = smoke
    assert text.count("GPU benchmark (smoke)") == 1
    for kind in ("train", "sample", "syncs", "stack", "workers", "levers"):
        assert bench.head(kind)[0] in text
        for r in env[kind]:
            assert bench.line(kind, r, env) in text
    assert "n/a (no CUDA)" in text


def test_levers_and_budget_choose_what_runs(bench, tmp_path):
    js = tmp_path / "b.json"
    assert bench.main(["--smoke", "--levers", "stack", "syncs", "--budget", "0", "--json", str(js)]) == 0
    env = json.loads(js.read_text())
    assert env["sections"] == ["stack", "syncs"]
    assert not env["stack"] and not env["syncs"] and not env["train"]
    assert [r["section"] for r in env["skipped"]] == ["stack"] * 4 + ["syncs"] * 8
    assert all("budget" in r["reason"] for r in env["skipped"])


def test_a_failing_row_is_reported_and_the_others_run(bench, tmp_path, monkeypatch):
    js = tmp_path / "b.json"
    real = bench.train_row

    def train_row(state, m, precision, lever=None):
        if precision == "bf16":
            raise RuntimeError("LSE is not correctly aligned\nmore")
        return real(state, m, precision, lever)

    monkeypatch.setattr(bench, "train_row", train_row)
    assert bench.main(["--smoke", "--levers", "train", "--json", str(js)]) == 1
    rows = json.loads(js.read_text())["train"]
    assert [("error" in r) for r in rows] == [False, True, False, True]
    assert rows[1]["error"] == "RuntimeError: LSE is not correctly aligned"
    assert "error: RuntimeError" in bench.line("train", rows[1], {})


def test_smoke_without_out_writes_no_results_file(bench, tmp_path, monkeypatch):
    results = SCRIPT.with_name("results.md")
    before = results.read_bytes()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench, "measure", lambda *args, **kwargs: None)  # the writing, not the measuring
    assert bench.main(["--smoke"]) == 0
    assert results.read_bytes() == before and not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv", [["--bogus"], ["--smoke", "--quick"], ["--widths", "100"],
                                  ["--smoke", "--widths", "64"], ["--levers", "bogus"], ["--budget", "x"]])
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

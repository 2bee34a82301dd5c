"""benchmarks/device_check.py: its smoke mode runs every stage on this CPU (one notebook twice, side by side on
disjoint cores, then a benchmark section) and writes the summary, the claims, the benchmark's numbers and the
logs; the claims comparison reads both formats of claims.json. No timing is asserted."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device_check.py"
STAGES = ["setup", "cuda", "cpu", "bench", "mnist"]


@pytest.fixture(scope="module")
def check():
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(SCRIPT.parent))
        yield importlib.import_module(SCRIPT.stem)
    sys.modules.pop(SCRIPT.stem, None)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke run, with the benchmark cut to one section (bench_gpu's own tests run them all)."""
    out = tmp_path_factory.mktemp("device") / "out"
    done = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out), "--bench-levers", "stack"],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    return done, out, json.loads((out / "device_check.json").read_text())


def test_smoke_writes_every_file(smoke):
    done, out, _ = smoke
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    files = {p.name: p.stat().st_size for p in out.iterdir()}
    assert set(files) == {"device_check.md", "device_check.json", "bench_gpu.json", "logs.txt", "cuda_claims.md",
                          "cuda_claims.json", "cpu_claims.json"}
    assert len(files) <= 8 and max(files.values()) <= 16 * 2**20
    assert "device check: files in" in done.stdout


def test_summary_names_every_stage_with_a_status(smoke):
    _, out, data = smoke
    md = (out / "device_check.md").read_text()
    stages = {s["name"]: s for s in data["stages"]}
    assert list(stages) == STAGES
    for number, s in enumerate(stages.values()):
        assert s["number"] == number and s["status"] != "not run"
        row = next(line for line in md.splitlines() if line.startswith(f"| {number} {s['name']} |"))
        assert s["status"] in row
    assert [stages[n]["status"] for n in STAGES[:4]] == ["ok"] * 4
    assert stages["mnist"]["status"].startswith("skipped")
    for name in ("cuda", "cpu", "bench"):
        assert stages[name]["command"][:2] == ["timeout", "-s"] and stages[name]["wall_s"] > 0
        assert stages[name]["budget_s"] > 0
    # Stages 1 and 2 ran side by side on disjoint cores (where there are two).
    if data["machine"]["cores"] >= 2:
        assert stages["cuda"]["cores"] and stages["cpu"]["cores"]
        assert stages["cuda"]["cores"] != stages["cpu"]["cores"]
    # Each runner's own account: its per-notebook wall times.
    for name in ("cuda", "cpu"):
        assert any(line.startswith("05_inverse") for line in data["runner"][name])
    assert "==== cuda: timeout" in (out / "logs.txt").read_text()


def test_smoke_compares_the_claims(check, smoke):
    _, out, data = smoke
    md = (out / "device_check.md").read_text()
    record, twin = data["comparisons"]["cuda"], data["comparisons"]["cpu"]
    assert record["reference"] == "the record" and twin["reference"] == "stage 1"
    n = len(check.load_claims(out / "cuda_claims.json"))
    # 05's claims are in the record; the record's other notebooks were not run.
    assert record["counts"]["compared"] == n and record["counts"]["only_reference"] > 0
    # The same notebook at the same settings on another core of the same CPU: the same bits.
    assert twin["counts"] == {"compared": n, "same_value": n, "same_verdict": n, "only_reference": 0, "only_run": 0}
    assert "Claims against stage 1" in md and "| identical |" in md
    bench = json.loads((out / "bench_gpu.json").read_text())
    assert bench["sections"] == ["stack"] and bench["stack"] and not bench["train"]
    assert "K trained as one stack" in md


def claim(cid, value, holds, op=">=", threshold=0.5):
    return {"id": cid, "value": value, "holds": holds, "op": op, "threshold": threshold}


def test_claims_load_from_both_formats(check, tmp_path):
    claims = {"01_a": [claim("01.x", 0.7, True)], "02_b": [claim("02.y", None, False)]}
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(claims))
    new.write_text(json.dumps({"machine": {"layout": {"device": "cpu"}}, "claims": claims}))
    assert check.load_claims(old) == check.load_claims(new) == {"01.x": claims["01_a"][0], "02.y": claims["02_b"][0]}


def test_compare_counts_values_verdicts_and_missing_claims(check):
    record = {c["id"]: c for c in (claim("a", 0.7, True), claim("b", 0.6, True), claim("c", 0.4, False, "<=", 0.5),
                                   claim("d", 0.1, False))}
    run = {c["id"]: c for c in (claim("a", 0.7, True), claim("b", 0.4, False), claim("c", 0.45, True, "<=", 0.5),
                                claim("e", 1.0, True))}
    rows = {r["id"]: r for r in check.compare(run, record)}
    assert rows["a"]["same_value"] and rows["a"]["same_verdict"]
    assert not rows["b"]["same_value"] and not rows["b"]["same_verdict"]
    assert rows["b"]["run_margin"] == pytest.approx(-0.1) and rows["c"]["run_margin"] == pytest.approx(0.05)
    assert check.counts(list(rows.values())) == {"compared": 3, "same_value": 1, "same_verdict": 1,
                                                 "only_reference": 1, "only_run": 1}
    table = "\n".join(check.comparison_table(list(rows.values()), "the record"))
    assert table.index("| b |") < table.index("| a |")  # differing verdicts first
    assert "| a | 0.7 | 0.7 | identical |" in table and "**(differs)**" in table
    assert "Only in the record (notebooks not run here): 1 claims" in table and "Only in this run: 1" in table


def test_cores_are_split_and_listed_for_taskset(check):
    assert check.split_cores(list(range(16))) == (list(range(12)), [12, 13, 14, 15])
    assert check.split_cores([0, 1]) == ([0], [1]) and check.split_cores([3]) == ([3], [3])
    assert check.core_list([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8" and check.core_list([4]) == "4"


def test_runner_summary_of_a_finished_and_a_stopped_run(check, tmp_path):
    finished, stopped = tmp_path / "a.log", tmp_path / "b.log"
    finished.write_text("profile cpu\n[training] 47 models\n\nnotebook    status  wall time  claims that hold\n"
                        "training    ok      300.0 s\n01_x        ok       50.0 s  3 of 4\ntotal  350.0 s\n"
                        "executed notebooks: /tmp\n")
    stopped.write_text("profile cpu\n  training · 1m00s · models 3/47\n  training · 2m00s · models 9/47\n"
                       "  training · 3m00s · models 20/47\nTraceback\nKeyboardInterrupt\n")
    assert check.runner_summary(finished)[0].startswith("notebook") and check.runner_summary(finished)[-1].startswith(
        "total")
    assert check.runner_summary(stopped) == ["  training · 2m00s · models 9/47",
                                             "  training · 3m00s · models 20/47"]


def test_the_device_run_needs_an_out_folder(monkeypatch, capsys, check):
    monkeypatch.delenv("OUT", raising=False)
    with pytest.raises(SystemExit) as exc:
        check.main([])
    assert exc.value.code == 2 and "OUT" in capsys.readouterr().err

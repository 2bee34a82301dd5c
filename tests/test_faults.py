"""Faults a careful user meets: a device or thread count the machine cannot give, a full disk, Ctrl-C, a bad
cold-run record. Each stops the run before work with one message, or ends it at once with one line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook

import paper_figures as pf
from reprolib import machine, notebook
from reprolib.store import Store, StoreError

ROOT = Path(pf.__file__).resolve().parent
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA device")


@NO_GPU
@pytest.mark.parametrize("device", ["cuda", "cuda:7"] + ([] if torch.backends.mps.is_available() else ["mps"]))
def test_a_device_torch_does_not_see_stops_the_run_before_any_work(tmp_path, monkeypatch, capsys, device):
    monkeypatch.setenv("REPRO_STORE", str(tmp_path / "store"))
    monkeypatch.delenv("REPRO_SWEEP_BACKEND", raising=False)
    with pytest.raises(SystemExit) as exc:
        pf.main(["--only", "05", "--profile", "smoke", "--override", f"device={device}",
                 "--executed", str(tmp_path / "executed")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"device={device}" in err and "torch sees cpu" in err
    assert not (tmp_path / "executed").exists() and not any((tmp_path / "store").glob("*/*/*.pt"))
    with pytest.raises(ValueError, match="torch sees cpu"):  # a notebook run by hand says the same at its start
        notebook.start("05", "smoke", {"device": device})


@NO_GPU
def test_a_cluster_backend_checks_its_own_workers_devices(monkeypatch):
    monkeypatch.setenv("REPRO_SWEEP_BACKEND", "dask")
    assert machine.unusable({"device": "cuda", "threads": 1}) == []


def test_more_threads_than_cores_stop_the_run_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_STORE", str(tmp_path / "store"))
    with pytest.raises(SystemExit) as exc:
        pf.main(["--only", "05", "--profile", "smoke", "--override", "threads=10000",
                 "--executed", str(tmp_path / "executed")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "threads=10000" in err and f"may use {machine.usable_cores()} core" in err
    # a profile's own pinned count is the record's: not refused on a machine with fewer cores
    assert machine.unusable({"device": "cpu", "threads": 10000}, given=()) == []


def test_a_failed_write_of_any_kind_names_the_file_and_the_free_space(tmp_path, monkeypatch):
    """torch's zip writer on a full disk raises a RuntimeError whose text says nothing of a write."""
    def full(obj, f):
        f.write(b"PK")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    store = Store(tmp_path / "store")
    with pytest.raises(StoreError) as exc:
        store.save("samples", {"a": 1}, "bank", {"x": torch.zeros(3)})
    message = str(exc.value)
    assert str(store.path("samples", {"a": 1}, "bank")) in message and "MiB free there" in message
    assert "unexpected pos" in message
    assert [p.name for p in store.folder("samples", {"a": 1}).iterdir() if not p.name.startswith(".")] == \
        ["config.json"]  # no half file under the artifact's name, no temporary file


def test_a_store_that_fails_during_training_starts_no_notebook(tmp_path, monkeypatch, capsys):
    started = []

    def prefit(paths, profile, overrides, replicates=1):
        try:
            raise OSError(28, "No space left on device")
        except OSError as err:  # as a worker's failed save reaches the runner: the store's error, with its cause
            raise StoreError("Cannot write /store/x.pt (No space left on device; 0 MiB free there).") from err

    monkeypatch.setattr(pf, "prefit", prefit)
    monkeypatch.setattr(pf, "run_notebooks", lambda *a: started.append(a) or [])
    monkeypatch.setenv("REPRO_STORE", str(tmp_path / "store"))
    assert pf.main(["--only", "05", "--profile", "smoke", "--executed", str(tmp_path / "executed"),
                    "--figures", str(tmp_path / "figs")]) == 1
    out = capsys.readouterr().out
    assert "No space left on device; 0 MiB free there" in out and "no notebook was started" in out
    assert started == []


def test_a_bad_cold_run_record_is_ignored_with_one_line(tmp_path, capsys):
    store = Store(tmp_path)
    folder = tmp_path / "cold_runs"
    folder.mkdir()
    good = {"commit": "abc", "date": "2026-12-07", "machine": "cpu", "wall_s": 60.0, "training_s": 40.0,
            "notebooks": {"01_x": 20.0}}
    (folder / "cpu.json").write_text(json.dumps(good))
    assert store.cold_run("cpu") == good
    for bad in ({"machine": 3}, [], {**good, "notebooks": {"01_x": "slow"}}, {**good, "wall_s": None}):
        (folder / "cpu.json").write_text(json.dumps(bad))
        assert store.cold_run("cpu") is None
        assert "ignored" in capsys.readouterr().out
    (folder / "cpu.json").write_text("{not json")
    assert store.cold_run("cpu") is None and "not a readable cold-run record" in capsys.readouterr().out


def test_ctrl_c_during_a_notebook_ends_the_run_within_10_s_with_one_line(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    cell = new_code_cell("profile = 'smoke'\noverrides = {}")
    cell.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[cell, new_code_cell("import time\nprint('sleeping', flush=True)\ntime.sleep(300)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "90_sleep.ipynb")
    env = {**os.environ, "REPRO_STORE": str(tmp_path / "store"), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(ROOT / "paper_figures.py"), "--notebooks", str(folder), "--all", "--profile", "smoke",
           "--executed", str(tmp_path / "executed"), "--figures", str(tmp_path / "figs"), "--progress-every", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    lines = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:  # until the kernel is in its last cell, the long one
        lines.append(line)
        if re.search(r"cell (\d+)/\1\b", line) or time.monotonic() > deadline:
            break
    kernels = psutil.Process(proc.pid).children(recursive=True)
    assert kernels and time.monotonic() < deadline, "".join(lines)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    took = time.monotonic() - start
    assert took < 10, took
    assert proc.returncode == 130
    assert "interrupted: what finished is stored; the same command resumes" in out and "Traceback" not in out
    assert not any(k.is_running() and k.status() != psutil.STATUS_ZOMBIE for k in kernels)
    assert not list((tmp_path / "executed").glob(".*.partial.ipynb"))

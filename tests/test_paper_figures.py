"""Tests of the notebook runner ``paper_figures.py`` on tiny throwaway notebooks (a kernel start is ~2 s each;
tests of what happens before and around the kernels replace ``run_notebooks``)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import _scripts
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from reprolib import claims, machine, replicates
from reprolib.store import Store

pf = _scripts.load("paper_figures.py")

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def _write(folder: Path, stem: str, cells: list) -> Path:
    path = folder / f"{stem}.ipynb"
    nbformat.write(new_notebook(cells=cells, metadata=KERNEL), path)
    return path


def _parameters(source: str):
    cell = new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


@pytest.fixture
def nbdir(tmp_path, monkeypatch):
    """01_alpha writes its parameters and a figure; 02_beta fails in its second cell; 10_gamma is idle."""
    for key in ("REPRO_PROFILE", "REPRO_FIGURES", "PYTHONUNBUFFERED", "PYTHONPATH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "")  # so that the runner's default is undone after the test
    monkeypatch.delenv("OMP_WAIT_POLICY")
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _write(folder, "01_alpha", [
        new_markdown_cell("Intro text\n\n# Alpha: the first claim\n\nmore"),
        _parameters('profile = "cpu"\noverrides = {}'),
        new_code_cell(
            "import json, os\nfrom pathlib import Path\n"
            "fig = Path(os.environ['REPRO_FIGURES'])\n"
            "(fig / 'alpha.png').write_bytes(b'not really a png')\n"
            "(fig / 'params.json').write_text(json.dumps({'profile': profile, 'overrides': overrides, "
            "'env': os.environ['REPRO_PROFILE'], 'cwd': os.getcwd(), 'omp': os.environ.get('OMP_WAIT_POLICY')}))"
        ),
    ])
    _write(folder, "02_beta", [
        new_markdown_cell("## Beta heading"),
        _parameters('profile = "cpu"'),
        new_code_cell("x = 1"),
        new_code_cell("raise ValueError('boom from beta')"),
        new_code_cell("y = 2"),
    ])
    _write(folder, "10_gamma", [new_code_cell("pass")])
    (folder / "scratch.ipynb").write_text((folder / "10_gamma.ipynb").read_text())  # not NN_topic
    return folder


def test_discover_orders_by_number_and_skips_unnumbered(nbdir):
    assert [p.stem for p in pf.discover(nbdir)] == ["01_alpha", "02_beta", "10_gamma"]


@pytest.mark.parametrize(
    "names, expected",
    [
        (["01"], ["01_alpha"]),
        (["1"], ["01_alpha"]),
        (["01_alpha"], ["01_alpha"]),
        (["alpha"], ["01_alpha"]),
        (["ALPHA.ipynb"], ["01_alpha"]),
        (["10"], ["10_gamma"]),
        (["gamma", "2", "1", "01_alpha", "alpha"], ["10_gamma", "02_beta", "01_alpha"]),
    ],
)
def test_resolve_names(nbdir, names, expected):
    assert [p.stem for p in pf.resolve(names, nbdir)] == expected


def test_unknown_name_exits_2_listing_valid_choices(nbdir, capsys):
    with pytest.raises(SystemExit) as exc:
        pf.main(["--notebooks", str(nbdir), "--only", "delta"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "delta" in err
    assert all(stem in err for stem in ("01_alpha", "02_beta", "10_gamma"))


def test_a_near_miss_is_answered_with_the_name_it_resembles(nbdir):
    with pytest.raises(ValueError, match="did you mean 'beta'"):
        pf.resolve(["bta"], nbdir)
    with pytest.raises(ValueError) as err:
        pf.resolve(["zzzz"], nbdir)
    assert "did you mean" not in str(err.value)


def test_all_and_only_together_are_refused(nbdir, capsys):
    with pytest.raises(SystemExit) as exc:
        pf.main(["--notebooks", str(nbdir), "--all", "--only", "01"])
    assert exc.value.code == 2
    assert "not several" in capsys.readouterr().err


def test_missing_data_stops_the_run_before_any_kernel(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "no-data"))
    executed = tmp_path / "executed"
    with pytest.raises(SystemExit) as exc:
        pf.main(["--only", "02", "--profile", "paper", "--executed", str(executed)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("CIFAR-10 is not under") == 1 and "data.load('cifar10', download=True)" in err
    assert not executed.exists()


def test_a_store_that_cannot_be_written_stops_the_run_before_any_kernel(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("REPRO_STORE", str(blocker / "store"))
    with pytest.raises(SystemExit) as exc:
        pf.main(["--only", "05", "--profile", "smoke", "--executed", str(tmp_path / "executed")])
    assert exc.value.code == 2
    assert "REPRO_STORE" in capsys.readouterr().err
    assert not (tmp_path / "executed").exists()


def test_unknown_profile_and_no_action_exit_2(nbdir, capsys):
    with pytest.raises(SystemExit) as exc:
        pf.main(["--notebooks", str(nbdir), "--all", "--profile", "huge"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "huge" in err and all(p in err for p in ("smoke", "cpu", "paper"))
    with pytest.raises(SystemExit) as exc:
        pf.main(["--notebooks", str(nbdir)])
    assert exc.value.code == 2
    assert "--all" in capsys.readouterr().err


def test_bad_override_exits_2(nbdir):
    with pytest.raises(SystemExit) as exc:
        pf.main(["--notebooks", str(nbdir), "--all", "--override", "no-equals-sign"])
    assert exc.value.code == 2


def test_one_override_flag_takes_several_settings(nbdir, tmp_path):
    figures = tmp_path / "figs"
    assert pf.main(["--notebooks", str(nbdir), "--only", "alpha", "--profile", "smoke", "--figures", str(figures),
                    "--executed", str(tmp_path / "executed"), "--override", "xs=[8, 16]", "ys={8: 5}",
                    "--override", "z=1"]) == 0
    assert json.loads((figures / "params.json").read_text())["overrides"] == {"xs": [8, 16], "ys": {"8": 5}, "z": 1}


def test_override_values_are_literals_or_strings():
    assert pf._override("n=3") == ("n", 3)
    assert pf._override("xs=[1, 2.5]") == ("xs", [1, 2.5])
    assert pf._override("name=hello world") == ("name", "hello world")


def test_list(nbdir, capsys):
    assert pf.main(["--notebooks", str(nbdir), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].split()[:2] == ["01", "01_alpha"] and lines[0].endswith("Alpha: the first claim")
    assert lines[1].endswith("Beta heading")
    assert lines[2].split() == ["10", "10_gamma"]


def test_a_truncated_notebook_is_named_before_anything_runs(nbdir, tmp_path, capsys):
    gamma = nbdir / "10_gamma.ipynb"
    gamma.write_text(gamma.read_text()[:40])
    with pytest.raises(SystemExit) as exc:
        pf.main(["--notebooks", str(nbdir), "--list"])
    assert exc.value.code == 2 and str(gamma) in capsys.readouterr().err
    executed = tmp_path / "executed"
    with pytest.raises(SystemExit) as exc:
        pf.main(["--notebooks", str(nbdir), "--only", "10", "--profile", "smoke", "--executed", str(executed)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("not a readable notebook") == 1 and f"git checkout -- {gamma}" in err
    assert not executed.exists()
    # the other command it gives rebuilds the notebook from its pair
    rebuild = re.search(r"`(jupytext --to ipynb [^`]+)`", err).group(1).split()
    gamma.with_suffix(".py").write_text("# %%\nprint('gamma')\n")
    subprocess.run([sys.executable, "-m", *rebuild], check=True, capture_output=True)
    assert not pf.unreadable([gamma])
    assert pf.main(["--notebooks", str(nbdir), "--only", "1", "--profile", "smoke", "--executed", str(executed),
                    "--figures", str(tmp_path / "figs")]) == 0  # the others still run


def test_run_writes_executed_copy_figure_and_parameters(nbdir, tmp_path, capsys):
    figures, executed = tmp_path / "figs", tmp_path / "executed"
    rc = pf.main([
        "--notebooks", str(nbdir), "--only", "alpha", "--profile", "smoke",
        "--override", "extra=[1, 2]", "--override", "label=hello",
        "--figures", str(figures), "--executed", str(executed),
    ])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "[1/1] 01_alpha ... ok (" in out
    assert (figures / "alpha.png").read_bytes() == b"not really a png"
    params = json.loads((figures / "params.json").read_text())
    assert params == {"profile": "smoke", "overrides": {"extra": [1, 2], "label": "hello"}, "env": "smoke",
                      "cwd": str(nbdir), "omp": "PASSIVE"}  # idle OpenMP threads sleep (pf.KERNEL_ENV)
    assert sorted(p.name for p in executed.iterdir()) == ["01_alpha.ipynb"]  # no temp file left
    nb = nbformat.read(executed / "01_alpha.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)


def test_the_kernels_wait_policy_is_the_users_when_given(nbdir, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert pf.main(["--notebooks", str(nbdir), "--only", "alpha", "--profile", "smoke", "--figures",
                    str(tmp_path / "figs"), "--executed", str(tmp_path / "executed")]) == 0
    assert json.loads((tmp_path / "figs" / "params.json").read_text())["omp"] == "ACTIVE"


def test_failure_is_reported_and_others_still_run(nbdir, tmp_path, capsys):
    figures, executed = tmp_path / "figs", tmp_path / "executed"
    args = ["--notebooks", str(nbdir), "--figures", str(figures), "--executed", str(executed)]
    rc = pf.main(args + ["--only", "beta", "alpha"])
    out = capsys.readouterr().out
    assert rc != 0
    assert "[1/2] 02_beta ... FAILED" in out and "[2/2] 01_alpha ... ok" in out
    # execution counts: parameters 1, injected parameters 2, `x = 1` 3, the raising cell 4
    assert "02_beta failed at cell In [4]" in out
    assert "ValueError: boom from beta" in out
    failed = executed / "02_beta.failed.ipynb"
    assert str(failed) in out and failed.exists()
    assert (executed / "01_alpha.ipynb").exists() and not (executed / "02_beta.ipynb").exists()
    assert not list(executed.glob(".*partial*"))

    (executed / "01_alpha.ipynb").unlink()
    rc = pf.main(args + ["--only", "2", "1", "--fail-fast", "--jobs", "1"])  # one at a time: alpha waits on beta
    out = capsys.readouterr().out
    assert rc != 0
    assert "[1/2] 02_beta ... FAILED" in out and "[2/2]" not in out and "--fail-fast" in out
    assert not (executed / "01_alpha.ipynb").exists()


# ---------------------------------------------------------------------------------------------------------------
# Claims report, expected verdicts, progress, settings checks, publishing.

CLAIMS_CELL = (
    "from reprolib.claims import Claims\n"
    "value = overrides.get('value', 0.4)\n"
    "C = Claims('91', profile, judged=profile != 'smoke')\n"
    "C.check('low', 'RP >= 0.6', value, '>=', 0.6, detail='toy')\n"
    "C.check('fine', 'RP <= 0.05', 0.01, '<=', 0.05)\n"
    "C.show()"
)


@pytest.fixture
def claimsdir(tmp_path, monkeypatch):
    """91_claims records two claims (91.low from the override `value`, 91.fine always holds); the record of
    expected verdicts is a file of the test's own (REPRO_EXPECTED), and there is no record of values and machine
    unless a test writes one (REPRO_RECORD)."""
    for key in ("REPRO_PROFILE", "REPRO_FIGURES", "PYTHONUNBUFFERED", "PYTHONPATH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "")  # so that the runner's default is undone after the test
    monkeypatch.delenv("OMP_WAIT_POLICY")
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _write(folder, "91_claims", [_parameters('profile = "cpu"\noverrides = {}'), new_code_cell(CLAIMS_CELL)])
    record = tmp_path / "expected.toml"
    monkeypatch.setenv("REPRO_EXPECTED", str(record))
    monkeypatch.setenv("REPRO_RECORD", str(tmp_path / "record.json"))
    monkeypatch.setenv("REPRO_REPLICATES", str(tmp_path / "replicates.json"))
    return folder, record


def _run(folder: Path, tmp_path: Path, *extra: str) -> int:
    return pf.main(["--notebooks", str(folder), "--all", "--figures", str(tmp_path / "figs"),
                    "--executed", str(tmp_path / "executed"), *extra])


def test_a_recorded_finding_is_reported_not_failed(claimsdir, tmp_path, capsys):
    folder, record = claimsdir
    record.write_text('[cpu."91.low"]\nholds = false\nwhy = "toy"\n')
    assert _run(folder, tmp_path, "--profile", "cpu") == 0
    out = capsys.readouterr().out
    assert "The paper's claims: 1 of 2 hold at cpu." in out
    assert "91.low: 0.400, needs >= 0.600 (RP >= 0.6); toy; a recorded finding" in out
    report = (tmp_path / "figs" / "claims.md").read_text()
    assert "## 91_claims" in report and "91.low" in report and "91.fine" in report
    made_on, by_stem = claims.read_json((tmp_path / "figs" / "claims.json").read_text())
    assert {c.id for c in by_stem["91_claims"]} == {"91.low", "91.fine"}
    assert made_on["describe"] in report and made_on["layout"]["threads"] == 2  # the cpu profile's kernels
    # --strict fails on any claim that does not hold, recorded or not
    assert _run(folder, tmp_path, "--profile", "cpu", "--strict") == 1
    assert "--strict: 91.low" in capsys.readouterr().out


def test_a_changed_verdict_fails_in_either_direction(claimsdir, tmp_path, capsys):
    folder, record = claimsdir
    record.write_text('[cpu."91.low"]\nholds = false\n')
    assert _run(folder, tmp_path, "--profile", "cpu", "--override", "value=0.7") == 1  # now holds
    out = capsys.readouterr().out
    assert "FAILED: 1 verdict(s) differ" in out and "91.low holds (0.7 >= 0.6)" in out
    record.write_text("")
    assert _run(folder, tmp_path, "--profile", "cpu") == 1  # expected to hold, does not
    assert "91.low does not hold (0.4 >= 0.6)" in capsys.readouterr().out
    # at smoke nothing is compared: the verdicts are shown as not judged
    assert _run(folder, tmp_path, "--profile", "smoke") == 0
    assert "Not judged at smoke" in capsys.readouterr().out


def test_a_record_no_notebook_checks_fails(claimsdir, tmp_path, capsys):
    folder, record = claimsdir
    record.write_text('[cpu."91.low"]\nholds = false\n\n[cpu."91.gone"]\nholds = false\n')
    assert _run(folder, tmp_path, "--profile", "cpu") == 1
    assert "records claims no notebook checks any more: 91.gone" in capsys.readouterr().out


def test_progress_names_cell_heading_and_library_work(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("REPRO_PROFILE", raising=False)
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _write(folder, "92_slow", [
        _parameters('profile = "cpu"\noverrides = {}'),
        new_markdown_cell("## Training the toy"),
        new_code_cell("import time\nfrom reprolib import progress\n"
                      "progress.update('sweep', 'models', 2, 5)\nprogress.update('train', 'toy-4', 30, 100)\n"
                      "time.sleep(4)"),
    ])
    assert _run(folder, tmp_path, "--profile", "smoke", "--progress-every", "1") == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "cell 3/3" in line]
    assert lines, "no progress line for the slow cell"
    # the last line may fall after the kernel has ended, when its work is rightly no longer shown
    working = [line for line in lines if "models 2/5 · train toy-4 30/100" in line]
    assert working and "92_slow · cell 3/3 (Training the toy)" in working[-1]
    assert "\x1b" not in "".join(lines) and "\r" not in "".join(lines)  # not a terminal: plain lines


def test_repro_profile_is_honoured_without_profile_flag(nbdir, tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_PROFILE", "smoke")
    figures = tmp_path / "figs"
    assert pf.main(["--notebooks", str(nbdir), "--only", "alpha", "--figures", str(figures),
                    "--executed", str(tmp_path / "executed")]) == 0
    assert json.loads((figures / "params.json").read_text())["profile"] == "smoke"
    monkeypatch.setenv("REPRO_PROFILE", "huge")
    with pytest.raises(SystemExit) as exc:
        pf.main(["--notebooks", str(nbdir), "--only", "alpha"])
    assert exc.value.code == 2


def test_bad_settings_exit_2_before_any_kernel(tmp_path, capsys):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _write(folder, "93_settings", [_parameters('profile = "cpu"\noverrides = {}'),
                                   new_code_cell('run = notebook.start("01", profile, overrides)')])
    with pytest.raises(SystemExit) as exc:
        _run(folder, tmp_path, "--profile", "smoke", "--override", "no_such_setting=3")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "93_settings" in err and "no_such_setting" in err and "nothing was run" in err
    # values of the wrong type or range, every problem named at once (issue 15: these used to fail an hour late)
    with pytest.raises(SystemExit) as exc:
        _run(folder, tmp_path, "--profile", "cpu", "--override", "seeds=abc", "sample_steps=-5")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "seeds='abc' is not allowed: a positive integer" in err and "sample_steps=-5 is not allowed" in err
    assert not (tmp_path / "executed").exists()


def test_publish_makes_the_run_the_committed_one(claimsdir, tmp_path, capsys):
    """Published notebooks keep their cells (no injected parameters, no papermill bookkeeping) with the run's
    outputs, their code cells counted 1, 2, 3; the gallery, the report and the README block come from the same run."""
    folder, record = claimsdir
    record.write_text('[cpu."91.low"]\nholds = false\n')
    assert _run(folder, tmp_path, "--profile", "cpu") == 0
    capsys.readouterr()
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    source = folder / "91_claims.ipynb"
    (root / "notebooks" / "91_claims.ipynb").write_bytes(source.read_bytes())
    (root / "README.md").write_text("intro\n<!-- results:begin -->\nold\n<!-- results:end -->\nrest\n")
    figs = tmp_path / "figs"
    (figs / "01_same_noise_grid.png").write_bytes(b"png")
    by_stem = pf.collect_claims(tmp_path / "executed", ["91_claims"])
    P = pf.run_settings([source], "cpu", {})
    pf.publish(tmp_path / "executed", figs, by_stem, "cpu", P, root=root)
    published = nbformat.read(root / "notebooks" / "91_claims.ipynb", as_version=4)
    original = nbformat.read(source, as_version=4)
    assert [(c.cell_type, c.source) for c in published.cells] == [(c.cell_type, c.source) for c in original.cells]
    assert all("papermill" not in c.metadata and "execution" not in c.metadata for c in published.cells)
    assert "papermill" not in published.metadata
    code = [c for c in published.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    counted = [o.execution_count for c in code for o in c.outputs if "execution_count" in o]
    assert set(counted) <= set(range(1, len(code) + 1))
    assert claims.from_notebook(published) == by_stem["91_claims"]  # the outputs are the run's
    assert (root / "results" / "gallery" / "01_same_noise_grid.png").read_bytes() == b"png"
    assert "91.low" in (root / "results" / "claims_cpu.md").read_text()
    record = claims.record("cpu", root / "results" / "claims_cpu.json")  # the record, with its machine
    assert record.layout == machine.layout(P) and record.values["91.low"] == 0.4
    umask = os.umask(0)
    os.umask(umask)
    for written in (root / "results" / "claims_cpu.md", root / "notebooks" / "91_claims.ipynb"):
        assert written.stat().st_mode & 0o777 == 0o666 & ~umask, written  # not mkstemp's 0600
    assert not list(root.rglob(".lock")) and not list(root.rglob("*.tmp"))
    readme = (root / "README.md").read_text()
    assert readme.startswith("intro\n<!-- results:begin -->") and readme.endswith("<!-- results:end -->\nrest\n")
    assert "\nold\n" not in readme and "The paper's claims: 1 of 2 hold at cpu." in readme
    assert "training replicates" not in readme  # no replicate record yet
    rep = [{"91_claims": [dataclasses.replace(c, value=v) for c in by_stem["91_claims"][:1]]} for v in (0.4, 0.5, 0.6)]
    (root / "results" / "claims_cpu_replicates.json").write_text(replicates.to_json(replicates.combine(rep), {}))
    pf.publish(tmp_path / "executed", figs, by_stem, "cpu", P, root=root)  # a single run keeps the record's lines
    readme = (root / "README.md").read_text()
    assert "- Over 3 training replicates" in readme and "results/claims_cpu_replicates.md" in readme
    assert f"Not yet in the replicate record (one training run so far): {by_stem['91_claims'][1].id}." in readme
    assert f"- Machine: {machine.describe(P)}" in readme
    assert "![01_same_noise_grid](results/gallery/01_same_noise_grid.png)" in readme
    assert "left out" in capsys.readouterr().out  # the other gallery figures were not in this run


def test_header_names_the_run_and_gains_its_wall_time(tmp_path, monkeypatch):
    """notebook.start shows profile, commit and date as the first output; finish puts the wall time into it (a
    display update that papermill writes back into the first cell's output)."""
    monkeypatch.delenv("REPRO_PROFILE", raising=False)
    folder = tmp_path / "notebooks"
    folder.mkdir()
    start = 'from reprolib import notebook\nrun = notebook.start("01", profile, overrides)'
    _write(folder, "94_header", [_parameters('profile = "cpu"\noverrides = {}'), new_code_cell(start),
                                 new_code_cell("run.finish()")])
    assert _run(folder, tmp_path, "--profile", "smoke") == 0
    nb = nbformat.read(tmp_path / "executed" / "94_header.ipynb", as_version=4)
    first = next(c for c in nb.cells if "notebook.start" in c.source).outputs[0]["data"]["text/markdown"]
    assert first.startswith("Notebook 01: profile **smoke** · commit `")
    assert "executed 20" in first and "wall time running" not in first and re.search(r"wall time \d+ s\b", first)


def test_a_warm_runs_header_says_so_and_gives_the_cold_runs_time(tmp_path, monkeypatch):
    """A run of all notebooks from an empty store records its wall time in the store; a later run that computes
    nothing says in each header that every result was read from the store, and names that cold run."""
    monkeypatch.delenv("REPRO_PROFILE", raising=False)
    monkeypatch.setenv("REPRO_STORE", str(tmp_path / "store"))
    folder = tmp_path / "notebooks"
    folder.mkdir()
    work = ("from reprolib import notebook\nrun = notebook.start('01', profile, overrides)\n"
            "if not run.store.exists('t', {'a': 1}, 'x'):\n    run.store.save('t', {'a': 1}, 'x', {'v': 1})\n"
            "run.finish()")
    _write(folder, "93_cold", [_parameters('profile = "cpu"\noverrides = {}'), new_code_cell(work)])

    def header() -> str:
        nb = nbformat.read(tmp_path / "executed" / "93_cold.ipynb", as_version=4)
        return next(c for c in nb.cells if "notebook.start" in c.source).outputs[0]["data"]["text/markdown"]

    assert pf.main(["--notebooks", str(folder), "--only", "93", "--profile", "smoke", "--executed",
                    str(tmp_path / "executed")]) == 0  # one notebook: not the cold time of a whole run
    assert Store(tmp_path / "store").cold_run("smoke") is None
    (tmp_path / "store" / "t").rename(tmp_path / "emptied")
    assert _run(folder, tmp_path, "--profile", "smoke") == 0
    cold = Store(tmp_path / "store").cold_run("smoke")
    assert cold["notebooks"].keys() == {"93_cold"} and cold["wall_s"] >= cold["notebooks"]["93_cold"] > 0
    assert "read from the store" not in header()

    assert _run(folder, tmp_path, "--profile", "smoke") == 0
    assert "every result read from the store (filled from empty by a run of all 1 notebooks in " in header()
    assert f"at commit `{cold['commit']}` on {cold['date']})" in header()  # on this machine: not named twice
    assert cold["machine"] in header()  # the header's own machine
    assert Store(tmp_path / "store").cold_run("smoke") == cold  # a warm run leaves the record as it was
    Store(tmp_path / "store").record_cold_run("smoke", {**cold, "machine": "cuda (a GPU) · 8 training workers"})
    assert _run(folder, tmp_path, "--profile", "smoke") == 0
    assert f"on {cold['date']}, on cuda (a GPU) · 8 training workers)" in header()  # made elsewhere: named


def test_progress_keeps_a_live_process_and_forgets_an_ended_one(tmp_path, monkeypatch):
    import subprocess
    from reprolib import progress

    monkeypatch.setenv(progress.ENV, str(tmp_path))
    progress.update("sweep", "models", 2, 24)
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / f"{ended.stdout.strip()}.json").write_text(json.dumps({"work": {"train": ["x", 1, 9]}}))
    (tmp_path / f"{os.getpid()}.json").touch()  # an hour-old word of a live process still stands
    os.utime(tmp_path / f"{os.getpid()}.json", (0, 0))
    assert progress.read(tmp_path) == [("sweep", "models", 2, 24)]
    progress.update("sweep", "models", 24, 24)
    assert progress.read(tmp_path) == []


def test_every_notebooks_models_train_in_one_pool_before_the_first_notebook(tmp_path, monkeypatch, capsys):
    """The runner trains what each notebook's ``zoo.plan`` names before any kernel starts (each notebook then
    finds its models in the store and trains nothing); a notebook without a plan costs nothing more."""
    monkeypatch.delenv("REPRO_PROFILE", raising=False)
    monkeypatch.setenv("REPRO_STORE", str(tmp_path / "store"))
    folder = tmp_path / "notebooks"
    folder.mkdir()
    check = ("from reprolib import fitting, notebook, zoo\nrun = notebook.start('05', profile, overrides)\n"
             "planned = zoo.plan('05', run.P, run.store)\n"
             "assert planned and all(fitting.is_fitted(c, run.store) for c in planned)\n"
             "assert fitting.fit_all(zoo.plan(\"05\", run.P, run.store), run.store, run.P) == {}")
    _write(folder, "95_planned", [_parameters('profile = "cpu"\noverrides = {}'), new_code_cell(check)])
    _write(folder, "96_plain", [new_code_cell("pass")])
    assert _run(folder, tmp_path, "--profile", "smoke") == 0
    out = capsys.readouterr().out
    assert "[training] 2 models the notebooks need, 2 job(s) trained now in one pool" in out
    assert out.index("[training]") < out.index("95_planned ...")
    capsys.readouterr()
    assert pf.main(["--notebooks", str(folder), "--only", "96", "--figures", str(tmp_path / "figs"),
                    "--executed", str(tmp_path / "executed"), "--profile", "smoke"]) == 0
    assert "[training]" not in capsys.readouterr().out


def test_jobs_runs_notebooks_side_by_side_and_reports_them_in_order(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("REPRO_PROFILE", raising=False)
    folder = tmp_path / "notebooks"
    folder.mkdir()
    stamp = ("import json, os, time\nt0 = time.time()\ntime.sleep(3)\n"
             "open(os.path.join({out!r}, '{stem}.json'), 'w').write(json.dumps([t0, time.time(), os.getcwd()]))")
    for stem in ("81_left", "82_right"):
        _write(folder, stem, [_parameters('profile = "cpu"'), new_markdown_cell(f"## {stem}"),
                              new_code_cell(stamp.format(out=str(tmp_path), stem=stem))])
    assert _run(folder, tmp_path, "--profile", "smoke", "--jobs", "2", "--progress-every", "1") == 0
    (a0, a1, cwd_a), (b0, b1, cwd_b) = (json.loads((tmp_path / f"{s}.json").read_text()) for s in ("81_left", "82_right"))
    assert a0 < b1 and b0 < a1  # they ran at the same time
    assert cwd_a == cwd_b == str(folder)  # each kernel in the notebooks' folder
    out = capsys.readouterr().out
    assert any("81_left · cell" in line and "82_right · cell" in line for line in out.splitlines())
    table = out[out.index("wall time  claims"):].splitlines()
    assert [line.split()[0] for line in table[1:3]] == ["81_left", "82_right"]
    with pytest.raises(SystemExit):
        pf.main(["--notebooks", str(folder), "--all", "--jobs", "0"])


# ---------------------------------------------------------------------------------------------------------------
# Machine settings some notebooks lack, --jobs auto, replicates, the progress folder between stages.

# The runner reads which settings a notebook takes from ``notebook.start("NN"`` in its source; a comment is
# enough, and spares the kernel the library.
DUMP = ("# notebook.start({nid!r}, profile, overrides)\nimport json, os\n"
        "open(os.path.join({out!r}, '{stem}.json'), 'w').write(json.dumps(overrides))")


def _settings_notebooks(folder: Path, out: Path, ids: dict[str, str]) -> None:
    folder.mkdir()
    for stem, nid in ids.items():
        _write(folder, stem, [_parameters('profile = "cpu"\noverrides = {}'),
                              new_code_cell(DUMP.format(nid=nid, out=str(out), stem=stem))])


def test_a_setting_some_notebooks_lack_goes_to_those_that_have_it(tmp_path, monkeypatch, capsys):
    """n_jobs is a setting of 01 (trains) and not of 08 (trains nothing): --all passes it to the one, says once
    that the other ignores it; a name no chosen notebook has, or a value one refuses, still stops everything."""
    monkeypatch.delenv("REPRO_PROFILE", raising=False)
    folder = tmp_path / "notebooks"
    _settings_notebooks(folder, tmp_path, {"71_trains": "01", "72_closed": "08"})
    assert _run(folder, tmp_path, "--profile", "smoke", "--override", "n_jobs=3", "seeds=16") == 0
    out = capsys.readouterr().out
    said = "n_jobs=3: not a setting of 72_closed (ignored there); seeds=16: not a setting of 72_closed (ignored there)"
    assert out.count("not a setting of") == 2 and f"settings: {said}\n" in out
    assert out.index(said) < out.index("[1/2]")
    assert json.loads((tmp_path / "71_trains.json").read_text()) == {"n_jobs": 3, "seeds": 16}
    assert json.loads((tmp_path / "72_closed.json").read_text()) == {}
    (tmp_path / "executed").rename(tmp_path / "executed.first")
    for bad in (["no_such_setting=3"], ["n_jobs=0"]):
        with pytest.raises(SystemExit) as exc:
            _run(folder, tmp_path, "--profile", "smoke", "--override", *bad)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "nothing was run" in err and err.count("\n  ") == 1  # one message: one problem
    assert "71_trains: notebook 01: n_jobs=0 is not allowed: 'auto' or a positive integer" in err
    assert not (tmp_path / "executed").exists()


def test_notebooks_that_read_02s_sweep_read_it_as_this_run_trains_it(tmp_path):
    """07 and 08 reuse notebook 02's models: in a run with 02, they get 02's share of the overrides as ``sweep``
    (and use ``sizes`` so); without 02 in the run, they read 02's sweep as its defaults say."""
    folder = tmp_path / "notebooks"
    _settings_notebooks(folder, tmp_path, {"02_sweep": "02", "07_reuses": "07", "08_reads": "08"})
    paths = pf.discover(folder)
    over = {"sizes": [16, 256], "steps": {16: 3, 256: 3}, "theory_seeds": 8, "n_jobs": 2}
    with_02 = {p.stem: pf.overrides_for(p, "smoke", over, paths) for p in paths}
    assert with_02["02_sweep"] == {"sizes": [16, 256], "steps": {16: 3, 256: 3}, "n_jobs": 2}
    assert with_02["07_reuses"] == {"n_jobs": 2, "sweep": with_02["02_sweep"]}
    assert with_02["08_reads"] == {"theory_seeds": 8, "sweep": with_02["02_sweep"]}
    assert pf.check_settings(paths, "smoke", over) == [] and "sizes" not in pf.ignored(paths, "smoke", over)
    alone = pf.overrides_for(paths[2], "smoke", over, paths[1:])
    assert alone == {"theory_seeds": 8}


def test_a_name_no_chosen_notebook_has_is_refused(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "notebooks"
    _settings_notebooks(folder, tmp_path, {"71_trains": "01", "72_closed": "08"})
    with pytest.raises(SystemExit) as exc:
        _run(folder, tmp_path, "--profile", "cpu", "--override", "no_such_setting=3")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "no_such_setting=3: not a setting of any chosen notebook (71_trains, 72_closed); their settings: " in err
    assert "theory_seeds" in err and "sample_steps" in err  # 08's and 01's
    assert not (tmp_path / "executed").exists()


def _jobs_run(tmp_path, monkeypatch, cores: int, *extra: str) -> int:
    """The notebooks at once the runner chooses on ``cores`` usable cores (no kernel started)."""
    chosen = []

    def run_notebooks(paths, jobs, fail_fast, run):
        chosen.append(jobs)
        return [(p.stem, "ok", 0.0) for p in paths]

    monkeypatch.setattr(machine, "usable_cores", lambda: cores)
    monkeypatch.setattr(pf, "run_notebooks", run_notebooks)
    assert _run(tmp_path / "notebooks", tmp_path, "--profile", "smoke", *extra) == 0
    return chosen[0]


def test_jobs_auto_fills_the_usable_cores_with_kernels(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("REPRO_PROFILE", raising=False)
    monkeypatch.setenv("REPRO_RECORD", str(tmp_path / "record.json"))
    _settings_notebooks(tmp_path / "notebooks", tmp_path, {"71_a": "01", "72_b": "02", "73_c": "08"})
    assert _jobs_run(tmp_path, monkeypatch, 2) == 2  # kernels of 2 threads at smoke: two on 2 cores of a CPU
    assert "3 notebook(s), 2 at a time" in capsys.readouterr().out
    assert _jobs_run(tmp_path, monkeypatch, 5) == 2
    assert _jobs_run(tmp_path, monkeypatch, 6) == 3
    assert _jobs_run(tmp_path, monkeypatch, 64) == 3  # never more than the notebooks
    assert _jobs_run(tmp_path, monkeypatch, 16, "--override", "threads=8") == 2
    assert _jobs_run(tmp_path, monkeypatch, 12, "--override", "threads=4") == 3
    assert _jobs_run(tmp_path, monkeypatch, 1) == 1
    assert _jobs_run(tmp_path, monkeypatch, 64, "--jobs", "1") == 1  # as given
    assert "default: auto" in pf._parser().format_help()
    # a kernel that drives a GPU with every core's threads runs alone; the CPU's second kernel is a CPU's
    monkeypatch.setattr(machine, "usable_cores", lambda: 16)
    assert pf.notebooks_at_once("auto", 8, {"threads": 16, "device": "cuda"}) == 1
    assert pf.notebooks_at_once("auto", 8, {"threads": 16, "device": "cpu"}) == 2


def test_the_progress_of_a_failed_training_is_dropped_before_the_notebooks(tmp_path, monkeypatch, capsys):
    """A training worker that failed may leave its last word ("train ... 0/5,000"); the workers are idle once the
    training stage ends, so the runner empties the progress folder before the first notebook starts."""
    seen = []

    def prefit(paths, profile, overrides, replicates=1):
        folder = Path(os.environ["REPRO_PROGRESS"])
        (folder / f"{os.getpid()}.json").write_text(json.dumps({"work": {"train": ["toy", 0, 5000]}}))
        raise RuntimeError("a training failed")

    def run_notebooks(paths, jobs, fail_fast, run):
        seen.append(sorted(Path(os.environ["REPRO_PROGRESS"]).iterdir()))
        return [(p.stem, "ok", 0.0) for p in paths]

    monkeypatch.setattr(pf, "prefit", prefit)
    monkeypatch.setattr(pf, "run_notebooks", run_notebooks)
    _settings_notebooks(tmp_path / "notebooks", tmp_path, {"71_a": "01"})
    assert _run(tmp_path / "notebooks", tmp_path, "--profile", "smoke") == 0
    assert "[training] FAILED (RuntimeError: a training failed)" in capsys.readouterr().out
    assert seen == [[]]


def _record(path: Path, layout: dict, value: float) -> None:
    """A record of values (as ``publish`` writes it) made on ``layout``, where 91.low measured ``value``."""
    low = {"id": "91.low", "statement": "RP >= 0.6", "source": "paper", "value": value, "op": ">=",
           "threshold": 0.6, "holds": value >= 0.6, "profile": "cpu", "judged": True, "expected": False}
    path.write_text(json.dumps({"machine": {"layout": layout, "describe": "the record's machine"},
                                "claims": {"91_claims": [low]}}))


def test_a_verdict_that_differs_in_a_replicate_is_listed_not_failed(claimsdir, tmp_path, capsys):
    """On another machine layout than the record's, a verdict that differs is listed beside the record's value
    with its margin, and fails the run only with --strict; on the record's layout it fails the run."""
    folder, expected = claimsdir
    expected.write_text('[cpu."91.low"]\nholds = false\n')
    here = machine.layout(pf.run_settings([folder / "91_claims.ipynb"], "cpu", {}))
    record = Path(os.environ["REPRO_RECORD"])
    _record(record, {**here, "threads": here["threads"] + 62}, 0.41)
    assert _run(folder, tmp_path, "--profile", "cpu", "--override", "value=0.7") == 0
    out = capsys.readouterr().out
    assert "(a replicate: the record was made on the record's machine)" in out
    assert "Verdicts that differ from the record for cpu: 1, in a replicate on " in out
    assert "91.low: record 0.410 (does not hold), this run 0.700 (holds); needs >= 0.600, margin +0.100" in out
    assert "FAILED" not in out
    report = (tmp_path / "figs" / "claims.md").read_text().splitlines()
    assert report[2].startswith("- Machine: ") and report[2].endswith("a replicate: the record was made on the "
                                                                      "record's machine")
    assert _run(folder, tmp_path, "--profile", "cpu", "--override", "value=0.7", "--strict") == 1
    assert "FAILED: 1 verdict(s) differ from reprolib/expected_verdicts.toml [cpu] in this replicate (--strict): " \
           "91.low holds" in capsys.readouterr().out
    _record(record, here, 0.41)  # the record's own layout: a regression, as ever
    assert _run(folder, tmp_path, "--profile", "cpu", "--override", "value=0.7") == 1
    out = capsys.readouterr().out
    assert "replicate" not in out and "FAILED: 1 verdict(s) differ" in out


def test_a_record_made_on_another_cpu_makes_this_run_a_replicate(claimsdir, tmp_path, capsys):
    """A run faked as another CPU (the record names another one, as an AMD record read on an Intel machine):
    exit 0, its differing verdicts listed; a record whose layout names no CPU at all is another machine too."""
    folder, expected = claimsdir
    expected.write_text('[cpu."91.low"]\nholds = false\n')
    here = machine.layout(pf.run_settings([folder / "91_claims.ipynb"], "cpu", {}))
    record = Path(os.environ["REPRO_RECORD"])
    for layout in ({**here, "cpu": "AMD EPYC 7B13 (AVX2)"}, {k: v for k, v in here.items() if k != "cpu"}):
        _record(record, layout, 0.41)
        assert _run(folder, tmp_path, "--profile", "cpu", "--override", "value=0.7") == 0
        out = capsys.readouterr().out
        assert "(a replicate: the record was made on the record's machine)" in out
        assert "91.low: record 0.410 (does not hold), this run 0.700 (holds)" in out and "FAILED" not in out


REPLICATES_CELL = (
    "from reprolib.claims import Claims\n"
    "value = overrides.get('values', [0.4])[overrides.get('replicate', 0)]\n"
    "C = Claims('91', profile, judged=True)\n"
    "C.check('low', 'RP >= 0.6', value, '>=', 0.6)\n"
    "C.show()"
)


def _replicates_notebook(folder: Path) -> None:
    _write(folder, "91_claims", [_parameters('profile = "cpu"\noverrides = {}'), new_code_cell(REPLICATES_CELL)])


def test_replicates_run_every_notebook_in_each_and_judge_by_the_majority(claimsdir, tmp_path, capsys):
    folder, expected = claimsdir
    _replicates_notebook(folder)
    expected.write_text('[cpu."91.low"]\nholds = false\n')
    # replicate 1 alone holds: unstable, the majority does not hold, as recorded
    assert _run(folder, tmp_path, "--profile", "cpu", "--replicates", "3", "--override", "values=[0.4, 0.7, 0.45]") == 0
    out = capsys.readouterr().out
    assert "[replicate 2 of 0-2]" in out and "Over 3 training replicates" in out
    assert "91.low: 1 of 3 replicates hold, range 0.400-0.700, needs >= 0.600" in out
    for r in (1, 2):
        assert (tmp_path / "executed" / f"replicate{r}" / "91_claims.ipynb").exists()
    report = (tmp_path / "figs" / "claims_cpu_replicates.md").read_text()
    assert "| 91.low | >= 0.600 | 0.400 | 0.700 | 0.450 |" in report and "1 of 3 | does not hold (unstable)" in report
    data = json.loads((tmp_path / "figs" / "claims_cpu_replicates.json").read_text())
    assert data["claims"]["91_claims"][0]["unstable"] is True
    # the majority holds where the record says it does not: a regression, whatever replicate 0 says
    assert _run(folder, tmp_path, "--profile", "cpu", "--replicates", "3", "--override", "values=[0.4, 0.7, 0.8]") == 1
    assert "FAILED: 1 majority verdict(s) over 3 training replicates differ" in capsys.readouterr().out


def test_a_single_run_lists_an_unstable_claims_verdict_and_fails_a_stable_ones(claimsdir, tmp_path, capsys):
    folder, expected = claimsdir
    _replicates_notebook(folder)
    expected.write_text('[cpu."91.low"]\nholds = false\n')
    assert _run(folder, tmp_path, "--profile", "cpu", "--replicates", "3", "--override", "values=[0.4, 0.7, 0.45]") == 0
    Path(os.environ["REPRO_REPLICATES"]).write_text((tmp_path / "figs" / "claims_cpu_replicates.json").read_text())
    capsys.readouterr()
    assert _run(folder, tmp_path, "--profile", "cpu", "--override", "values=[0.7]") == 0  # unstable: listed
    out = capsys.readouterr().out
    assert "91.low: 0.700 (1 of 3 replicates hold, range 0.400-0.700)" in out and "FAILED" not in out
    assert _run(folder, tmp_path, "--profile", "cpu", "--replicates", "3", "--override", "values=[0.4, 0.5, 0.45]") == 0
    Path(os.environ["REPRO_REPLICATES"]).write_text((tmp_path / "figs" / "claims_cpu_replicates.json").read_text())
    assert _run(folder, tmp_path, "--profile", "cpu", "--override", "values=[0.7]") == 1  # stable: a regression
    assert "FAILED: 1 verdict(s) differ" in capsys.readouterr().out


def test_replicates_and_a_replicate_override_together_are_refused(claimsdir, tmp_path, capsys):
    folder, _ = claimsdir
    with pytest.raises(SystemExit) as exit_:
        _run(folder, tmp_path, "--profile", "cpu", "--replicates", "2", "--override", "replicate=1")
    assert exit_.value.code == 2 and "not both" in capsys.readouterr().err

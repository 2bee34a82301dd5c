"""Tests of the notebook runner ``paper_figures.py`` on tiny throwaway notebooks.

Three notebook executions in all (a kernel start is ~2 s each).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("paper_figures", ROOT / "paper_figures.py")
pf = importlib.util.module_from_spec(_spec)
sys.modules["paper_figures"] = pf
_spec.loader.exec_module(pf)

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
            "'env': os.environ['REPRO_PROFILE'], 'cwd': os.getcwd()}))"
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
                      "cwd": str(nbdir)}
    assert sorted(p.name for p in executed.iterdir()) == ["01_alpha.ipynb"]  # no temp file left
    nb = nbformat.read(executed / "01_alpha.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)


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
    rc = pf.main(args + ["--only", "2", "1", "--fail-fast"])
    out = capsys.readouterr().out
    assert rc != 0
    assert "[1/2] 02_beta ... FAILED" in out and "[2/2]" not in out and "--fail-fast" in out
    assert not (executed / "01_alpha.ipynb").exists()

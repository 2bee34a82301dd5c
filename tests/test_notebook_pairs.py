"""Every committed notebook is the pair of its `.py` (jupytext py:percent, the source of truth): the same cells,
in the same order, with the same code, markdown and tags. Outputs and execution metadata may differ."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def cells(nb) -> list[tuple[str, str, list]]:
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in nb.cells]


def test_every_notebook_has_both_halves():
    stems = {p.stem for p in SOURCES}
    assert stems and stems == {p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_committed_notebook_matches_its_py(source):
    py = cells(jupytext.read(source))
    ipynb = cells(nbformat.read(source.with_suffix(".ipynb"), as_version=4))
    for k, (a, b) in enumerate(zip(py, ipynb)):
        assert a == b, f"{source.stem}: cell {k} differs between .py and .ipynb; run `jupytext --sync {source}`"
    assert len(py) == len(ipynb), f"{source.stem}: {len(py)} cells in .py, {len(ipynb)} in .ipynb"


def test_the_check_sees_a_drift(tmp_path):
    """An edit to the .py alone is caught (the test above can fail)."""
    source = SOURCES[0]
    nb = jupytext.read(source)
    nb.cells[-1].source += "\nprint('edited in the .py only')"
    assert cells(nb) != cells(nbformat.read(source.with_suffix(".ipynb"), as_version=4))

"""The project's scripts (paper_figures.py, benchmarks/, replications/scripts/) imported by their tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load(relative: str):
    """The script at ``ROOT / relative`` as a module named for its file, registered in ``sys.modules`` (its
    dataclasses look their module up while it loads)."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module

"""Where the companion reads and writes: repository root, figures, artifact store, data.

Every location can be moved with an environment variable, so tests, papermill runs and users with
their own disks all share one convention:

- ``REPRO_FIGURES``: figures (PNG + PDF); default ``<repo>/figures``.
- ``REPRO_STORE``: trained artifacts keyed by config hash; default ``<repo>/store``.
- ``REPRO_DATA``: torchvision data roots (MNIST, CIFAR-10); default ``<repo>/data``.

Outside a checkout (an installed package) the defaults fall under ``~/.cache/reprolib``.
"""

from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def repo_root() -> Path | None:
    """The checkout holding this package, or None when reprolib is installed elsewhere."""
    root = _PKG.parent
    return root if (root / "pyproject.toml").exists() and (root / "notebooks").is_dir() else None


def _default(sub: str) -> Path:
    root = repo_root()
    return (root / sub) if root is not None else Path.home() / ".cache" / "reprolib" / sub


def figures_dir() -> Path:
    return Path(os.environ.get("REPRO_FIGURES") or _default("figures"))


def store_dir() -> Path:
    return Path(os.environ.get("REPRO_STORE") or _default("store"))


def data_dir() -> Path:
    return Path(os.environ.get("REPRO_DATA") or _default("data"))


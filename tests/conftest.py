"""Shared test settings: one torch thread, a default store that no test can write into by accident, and a
writer of tiny CIFAR-10 folders in the real format."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread_and_private_store(monkeypatch, tmp_path):
    # Models this small gain nothing from threads, and on a busy 2-core machine OpenMP's spinning
    # threads make these tests tens of times slower.
    monkeypatch.setenv("REPRO_STORE", str(tmp_path / "default-store"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cifar_rows(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


# Ten well-separated RGB colours, one per class, for a fixture a classifier can learn.
_PALETTE = np.array([[30, 30, 30], [225, 30, 30], [30, 225, 30], [30, 30, 225], [225, 225, 30],
                     [225, 30, 225], [30, 225, 225], [225, 225, 225], [128, 128, 30], [30, 128, 128]])


def _separable_rows(labels, seed):
    """Each image its class's colour (planes R, G, B of 1024 pixels, as in the real rows) plus noise."""
    rng = np.random.default_rng(seed)
    colour = np.repeat(_PALETTE[np.asarray(labels)], 1024, axis=1)
    return np.clip(colour + rng.integers(-25, 26, size=colour.shape), 0, 255).astype(np.uint8)


def _write_cifar(root: Path, per_batch=2, n_test=3, skip=(), separable=False):
    """``root/cifar-10-batches-py`` as the official "python version": five training batches and a test batch,
    each a protocol-2 pickle of {b"data": uint8 (n, 3072), b"labels": [...], ...}; returns {name: rows}.
    Pixels are uniform noise, or with ``separable`` a colour per class plus noise."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for i in range(1, 6):
        batches[f"data_batch_{i}"] = _cifar_rows(per_batch, i)
    batches["test_batch"] = _cifar_rows(n_test, 99)
    for k, (name, rows) in enumerate(batches.items()):
        labels = [(k + j) % 10 for j in range(len(rows))]
        if separable:
            rows = batches[name] = _separable_rows(labels, 1000 + k)
        if name in skip:
            continue
        with open(folder / name, "wb") as fh:  # the original is a protocol-2 pickle with bytes keys
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": rows,
                         b"filenames": [b"x.png"] * len(rows)}, fh, protocol=2)
    return batches


@pytest.fixture
def write_cifar():
    """``write_cifar(root, per_batch=2, n_test=3, skip=(), separable=False)``: a tiny CIFAR-10 folder under
    ``root``."""
    return _write_cifar

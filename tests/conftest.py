"""Shared test settings: one torch thread, and a default store that no test can write into by accident."""

from __future__ import annotations

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

"""What notebooks compute from stored models (03's hand-off table and noise-plane images, 07's noise edits, 08's
denoiser r^2 table) is cached in the store: a second run loads the same numbers without computing them, and a new
model is a new key."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from reprolib import banks, closed_form, editing, hyperplane, regimes, samplers
from reprolib.store import Store
from reprolib.train import TrainConfig, train, training_set

TINY = TrainConfig(n=16, net={"kind": "mlp", "width": 16, "depth": 1}, steps=10, batch=8)
P = {"data": "digits", "shape": (1, 8, 8), "sample_steps": 3, "device": "cpu"}


def _forbid(*_, **__):
    raise AssertionError("computed again")


def test_a_table_is_computed_once_and_read_back_equal(tmp_path):
    store = Store(tmp_path)
    frame = pd.DataFrame({"n": [16, 32], "order": ["D* above", "model above"], "r2": [0.25, -1.5]})
    calls = []
    first = banks.table(store, {"t": 1}, lambda: calls.append(1) or frame)
    again = banks.table(store, {"t": 1}, _forbid)
    assert calls == [1] and first is frame
    pd.testing.assert_frame_equal(again, frame)
    other = banks.table(store, {"t": 2}, lambda: frame.iloc[:1])  # another key computes its own
    assert len(other) == 1


def test_handoff_is_cached_under_the_models_key(tmp_path, monkeypatch):
    store = Store(tmp_path)
    train(TINY, store, progress=False)
    images = training_set(TINY).images
    optimal = hyperplane.optimal(images)
    seeds = range(6)
    theory = samplers.sample(optimal, seeds, P["shape"], "heun", P["sample_steps"])
    first = regimes.handoff(TINY, store, seeds, [0.3, 3.0], P)  # D* and its samples from the model's training set
    direct = regimes.handoff_table(train(TINY, store, progress=False), optimal, theory, images, seeds, [0.3, 3.0], P)
    pd.testing.assert_frame_equal(first, direct)
    monkeypatch.setattr(regimes, "handoff_table", _forbid)
    pd.testing.assert_frame_equal(regimes.handoff(TINY, store, seeds, [0.3, 3.0], P), first)
    with pytest.raises(AssertionError, match="computed again"):  # another model is another key
        other = TINY.replace(seed=1)
        train(other, store, progress=False)
        regimes.handoff(other, store, seeds, [0.3, 3.0], P)


def test_denoiser_agreement_is_cached_under_the_models_keys(tmp_path, monkeypatch):
    store = Store(tmp_path)
    models = {(16, 16, 0): TINY}
    train(TINY, store, progress=False)
    args = (["D*", "Gaussian"], P, store, [0.5, 2.0], 4)
    first = closed_form.agreement(models, *args)
    assert set(first.theory) == {"D*", "Gaussian"} and len(first) == 2 * 2 * 2  # theories x sigmas x splits
    monkeypatch.setattr(closed_form, "_agreement", _forbid)
    pd.testing.assert_frame_equal(closed_form.agreement(models, *args), first)
    with pytest.raises(AssertionError, match="computed again"):
        closed_form.agreement(models, ["D*"], *args[1:])  # other theories: another table


def test_plane_samples_are_the_models_plane_images_drawn_once(tmp_path, monkeypatch):
    store = Store(tmp_path)
    model = train(TINY, store, progress=False)
    plane_p = {**P, "grid": 4}
    corners = [3, 5, 7]
    grid = hyperplane.plane(corners, P["shape"], plane_p["grid"])
    expected = hyperplane.generate(model, grid, corners, plane_p)
    first = banks.plane_samples(TINY, store, corners, plane_p)
    for got, want in zip(first, expected):  # unclipped, as generate returns them
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert first[0].shape == (3, *P["shape"]) and first[1].shape == (16, *P["shape"])
    monkeypatch.setattr(hyperplane, "generate", _forbid)
    again = banks.plane_samples(TINY, store, corners, plane_p)
    assert all(torch.equal(a, b) for a, b in zip(again, first))
    with pytest.raises(AssertionError, match="computed again"):  # another plane is another bank
        banks.plane_samples(TINY, store, [3, 5, 8], plane_p)


def test_edit_samples_are_the_models_edit_paths_drawn_once(tmp_path, monkeypatch):
    store = Store(tmp_path)
    model = train(TINY, store, progress=False)
    seeds, angles = [11, 12, 13], [0, 20, 45]
    direction = samplers.noise([7], P["shape"])[0]
    expected = editing.paths(model, seeds, direction, angles, P["shape"], P["sample_steps"])
    first = banks.edit_samples(TINY, store, seeds, 7, angles, P)
    torch.testing.assert_close(first, expected, rtol=0, atol=0)
    assert first.shape == (len(angles), len(seeds), *P["shape"])
    monkeypatch.setattr(editing, "paths", _forbid)
    assert torch.equal(banks.edit_samples(TINY, store, seeds, 7, angles, P), first)
    with pytest.raises(AssertionError, match="computed again"):  # another direction is another bank
        banks.edit_samples(TINY, store, seeds, 8, angles, P)

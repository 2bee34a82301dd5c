"""The CIFAR-10 judge of notebook 04: a small residual CNN trained once per config and cached in the store,
checked on a CIFAR-format fixture whose classes are colours (so that a few steps can learn them)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from reprolib import classifier, conditional, data
from reprolib.store import Store

TINY = classifier.CNNConfig(width=4, epochs=20, batch=32, lr=0.1)


@pytest.fixture
def colour_cifar(tmp_path, monkeypatch, write_cifar):
    write_cifar(tmp_path / "data", per_batch=20, n_test=50, separable=True)  # 100 training, 50 test images
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "data"))
    return tmp_path


def test_cnn_judge_learns_the_fixture_and_is_cached(colour_cifar, monkeypatch):
    store = Store(colour_cifar / "store")
    judge = classifier.train_cnn(TINY, store, progress=False)
    assert judge.accuracy >= 0.5  # chance is 0.1
    test = data.load("cifar10", train=False)
    predicted = judge.predict(test.images)
    assert predicted.dtype == torch.long and predicted.shape == (50,)
    assert judge.accuracy == float((predicted == test.labels).double().mean()) and judge.tested == 50
    [saved] = (colour_cifar / "store" / classifier.KIND).glob("*/config.json")
    assert json.loads(saved.read_text())["width"] == 4
    assert torch.load(saved.parent / "final.pt", weights_only=True)["payload"]["threads"] == [1]

    def no_training(*args):
        raise AssertionError("trained again")

    monkeypatch.setattr(classifier, "augment", no_training)
    again = conditional.judge("cifar10", store, "cpu", width=4, epochs=20, batch=32, lr=0.1)
    assert again.accuracy == judge.accuracy and torch.equal(again.predict(test.images), predicted)
    assert again.tested == 50  # a loaded judge knows its accuracy's denominator too
    assert not any(p.requires_grad for p in again.model.parameters()) and not again.model.training


def test_cnn_judge_on_noise_stays_near_chance(tmp_path, monkeypatch, write_cifar):
    write_cifar(tmp_path / "data", per_batch=20, n_test=50)  # uniform noise: nothing to learn
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "data"))
    assert classifier.train_cnn(TINY, Store(tmp_path / "store"), progress=False).accuracy <= 0.3


def test_augment_crops_the_reflect_padded_image_and_mirrors_some():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    out = classifier.augment(x.repeat(16, 1, 1, 1), torch.Generator().manual_seed(0))
    flipped = 0
    for k, img in enumerate(out):
        src = padded[k % 2]
        crops = [(src[:, i:i + 32, j:j + 32], f) for i in range(9) for j in range(9) for f in (False, True)]
        hits = [f for crop, f in crops if torch.equal(img, crop.flip(-1) if f else crop)]
        assert hits, k
        flipped += hits[0]
    assert 0 < flipped < len(out)


def test_digits_judge_is_unchanged():
    judge = conditional.judge("digits")
    assert judge.accuracy == pytest.approx(0.993, abs=5e-4)
    assert judge.tested == 450 and (judge.accuracy * judge.tested) == pytest.approx(447)  # a quarter of 1,797

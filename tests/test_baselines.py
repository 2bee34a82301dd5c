"""Tests of ``reprolib.baselines``: GANs and VAEs on tiny budgets (a few seconds in all)."""

from __future__ import annotations

import pytest
import torch

from reprolib import baselines as B
from reprolib.store import Store

TINY = dict(steps=30, batch=32, n=200)
WIDTH = {"mlp": 32, "conv": 8}


def _gan(**kw):
    arch = kw.pop("arch", "mlp")
    return B.GANConfig(arch=arch, width=WIDTH[arch], **{**TINY, **kw})


def _vae(**kw):
    arch = kw.pop("arch", "mlp")
    return B.VAEConfig(arch=arch, width=WIDTH[arch], **{**TINY, **kw})


TRAIN = {"gan": (_gan, B.train_gan), "vae": (_vae, B.train_vae)}


def _params(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_latents_depend_on_seed_alone():
    a = B.latents([5, 6, 7], 16)
    assert a.shape == (3, 16) and a.dtype == torch.float32
    assert torch.equal(a[1], B.latents([6], 16)[0])
    assert torch.equal(a[2], B.latents([9, 7], 16)[1])
    assert not torch.equal(a[0], a[1])


def test_default_width_is_filled_in_so_equal_models_share_a_key():
    assert B.GANConfig(arch="conv").key_dict() == B.GANConfig(arch="conv", width=B.DEFAULT_WIDTH["conv"]).key_dict()
    assert B.GANConfig().key_dict() != B.GANConfig(seed=1).key_dict()
    with pytest.raises(ValueError, match="arch"):
        B.VAEConfig(arch="transformer")


@pytest.mark.parametrize("kind", ["gan", "vae"])
@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_shapes_and_range(tmp_path, kind, arch):
    make, train = TRAIN[kind]
    g = train(make(arch=arch), Store(tmp_path), progress=False)
    assert not g.training
    x = B.generate(g, range(10), 16)
    assert x.shape == (10, 1, 8, 8) and x.device.type == "cpu"
    assert x.min() >= -1 and x.max() <= 1
    assert x.std(0).mean() > 0  # different latents give different images
    # A sample depends on its seed, and on its batch only by round-off.
    assert torch.allclose(B.generate(g, [3], 16)[0], x[3], atol=1e-6)
    assert torch.allclose(B.generate(g, range(10), 16, batch_size=3), x, atol=1e-6)


@pytest.mark.parametrize("kind", ["gan", "vae"])
def test_deterministic_and_seed_dependent(tmp_path, kind):
    make, train = TRAIN[kind]
    a = train(make(seed=0), Store(tmp_path / "a"), progress=False)
    b = train(make(seed=0), Store(tmp_path / "b"), progress=False)
    c = train(make(seed=1), Store(tmp_path / "a"), progress=False)
    assert torch.equal(_params(a), _params(b))  # same config, same thread count: same bits
    assert B.trained_threads(make(seed=0), Store(tmp_path / "a")) == [torch.get_num_threads()] == [1]
    assert torch.equal(B.generate(a, range(20), 16), B.generate(b, range(20), 16))
    assert not torch.allclose(_params(a), _params(c))
    assert not torch.allclose(B.generate(a, range(20), 16), B.generate(c, range(20), 16), atol=1e-3)


@pytest.mark.parametrize("kind", ["gan", "vae"])
def test_second_call_loads_from_store(tmp_path, kind, monkeypatch):
    make, train = TRAIN[kind]
    cfg, store = make(seed=3), Store(tmp_path)
    assert not B.is_trained(cfg, store)
    first = B.generate(train(cfg, store, progress=False), range(20), 16)
    assert B.is_trained(cfg, store)
    assert len(B.losses(cfg, store)) == 0  # 30 steps: no full window of 100 yet

    # Any optimiser step now would mean training again.
    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading from the store")

    monkeypatch.setattr(torch.optim.Adam, "step", no_training)
    second = train(cfg, store, progress=False)
    assert not second.training and not any(p.requires_grad for p in second.parameters())
    assert torch.equal(B.generate(second, range(20), 16), first)


def test_losses_are_recorded_per_100_steps(tmp_path):
    store = Store(tmp_path)
    cfg = _vae(steps=200)
    B.train_vae(cfg, store, progress=False)
    recorded = B.losses(cfg, store)
    assert len(recorded) == 2 and all(torch.isfinite(torch.tensor(recorded)))
    assert recorded[1] < recorded[0]  # the ELBO improves from the first 100 steps to the next


def test_vae_model_exposes_encoder_and_decoder(tmp_path):
    store = Store(tmp_path)
    cfg = _vae()
    vae = B.train_vae_model(cfg, store, progress=False)
    z = B.latents(range(4), cfg.latent)
    assert torch.equal(vae.decode(z), B.train_vae(cfg, store, progress=False)(z))
    assert vae.encoder(torch.zeros(2, 1, 8, 8)).shape == (2, 2 * cfg.latent)

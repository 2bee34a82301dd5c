"""Low-rank adapters, the pixel Frechet distance and noise-direction edits (notebooks 06 and 07)."""

from __future__ import annotations

import math
from dataclasses import asdict

import pytest
import torch
from torch import nn

from reprolib import editing, lora, quality
from reprolib.networks import UNet
from reprolib.store import Store
from reprolib.train import TrainConfig, build, mark_trainable, train


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_lora_starts_as_the_adapted_network_and_changes_it_with_rank_r_only():
    torch.manual_seed(0)
    net = UNet(width=8)
    for p in net.parameters():  # the head is zero-initialised; make the output depend on everything
        nn.init.normal_(p, std=0.1)
    x, c = torch.randn(3, 1, 8, 8), torch.randn(3)
    before = net(x, c)
    names = lora.add(net, rank=2)
    assert "stem" in names and not any("attn" in n for n in names)  # attention layers are never called
    assert torch.allclose(net(x, c), before)  # B = 0: the adapted network is the network
    lin = net.embed.mlp[0]
    with torch.no_grad():
        lin.lora_up.weight.normal_()
    delta = lin(torch.eye(lin.in_features)) - nn.functional.linear(torch.eye(lin.in_features), lin.weight, lin.bias)
    assert torch.linalg.matrix_rank(delta) == 2
    assert not torch.allclose(net(x, c), before)


def test_lora_fine_tuning_trains_only_the_adapters_and_reloads_from_the_store(tmp_path):
    store = Store(tmp_path)
    parent = TrainConfig(n=40, net={"kind": "unet", "width": 8}, steps=10, batch=8)
    child = parent.replace(init=asdict(parent), lora={"rank": 2}, classes=(5, 6), steps=10, seed=1)
    model = build(child, (1, 8, 8))
    n_train = mark_trainable(model, child)
    assert n_train == sum(p.numel() for k, p in model.named_parameters() if lora.is_adapter(k))
    assert 0 < n_train < sum(p.numel() for p in model.parameters()) / 2
    tuned = train(child, store, progress=False)
    base = train(parent, store, progress=False).state_dict()
    state = tuned.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in base.items())  # the parent's weights are frozen
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in state.items() if "lora_up" in k)
    again = train(child, store, progress=False)  # from the store: the adapters come back
    x, s = torch.randn(4, 1, 8, 8), torch.full((4,), 0.5)
    assert torch.allclose(again(x, s), tuned(x, s))


def test_frechet_matches_the_gaussian_closed_form_and_penalises_blur():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20_000, 4, generator=g)
    b = 0.5 * torch.randn(20_000, 4, generator=g) + 1.0
    assert quality.frechet(a, b) == pytest.approx(4 * 1.0 + 4 * (1 - 0.5) ** 2, rel=0.05)
    assert quality.frechet(a, a) == pytest.approx(0, abs=1e-6)
    from reprolib import data
    digits = data.load("digits").images
    blurry = digits.mean(0, keepdim=True) + 0.2 * (digits - digits.mean(0, keepdim=True))
    assert quality.frechet(blurry, digits) > 5 * quality.real_floor(digits)


def test_rotation_keeps_the_norm_and_turns_by_the_angle():
    z, d = torch.randn(5, 1, 8, 8), torch.randn(1, 8, 8)
    assert torch.allclose(editing.rotate(z, d, 0), z, atol=1e-6)
    for deg in (30, 90):
        r = editing.rotate(z, d, deg)
        assert torch.allclose(r.flatten(1).norm(dim=1), z.flatten(1).norm(dim=1), rtol=1e-5)
        cos = (r.flatten(1) * z.flatten(1)).sum(1) / z.flatten(1).norm(dim=1) ** 2
        assert torch.allclose(cos, torch.full((5,), math.cos(math.radians(deg))), atol=1e-5)


def test_identical_models_edit_alike_and_unrelated_changes_do_not():
    g = torch.Generator().manual_seed(1)
    path = torch.randn(3, 50, 1, 8, 8, generator=g)
    paired, chance = editing.change_agreement(path, path)
    assert paired.shape == (2, 50) and torch.allclose(paired, torch.ones_like(paired))
    assert chance.abs().mean() < 0.3
    other = torch.randn(3, 50, 1, 8, 8, generator=g)
    assert editing.change_agreement(path, other)[0].abs().mean() < 0.3

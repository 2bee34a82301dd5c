"""Backbone options: the U-Net's GroupNorm grouping and the scale of its noise features.

The defaults must stay the rules the first stores were trained with (a stored model is loaded by its config,
and GroupNorm's weights have the same shape under any grouping, so a changed default would load silently
wrong); ``group_size=4, noise_scale=1`` are EDM's DDPM++ choices, which the size sweep uses.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from reprolib import networks, profiles, zoo


def _norms(net):
    return [m for m in net.modules() if isinstance(m, nn.GroupNorm)]


@pytest.mark.parametrize("channels", [4, 8, 16, 32, 64, 128])
def test_default_grouping_is_the_first_stores_rule(channels):
    assert networks.group_norm(channels).num_groups == math.gcd(channels, 8)


@pytest.mark.parametrize("channels,groups", [(4, 1), (8, 2), (16, 4), (64, 16), (128, 32), (256, 32)])
def test_group_size_follows_ddpmpp(channels, groups):
    assert networks.group_norm(channels, group_size=4).num_groups == groups


@pytest.mark.parametrize("channels", [4, 6, 9, 10, 12, 24, 36, 100, 200])
def test_group_size_always_divides_and_keeps_at_least_that_many_channels(channels):
    g = networks.group_norm(channels, group_size=4).num_groups
    assert channels % g == 0 and channels // g >= 4 and g <= 32


def test_small_unet_normalises_channels_alone_by_default_and_in_groups_with_group_size():
    """Width 4 under the first rule is instance norm wherever a layer has 8 channels or fewer; DDPM++'s never is."""
    torch.manual_seed(0)
    legacy = networks.build("unet", in_channels=1, resolution=8, width=4)
    ddpmpp = networks.build("unet", in_channels=1, resolution=8, width=4, group_size=4)
    small = [m for m in _norms(legacy) if m.num_channels <= 8]
    assert len(small) >= 5 and all(m.num_groups == m.num_channels for m in small)
    assert all(m.num_channels // m.num_groups >= 4 for m in _norms(ddpmpp))
    x, c = torch.randn(3, 1, 8, 8), torch.randn(3)
    assert ddpmpp(x, c).shape == x.shape
    # the grouping changes no weight shape: that is why it must be part of the config, never a new default
    assert {k: v.shape for k, v in legacy.state_dict().items()} == {k: v.shape for k, v in ddpmpp.state_dict().items()}


def _features(embedding, c_noise):
    """The sinusoidal features the embedding's MLP receives."""
    seen = []
    hook = embedding.mlp.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    embedding(c_noise, None)
    hook.remove()
    return seen[0]


@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_noise_features_change_at_most_scale_per_unit_of_c_noise(scale):
    emb = networks.NoiseEmbedding(32, scale=scale)
    c = torch.linspace(-2, 2, 4001)
    slope = (_features(emb, c).diff(dim=0).abs() / (c[1] - c[0])).max()
    assert slope <= scale * 1.001
    assert slope >= 0.9 * scale  # the fastest feature runs at the full scale


def test_the_sweep_uses_ddpmpp_and_section_one_keeps_its_stored_unet():
    P = profiles.settings("02", "smoke")
    nets = [cfg.net for cfg in zoo.regimes(P).values()]
    assert all(net["group_size"] == 4 and net["noise_scale"] == 1.0 for net in nets)
    assert sorted({net["width"] for net in nets}) == sorted(P["widths"])
    unet = next(v.cfg.net for v in zoo.section1(profiles.settings("01", "smoke")) if v.name == "U-Net EDM (Heun)")
    assert unet == zoo.DIGIT_NETS["unet"]


def test_a_nets_override_wins_over_the_sweeps_defaults():
    P = profiles.settings("02", "smoke", nets={"unet": {"group_size": 2}})
    assert all(cfg.net["group_size"] == 2 for cfg in zoo.regimes(P).values())

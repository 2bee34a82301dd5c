"""Backbones only: ``net(x, c_noise, labels=None) -> tensor shaped like x``.

How the output is read (eps, x0, velocity, preconditioned residual) is the formulation's business
(``formulations.py``), in the spirit of EDM's split between networks and preconditioning. Every
backbone takes an optional class label; label ``num_classes`` is the "no label" token used by
classifier-free guidance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class NoiseEmbedding(nn.Module):
    """Sinusoidal features of the scalar noise condition (Vaswani et al. 2017), then an MLP.

    The features are cos/sin of ``scale * c_noise * 10000^(-i / half)``. ``scale`` 100 (the default, under which
    the first stores were trained) suits DDPM's c_noise = t / T in [0, 1]; EDM's DDPM++ feeds c_noise = ln(sigma) / 4
    at scale 1 (Karras et al. 2022, Table 1), whose features stay smooth in sigma.
    """

    def __init__(self, dim: int, num_classes: int = 0, scale: float = 100.0):
        super().__init__()
        self.dim, self.scale = dim, scale
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.SiLU(), nn.Linear(2 * dim, dim))
        self.label = nn.Embedding(num_classes + 1, dim) if num_classes else None

    def forward(self, c_noise: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=c_noise.device) / half)
        angles = c_noise.float()[:, None] * freqs[None] * self.scale
        emb = self.mlp(torch.cat([angles.cos(), angles.sin()], dim=1))
        if self.label is not None:
            if labels is None:
                labels = torch.full_like(c_noise, self.label.num_embeddings - 1, dtype=torch.long)
            emb = emb + self.label(labels)
        return emb


def group_norm(channels: int, group_size: int | None = None) -> nn.GroupNorm:
    """GroupNorm with EDM's DDPM++ grouping for ``group_size`` k: min(32, C // k) groups of at least k channels
    (Karras et al. 2022, ``training/networks.py``). ``None`` keeps the rule the first stores were trained with,
    gcd(C, 8) groups, which below 16 channels normalises each channel alone (instance norm)."""
    if group_size is None:
        groups = math.gcd(channels, 8)
    else:
        groups = max(1, min(32, channels // group_size))
        while channels % groups:
            groups -= 1
    return nn.GroupNorm(groups, channels)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, group_size: int | None = None):
        super().__init__()
        self.norm1, self.conv1 = group_norm(cin, group_size), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2, self.conv2 = group_norm(cout, group_size), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        return self.skip(x) + self.conv2(h)


class SelfAttention2d(nn.Module):
    def __init__(self, channels: int, heads: int = 1, group_size: int | None = None):
        super().__init__()
        self.norm = group_norm(channels, group_size)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x):
        b, c, h, w = x.shape
        t = self.norm(x).flatten(2).transpose(1, 2)
        return x + self.attn(t, t, t, need_weights=False)[0].transpose(1, 2).reshape(b, c, h, w)


class UNet(nn.Module):
    """A DDPM++-like U-Net (Song et al. 2021; Karras et al. 2022) scaled by ``width``.

    ``channel_mult`` gives one level per entry; ``attn_res`` lists the resolutions with attention.
    ``group_size`` and ``noise_scale`` are the GroupNorm grouping (``group_norm``) and the noise features'
    scale (``NoiseEmbedding``); their defaults are the first stores' rules, ``group_size=4, noise_scale=1``
    are DDPM++'s as EDM trains it.
    """

    def __init__(self, in_channels=1, resolution=8, width=32, channel_mult=(1, 2), num_blocks=1,
                 attn_res=(), num_classes=0, group_size=None, noise_scale=100.0):
        super().__init__()
        emb_dim = 4 * width
        self.embed = NoiseEmbedding(emb_dim, num_classes, noise_scale)
        block = lambda cin, cout: ResBlock(cin, cout, emb_dim, group_size)
        attention = lambda c: SelfAttention2d(c, group_size=group_size)
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        chans, skips, res = width, [width], resolution
        for level, mult in enumerate(channel_mult):
            for _ in range(num_blocks):
                self.down.append(nn.ModuleList([block(chans, width * mult),
                                                attention(width * mult) if res in attn_res else nn.Identity()]))
                chans = width * mult
                skips.append(chans)
            if level < len(channel_mult) - 1:
                self.down.append(nn.Conv2d(chans, chans, 3, stride=2, padding=1))
                skips.append(chans)
                res //= 2
        self.mid = nn.ModuleList([block(chans, chans), attention(chans), block(chans, chans)])
        for level, mult in reversed(list(enumerate(channel_mult))):
            for _ in range(num_blocks + 1):
                self.up.append(nn.ModuleList([block(chans + skips.pop(), width * mult),
                                              attention(width * mult) if res in attn_res else nn.Identity()]))
                chans = width * mult
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
                res *= 2
        self.head = nn.Sequential(group_norm(chans, group_size), nn.SiLU(), nn.Conv2d(chans, in_channels, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x, c_noise, labels=None):
        emb = self.embed(c_noise, labels)
        h = self.stem(x)
        hs = [h]
        for layer in self.down:
            h = layer(h) if isinstance(layer, nn.Conv2d) else layer[1](layer[0](h, emb))
            hs.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for layer in self.up:
            h = layer(h) if isinstance(layer, nn.Upsample) else layer[1](layer[0](torch.cat([h, hs.pop()], 1), emb))
        return self.head(h)


class ResMLP(nn.Module):
    """A residual MLP on flattened pixels: a backbone with no spatial prior at all."""

    def __init__(self, in_channels=1, resolution=8, width=256, depth=4, num_classes=0):
        super().__init__()
        dim = in_channels * resolution * resolution
        self.embed = NoiseEmbedding(width, num_classes)
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"norm": nn.LayerNorm(width), "emb": nn.Linear(width, width),
                           "mlp": nn.Sequential(nn.Linear(width, 2 * width), nn.SiLU(), nn.Linear(2 * width, width))})
            for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x, c_noise, labels=None):
        emb = self.embed(c_noise, labels)
        h = self.inp(x.flatten(1))
        for b in self.blocks:
            h = h + b["mlp"](b["norm"](h) + b["emb"](emb))
        return self.out(h).view_as(x)


class UViT(nn.Module):
    """A small U-ViT (Bao et al. 2023): patches and the noise as tokens, long skips between halves."""

    def __init__(self, in_channels=1, resolution=8, width=64, depth=4, heads=4, patch=2, num_classes=0):
        super().__init__()
        self.patch, self.res, self.cin = patch, resolution, in_channels
        tokens = (resolution // patch) ** 2
        self.embed = NoiseEmbedding(width, num_classes)
        self.inp = nn.Linear(in_channels * patch * patch, width)
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, width) * 0.02)
        layer = lambda: nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                                   batch_first=True, norm_first=True)
        self.first = nn.ModuleList(layer() for _ in range(depth // 2))
        self.mid = layer()
        self.last = nn.ModuleList(layer() for _ in range(depth // 2))
        self.skips = nn.ModuleList(nn.Linear(2 * width, width) for _ in range(depth // 2))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, in_channels * patch * patch)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, c_noise, labels=None):
        b, p, g = x.shape[0], self.patch, self.res // self.patch
        t = x.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).reshape(b, g * g, -1)
        h = torch.cat([self.embed(c_noise, labels)[:, None], self.inp(t)], dim=1) + self.pos
        skips = []
        for blk in self.first:
            h = blk(h)
            skips.append(h)
        h = self.mid(h)
        for blk, lin in zip(self.last, self.skips):
            h = blk(lin(torch.cat([h, skips.pop()], dim=-1)))
        t = self.out(self.norm(h[:, 1:]))
        return t.reshape(b, g, g, self.cin, p, p).permute(0, 3, 1, 4, 2, 5).reshape_as(x)


BACKBONES = {"unet": UNet, "mlp": ResMLP, "uvit": UViT}


def build(kind: str, **kwargs) -> nn.Module:
    """A backbone by name with its keyword arguments (``in_channels``, ``resolution``, sizes...)."""
    if kind not in BACKBONES:
        raise ValueError(f"Unknown backbone '{kind}'. Choose one of {', '.join(BACKBONES)}.")
    return BACKBONES[kind](**kwargs)

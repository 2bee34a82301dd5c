"""Low-rank adapters (LoRA, Hu et al. 2021) on the linear and convolutional layers of a network.

An adapted layer keeps its weight W and adds a low-rank update, y = W x + (alpha / r) B A x, with A random
and B zero, so an adapted network starts as exactly the network it adapts. For a k x k convolution, A is a
k x k convolution to r channels (same stride and padding) and B a 1 x 1 convolution back: the usual
convolutional reading of LoRA. The adapters are child modules ``lora_down`` (A) and ``lora_up`` (B) of the
layer they adapt, added through a forward hook, so the layer's own parameter names do not change and a
parent's state dict loads into the adapted network as it is. Training only the adapters is the caller's
business (``is_adapter`` names them); ``train.py`` does it for a config with ``lora`` set.
"""

from __future__ import annotations

import math

from torch import nn

_MARK = "lora_"


def _hook(module, args, output):
    return output + module.lora_scale * module.lora_up(module.lora_down(args[0]))


def _inside_attention(name: str, net: nn.Module) -> bool:
    """Layers of nn.MultiheadAttention are read as raw weights, never called: a hook there would be dead."""
    parts = name.split(".")
    return any(isinstance(net.get_submodule(".".join(parts[:k])), nn.MultiheadAttention) for k in range(1, len(parts)))


def add(net: nn.Module, rank: int = 4, alpha: float | None = None, include: tuple | None = None) -> list[str]:
    """Adapt every Linear and Conv2d of ``net`` (those whose name starts with one of ``include``, if given).

    Returns the names of the adapted layers. ``alpha`` defaults to ``rank`` (scale 1).
    """
    scale = (alpha if alpha is not None else rank) / rank
    adapted = []
    for name, m in list(net.named_modules()):
        if not isinstance(m, (nn.Linear, nn.Conv2d)) or hasattr(m, "lora_up") or _MARK in name:
            continue
        if (include is not None and not name.startswith(tuple(include))) or _inside_attention(name, net):
            continue
        if isinstance(m, nn.Linear):
            down, up = nn.Linear(m.in_features, rank, bias=False), nn.Linear(rank, m.out_features, bias=False)
        else:
            down = nn.Conv2d(m.in_channels, rank, m.kernel_size, m.stride, m.padding, bias=False)
            up = nn.Conv2d(rank, m.out_channels, 1, bias=False)
        nn.init.kaiming_uniform_(down.weight, a=math.sqrt(5))
        nn.init.zeros_(up.weight)
        m.add_module("lora_down", down.to(m.weight.device))
        m.add_module("lora_up", up.to(m.weight.device))
        m.lora_scale = scale
        m.register_forward_hook(_hook)
        adapted.append(name)
    return adapted


def is_adapter(parameter_name: str) -> bool:
    """True for the parameters ``add`` created."""
    return f".{_MARK}" in f".{parameter_name}"

"""One style for every figure: image grids, score heatmaps, regime shading; saved as PNG and PDF."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from .paths import figures_dir
from .store import atomic_write

sns.set_theme(context="notebook", style="white", font_scale=0.9)


def save(fig, name: str, folder: str | Path | None = None) -> Path:
    """Write ``<figures>/<name>.png`` and ``.pdf`` atomically; returns the PNG path."""
    folder = Path(folder) if folder is not None else figures_dir()
    for ext in ("png", "pdf"):
        atomic_write(folder / f"{name}.{ext}", lambda f: fig.savefig(f, dpi=150, bbox_inches="tight", format=ext),
                     lock=False)
    return folder / f"{name}.png"


def _as_image(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [-1, 1] to an array imshow takes."""
    x = ((x.detach().float().cpu() + 1) / 2).clamp(0, 1)
    return x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()


def image_grid(rows: dict, ncols: int | None = None, size: float = 0.6, title: str | None = None):
    """One row per named set of images (the same seeds in every row): the paper's Figure 1 layout. Drawn as one
    mosaic in one axes: an axes per image made a 16 x 16 grid take seconds to draw and as long to save."""
    names = list(rows)
    ncols = ncols or min(len(v) for v in rows.values())
    fig, ax = plt.subplots(figsize=(ncols * size + 1.6, len(names) * size))
    mosaic, centres = _mosaic([[_as_image(rows[name][c]) for c in range(ncols)] for name in names])
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks(centres, names, fontsize=8)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title)
    return fig


def _mosaic(images: list[list[np.ndarray]], gap: int = 2) -> tuple[np.ndarray, list[float]]:
    """Equal-sized images tiled row by row on white, ``gap`` pixels apart after upscaling small images (nearest)
    to about 32 pixels so that the gap stays thin; returns the mosaic and each row's vertical centre."""
    h, w = images[0][0].shape[:2]
    k = max(1, 32 // max(h, w))
    tiles = [[np.kron(im, np.ones((k, k) + (1,) * (im.ndim - 2))) for im in row] for row in images]
    th, tw = h * k, w * k
    rows, cols = len(tiles), len(tiles[0])
    out = np.ones((rows * (th + gap) - gap, cols * (tw + gap) - gap) + tiles[0][0].shape[2:])
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            out[r * (th + gap):r * (th + gap) + th, c * (tw + gap):c * (tw + gap) + tw] = tile
    return out, [r * (th + gap) + (th - 1) / 2 for r in range(rows)]


def heatmap(matrix: np.ndarray, labels: list[str], ax=None, title: str = "", fmt: str = ".2f", vmin=0.0, vmax=1.0,
            cmap: str = "viridis"):
    """A labelled square score matrix."""
    if ax is None:
        _, ax = plt.subplots(figsize=(0.55 * len(labels) + 2, 0.5 * len(labels) + 1.2))
    sns.heatmap(matrix, annot=True, fmt=fmt, xticklabels=labels, yticklabels=labels, vmin=vmin, vmax=vmax,
                cmap=cmap, ax=ax, square=True, cbar=False, annot_kws={"fontsize": 7})
    ax.set_title(title)
    ax.tick_params(labelsize=7)
    return ax


def shade_regimes(ax, x, memorization_until: float | None, generalization_from: float | None):
    """Shade the memorization (left) and generalization (right) regimes of a score-vs-N plot."""
    lo, hi = min(x), max(x)
    if memorization_until is not None:
        ax.axvspan(lo, memorization_until, color="tab:blue", alpha=0.08, label="memorization")
    if generalization_from is not None:
        ax.axvspan(generalization_from, hi, color="tab:green", alpha=0.08, label="generalization")

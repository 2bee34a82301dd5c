"""One style for every figure: image grids, score heatmaps, regime shading; saved as PNG and PDF."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import to_rgb

from .paths import figures_dir
from .store import atomic_write

# White axes, no grid, small type: the panels of 8x8 digits are small. Set here rather than through seaborn, whose
# import alone took about a second (scipy.stats among what it loads) for two calls.
plt.rcParams.update({
    "axes.grid": False, "axes.facecolor": "white", "axes.edgecolor": "0.15", "axes.titlesize": 10.5,
    "axes.labelsize": 9.5, "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9,
    "font.size": 9.5, "lines.linewidth": 1.5, "figure.facecolor": "white",
})


def save(fig, name: str, folder: str | Path | None = None) -> None:
    """Write ``<figures>/<name>.png`` and ``.pdf`` atomically. Returns nothing, so that a notebook cell ending in
    it shows no path of the machine that ran it."""
    folder = Path(folder) if folder is not None else figures_dir()
    for ext in ("png", "pdf"):
        atomic_write(folder / f"{name}.{ext}", lambda f: fig.savefig(f, dpi=150, bbox_inches="tight", format=ext),
                     lock=False)


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
    """A labelled square score matrix, each cell annotated with its value (none where it is NaN), in black or
    white, whichever contrasts more with the cell's colour."""
    if ax is None:
        _, ax = plt.subplots(figsize=(0.55 * len(labels) + 2, 0.5 * len(labels) + 1.2))
    matrix = np.asarray(matrix, dtype=float)
    image = ax.imshow(np.ma.masked_invalid(matrix), vmin=vmin, vmax=vmax, cmap=cmap)
    for (i, j), value in np.ndenumerate(matrix):
        if np.isfinite(value):
            ax.text(j, i, format(value, fmt), ha="center", va="center", fontsize=7,
                    color="black" if _luminance(image.to_rgba(value)) > _EQUAL_CONTRAST else "white")
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=90)
    ax.set_yticks(ticks, labels)
    ax.tick_params(labelsize=7, length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title)
    return ax


# The luminance L at which black and white text contrast equally: (L + 0.05) / 0.05 = 1.05 / (L + 0.05) (WCAG 2.x
# contrast ratio), about 0.18.
_EQUAL_CONTRAST = (1.05 * 0.05) ** 0.5 - 0.05


def _luminance(colour) -> float:
    """Relative luminance of an sRGB colour (WCAG 2.x)."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in to_rgb(colour)]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def width_colour(width: int, widths) -> str:
    """The colour of a U-Net width in every notebook's figures: the i-th narrowest of the profile's ``widths`` is
    matplotlib's colour Ci (C0, C1, C2: blue, orange, green)."""
    return f"C{sorted(widths).index(width)}"


def pair_colour(i: int) -> str:
    """The colour of the i-th pair of widths: after the widths' own (C3, C4, ...), so a pair is never read as a
    width."""
    return f"C{3 + i}"


def shade_regimes(ax, x, memorization_until: float | None, generalization_from: float | None):
    """Shade the memorization (left) and generalization (right) regimes of a score-vs-N plot."""
    lo, hi = min(x), max(x)
    if memorization_until is not None:
        ax.axvspan(lo, memorization_until, color="tab:blue", alpha=0.08, label="memorization")
    if generalization_from is not None:
        ax.axvspan(generalization_from, hi, color="tab:green", alpha=0.08, label="generalization")

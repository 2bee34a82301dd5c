"""Time to draw and save an image grid: ``plotting.image_grid`` (one mosaic in one axes) against a grid of one
axes per image, the layout it replaced, in the same process.

Run by hand on a quiet machine:

    .venv/bin/python benchmarks/bench_figures.py [--repeats 5]

Appends a dated section to ``benchmarks/results.md``: for each grid size the median seconds of drawing the figure
and of ``plotting.save`` (PNG and PDF), both layouts interleaved so that machine drift hits both alike.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reprolib import plotting  # noqa: E402


def axes_per_image(rows: dict, size: float = 0.6):
    """The reference: one axes per image, labels on the first column."""
    names = list(rows)
    ncols = min(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(names), ncols, figsize=(ncols * size + 1.6, len(names) * size), squeeze=False,
                             gridspec_kw=dict(wspace=0.04, hspace=0.04))
    for r, name in enumerate(names):
        for c in range(ncols):
            axes[r, c].imshow(((rows[name][c, 0] + 1) / 2).clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1,
                              interpolation="nearest")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    return fig


def timed(draw, rows: dict, folder: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    fig = draw(rows)
    t1 = time.perf_counter()
    plotting.save(fig, "grid", folder)
    t2 = time.perf_counter()
    plt.close(fig)
    return t1 - t0, t2 - t1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--results", default=str(Path(__file__).with_name("results.md")))
    args = parser.parse_args()
    lines = []
    with tempfile.TemporaryDirectory() as folder:
        for nrows, ncols in ((4, 12), (16, 16)):
            rows = {f"model {r}": torch.rand(ncols, 1, 8, 8) * 2 - 1 for r in range(nrows)}
            runs = {"one axes per image": [], "mosaic (image_grid)": []}
            for _ in range(args.repeats):
                runs["one axes per image"].append(timed(axes_per_image, rows, Path(folder)))
                runs["mosaic (image_grid)"].append(timed(plotting.image_grid, rows, Path(folder)))
            med = {k: [statistics.median(x[i] for x in v) for i in range(2)] for k, v in runs.items()}
            ref = sum(med["one axes per image"])
            for name, (draw, save) in med.items():
                lines.append(f"| {nrows} x {ncols} | {name} | {draw:.2f} | {save:.2f} | {ref / (draw + save):.1f}x |")
                print(lines[-1], flush=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    text = (f"\n## {stamp} - drawing and saving an image grid (benchmarks/bench_figures.py)\n\n"
            f"{platform.machine()}, matplotlib {matplotlib.__version__}, 8x8 images, median of {args.repeats}; "
            "save is PNG + PDF at 150 dpi.\n\n| grid | layout | draw s | save s | speed-up |\n|---|---|---|---|---|\n"
            + "\n".join(lines) + "\n")
    with open(args.results, "a") as f:
        f.write(text)


if __name__ == "__main__":
    main()

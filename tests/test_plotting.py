"""Figures: the image grid is one mosaic (every image lands whole in its row and column, on white, with its row's
label); a saved figure is a PNG and a PDF."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from reprolib import plotting  # noqa: E402


def test_mosaic_places_each_image_in_its_cell():
    images = [[np.full((8, 8), 0.1 * (3 * r + c)) for c in range(3)] for r in range(2)]
    out, centres = plotting._mosaic(images, gap=2)
    # 8 pixels are shown at 32
    assert out.shape == (2 * 32 + 2, 3 * 32 + 2 * 2)
    for r in range(2):
        for c in range(3):
            cell = out[r * 34:r * 34 + 32, c * 34:c * 34 + 32]
            np.testing.assert_array_equal(cell, 0.1 * (3 * r + c))
    assert (out[32:34] == 1).all() and (out[:, 32:34] == 1).all()  # white gaps
    assert centres == [15.5, 49.5]


def test_mosaic_keeps_colour_and_large_images_unscaled():
    rgb = np.random.default_rng(0).random((32, 32, 3))
    out, _ = plotting._mosaic([[rgb, rgb]], gap=1)
    assert out.shape == (32, 65, 3)
    np.testing.assert_array_equal(out[:, 33:], rgb)


def test_image_grid_labels_each_row():
    rows = {"first": torch.zeros(4, 1, 8, 8), "second": torch.ones(5, 1, 8, 8)}
    fig = plotting.image_grid(rows)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["first", "second"]
    shown = ax.images[0].get_array()
    assert shown.shape == (2 * 32 + 2, 4 * 32 + 3 * 2)  # as many columns as the shortest row
    assert shown[:32, :32].max() == 0.5 and shown[34:, :32].min() == 1.0  # [-1, 1] shown as [0, 1]


def test_heatmap_writes_each_value_in_the_colour_that_reads_on_its_cell():
    import matplotlib.pyplot as plt

    matrix = np.array([[0.0, 1.0], [0.5, np.nan]])
    fig, ax = plt.subplots()
    plotting.heatmap(matrix, ["a", "b"], ax, "title", fmt=".1f", cmap="gray")
    texts = {(t.get_position(), t.get_text()): t.get_color() for t in ax.texts}
    # column j, row i; the NaN cell stays blank; white on black, black on white and on mid-grey
    assert texts == {((0, 0), "0.0"): "white", ((1, 0), "1.0"): "black", ((0, 1), "0.5"): "black"}
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"] == [t.get_text() for t in ax.get_yticklabels()]
    assert ax.get_title() == "title"
    plt.close(fig)


def test_save_writes_png_and_pdf_and_returns_nothing_a_cell_would_show(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    assert plotting.save(fig, "line", tmp_path) is None
    assert (tmp_path / "line.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "line.pdf").read_bytes()[:4] == b"%PDF"
    plt.close(fig)


def test_a_width_has_one_colour_in_every_figure_and_pairs_never_take_a_widths():
    assert [plotting.width_colour(w, [16, 4, 8]) for w in (4, 8, 16)] == ["C0", "C1", "C2"]  # narrowest first
    assert plotting.width_colour(32, [8, 16, 32]) == "C2"  # the mnist rung's widest, as the cpu rung's
    assert {plotting.pair_colour(i) for i in range(3)}.isdisjoint({"C0", "C1", "C2"})

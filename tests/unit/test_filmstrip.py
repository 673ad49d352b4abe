"""Filmstrips: real glyphs for the sampler's labels (sigma) and a colour legend in the PNG and the GIF."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np

from interp.report.filmstrip import filmstrip_gif, filmstrip_png, gif_font
from interp.tasks.maze import LEGEND, PALETTE, TRAIL


def test_gif_font_draws_sigma_as_a_glyph_not_the_missing_box():
    font = gif_font()
    sigma = np.asarray(font.getmask("σ"))
    missing = np.asarray(font.getmask("\ue000"))  # a private-use code point: the font's missing-glyph box
    assert sigma.sum() > 0
    assert sigma.shape != missing.shape or not np.array_equal(sigma, missing)


def _has(img: np.ndarray, rgb, tol: int = 12) -> int:
    return int((np.abs(img[..., :3].astype(int) - np.asarray(rgb)).max(-1) <= tol).sum())


def test_png_legend_shows_every_maze_colour_and_the_verdict_key(tmp_path):
    videos = np.full((2, 3, 16, 16, 3), 235, np.uint8)  # open cells only: the legend alone carries the other colours
    with_key = iio.imread(filmstrip_png(videos, tmp_path / "a.png", ["step 0 σ=1.00", "step 1 σ=0.50"], [False, True],
                                        legend=LEGEND))  # fmt: skip
    without = iio.imread(filmstrip_png(videos, tmp_path / "b.png", ["step 0 σ=1.00", "step 1 σ=0.50"]))
    trail = PALETTE[TRAIL]
    assert _has(without, trail) == 0
    assert _has(with_key, trail) > 20  # the trail swatch
    assert _has(with_key, (20, 20, 20)) > 20  # the wall swatch
    assert with_key.shape[0] > without.shape[0]  # the legend has its own band under the grid (none without one)


def test_gif_legend_band_holds_the_legend_colours(tmp_path):
    videos = np.full((3, 2, 16, 16, 3), 235, np.uint8)
    path = filmstrip_gif(videos, tmp_path / "a.gif", [f"step {i} σ=0.{i}" for i in range(3)], [None, False, True],
                         legend=LEGEND)  # fmt: skip
    frames = iio.imread(path, index=None)
    plain = iio.imread(filmstrip_gif(videos, tmp_path / "b.gif", ["s0", "s1", "s2"]), index=None)
    assert frames.shape[0] == 3 and frames.shape[1] > plain.shape[1]
    band = frames[0, plain.shape[1] :]
    for name, rgb in LEGEND:
        assert _has(band, rgb, tol=20) > 10, name

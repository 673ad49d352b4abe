"""Token maps: numbers against hand computation on small arrays; the PCA colours are fit once per layer."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.fake_capture import write_capture

from interp.report import tokenmaps as tm
from interp.store import load_cache

GRID = (2, 2, 3)  # frames, rows, cols: 12 tokens


def test_norm_energy_channels_by_hand():
    assert np.allclose(tm.token_norm(np.array([[3.0, 4.0], [1.0, 0.0]])), [5.0, 1.0])
    grid = np.array([[[[3, 4], [0, 0]]], [[[1, 1], [1, 1]]]], dtype=float)  # (f=2, h=1, w=2, d=2)
    assert np.allclose(tm.frame_energy(grid), [12.5, 2.0])  # (25 + 0) / 2, (2 + 2) / 2
    assert tm.top_variance_channels(np.array([1.0, 5.0, 5.0, 0.1]), 2).tolist() == [1, 2]  # ties: lower index first


def test_pca_colors_by_hand():
    x = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    p = tm.fit_pca_colors(x)
    assert np.allclose(p.mean, 0)
    assert np.allclose(p.components, [[1, 0], [0, 1], [0, 0]])  # rank 2: the third direction is zero (grey)
    assert np.allclose(p.explained, [0.8, 0.2, 0.0])  # variances 8 and 2 of 10
    assert np.allclose(p.scale, [2.0, 1.0, 1.0])  # 99th percentile of |projection|
    assert np.allclose(p.project([[2.0, 0.0]]), [[2, 0, 0]])
    assert np.allclose(p.colors([[1.0, 0.5], [4.0, -3.0]]), [[0.75, 0.75, 0.5], [1.0, 0.0, 0.5]])  # clipped
    # both eigen-paths (n <= d: Gram matrix, n > d: covariance) agree with an SVD, signs fixed by the largest loading
    rng = np.random.default_rng(0)
    for n, d in ((5, 8), (40, 6)):
        y = rng.normal(size=(n, d)) * np.arange(1, d + 1)
        q = tm.fit_pca_colors(y)
        vt = np.linalg.svd(y - y.mean(0), full_matrices=False)[2][:3]
        vt *= np.sign(vt[np.arange(3), np.abs(vt).argmax(1)])[:, None]
        assert np.allclose(q.components, vt, atol=1e-8)


@pytest.fixture(scope="module")
def capture_path(tmp_path_factory):
    """Two steps; at step 1 frame 0 repeats step 0's tokens and frame 1 is new (scaled and shifted)."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=(12, 4)) * [3.0, 1.0, 0.5, 2.0]
    b = a.copy()
    b[6:] = 3 * a[6:] + 1
    acts = {
        "blocks.0.hook_resid_post": np.stack([a, b])[:, None],
        "blocks.1.hook_resid_post": 2 * np.stack([b, a])[:, None],
    }
    x0 = rng.normal(size=(2, 1, 4, 2, 4, 6))
    return write_capture(tmp_path_factory.mktemp("tm") / "run.h5", acts, x0, GRID)


def test_layer_maps_by_hand(capture_path):
    with load_cache(capture_path) as cache:
        assert tm.per_token_sites(cache) == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
        lm = tm.layer_maps(cache, "blocks.0.hook_resid_post", k=2)
        x = cache["blocks.0.hook_resid_post"].numpy().astype(np.float64)  # (2, 1, 12, 4)
    g = x.reshape(2, 1, 2, 2, 3, 4)  # tokens ordered (frame, row, col)
    assert lm.norm.shape == (2, 1, 2, 2, 3) and np.allclose(lm.norm, np.linalg.norm(g, axis=-1))
    assert np.allclose(lm.energy, (g**2).sum(-1).mean(axis=(-2, -1)))
    flat = x.reshape(-1, 4)
    assert lm.fit.channels.tolist() == np.argsort(-flat.var(0))[:2].tolist()
    assert np.allclose(lm.fit.channel_var, flat.var(0))
    assert np.allclose(lm.channel_maps[:, :, 1], g[..., lm.fit.channels[1]])
    assert np.allclose(lm.fit.norm_range, [np.linalg.norm(flat, axis=1).min(), np.linalg.norm(flat, axis=1).max()])
    ref = tm.fit_pca_colors(flat)  # 24 tokens <= max_fit_tokens: the fit uses them all
    assert np.allclose(lm.fit.pca.components, ref.components) and np.allclose(lm.pca, ref.colors(g))


def test_pca_fit_once_per_layer(capture_path):
    with load_cache(capture_path) as cache:
        lm = tm.layer_maps(cache, "blocks.0.hook_resid_post")
        step1 = cache["blocks.0.hook_resid_post"].numpy()[1, 0]
    # frame 0 holds the same tokens at both steps: the same colours, pixel for pixel
    assert np.array_equal(lm.pca[0, 0, 0], lm.pca[1, 0, 0])
    assert not np.allclose(lm.pca[0, 0, 1], lm.pca[1, 0, 1])  # frame 1 changed
    # a fit per step would have coloured them differently
    per_step = tm.fit_pca_colors(step1).colors(step1.reshape(2, 2, 3, 4))
    assert not np.allclose(per_step[0], lm.pca[1, 0, 0], atol=1e-3)
    # maps of one step computed alone use the same layer fit
    with load_cache(capture_path) as cache:
        only1 = tm.layer_maps(cache, "blocks.0.hook_resid_post", steps=[1])
    assert np.array_equal(only1.pca[0], lm.pca[1])


def test_subsampled_fit_is_seeded(capture_path):
    with load_cache(capture_path) as cache:
        f1 = tm.fit_layer(cache, "blocks.1.hook_resid_post", max_fit_tokens=8, seed=3)
        f2 = tm.fit_layer(cache, "blocks.1.hook_resid_post", max_fit_tokens=8, seed=3)
        full = tm.fit_layer(cache, "blocks.1.hook_resid_post")
    assert np.array_equal(f1.pca.components, f2.pca.components)
    assert not np.allclose(f1.pca.mean, full.pca.mean)  # 4 tokens per step, not all 12
    assert np.array_equal(f1.channel_var, full.channel_var)  # channel statistics stay exact


def test_png_grids(capture_path, tmp_path):
    paths = tm.save_token_map_pngs(capture_path, tmp_path, kinds=("pca",))
    names = sorted(p.name for p in paths)
    assert names == sorted([
        "layers_x_frames_pca_step0.png", "layers_x_frames_pca_step1.png",
        "steps_x_frames_pca_blocks.0.hook_resid_post.png", "steps_x_frames_pca_blocks.1.hook_resid_post.png",
        "energy.png",
    ])  # fmt: skip
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="unknown map kind"):
        with load_cache(capture_path) as cache:
            tm.map_rgb(tm.layer_maps(cache, "blocks.0.hook_resid_post", k=1), "channel5", 0)

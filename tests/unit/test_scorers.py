"""Pluggable scorers (interp.scorers): resolution by 'module:function', the final-frame SSIM / PSNR on hand-made
videos, the maze and suite adapters, and one clear error for a bad name."""

from __future__ import annotations

import json

import numpy as np
import pytest

from interp import scorers
from interp.scorers import ScorerError, final_frame, psnr, resolve, run_scorer, ssim
from interp.tasks import suite


def _video(seed: int = 0, frames: int = 4, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, size, size, 3), dtype=np.uint8)


def test_identical_final_frame_scores_ssim_1_psnr_inf(tmp_path):
    import imageio.v3 as iio

    v = _video()
    iio.imwrite(tmp_path / "final_frame.png", v[-1])
    for meta in ({"final_frame": v[-1]}, {"final_frame": str(tmp_path / "final_frame.png")},
                 {"sample_dir": str(tmp_path)}):  # fmt: skip
        s = run_scorer(final_frame, v, meta)
        assert s["ssim"] == pytest.approx(1.0) and s["psnr"] == float("inf")


def test_noise_lowers_ssim_and_psnr():
    v = _video()
    rng = np.random.default_rng(1)
    scores = []
    for sd in (5, 20, 60):
        noisy = np.clip(v[-1] + rng.normal(0, sd, v[-1].shape), 0, 255).astype(np.uint8)
        scores.append(final_frame(v, {"final_frame": noisy}))
    ssims, psnrs = [s["ssim"] for s in scores], [s["psnr"] for s in scores]
    assert 1 > ssims[0] > ssims[1] > ssims[2] and np.isfinite(psnrs).all() and psnrs[0] > psnrs[1] > psnrs[2]


def test_ssim_matches_scikit_image_default_algorithm():
    """scikit-image's structural_similarity(channel_axis=-1, data_range=255) spelled out with scipy's uniform
    filter (7x7, sample covariances, 3-pixel crop)."""
    from scipy.ndimage import uniform_filter

    a = _video(2, 1, 40)[0]
    b = np.clip(a + np.random.default_rng(3).normal(0, 25, a.shape), 0, 255).astype(np.uint8)
    per = []
    for c in range(3):
        x, y = a[..., c].astype(float), b[..., c].astype(float)
        ux, uy = uniform_filter(x, 7), uniform_filter(y, 7)
        k = 49 / 48
        vx, vy = k * (uniform_filter(x * x, 7) - ux**2), k * (uniform_filter(y * y, 7) - uy**2)
        vxy = k * (uniform_filter(x * y, 7) - ux * uy)
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        per.append((((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2)))[3:-3, 3:-3].mean())
    assert ssim(a, b) == pytest.approx(float(np.mean(per)), abs=1e-12)
    mse = ((a.astype(float) - b) ** 2).mean()
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / mse))


def test_reference_of_another_size_is_resized():
    v = np.full((2, 32, 32, 3), 100, np.uint8)
    s = final_frame(v, {"final_frame": np.full((64, 64, 3), 100, np.uint8)})
    assert s["ssim"] == pytest.approx(1.0) and s["psnr"] == float("inf")


def test_resolve_names_builtins_and_module_function():
    assert resolve("final_frame") is final_frame
    assert resolve("interp.scorers:final_frame") is final_frame
    assert resolve("interp.scorers:goalmaze") is scorers.goalmaze
    f = lambda v, m: {"x": 1}  # noqa: E731
    assert resolve(f) is f


@pytest.mark.parametrize(
    "spec, says",
    [
        ("interp.scorers", "no ':'"),
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
        ("interp.scorers:no_such_fn", "has no attribute 'no_such_fn'"),
        ("interp.scorers:BUILTINS", "is a dict, not a callable"),
        ("", "module:function"),
    ],
)
def test_bad_scorer_name_is_one_clear_error(spec, says):
    with pytest.raises(ScorerError, match=None) as e:
        resolve(spec)
    assert says in str(e.value) and "module:function" in str(e.value)


def test_scorer_output_is_checked():
    v = _video()
    with pytest.raises(ScorerError, match="not a number"):
        run_scorer(lambda v, m: {"a": "x"}, v, {})
    with pytest.raises(ScorerError, match="non-empty dict"):
        run_scorer(lambda v, m: 1.0, v, {})
    with pytest.raises(ScorerError, match="frames, H, W, 3"):
        run_scorer(final_frame, v[0], {})
    assert run_scorer(lambda v, m: {"ok": True, "n": 3}, v, {}) == {"ok": 1.0, "n": 3.0}


def test_missing_final_frame_is_a_clear_error():
    with pytest.raises(ScorerError, match="no final_frame"):
        final_frame(_video(), {})
    with pytest.raises(ScorerError, match="needs final_frame or sample_dir"):
        scorers.check_metas(final_frame, [{"index": 0, "final_frame": "x.png"}, {"index": 1}], name="final_frame")


def test_maze_adapter_scores_the_solution():
    from interp.tasks import maze as mz

    m = mz.eval_mazes(5, 1, 0)[0]
    video = mz.render_video(m, 5)
    s = resolve("maze")(video, {"first_frame": video[0]})
    assert s["success"] == 1.0 and s["path_recall"] == 1.0 and all(isinstance(x, float) for x in s.values())
    assert resolve("maze")(np.repeat(video[:1], 5, 0), {})["success"] == 0.0


@pytest.mark.parametrize("name", ["goalmaze", "loopmaze", "mirror", "permanence"])
def test_suite_adapters_score_the_rendered_solution(name, tmp_path):
    task = suite.get_task(name)
    inst = suite.heldout(task, task.levels[0], 1)[0]
    video = task.render(inst)
    assert resolve(name)(video, {"instance": inst})["success"] == 1.0
    assert resolve("suite")(video, {"instance": json.dumps(inst)})["success"] == 1.0
    d = suite.write_vbvr_sample(tmp_path, task, inst, "s0")  # the instance from the sample folder
    meta = scorers.sample_meta(d / "first_frame.png")
    assert meta["final_frame"] == str(d / "final_frame.png") and meta["instance"] == inst
    assert resolve("suite")(video, meta)["success"] == 1.0
    assert resolve("final_frame")(video, meta)["ssim"] == pytest.approx(1.0)
    with pytest.raises(ScorerError, match="no task instance"):
        resolve(name)(video, {})

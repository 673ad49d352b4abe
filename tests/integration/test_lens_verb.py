"""`interp lens` and the lens metrics: a step x block figure and lens.h5 from a live run or a capture, the last
block's lens scored as the model's own x0, and experiments asking for lens_solve_rate / lens_path_recall."""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest
import torch
from helpers.pipelines import build, image
from typer.testing import CliRunner

from interp.apps.capture import CaptureConfig, capture
from interp.apps.lens import LensConfig, lens
from interp.cli import app
from interp.experiments import Experiment, run_experiment
from interp.experiments.metrics import maze_scores
from interp.lens import lens_frames, lens_from_cache
from interp.models import load_model
from interp.pipelines.components import load_pipeline
from interp.pipelines.decode import decode_video
from interp.store import SchemaError, load_cache, read_lens
from interp.tasks.maze import from_model_space
from interp.tasks.maze_score import score_batch

runner = CliRunner()


@pytest.mark.slow
def test_cli_lens_on_a_maze_model(maze_dir, tmp_path):
    out = tmp_path / "lens"
    res = runner.invoke(app, ["lens", str(maze_dir), "--n", "3", "--tuned", "--set", "fit_n=2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "last block's lens == the model's x0 at every step: True" in res.output
    assert {p.name for p in out.iterdir()} == {"lens.h5", "lens.png", "lens.json"}
    data = read_lens(out / "lens.h5")
    assert data["attrs"]["blocks"] == 3 and data["attrs"]["steps"] == [0, 1] and data["exact"].all()
    for variant in ("plain", "tuned"):
        assert data[variant]["success"].shape == (2, 3, 3) and data[variant]["path_recall"].shape == (2, 3, 3)
    # the last block is the model's own x0: its scores are the model's, and its distance to it is zero
    assert np.array_equal(data["plain"]["path_recall"][:, -1], data["model"]["path_recall"])
    assert np.array_equal(data["tuned"]["path_recall"][:, -1], data["model"]["path_recall"])
    assert (data["plain"]["x0_rmse"][:, -1] == 0).all() and (data["plain"]["x0_rmse"][:, 0] > 0).all()
    summary = json.loads((out / "lens.json").read_text())
    assert summary["exact"] and len(summary["plain"]["success"]["first_readable_block"]) == 2
    again = runner.invoke(app, ["lens", str(maze_dir), "--n", "3", "--out", str(out)])
    assert again.exit_code != 0 and "exists" in str(again.exception or again.output)


@pytest.mark.slow
def test_lens_from_a_capture_equals_the_live_lens(maze_dir, tmp_path):
    loaded = load_model(str(maze_dir))
    path = capture(CaptureConfig(model=str(maze_dir), batch=3, sites=["blocks.*.hook_resid_post"]), tmp_path / "c.h5",
                   loaded=loaded)  # fmt: skip
    a = lens(LensConfig(model=str(maze_dir), capture=str(path)), tmp_path / "a", loaded=loaded)
    b = lens(LensConfig(model=str(maze_dir), n=3), tmp_path / "b", loaded=loaded)
    assert a["exact"] and b["exact"]
    da, db = read_lens(tmp_path / "a" / "lens.h5"), read_lens(tmp_path / "b" / "lens.h5")
    for name in ("x0_rmse", "path_recall", "success"):
        assert np.array_equal(da["plain"][name], db["plain"][name])
    # the model's own x0, scored independently from the capture's x0, is what the lens' last block scores
    with h5py.File(path) as f:
        x0, conds = f["x0"][()], f["task/condition_frames"][()]
    recall = [[s.path_recall for s in score_batch(from_model_space(torch.from_numpy(x)), conds)] for x in x0]
    assert np.array_equal(da["plain"]["path_recall"][:, -1], np.array(recall))


def test_lens_errors(maze_dir, tmp_path):
    with pytest.raises(ValueError, match="x0 is a latent"):
        lens(LensConfig(model="tiny-wan", scorer="maze", steps=2), tmp_path / "x")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(SchemaError):
        read_lens(bad)


@pytest.mark.slow
def test_experiment_lens_metrics(maze_dir, tmp_path):
    """The lens metrics of a clean run: (points, samples, steps, blocks), the last block scoring the model's x0."""
    e = Experiment.validate_data({"model": str(maze_dir), "inputs": {"count": 3}, "capture": {"x0": True},
                                  "interventions": [{"kind": "skip", "layers": 0, "steps": []}],
                                  "metrics": ["lens_solve_rate", "lens_path_recall", "path_recall"]})  # fmt: skip
    res = run_experiment(e, tmp_path / "e", wandb="disabled", progress=False)
    with h5py.File(res.results) as f:
        lens_recall, lens_solve = f["metrics/lens_path_recall"][()], f["metrics/lens_solve_rate"][()]
        x0, conds = f["group_0/x0"][()], f["group_0/condition_frames"][()]
    assert lens_recall.shape == lens_solve.shape == (1, 3, 2, 3)
    for step in range(2):
        want = maze_scores(torch.from_numpy(x0[0, :, step]), torch.from_numpy(conds), ["path_recall"])["path_recall"]
        assert np.array_equal(lens_recall[0, :, step, -1], want)
    assert "lens_path_recall_point0.png" in {p.name for p in res.figures}
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert summary["points"][0]["metrics"]["lens_path_recall"] == pytest.approx(float(lens_recall.mean()))


@pytest.mark.slow
def test_lens_of_a_two_expert_pipeline_with_guidance(tmp_path):
    """Wan2.2 A14B (two experts, CFG): each step's lens reads out through its own expert's final layers; the last
    block is the loop's x0 exactly, and the lens' x0 decodes through the pipeline's VAE."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = build("a14b", tmp_path)
    img = tmp_path / "img.png"
    image(img, (32, 32), seed=1)
    pm = load_pipeline(root)
    out = tmp_path / "run.h5"
    cfg = CaptureConfig(model=str(root), prompts=["a red ball moves left"], images=[str(img)], steps=4, guidance=4.0,
                        seed=7, frames=5, height=32, width=32, sites=["blocks.*.hook_resid_post"])  # fmt: skip
    capture(cfg, out, loaded=pm)
    with load_cache(out) as cache:
        assert sorted(cache.branches) == ["transformer/cond", "transformer/uncond", "transformer_2/cond",
                                          "transformer_2/uncond"]  # fmt: skip
        got = list(lens_from_cache(pm, cache))
    assert len(got) == 4 and all(torch.equal(s.x0[-1], s.model_x0) for s in got)
    frames = lens_frames(pm, got[-1].x0[:, 0])
    assert frames.shape == (len(got[-1].x0), 5, 32, 32, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames[-1], decode_video(pm, got[-1].model_x0)[0])
    summary = lens(LensConfig(model=str(root), capture=str(out)), tmp_path / "lens", loaded=pm)
    assert summary["exact"] and summary["steps"] == [0, 1, 2, 3] and summary["scorer"] is None
    rmse = read_lens(tmp_path / "lens" / "lens.h5")["plain"]["x0_rmse"]
    assert rmse.shape == (4, len(got[-1].x0), 1) and (rmse[:, -1] == 0).all() and (rmse[:, 0] > 0).all()

"""``interp capture --scorer``: scores of each decoded step and of the final video in the capture file, for the
organism (a whole pipeline, x0 decoded by its VAE) given a VBVR-Bench sample and for a pixel-space maze model; a
bad scorer is one error and nothing is written."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from interp.cli import app
from interp.models import data_path
from interp.store import load_cache
from interp.tasks import suite


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    task = suite.get_task("mirror")
    inst = suite.heldout(task, task.levels[0], 1)[0]
    return suite.write_vbvr_sample(tmp_path_factory.mktemp("vbvr"), task, inst, "mirror_0")


def _organism(sample, out, scorer, x0="all", steps="3"):
    return CliRunner().invoke(app, [
        "capture", str(data_path("organism")), "--prompt", (sample / "prompt.txt").read_text().strip(),
        "--image", str(sample / "first_frame.png"), "--steps", steps, "--frames", "9", "--height", "96",
        "--width", "96", "--x0-steps", x0, "--sites", "blocks.0.hook_resid_post", "--scorer", scorer,
        "--out", str(out),
    ])  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("scorer, names", [("suite", {"success"}), ("interp.scorers:final_frame", {"ssim", "psnr"})])
def test_organism_capture_scores_every_decoded_step(sample, tmp_path, scorer, names):
    from interp.scorers import final_frame, spec_name

    res = _organism(sample, tmp_path / "run.h5", scorer)
    assert res.exit_code == 0, res.output
    with load_cache(tmp_path / "run.h5") as c:
        sc = c.scores
        assert sc["scorer"] == spec_name(scorer) and sc["scorer"].startswith("interp.scorers:")
        assert sc["steps"] == c.x0_video_steps == [0, 1, 2]
        assert names <= set(sc["x0"]) and set(sc["x0"]) == set(sc["video"])
        for name in names:
            assert sc["x0"][name].shape == (3, 1) and sc["video"][name].shape == (1,)
            assert np.isfinite(sc["x0"][name]).all() or name == "psnr"
        if scorer.endswith("final_frame"):  # the stored scores are the scorer on the stored videos
            meta = {"sample_dir": str(sample)}
            assert sc["x0"]["ssim"][1, 0] == pytest.approx(final_frame(c.x0_video[1, 0], meta)["ssim"])
            assert sc["video"]["psnr"][0] == pytest.approx(final_frame(c.video[0], meta)["psnr"])


def test_maze_model_scores_every_steps_x0(tmp_path):
    res = CliRunner().invoke(app, ["capture", "maze-wan", "--steps", "3", "--sites", "blocks.0.hook_resid_post",
                                   "--scorer", "maze", "--batch", "2", "--out", str(tmp_path / "m.h5")])  # fmt: skip
    assert res.exit_code == 0, res.output
    with load_cache(tmp_path / "m.h5") as c:
        sc = c.scores
        assert sc["scorer"] == "interp.scorers:maze" and sc["steps"] == [0, 1, 2]
        assert sc["x0"]["success"].shape == (3, 2) and sc["video"]["path_recall"].shape == (2,)
        assert set(np.unique(sc["x0"]["success"])) <= {0.0, 1.0}


@pytest.mark.parametrize(
    "model, scorer, says",
    [
        ("organism", "interp.scorers:nope", "has no attribute 'nope'"),
        ("organism", "final_frame", None),  # no final_frame.png beside the image: checked before writing
        ("tiny-wan", "final_frame", "no decoded video to score"),
    ],
)
def test_bad_scorer_is_one_error_and_writes_nothing(sample, tmp_path, model, scorer, says):
    out = tmp_path / "bad.h5"
    if model == "organism":
        if says is None:
            lone = tmp_path / "lone"
            lone.mkdir()
            (lone / "first_frame.png").write_bytes((sample / "first_frame.png").read_bytes())
            (lone / "prompt.txt").write_text((sample / "prompt.txt").read_text())
            sample, says = lone, "needs final_frame or sample_dir"
        res = _organism(sample, out, scorer)
    else:
        res = CliRunner().invoke(app, ["capture", model, "--steps", "2", "--scorer", scorer, "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert says in res.output and "Traceback" not in res.output
    assert not out.exists() and not list(tmp_path.glob("bad.h5*"))


@pytest.mark.slow
def test_filmstrip_of_a_pipeline_capture_shows_the_decoded_x0_video(sample, tmp_path):
    """A latent model's filmstrip rows are the VAE-decoded x0_video steps plus the final video, labelled with the
    stored success score; a pixel-space model's are x0 itself."""
    import imageio.v3 as iio

    from interp.report.filmstrip import capture_filmstrip, capture_videos

    res = _organism(sample, tmp_path / "run.h5", "suite", x0="0,2", steps="3")
    assert res.exit_code == 0, res.output
    with load_cache(tmp_path / "run.h5") as c:
        videos, labels, verdicts, note = capture_videos(c)
        assert labels == ["step 0", "step 2", "final"] and "x0_video" in note
        assert np.array_equal(videos[1], c.x0_video[1, 0]) and np.array_equal(videos[2], c.video[0])
        assert verdicts == [bool(c.scores["x0"]["success"][0, 0]), bool(c.scores["x0"]["success"][1, 0]),
                            bool(c.scores["video"]["success"][0])]  # fmt: skip
    png, gif = capture_filmstrip(tmp_path / "run.h5", tmp_path / "strip")
    assert iio.imread(png).ndim == 3 and iio.imread(gif, index=None).shape[0] == 3

    res = CliRunner().invoke(app, ["capture", "maze-wan", "--steps", "3", "--sites", "blocks.0.hook_resid_post",
                                   "--scorer", "maze", "--out", str(tmp_path / "m.h5")])  # fmt: skip
    assert res.exit_code == 0, res.output
    with load_cache(tmp_path / "m.h5") as c:
        videos, labels, verdicts, note = capture_videos(c)
        assert labels == ["step 0", "step 1", "step 2"] and "pixel space" in note and videos.shape[-1] == 3
        assert verdicts == [bool(v) for v in c.scores["x0"]["success"][:, 0]]


def test_filmstrip_of_a_latent_capture_without_x0_video_shows_latent_channels(tmp_path):
    from interp.report.filmstrip import capture_videos

    res = CliRunner().invoke(app, ["capture", "tiny-wan", "--steps", "2", "--out", str(tmp_path / "t.h5")])
    assert res.exit_code == 0, res.output
    with load_cache(tmp_path / "t.h5") as c:
        videos, labels, verdicts, note = capture_videos(c)
        assert labels == ["step 0", "step 1"] and "latent" in note and verdicts == [None, None]
        assert videos.dtype == np.uint8 and videos.shape[-1] == 3


def test_capture_from_a_samples_folder(tmp_path):
    """--samples DIR: each VBVR-Bench sample's prompt and first frame, scored against its final_frame.png; a broken
    folder is one error naming each problem, and nothing is written."""
    from interp.pipelines.samples import load_samples

    task = suite.get_task("mirror")
    suite.write_vbvr(tmp_path / "vbvr", task, task.levels[0], 2)
    common = ["capture", str(data_path("organism")), "--samples", str(tmp_path / "vbvr"), "--steps", "2", "--frames",
              "9", "--height", "96", "--width", "96", "--x0-steps", "1", "--sites", "blocks.0.hook_resid_post",
              "--scorer", "final_frame"]  # fmt: skip
    res = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "s.h5")])
    assert res.exit_code == 0, res.output
    ss = load_samples(tmp_path / "vbvr")
    with load_cache(tmp_path / "s.h5") as c:
        assert c.prompts == [s.prompt for s in ss] and c.images.shape == (2, 96, 96, 3)
        assert c.scores["x0"]["ssim"].shape == (1, 2) and c.scores["video"]["psnr"].shape == (2,)
        assert c.config["samples"] == str(tmp_path / "vbvr")
    (ss[1].dir / "prompt.txt").unlink()
    res = CliRunner().invoke(app, [*common, "--out", str(tmp_path / "bad.h5")])
    assert res.exit_code == 2 and "missing prompt.txt" in res.output and ss[1].name in res.output
    assert not list(tmp_path.glob("bad.h5*"))


@pytest.mark.slow
def test_experiment_with_a_samples_folder_runs_through_the_pipeline(tmp_path):
    """inputs.samples through the experiment runner: the inputs are exactly `interp capture --samples`'s (same
    initial noise, seed convention, text); each sample's clean run ends on the capture's final latent up to the float
    rounding of another batch composition (the runner batches edited and clean rows: 4 rows here, the capture 2;
    measured 4.3e-5 max abs; the same inputs run as 4 rows instead of 2 differ by 2.2e-5 alone); a skip changes it."""
    import torch

    from interp.apps.capture import CaptureConfig, capture
    from interp.experiments.runner import load_pipeline_of, pipeline_group_inputs
    from interp.experiments.verb import run_experiment
    from interp.experiments.schema import Experiment
    from interp.store.results import read_group

    task = suite.get_task("mirror")
    suite.write_vbvr(tmp_path / "vbvr", task, task.levels[0], 2)
    model = str(data_path("organism"))
    exp = Experiment.validate_data({
        "model": model, "inputs": {"samples": str(tmp_path / "vbvr"), "frames": 9, "height": 96, "width": 96},
        "sampler": {"steps": 2, "guidance": 3.0, "seed": 5},
        "interventions": [{"kind": "skip", "layers": 3, "steps": "0:2"}], "metrics": ["mse"],
        "scorer": "final_frame",
    })  # fmt: skip
    res = run_experiment(exp, tmp_path / "exp", wandb="disabled", progress=False)  # with its figures
    assert res.summary["points"] and not res.cache_hit
    cfg = CaptureConfig(model=model, samples=str(tmp_path / "vbvr"), steps=2, guidance=3.0, seed=5, frames=9,
                        height=96, width=96, sites=["blocks.0.hook_resid_post"])  # fmt: skip
    with load_cache(capture(cfg, tmp_path / "c.h5")) as c:
        ref, noise0, video = c.final, torch.from_numpy(c.file["latents"][0]), c.video
    gi = pipeline_group_inputs(exp, load_pipeline_of(exp))
    assert torch.equal(gi.noise(5, {}), noise0) and gi.negative is not None and gi.condition.shape[0] == 2
    assert not torch.equal(gi.noise(6, {}), noise0)  # another seed: the generator convention, seed + i
    g = read_group(res.results, "group_0")
    assert torch.allclose(torch.from_numpy(np.asarray(g["clean_final"])), ref, atol=1e-4)
    assert np.abs(np.asarray(g["final"])[0] - np.asarray(g["clean_final"])).max() > 1e-2
    # the scorer's scores of each final video, as metrics beside the clean run's
    from interp.scorers import final_frame
    from interp.store.results import read_metrics

    m = read_metrics(res.results)
    assert m["metrics"]["score_ssim"].shape == (1, 2) and m["clean"]["score_psnr"].shape == (2,)
    ss = sorted((tmp_path / "vbvr").iterdir())
    want = [final_frame(video[i], {"sample_dir": str(ss[i])})["ssim"] for i in range(2)]
    assert np.allclose(m["clean"]["score_ssim"], want, atol=1e-3)
    assert "score_ssim" in res.summary["clean"] and "score_psnr" in res.summary["points"][0]["metrics"]


def test_experiment_scorer_on_a_maze_model_and_bad_scorers(tmp_path):
    from interp.experiments.runner import execute
    from interp.experiments.schema import Experiment, ExperimentError
    from interp.store.results import read_metrics

    base = {
        "model": "maze-wan",
        "inputs": {"task": "maze", "sizes": [5], "count": 2},
        "sampler": {"steps": 2},
        "interventions": [{"kind": "skip", "layers": 0, "steps": "0:2"}],
        "metrics": ["solve_rate"],
    }
    res = execute(Experiment.validate_data({**base, "scorer": "maze"}), tmp_path / "m", progress=False)
    m = read_metrics(res.results)
    assert np.array_equal(m["metrics"]["score_success"], m["metrics"]["solve_rate"])  # the same maze scorer
    with pytest.raises(ExperimentError, match="has no attribute 'nope'"):
        Experiment.validate_data({**base, "scorer": "interp.scorers:nope"})
    rnd = {**base, "inputs": {"task": "random", "count": 1}, "metrics": ["mse"], "model": "tiny-wan",
           "scorer": "final_frame"}  # fmt: skip
    with pytest.raises(ExperimentError, match="no decoded video to score"):
        execute(Experiment.validate_data(rnd), tmp_path / "r", progress=False)

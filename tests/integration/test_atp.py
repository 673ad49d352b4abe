"""Attribution patching: the gradient flows through the traced trajectory (its estimate is the derivative of the
real patching effect), and a ``method: atp`` experiment writes the real patch sweep's layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from interp.experiments import Experiment, ExperimentError, read_metrics, run_experiment
from interp.experiments import metrics as M
from interp.experiments.atp import attributions, verified_points
from interp.experiments.verb import plan_experiment
from interp.inputs import model_inputs
from interp.models import load_model
from interp.trace import ForwardPlan
from interp.trajectory import SamplerConfig, TrajectoryInputs, initial_latents, run_trajectory


def _pair(loaded):
    mi = model_inputs(loaded, 2, 0)
    shape = mi.latent_shape
    tgt = TrajectoryInputs(mi.text, shape, condition=mi.condition, latents=initial_latents(shape, 0))
    src = TrajectoryInputs(mi.text, shape, condition=mi.condition, latents=initial_latents(shape, 1))
    return tgt, src


@pytest.mark.parametrize("site", ["blocks.1.hook_resid_post", "blocks.2.attn.hook_z", "hook_out"])
def test_estimate_is_the_derivative_of_the_patching_effect(maze_dir, site):
    """Patching a fraction eps of the way to the source changes the metric by eps * estimate (to first order): the
    gradient reaches the site through every later block and step."""
    loaded = load_model(str(maze_dir))
    sampler = SamplerConfig(steps=3, shift=5.0)
    tgt, src = _pair(loaded)
    clean, attr = attributions(loaded, tgt, src, sampler, [site], {0, 1})
    src_run = run_trajectory(loaded, src, sampler, read=[site])
    src_final = src_run.final
    assert torch.allclose(clean, M.mse(run_trajectory(loaded, tgt, sampler).final, src_final))
    est = attr[("cond", site, 1)].reshape(2, -1).sum(1)
    a_src = src_run.records[1].branches["cond"][site]
    eps = 1e-2

    def moved(e):
        def plan(branch, step):
            return ForwardPlan(edit={site: lambda n, s, v: v + e * (a_src - v)}) if step == 1 else ForwardPlan()

        return M.mse(run_trajectory(loaded, tgt, sampler, plan=plan).final, src_final)

    fd = (moved(eps) - moved(-eps)) / (2 * eps)  # central difference: second-order terms cancel
    assert est.abs().min() > 1e-6
    torch.testing.assert_close(fd, est, rtol=0.05, atol=1e-6)


def _exp(maze_dir, **kw):
    data = {"model": str(maze_dir), "inputs": {"count": 2}, "sampler": {"steps": 3},
            "interventions": [{"kind": "patch", "layers": [0], "steps": [0]}], "metrics": ["mse_to_source"],
            "sweep": {"interventions.0.layers": [[0], [1], [2]], "interventions.0.steps": [[0], [2]]}}  # fmt: skip
    return Experiment.validate_data({**data, **kw})


def test_atp_experiment_sits_beside_the_real_sweep(maze_dir, tmp_path):
    real = run_experiment(_exp(maze_dir), tmp_path / "real", wandb="disabled", progress=False)
    atp = run_experiment(_exp(maze_dir, method="atp"), tmp_path / "atp", wandb="disabled", progress=False)
    r, a = read_metrics(real.results), read_metrics(atp.results)
    assert r["points"] == a["points"] and len(a["points"]) == 6
    assert a["metrics"]["mse_to_source"].shape == r["metrics"]["mse_to_source"].shape == (6, 2)
    clean = a["clean"]["mse_to_source"]
    torch.testing.assert_close(torch.tensor(a["metrics"]["mse_to_source"]),
                               torch.tensor(clean[None] + a["metrics"]["atp_effect"]))  # fmt: skip
    assert abs(a["metrics"]["atp_effect"]).max() > 0
    assert _exp(maze_dir).key("h") != _exp(maze_dir, method="atp").key("h")
    again = run_experiment(_exp(maze_dir, method="atp"), tmp_path / "atp", wandb="disabled", progress=False)
    assert again.cache_hit


def test_atp_verify_runs_the_largest_estimates_for_real(maze_dir, tmp_path):
    """atp_verify=3 of 6 points: the 3 of the largest mean |estimate| hold the real sweep's values, bit for bit (the
    sub-experiment of just those points, run by the engine); the others, and atp_effect, hold the plain estimate."""
    run = lambda name, **kw: run_experiment(_exp(maze_dir, **kw), tmp_path / name, wandb="disabled", progress=False)  # noqa: E731
    r = read_metrics(run("real").results)["metrics"]["mse_to_source"]
    plain = read_metrics(run("atp", method="atp").results)["metrics"]
    res = run("verify", method="atp", atp_verify=3)
    v = read_metrics(res.results)
    effect = plain["atp_effect"]
    score = np.abs(effect).mean(1)  # the rule, recomputed here: the mean over samples of |estimate|
    order = np.argsort(-score)
    top = sorted(order[:3].tolist())
    assert verified_points(effect, 3) == top and score[order[2]] > score[order[3]]  # no tie at the cut
    mask = v["metrics"]["verified"]
    assert mask.dtype == bool and mask.shape == (6, 2)
    assert np.flatnonzero(mask.all(1)).tolist() == top and not mask[~mask.all(1)].any()
    rest = [p for p in range(6) if p not in top]
    # the real sweep's values (to float rounding: the sub-run's batches hold other rows), not the estimates
    np.testing.assert_allclose(v["metrics"]["mse_to_source"][top], r[top], rtol=1e-6, atol=0)
    np.testing.assert_array_equal(v["metrics"]["mse_to_source"][rest], plain["mse_to_source"][rest])
    np.testing.assert_array_equal(v["metrics"]["atp_effect"], effect)
    assert np.abs(r[top] - plain["mse_to_source"][top]).min() > 1e-6  # the estimate was indeed replaced
    assert v["points"] == read_metrics(tmp_path / "atp" / "results.h5")["points"]
    summary = json.loads((tmp_path / "verify" / "summary.json").read_text())
    assert summary["atp_verify"] == 3 and summary["method"] == "atp" and res.summary == summary
    means = [pt["metrics"]["mse_to_source"] for pt in summary["points"]]
    np.testing.assert_allclose(means, v["metrics"]["mse_to_source"].mean(1), rtol=1e-6)
    sub = read_metrics(tmp_path / "verify" / "verify" / "results.h5")  # the real run of the chosen points
    assert len(sub["points"]) == 3
    # a fraction of the points counts the same; the key tells verify counts apart, 0 keeps the plain key
    assert _exp(maze_dir, method="atp", atp_verify="50%").verify_count() == 3  # of 6 points
    assert _exp(maze_dir, method="atp", atp_verify="10%").verify_count() == 1  # 0.6 points, rounded up
    assert _exp(maze_dir, method="atp", atp_verify=3).key("h") != _exp(maze_dir, method="atp").key("h")
    assert _exp(maze_dir, method="atp", atp_verify=0).key("h") == _exp(maze_dir, method="atp").key("h")
    half = _exp(maze_dir, method="atp", atp_verify="50%")
    assert half.key("h") == _exp(maze_dir, method="atp", atp_verify=3).key("h")  # the same 3 points
    assert _exp(maze_dir, atp_verify="0%").key("h") == _exp(maze_dir).key("h")
    again = run("verify", method="atp", atp_verify=3)
    assert again.cache_hit and again.summary["atp_verify"] == 3
    # the estimate redone (its file gone): the same points chosen, their real run a cache hit of DIR/verify
    (tmp_path / "verify" / "results.h5").unlink()
    stamp = (tmp_path / "verify" / "verify" / "results.h5").stat().st_mtime_ns
    redo = run("verify", method="atp", atp_verify=3)
    assert not redo.cache_hit and (tmp_path / "verify" / "verify" / "results.h5").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(read_metrics(redo.results)["metrics"]["mse_to_source"], v["metrics"]["mse_to_source"])


def test_atp_plan_counts_the_estimate_and_the_verified_points(maze_dir, tmp_path):
    """``interp run --plan`` of a ``method: atp`` file: per sample one source run and atp_alphas target runs with a
    backward (2 forwards), then the verified points' real rows (3 edited + baseline + source per sample); not the
    real sweep's 16 rows. A finished run is a cache hit."""
    exp = _exp(maze_dir, method="atp", atp_alphas=2, atp_verify=3)
    real = plan_experiment(_exp(maze_dir), None)
    # 2 samples x (6 edited + baseline + source) x 3 steps, less 2 steps of each row patched at step 2 alone (it joins
    # there: plan.row_joins)
    assert (real.rows, real.forwards) == (16, 48 - 2 * 3 * 2)
    cost = plan_experiment(exp, None)
    assert cost.rows == 2 * (1 + 2) + 2 * (3 + 2) and cost.steps == 3
    assert cost.forwards == 2 * 3 * (1 + 3 * 2) + 10 * 3 - 2 * 2  # the verified first 3 points: one joins at step 2
    assert cost.seconds is not None and cost.seconds > 0 and "backward counted as 2 forwards" in cost.timed
    run_experiment(exp, tmp_path / "v", wandb="disabled", progress=False)
    hit = plan_experiment(exp, tmp_path / "v")
    assert hit.forwards == 0 and "cache hit" in hit.timed


def test_atp_experiment_errors(maze_dir):
    with pytest.raises(ExperimentError, match="method atp estimates metric mse_to_source only"):
        _exp(maze_dir, method="atp", metrics=["mse"])
    with pytest.raises(ExperimentError, match="exactly one intervention, of kind patch"):
        _exp(maze_dir, method="atp", interventions=[{"kind": "skip", "layers": [0]}], sweep={})
    with pytest.raises(ExperimentError, match="atp_alphas is an option of method: atp"):
        _exp(maze_dir, atp_alphas=3)
    with pytest.raises(ExperimentError, match="atp_verify is an option of method: atp"):
        _exp(maze_dir, atp_verify=2)
    with pytest.raises(ExperimentError, match="atp_verify=7 > the sweep's 6 points"):
        _exp(maze_dir, method="atp", atp_verify=7)
    for bad in (-1, "half", "120%", True):
        with pytest.raises(ExperimentError, match="atp_verify is a number of sweep points"):
            _exp(maze_dir, method="atp", atp_verify=bad)
    with pytest.raises(ExperimentError, match="do not sweep it"):
        _exp(maze_dir, method="atp", sweep={"sampler.seed": [0, 1]})

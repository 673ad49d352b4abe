"""Experiments: YAML validation, sweep planning and batching, results / cache / resume, the run verb, examples."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from interp.budget import BudgetError
from interp.cli import app
from interp.experiments import Experiment, ExperimentError, plan, run_experiment
from interp.models import load_model

EXAMPLES = Path(__file__).resolve().parents[2] / "experiments" / "examples"
runner = CliRunner()


def _exp(model, **kw) -> Experiment:
    base = {"model": str(model), "inputs": {"count": 3}, "metrics": ["solve_rate", "path_recall", "mse", "cosine"]}
    return Experiment.validate_data({**base, **kw})


class Counter:
    """Counts transformer forwards (a forward hook on the model)."""

    def __init__(self, loaded):
        self.n, self.rows = 0, 0
        loaded.transformer.register_forward_hook(self)

    def __call__(self, module, args, kwargs_or_out, *rest):
        self.n += 1


# ---- validation -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "patch, message",
    [
        ({"interventions": [{"kind": "zap"}]}, "interventions.0.kind: Input tag 'zap' found using 'kind' does not match "
                                               "any of the expected tags: 'patch', 'skip', 'ablate'"),
        ({"interventions": [{"kind": "skip", "layer": 1}]}, "interventions.0.layer: unknown field; allowed: steps, site, layers"),
        ({"inputs": {"task": "random"}, "metrics": ["solve_rate"]}, "need inputs.task: maze"),
        ({"sweep": {"model": ["a"]}}, "sweep axis 'model' cannot be swept; sweepable: interventions.<i>.<field>, sampler.seed"),
        ({"interventions": [{"kind": "noise"}], "sweep": {"interventions.0.mix": [0.5, 2]}}, "interventions.0.mix: Input should be less than or equal to 1"),
        ({"capture": {"sites": ["blocks.1.resid"]}}, "capture.sites: unknown site pattern(s) ['blocks.1.resid']; valid: hook_embed"),
        ({"metrics": ["accuracy"]}, "metrics.0: Input should be 'solve_rate', 'path_recall'"),
    ],
)  # fmt: skip
def test_invalid_files_fail_before_loading(tmp_path, patch, message):
    import yaml

    f = tmp_path / "e.yaml"
    f.write_text(yaml.safe_dump({"model": "no-such-model", **patch}))
    with pytest.raises(ExperimentError) as err:
        Experiment.load(f)
    assert message in str(err.value), str(err.value)


def test_yaml_round_trip_overrides_and_hash(tmp_path):
    e = Experiment.load(
        EXAMPLES / "noise.yaml", ["sampler.steps=4", "inputs.sizes=[3]", "sweep.interventions.0.steps=[1, 2]"]
    )
    assert e.sampler.steps == 4 and e.inputs.sizes == [3] and e.sweep == {"interventions.0.steps": [1, 2]}
    again = Experiment.load(e.dump(tmp_path / "e.yaml"))
    assert again == e and again.key("w") == e.key("w") != e.key("w2")
    assert Experiment.load(EXAMPLES / "noise.yaml", ["sampler.seed=1"]).key("w") != e.key("w")
    with pytest.raises(ExperimentError, match="expected key=value"):
        Experiment.load(EXAMPLES / "noise.yaml", ["sampler.steps"])


def test_plan_is_deterministic_and_shares_clean_rows():
    e = Experiment.validate_data({"model": "m", "inputs": {"task": "random", "count": 3}, "max_batch": 8,
                                  "interventions": [{"kind": "patch", "layers": 0, "source": {"input": 1}}],
                                  "sweep": {"interventions.0.layers": "0:3", "sampler.seed": [0, 1]}})  # fmt: skip
    a, b = plan(e), plan(e)
    assert a.batches == b.batches and len(a.points) == 6
    assert all(len(batch.rows) <= 8 for batch in a.batches)
    assert sorted(u for batch in a.batches for u in batch.units) == [(p, s) for p in range(6) for s in range(3)]
    # points are (layer, seed), seed fastest; a unit needs its edited row + baseline + source (sample+1, same seed);
    # points of one sample share those clean rows: 18 units in 42 rows instead of 18 x 3
    assert [len(batch.units) for batch in a.batches] == [4, 2] * 3
    assert [len(batch.rows) for batch in a.batches] == [8, 6] * 3
    assert a.batches[0].units == ((0, 0), (1, 0), (2, 0), (3, 0))
    assert [(r.sample, r.seed, r.slot) for r in a.batches[0].rows if r.unit is None] == [
        (0, 0, 0),
        (1, 0, 0),
        (0, 1, 0),
        (1, 1, 0),
    ]  # the sources run with the target's noise (slot 0)
    with pytest.raises(ExperimentError, match="max_batch=2 is too small"):
        plan(e.model_copy(update={"max_batch": 2}))


# ---- running --------------------------------------------------------------------------------------------------
def test_run_cache_hit_and_batching(maze_dir, tmp_path):
    e = _exp(maze_dir, capture={"x0": True, "sites": ["blocks.1.hook_resid_post"]}, max_batch=12,
             interventions=[{"kind": "skip", "layers": 0}], sweep={"interventions.0.layers": [0, 1, 2]},
             metrics=["solve_rate", "path_recall", "extra_cells", "mse", "cosine", "x0_distance"])  # fmt: skip
    loaded = load_model(str(maze_dir))
    count = Counter(loaded)
    res = run_experiment(e, tmp_path / "a", loaded=loaded, wandb="disabled", progress=False)
    # 9 units + 3 clean baselines = 12 rows: one batch, so one forward per step (2 steps), not 9 x 2
    assert count.n == 2 and not res.cache_hit
    with h5py.File(res.results) as f:
        assert f["metrics/mse"].shape == (3, 3) and f["metrics/x0_distance"].shape == (3, 3, 2)
        assert f["group_0/x0"].shape == (3, 3, 2, 3, 3, 28, 28)
        assert f["group_0/cond/blocks.1.hook_resid_post"].shape == (3, 3, 2, 147, 16)
        assert f.attrs["complete"] and f["batch_done"][:].all()
        mse = f["metrics/mse"][:]
    assert (mse > 0).all()
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert [p["coords"] for p in summary["points"]] == [{"interventions.0.layers": i} for i in range(3)]
    assert summary["points"][1]["metrics"]["mse"] == pytest.approx(float(mse[1].mean()))
    names = {p.name for p in res.figures}
    assert {"mse_vs_layers.png", "x0_distance_vs_step.png", "x0_point0_sample0.png", "x0_point0_sample0.gif"} <= names
    again = run_experiment(e, tmp_path / "a", loaded=loaded, wandb="disabled", progress=False)
    assert again.cache_hit and count.n == 2  # no forward
    # one row per forward gives the same numbers as the batched run
    one = run_experiment(e.model_copy(update={"max_batch": 2}), tmp_path / "b", loaded=loaded, wandb="disabled",
                         progress=False)  # fmt: skip
    with h5py.File(one.results) as f:
        assert np.allclose(f["metrics/mse"][:], mse, atol=1e-6)
    assert count.n == 2 + 9 * 2


def test_resume_after_a_crash_equals_an_uninterrupted_run(maze_dir, tmp_path):
    e = _exp(maze_dir, max_batch=4, interventions=[{"kind": "noise", "steps": 0, "frames": 1}],
             sweep={"interventions.0.steps": [0, 1]}, capture={"x0": True})  # fmt: skip
    loaded = load_model(str(maze_dir))
    whole = run_experiment(e, tmp_path / "whole", loaded=loaded, wandb="disabled", progress=False)

    def crash(i):
        if i == 1:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        run_experiment(e, tmp_path / "cut", loaded=loaded, wandb="disabled", progress=False, on_batch=crash)
    partial = tmp_path / "cut" / "results.h5.partial"
    with h5py.File(partial) as f:
        assert f["batch_done"][:].tolist()[:2] == [1, 1] and not f["batch_done"][:].all()
    count = Counter(loaded)
    resumed = run_experiment(e, tmp_path / "cut", loaded=loaded, wandb="disabled", progress=False)
    n_batches = len(plan(e, 3).batches)
    assert count.n == (n_batches - 2) * 2  # only the batches not done, 2 steps each
    with h5py.File(whole.results) as a, h5py.File(resumed.results) as b:
        names = []
        a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
        for n in names:
            assert np.array_equal(a[n][:], b[n][:], equal_nan=True), n


def test_ensemble_of_identical_seeds_changes_nothing(maze_dir, tmp_path):
    e = _exp(maze_dir, interventions=[{"kind": "ensemble", "seeds": [0, 0, 0], "steps": 0}], metrics=["mse", "cosine"])
    res = run_experiment(e, tmp_path / "e", wandb="disabled", progress=False)
    assert res.summary["points"][0]["metrics"]["mse"] < 1e-10
    assert res.summary["points"][0]["metrics"]["cosine"] == pytest.approx(1.0, abs=1e-6)


def test_full_patch_reproduces_the_source_final(maze_dir, tmp_path):
    """Every resid_post at every step from another maze (same noise): the output is that maze's (mse_to_source 0),
    far from the unintervened one."""
    e = _exp(maze_dir, interventions=[{"kind": "patch", "source": {"input": 1}}], metrics=["mse", "mse_to_source"])
    res = run_experiment(e, tmp_path / "p", wandb="disabled", progress=False)
    m = res.summary["points"][0]["metrics"]
    assert m["mse_to_source"] < 1e-10 and m["mse"] > 1e-3


# ---- the CLI and the examples --------------------------------------------------------------------------------
TINY = {  # per example: overrides fitting the tiny 3-block, 2-step maze model
    "patch": ["sweep.interventions.0.layers=[0, 2]"],
    "skip": ["sweep.interventions.0.layers=[0, 2]", "sweep.interventions.0.steps=['0:1', '1:2']"],
    "ablate": ["sweep.interventions.0.layers=[1]"],
    "noise": ["sweep.interventions.0.steps=[0, 1]"],
    "noise_frame": ["sweep.interventions.0.frames=[1, 2]"],
    "swap": ["sweep.interventions.0.layers=[0, 2]"],
    "ensemble": ["interventions.0.layers='1:3'", "sweep.interventions.0.steps=['0:1']", "max_batch=8"],
    "steer": ["interventions.0.site=blocks.1.hook_resid_post", "interventions.0.direction.key=direction_16",
              "sweep.interventions.0.scale=[0.0, 8.0]"],
    "atp": ["sweep.interventions.0.layers=[[0], [2]]", "sweep.interventions.0.steps=[[0], [1]]"],
    "head_patch": ["interventions.0.site=blocks.1.attn.hook_z", "sweep.interventions.0.heads=[[0], [1]]"],
}  # fmt: skip


def test_every_intervention_kind_has_an_example():
    from interp.interventions import KINDS

    kinds = {Experiment.load(p).interventions[0].kind for p in EXAMPLES.glob("*.yaml")}
    assert kinds == set(KINDS) and set(TINY) == {p.stem for p in EXAMPLES.glob("*.yaml")}


@pytest.mark.parametrize("name", sorted(TINY))
def test_example_runs_on_a_tiny_model(name, maze_dir, tmp_path):
    sets = [f"model={maze_dir}", "inputs.count=2", "inputs.sizes=[3]", "sampler.steps=2", *TINY[name]]
    args = ["run", str(EXAMPLES / f"{name}.yaml"), "--out", str(tmp_path / name), "--wandb", "disabled"]
    res = runner.invoke(app, args + [a for s in sets for a in ("--set", s)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    summary = json.loads((tmp_path / name / "summary.json").read_text())
    assert len(summary["points"]) >= 1 and all(np.isfinite(v) for p in summary["points"] for v in p["metrics"].values())
    if name == "steer":  # scale 0 is the unintervened run
        assert summary["points"][0]["metrics"]["mse"] == 0.0 and summary["points"][1]["metrics"]["mse"] > 0


def test_cli_cache_hit_wandb_offline_and_bad_file(maze_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    sets = ["--set", f"model={maze_dir}", "--set", "inputs.count=2", "--set", "sweep.interventions.0.steps=[0]"]
    args = ["run", str(EXAMPLES / "noise.yaml"), "--out", str(tmp_path / "n"), *sets]
    first = runner.invoke(app, args + ["--wandb", "offline"])
    assert first.exit_code == 0, first.output + repr(first.exception)
    assert list((tmp_path / "n" / "wandb").glob("**/*.wandb")), "an offline W&B run was written"
    second = runner.invoke(app, args + ["--wandb", "disabled"])
    assert second.exit_code == 0 and "cache hit" in second.output
    bad = runner.invoke(app, ["run", str(EXAMPLES / "noise.yaml"), "--set", "interventions.0.mix=3"])
    assert bad.exit_code == 2 and "interventions.0.mix: Input should be less than or equal to 1" in bad.output


def test_sites_and_layers_are_checked_against_the_model_before_any_forward(maze_dir, tmp_path):
    args = ["run", str(EXAMPLES / "skip.yaml"), "--out", str(tmp_path / "s"), "--wandb", "disabled",
            "--set", f"model={maze_dir}", "--set", "sweep.interventions.0.steps=[0]"]  # fmt: skip
    res = runner.invoke(app, args)  # the example sweeps layers 0..15; the tiny model has 3
    assert res.exit_code == 2 and "sweep point {'interventions.0.layers': 3" in res.output
    assert "layers [3] outside 0..2" in res.output and not (tmp_path / "s" / "results.h5.partial").exists()


def test_smoke_on_maze_wan(tmp_path):
    """The shipped model, tiny: one 5x5 maze, 3 steps; fresh noise at the last step moves the output far from the
    unintervened run's."""
    from interp.models import BUILTINS

    if not BUILTINS["maze-wan"].available:
        pytest.skip("maze-wan is not trained yet")
    e = Experiment.load(EXAMPLES / "noise.yaml", ["inputs.count=1", "sampler.steps=3", "sweep.interventions.0.steps=[2]",
                                                  "capture.x0=false"])  # fmt: skip
    res = run_experiment(e, tmp_path / "mw", wandb="disabled", progress=False)
    m = res.summary["points"][0]["metrics"]
    assert m["mse"] > 0.1 and m["x0_distance"] > 0 and 0.0 <= m["path_recall"] <= 1.0
    assert set(res.summary["clean"]) == {"solve_rate", "path_recall", "extra_cells"}


def test_captured_sites_in_each_storage_dtype_read_back_as_float32(maze_dir, tmp_path):
    from interp.store.results import read_group

    loaded = load_model(str(maze_dir))
    site = "cond/blocks.1.hook_resid_post"
    acts = {}
    for dt in ("float32", "bfloat16", "float8_e4m3:token"):
        e = _exp(maze_dir, capture={"sites": ["blocks.1.hook_resid_post"], "dtype": dt},
                 interventions=[{"kind": "skip", "layers": 0}])  # fmt: skip
        res = run_experiment(e, tmp_path / dt.replace(":", "-"), loaded=loaded, wandb="disabled", progress=False)
        with h5py.File(res.results) as f:
            ds = f[f"group_0/{site}"]
            assert ds.dtype == {"float32": np.float32, "bfloat16": np.uint16, "float8_e4m3:token": np.uint8}[dt]
            assert ("group_0/" + site + ".scale" in f) == (dt == "float8_e4m3:token")
        acts[dt] = read_group(res.results)["acts"]
        assert acts[dt][site].dtype == np.float32 and site + ".scale" not in acts[dt]
    ref = acts["float32"][site]
    rel = {dt: np.linalg.norm(a[site] - ref) / np.linalg.norm(ref) for dt, a in acts.items()}
    assert rel["float32"] == 0 and 0 < rel["bfloat16"] < 8e-3 and 8e-3 < rel["float8_e4m3:token"] < 0.07


def test_rows_join_at_their_first_edited_step_with_the_results_of_full_runs(maze_dir, tmp_path, monkeypatch):
    """Prefix sharing: an edited row whose edits start at step k is computed from k on, from its baseline's latent
    (and x0, which renoise reads); the results equal those of every row run from step 0, with fewer row-steps."""
    from interp.experiments import runner as R

    points = [{"kind": "noise", "mode": "replace", "steps": "0%", "seed": 5},
              {"kind": "noise", "mode": "replace", "steps": "50%", "seed": 5},
              {"kind": "noise", "mode": "renoise", "steps": "50%", "seed": 5},
              {"kind": "noise", "mode": "renoise", "steps": "75%", "seed": 5},
              {"kind": "skip", "site": "blocks.{layer}", "layers": 1, "steps": "50%:100%"},
              {"kind": "swap", "site": "blocks.{layer}.hook_resid_post", "layers": 0, "steps": "25%:50%", "other": 1},
              {"kind": "ensemble", "k": 2, "steps": "75%"}]  # fmt: skip
    e = _exp(maze_dir, sampler={"steps": 8}, max_batch=40, interventions=[points[0]],
             sweep={"interventions.0": points}, metrics=["solve_rate", "path_recall", "mse", "cosine"])  # fmt: skip
    loaded = load_model(str(maze_dir))
    rows = []
    loaded.transformer.register_forward_hook(lambda m, args, out: rows.append(out[0].shape[0]))
    per_sample = 2 * 8 + (8 + 4 + 4 + 2 + 4 + 6 + 2 * 8)
    monkeypatch.setenv("INTERP_MAX_FORWARDS", str(3 * per_sample))  # the budget counts what is run: not refused
    shared = run_experiment(e, tmp_path / "shared", loaded=loaded, wandb="disabled", progress=False)
    # 3 samples: 3 baselines, 3 swap sources (the next maze with this one's noise), 8 edited rows each; joins (of 8
    # steps): replace 0, replace 4, renoise 4, renoise 6, skip 4, swap 2, ensemble 0 (its second member has other
    # noise): per sample 8 + 8 + (8 + 4 + 4 + 2 + 4 + 6 + 2 x 8) row-steps
    assert sum(rows) == 3 * per_sample < 3 * 10 * 8
    assert R.planned_forwards(e, loaded)["row_forwards"] == sum(rows)
    monkeypatch.setattr(R, "shares_prefix", lambda *a, **k: False)
    with pytest.raises(BudgetError, match=f"{3 * 10 * 8} row-forwards > {3 * per_sample}"):
        run_experiment(e, tmp_path / "refused", loaded=loaded, wandb="disabled", progress=False)
    monkeypatch.delenv("INTERP_MAX_FORWARDS")
    rows.clear()
    full = run_experiment(e, tmp_path / "full", loaded=loaded, wandb="disabled", progress=False)
    assert sum(rows) == 3 * 10 * 8
    with h5py.File(shared.results) as a, h5py.File(full.results) as b:
        assert np.allclose(a["group_0/final"][:], b["group_0/final"][:], atol=1e-5, rtol=1e-5)
        assert np.array_equal(a["group_0/clean_final"][:], b["group_0/clean_final"][:])
        for name in ("solve_rate", "path_recall"):
            assert np.array_equal(a[f"metrics/{name}"][:], b[f"metrics/{name}"][:])
        assert np.allclose(a["metrics/mse"][:], b["metrics/mse"][:], rtol=1e-4, atol=1e-7)
        # the late edits change the run (a shared row does not just copy its baseline)
        assert (a["metrics/mse"][1:4] > 0).all()


def test_rows_join_through_a_whole_pipeline_with_guidance_and_a_first_frame(tiny_organism, tmp_path, monkeypatch):
    """Prefix sharing on prompt inputs (the organism's pipeline: classifier-free guidance, an image-to-video first
    frame imposed at every step, the pipeline's own noise): rows joining late give the results of full runs."""
    from interp.apps.reproduce import experiments
    from interp.experiments import runner as R

    points = json.dumps([{"kind": "noise", "mode": "renoise", "steps": "50%", "seed": 3},
                         {"kind": "skip", "site": "blocks.{layer}", "layers": 1, "steps": "75%:100%"}])  # fmt: skip
    exps = experiments(model=str(tiny_organism), only=["suite_noise_step_vs_frame"], quick=True,
                       overrides=["sampler.steps=4", "inputs.count=2", f"sweep.interventions.0={points}"])  # fmt: skip
    e = next(iter(exps.values()))
    loaded = R.load_pipeline_of(e)
    assert R.sampler_of(e, loaded).cfg
    rows = []
    loaded.transformer.register_forward_hook(lambda m, args, out: rows.append(out[0].shape[0]))
    shared = run_experiment(e, tmp_path / "shared", loaded=loaded, wandb="disabled", progress=False)
    # per maze: the baseline 4 steps, renoise from step 2, skip from step 3; two forwards a step (guidance)
    assert sum(rows) == 2 * 2 * (4 + 2 + 1) == R.planned_forwards(e, loaded)["row_forwards"]
    monkeypatch.setattr(R, "shares_prefix", lambda *a, **k: False)
    rows.clear()
    full = run_experiment(e, tmp_path / "full", loaded=loaded, wandb="disabled", progress=False)
    assert sum(rows) == 2 * 2 * 3 * 4
    with h5py.File(shared.results) as a, h5py.File(full.results) as b:
        assert np.allclose(a["group_0/final"][:], b["group_0/final"][:], atol=1e-5, rtol=1e-5)
        assert np.abs(a["group_0/final"][:] - a["group_0/clean_final"][:][None]).max() > 1e-3  # the edits act
        assert np.array_equal(a["metrics/score_success"][:], b["metrics/score_success"][:])


def test_rows_join_only_where_the_run_can_resume_mid_schedule_and_keeps_final_latents_alone(maze_dir):
    """DDIM cannot begin mid-schedule (no set_begin_index) and a multistep solver keeps a history: their rows all run
    from step 0; so do runs that keep x0 or sites at every step, or read the lens."""
    from diffusers import DDIMScheduler, UniPCMultistepScheduler

    from interp.experiments import runner as R

    loaded = load_model(str(maze_dir))
    e = _exp(maze_dir, interventions=[{"kind": "noise", "steps": 1}], metrics=["mse"])
    assert R.shares_prefix(e, loaded) and not R.shares_prefix(e, loaded, streams=True)
    for per_step in ({"capture": {"x0": True}}, {"capture": {"sites": ["blocks.1.hook_resid_post"]}},
                     {"metrics": ["mse", "x0_distance"]}):  # fmt: skip
        assert not R.shares_prefix(_exp(maze_dir, **{"interventions": e.interventions, "metrics": ["mse"], **per_step}),
                                   loaded)  # fmt: skip
    for sched in (DDIMScheduler(), UniPCMultistepScheduler()):
        assert not R.shares_prefix(e, SimpleNamespace(scheduler=sched))


def test_prefix_sharing_benchmark_prints_both_runs_side_by_side(maze_dir):
    """benchmarks/prefix_sharing.py on the tiny model: the joined run counts fewer row-forwards than every row from
    step 0, and the two runs' solve metrics are equal."""
    from benchmarks.prefix_sharing import app as bench

    sets = ["--set", "inputs.sizes=[3]", "--set", "sampler.steps=8"]
    out = runner.invoke(bench, ["--model", str(maze_dir), "--count", "1", *sets])
    assert out.exit_code == 0, out.output
    lines = {ln.split()[0] + " " + ln.split()[1]: ln.split() for ln in out.output.splitlines() if ln.startswith(
        ("every row", "rows join"))}  # fmt: skip
    every, joined = int(lines["every row"][2].replace(",", "")), int(lines["rows join"][2].replace(",", ""))
    # 23 points + the clean row, 8 steps; the 18 step points join at steps 0, 1, 2, 3, 4, 5, 6, 7, 7 (twice each)
    assert every == 24 * 8 and joined == every - 2 * (0 + 1 + 2 + 3 + 4 + 5 + 6 + 7 + 7)
    assert "speed-up" in out.output and "solve_rate" in out.output.split("metrics equal:")[1].split(";")[0]

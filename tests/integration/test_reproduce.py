"""interp reproduce: verdict rules and the report on synthetic numbers; every paper YAML (full and quick) validates
and runs on a tiny random Wan with maze metadata; fraction indices and whole-intervention sweeps."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from interp.apps.reproduce import (
    ANALYSES,
    ANALYZE,
    MAZE_ANALYSES,
    PAPER_DIR,
    QUICK,
    SUITE_ANALYSES,
    SUITE_TASKS,
    default_analyses,
    experiment,
    experiments,
    plan_sizes,
    plan_table,
    reproduce,
)
from interp.experiments import Experiment, ExperimentError, sweep_points
from interp.interventions import parse, resolve_index
from interp.report import paper as P
from interp.store.results import read_metrics


# ---- verdict rules on synthetic numbers ------------------------------------------------------------------------------
def _chain(explore, peak, late):
    return {"explore_share": explore, "peak_alt": peak, "late_alt": late, "peak_candidates": 2.0, "peak_step": 1,
            "late_candidates": 1.0, "commit_median": 5.0, "steps": 10}  # fmt: skip


def _ones(n, rate):
    return [1.0] * round(rate * n) + [0.0] * (n - round(rate * n))


def _noise(curve, clean=0.7, mids=(0.65, 0.7), n=100):
    return {"clean": clean, "steps": len(curve), "step_at": list(range(len(curve))), "step_curve": list(curve), "step_min": min(curve),
            "step_argmin": int(min(range(len(curve)), key=curve.__getitem__)), "frame_mid": list(mids),
            "frame_rates": {"frame 1": mids[0]}, "n": n,
            "samples": {"clean": _ones(n, clean), "step": [_ones(n, c) for c in curve],
                        "frame": {f"frame {i + 1}": _ones(n, m) for i, m in enumerate(mids)},
                        "frame_mid_keys": [f"frame {i + 1}" for i in range(len(mids))]}}  # fmt: skip


@pytest.mark.parametrize(
    "rule, numbers, verdict",
    [
        (P.level_chain, _chain(0.6, 4.0, 0.5), P.HOLDS),
        (P.level_chain, _chain(0.3, 4.0, 0.5), P.PARTLY),
        (P.level_chain, _chain(0.6, 4.0, 3.0), P.PARTLY),
        (P.level_chain, _chain(0.1, 0.2, 0.1), P.NOT),
        (P.level_noise_drop, _noise([0.7, 0.2, 0.6]), P.HOLDS),       # 0.2 / 0.7 = 0.29
        (P.level_noise_drop, _noise([0.7, 0.5, 0.6]), P.PARTLY),      # 0.71
        (P.level_noise_drop, _noise([0.7, 0.65, 0.7]), P.NOT),
        (P.level_noise_drop, _noise([0.0, 0.0], clean=0.0), P.NA),
        (P.level_noise_peak, _noise([0.7, 0.6, 0.2, 0.5, 0.7]), P.HOLDS),
        (P.level_noise_peak, _noise([0.7, 0.6, 0.2, 0.25, 0.25]), P.PARTLY),
        (P.level_noise_peak, _noise([0.7, 0.6, 0.5, 0.3, 0.0]), P.NOT),  # monotone: worst at the end
        (P.level_noise_peak, _noise([0.7, 0.68, 0.7]), P.NOT),           # nothing costs 0.1
        (P.level_noise_peak, _noise([0.7, 0.6, 0.2, 0.5, 0.7]) | {"step_at": [0, 1, 2, 3, 49], "steps": 50}, P.NOT),
        (P.level_noise_peak, _noise([0.7, 0.2, 0.7]) | {"step_at": [0, 25, 49], "steps": 50}, P.HOLDS),
        (P.level_noise_frame, _noise([0.7, 0.1], mids=(0.65, 0.7)), P.HOLDS),
        (P.level_noise_frame, _noise([0.7, 0.1], mids=(0.3, 0.3)), P.PARTLY),
        (P.level_noise_frame, _noise([0.7, 0.1], mids=(0.1, 0.1)), P.NOT),
        (P.level_swap_answer, {"answer_flip": {0.0: 0.0, 0.4: 0.8, 0.9: 0.1}, "best_layer": 6,
                              "band_answer": [0.0, 0.8, 0.1]}, P.HOLDS),
        (P.level_swap_answer, {"answer_flip": {0.0: 0.0, 0.4: 0.2}, "best_layer": 6, "band_answer": [0, 0.2, 0]}, P.PARTLY),
        (P.level_swap_answer, {"answer_flip": {0.0: 0.9, 0.4: 0.2}, "best_layer": 0, "band_answer": [0.9, 0.2, 0]}, P.NOT),
        (P.level_swap_structure, {"band_structure": [0.7, 0.2, 0.0]}, P.HOLDS),
        (P.level_swap_structure, {"band_structure": [0.0, 0.2, 0.0]}, P.NOT),
        (P.level_skip, {"band_drop": [0.1, 0.4, 0.1], "step_drop": [0.3], "worst": ["0%:20%", 7, 0.6]}, P.HOLDS),
        (P.level_skip, {"band_drop": [0.5, 0.05, 0.0], "step_drop": [0.3], "worst": ["0%:20%", 0, 0.9]}, P.PARTLY),
        (P.level_skip, {"band_drop": [0.5, 0.0, 0.2], "step_drop": [0.3], "worst": ["0%:20%", 0, 0.9]}, P.NOT),
        (P.level_memory, {"layout_final": 0.99, "layout_min_late": 0.97, "layout_first_step": 2}, P.HOLDS),
        (P.level_memory, {"layout_final": 0.93, "layout_min_late": 0.5, "layout_first_step": None}, P.PARTLY),
        (P.level_selfcorrect, {"wrong_then_right": 0.2, "right_then_wrong": 0.1, "n_fix": 2, "n_break": 1, "n": 10,
                              "final": 0.8}, P.HOLDS),
        (P.level_selfcorrect, {"wrong_then_right": 0.0, "right_then_wrong": 0.1, "n_fix": 0, "n_break": 1, "n": 10,
                              "final": 0.8}, P.NOT),
        (P.level_perception, {"t_layout": 0, "t_path": 3, "threshold": 0.9, "steps": 8, "acc0_wall": 0.95,
                             "acc0_path": 0.6}, P.HOLDS),
        (P.level_perception, {"t_layout": 3, "t_path": 3, "threshold": 0.9, "steps": 8, "acc0_wall": 0.5,
                             "acc0_path": 0.5, "depth_layout": 0, "depth_path": 1}, P.PARTLY),
        (P.level_perception, {"t_layout": 3, "t_path": 3, "threshold": 0.9, "steps": 8, "acc0_wall": 0.5,
                             "acc0_path": 0.5, "depth_layout": 1, "depth_path": 1}, P.NOT),
    ],
)  # fmt: skip
def test_verdict_rules(rule, numbers, verdict):
    assert rule(numbers)[0] == verdict


def _ens(single, ens, best3):
    return {"single": single, "paper_config": ens, "best_of_3": best3, "oracle": 0.9, "paper_config_name": "mid",
            "best_config": ens, "best_config_name": "mid", "n": 100,
            "samples": {"single": _ones(100, single), "paper_config": _ones(100, ens), "best_of_3": _ones(100, best3)}}  # fmt: skip


def test_ensemble_rule_compares_one_seed_and_best_of_3():
    assert P.level_ensemble(_ens(0.64, 0.67, 0.66))[0] == P.HOLDS
    assert P.level_ensemble(_ens(0.64, 0.67, 0.70))[0] == P.PARTLY  # gains, but best-of-3 does better
    assert P.level_ensemble(_ens(0.64, 0.65, 0.60))[0] == P.PARTLY
    assert P.level_ensemble(_ens(0.64, 0.60, 0.60))[0] == P.NOT


def test_report_table_from_synthetic_numbers(tmp_path):
    numbers = {"noise_step_vs_frame": {"noise": _noise([0.7, 0.6, 0.2, 0.5, 0.7]), "setup": "synthetic",
                                       "noise_renoise": _noise([0.2, 0.6, 0.7, 0.7, 0.7]) | {"mode": "renoise"}},
               "seed_ensemble": {"ensemble": _ens(0.64, 0.60, 0.62)}}  # fmt: skip
    figs = {"noise_step_vs_frame": ["noise_step_vs_frame/noise.png"], "seed_ensemble": []}
    path = P.write_report(tmp_path, numbers, figs, header={"title": "T", "profile": "quick"})
    text = path.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "claim |" not in line]
    assert len(rows) == 5  # four noise claims and the ensemble; analyses that did not run have no rows
    assert "| **holds** |" in rows[0] and "[noise.png](noise_step_vs_frame/noise.png)" in rows[0]
    assert "(renoise" in rows[2] and "**does not hold**" in rows[2] and "renoise: most damaging step at 0.00" in rows[2]
    assert "**does not hold**" in rows[4] and "gain -0.040" in rows[4]
    assert "synthetic" in text and "![noise](noise_step_vs_frame/noise.png)" in text and "- **profile**: quick" in text


FRACS = [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875]


def _skip(early, middle, late, n=40):
    """Skip numbers of 8 depths (one step range): every instance solved clean; the band's rate when skipped."""
    rate = [early if f < 0.25 else middle if f < 0.75 else late for f in FRACS]
    drop = [1 - early, 1 - middle, 1 - late]
    return {"clean": 1.0, "band_drop": drop, "step_drop": [float(np.mean([1 - r for r in rate]))],
            "worst": ["0%:100%", 0, max(drop)], "n": n,
            "samples": {"clean": [1.0] * n, "solved": [[_ones(n, r) for r in rate]], "fracs": FRACS}}  # fmt: skip


def test_suite_report_puts_the_tasks_side_by_side_per_claim(tmp_path):
    """A suite analysis's numbers per task: one row per task for each claim, adjacent, each with its own verdict
    and intervals; the rule is written once; the maze rows are untouched."""
    numbers = {"suite_layer_skip": {"tasks": {
        "loopmaze": {"skip": _skip(1.0, 0.5, 0.9), "setup": "loop setup", "inputs": "loopmaze level [4]"},
        "mirror": {"skip": _skip(0.3, 0.9, 0.9), "setup": "mirror setup", "inputs": "mirror level [3]"}}},
        "layer_skip": {"skip": _skip(1.0, 0.5, 0.9)}}  # fmt: skip
    figs = {"suite_layer_skip": ["suite_layer_skip/loopmaze/skip.png", "suite_layer_skip/mirror/skip.png"]}
    text = P.write_report(tmp_path, numbers, figs, header={"title": "T"}).read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "claim |" not in line]
    assert len(rows) == 3 and "(task suite)" not in rows[0]
    loop, mirror = rows[1:]
    assert "(task suite): loopmaze level [4]" in loop and "(task suite): mirror level [3]" in mirror
    assert "**holds**" in loop and "middle - late +0.40 [" in loop and "(suite_layer_skip/loopmaze/skip.png)" in loop
    assert "**does not hold**" in mirror and "middle - early -0.60 [" in mirror and "mirror/skip.png" in mirror
    assert text.count("- *suite_skip*:") == 1 and "per-instance solve-rate drop" in text
    assert "loopmaze: loop setup" in text and "mirror: mirror setup" in text


def test_suite_analyses_run_once_per_task():
    exps = experiments(only=["suite_layer_skip", "suite_seed_ensemble"], quick=True)
    assert list(exps) == [f"{a}/{t}" for a in ("suite_layer_skip", "suite_seed_ensemble") for t in SUITE_TASKS[a]]
    for key, e in exps.items():
        a, _, t = key.partition("/")
        assert (e.inputs.task, e.inputs.levels, e.scorer) == (t, SUITE_TASKS[a][t], "interp.scorers:suite")
    for a in SUITE_TASKS:  # each file runs alone too, on the first task
        full = experiment(a)
        assert (full.inputs.task, full.inputs.levels) == next(iter(SUITE_TASKS[a].items()))


# ---- the engine additions: fraction indices, whole-intervention sweeps ---------------------------------------------------
def test_fraction_indices_fit_any_depth():
    assert resolve_index("25%:75%", 16, "layers") == list(range(4, 12))
    assert resolve_index("25%:52.5%", 40, "layers") == list(range(10, 21))
    assert resolve_index("50%", 16, "layers") == [8] and resolve_index("100%", 5, "frames") == [4]
    assert resolve_index("0%:2%", 50, "steps") == [0] and resolve_index("0%:2%", 8, "steps") == [0]  # at least one
    assert resolve_index("90%:100%", 2, "layers") == [1]
    assert parse({"kind": "skip", "layers": "12.5%"}).layers == "12.5%"
    for bad in ("75%:25%", "150%", "5%:"):
        with pytest.raises(ValueError):
            parse({"kind": "skip", "layers": bad})


def test_sweep_over_whole_interventions():
    e = Experiment.validate_data(
        {
            "model": "m",
            "interventions": [{"kind": "noise", "steps": 0}],
            "sweep": {"interventions.0": [{"kind": "noise", "steps": 3}, {"kind": "noise", "frames": "50%"}]},
        }
    )
    pts = sweep_points(e)
    assert [p["interventions.0"] for p in pts] == [{"kind": "noise", "steps": 3}, {"kind": "noise", "frames": "50%"}]
    with pytest.raises(ExperimentError, match="interventions.0.mix"):
        Experiment.validate_data({"model": "m", "interventions": [{"kind": "noise"}],
                                  "sweep": {"interventions.0": [{"kind": "noise", "mix": 2}]}})  # fmt: skip


# ---- the paper files ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ANALYSES)
def test_paper_yaml_validates_full_and_quick(name):
    assert (PAPER_DIR / f"{name}.yaml").exists()
    full, quick = experiment(name), experiment(name, quick=True)
    assert full.model == quick.model == ("maze-wan" if name in MAZE_ANALYSES else "organism")
    assert len(sweep_points(quick)) <= len(sweep_points(full))
    assert quick.inputs.count < full.inputs.count


TINY = {  # the full files, shrunk to the tiny model: 3x3 mazes, 2 mazes (5 for the probes), 2 steps, fewer layers
    "noise_step_vs_frame": ["sampler.steps=2", "sweep.interventions.0=" + json.dumps(
        [{"kind": "noise", "mode": m, "steps": s} for m in ("replace", "renoise") for s in (0, 1)]
        + [{"kind": "noise", "frames": f} for f in ("0%", "50%", "100%")])],
    "working_memory": ["inputs.count=5", "capture.sites=[blocks.1.hook_resid_post]"],
    "layer_swap": ["sweep.interventions.0.layers=['0%:34%', '34%:100%']", "sweep.interventions.0.steps=[0, '0%:50%']"],
    "layer_skip": ["sweep.interventions.0.layers=['0%', '50%']"],
}  # fmt: skip


def test_every_paper_yaml_runs_on_a_tiny_model_and_the_report_is_written(maze_dir, tmp_path):
    base = ["inputs.sizes=[3]", "inputs.count=2", "sampler.steps=2"]
    overrides = {n: base + TINY.get(n, []) for n in MAZE_ANALYSES}
    report = reproduce(tmp_path / "paper", model=str(maze_dir), overrides=overrides, progress=False)
    text = report.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "claim |" not in line]
    assert len(rows) == len([s for s in P.SPECS if s.analysis in MAZE_ANALYSES])
    assert all(any(f"**{v}" in r for v in (P.HOLDS, P.PARTLY, P.NOT, P.NA, P.NES)) for r in rows)
    assert "not enough samples (n=2)" in text  # 2 mazes: no measured verdict is decided
    numbers = json.loads((tmp_path / "paper" / "numbers.json").read_text())
    assert set(numbers) == set(MAZE_ANALYSES)
    assert numbers["noise_step_vs_frame"]["noise"]["steps"] == 2
    assert numbers["noise_step_vs_frame"]["noise_renoise"]["step_at"] == [0, 1]
    assert len(numbers["chain_of_steps"]["chain"]["candidates_curve"]) == 2
    assert "probes" in numbers["working_memory"]
    assert len(numbers["working_memory"]["probes"]["control_wall_curve"]) == 2  # perception with its control task
    for line in text.splitlines():  # every figure the report names exists
        if line.startswith("!["):
            assert (tmp_path / "paper" / line.split("](")[1].rstrip(")")).exists(), line
    # one analysis again (a cache hit): the others keep their timings, this one the time it was computed in
    timings = json.loads((tmp_path / "paper" / "timings.json").read_text())
    reproduce(tmp_path / "paper", model=str(maze_dir), overrides=overrides, only=["layer_skip"], progress=False)
    again = json.loads((tmp_path / "paper" / "timings.json").read_text())
    assert set(again) == set(MAZE_ANALYSES) and again == timings
    # the analyses not run again keep their numbers, figures and rows in the report (--only adds to a report)
    assert json.loads((tmp_path / "paper" / "numbers.json").read_text()) == numbers
    assert set(json.loads((tmp_path / "paper" / "figures.json").read_text())) == set(MAZE_ANALYSES)
    assert (tmp_path / "paper" / "REPORT.md").read_text().count("\n| ") == text.count("\n| ")
    assert "--only layer_skip" not in (tmp_path / "paper" / "REPORT.md").read_text()  # a cache hit keeps its command
    shutil.rmtree(tmp_path / "paper" / "layer_skip")  # run anew (another count): this analysis says how it ran
    reproduce(tmp_path / "paper", model=str(maze_dir), overrides={**overrides, "layer_skip": overrides["layer_skip"]
              + ["inputs.count=3"]}, only=["layer_skip"], progress=False)  # fmt: skip
    header = (tmp_path / "paper" / "REPORT.md").read_text().split("## Claims")[0]
    assert "layer_skip: interp reproduce" in header and "--only layer_skip" in header  # run now: its own command
    assert json.loads((tmp_path / "paper" / "numbers.json").read_text())["chain_of_steps"] == numbers["chain_of_steps"]


@pytest.mark.slow
def test_every_paper_yaml_runs_unchanged_on_the_cogvideox_maze_model(tmp_path):
    """The same files on a second DiT family (the shipped CogVideoX maze model), only the sizes shrunk: every
    analysis runs and every claim gets a verdict."""
    base = ["inputs.sizes=[3]", "inputs.count=2", "sampler.steps=2"]
    overrides = {n: base + TINY.get(n, []) for n in MAZE_ANALYSES}
    overrides["working_memory"] = base + ["inputs.count=5"]  # its own sites: every block
    for n in ("layer_swap", "layer_skip"):  # an early, a middle and a late layer: every band's rule is measured
        overrides[n] = base + ["sweep.interventions.0.layers=['0%', '50%', '90%']"]
    report = reproduce(tmp_path / "paper", model="maze-cogvideox", overrides=overrides, progress=False)
    text = report.read_text()
    assert "reproduced on maze-cogvideox" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "claim |" not in line]
    assert len(rows) == len([s for s in P.SPECS if s.analysis in MAZE_ANALYSES])
    assert all(any(f"**{v}" in r for v in (P.HOLDS, P.PARTLY, P.NOT, P.NES)) for r in rows)  # every claim measured
    numbers = json.loads((tmp_path / "paper" / "numbers.json").read_text())
    assert numbers["working_memory"]["probes"]["sites"] == [f"blocks.{i}.hook_resid_post" for i in range(16)]


def test_plan_counts_the_engines_batch_rows(maze_dir):
    """The plan is the engine's batch plan: noise has one edited row per (point, maze) plus the maze's clean row in
    every batch that holds its points (max_batch 4: 3 points a batch, so 3 batches of 7 points per maze)."""
    base = ["inputs.sizes=[3]", "inputs.count=2", "max_batch=4"]
    sizes = plan_sizes(model=str(maze_dir), only=["noise_step_vs_frame", "layer_swap"],
                       overrides={n: base + TINY[n] for n in ("noise_step_vs_frame", "layer_swap")})  # fmt: skip
    noise = sizes["noise_step_vs_frame"]
    assert (noise["mazes"], noise["points"], noise["rows"], noise["steps"]) == (2, 7, 2 * (7 + 3), 2)
    # 2 steps per row, less step 0 of the rows noised at step 1 alone (2 points x 2 mazes: they join at step 1)
    assert noise["row_forwards"] == noise["rows"] * 2 - 2 * 2
    assert "total" in plan_table(sizes) and f"{sum(p['row_forwards'] for p in sizes.values()):,}" in plan_table(sizes)


def test_quick_profile_covers_every_analysis():
    assert set(QUICK) == set(ANALYSES) == set(ANALYZE)


def test_default_analyses_follow_the_models_task():
    assert default_analyses(None) == MAZE_ANALYSES == default_analyses("maze-wan")
    assert default_analyses("organism") == SUITE_ANALYSES
    assert set(SUITE_ANALYSES) - {"prompt_swap"} == set(SUITE_TASKS)


@pytest.mark.slow
def test_prompt_swap_runs_on_the_organism_and_a_flip_is_the_other_goal(tmp_path):
    """The organism's prompt swap, shrunk (2 mazes x both prompts, 3 steps, two bands): every run is scored by the
    goalmaze pixel scorer, and the flip counted is exactly 'reached the other goal and not its own'."""
    over = ["inputs.count=2", "sampler.steps=3", "sweep.interventions.0.layers=['0%:25%', '50%:75%']",
            "sweep.interventions.0.steps=[0]"]  # fmt: skip
    report = reproduce(tmp_path / "o", model="organism", only=["prompt_swap"], overrides={"prompt_swap": over},
                       progress=False)
    text = report.read_text()
    assert "prompt swap, same image" in text and "not enough samples (n=4)" in text
    d = json.loads((tmp_path / "o" / "numbers.json").read_text())["prompt_swap"]["prompt_swap"]
    m = read_metrics(tmp_path / "o" / "prompt_swap" / "results.h5")
    want = ((m["metrics"]["score_reached_other"] > 0.5) & (m["metrics"]["score_reached_target"] < 0.5)).mean(1)
    got = [d["answer_flip"][k] for k in sorted(d["answer_flip"], key=float)]
    assert np.allclose(got, want) and d["n"] == 4


@pytest.mark.slow
def test_suite_analyses_run_on_the_organism_one_row_per_task_per_claim(tiny_organism, tmp_path):
    """The quick suite profile at 2 steps on the organism's pipeline (a tiny transformer and VAE: the shipped one
    took ~100 s more on 2 cores; the prompt swap runs on the shipped one above): every suite analysis runs on each
    of its tasks, success is the task's pixel scorer (numbers.json's per-instance values are results.h5's
    score_success), and the report has one row per task for every claim, with intervals."""
    # two analyses keep this CPU run short: the ensemble's rows are tested on made-up numbers, the x0 analyses on a
    # tiny suite model (test_suite_x0_analyses_run_on_a_suite_model)
    names = ["suite_layer_skip", "suite_noise_step_vs_frame"]
    report = reproduce(tmp_path / "s", quick=True, model=str(tiny_organism), only=names,
                       overrides=["sampler.steps=2"], progress=False)  # fmt: skip
    text = report.read_text()
    numbers = json.loads((tmp_path / "s" / "numbers.json").read_text())
    assert set(numbers) == set(names)
    for a in names:
        assert set(numbers[a]["tasks"]) == set(SUITE_TASKS[a])
    for t, lv in SUITE_TASKS["suite_layer_skip"].items():
        m = read_metrics(tmp_path / "s" / "suite_layer_skip" / t / "results.h5")
        assert (m["experiment"]["inputs"]["task"], m["experiment"]["inputs"]["levels"]) == (t, lv)
        s = numbers["suite_layer_skip"]["tasks"][t]["skip"]["samples"]
        assert s["clean"] == m["clean"]["score_success"].tolist()
        assert np.asarray(s["solved"]).reshape(-1, 2).tolist() == m["metrics"]["score_success"].tolist()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "claim |" not in line]
    suite_specs = [s for s in P.SPECS if s.analysis in names]
    want = [(s.claim, t) for s in suite_specs for t in SUITE_TASKS[s.analysis]
            if s.part in numbers[s.analysis]["tasks"][t]]  # fmt: skip
    assert {s.part for s in suite_specs if s.analysis == "suite_noise_step_vs_frame"} - {"noise_renoise"} <= {
        p for p in numbers["suite_noise_step_vs_frame"]["tasks"]["mirror"]
    }
    assert len(rows) == len(want) >= 2 * 4  # skip, 3 noise claims (quick: replace only); two tasks each
    for row, (claim, t) in zip(rows, want):
        assert row.startswith(f"| {claim}: {t} level ")
        assert "**not enough samples (n=2)**" in row or f"**{P.NA}**" in row  # 2 steps: clean may solve nothing
        assert "[" in row.split("| **")[1]  # intervals in our numbers


@pytest.mark.slow
def test_suite_x0_analyses_run_on_a_suite_model(tiny_organism, tmp_path, monkeypatch):
    """Chain-of-Steps, the band swap and working memory / self-correction / probes on the organism's pipeline with a
    tiny transformer and VAE, one task each (goalmaze, mirror, loopmaze: each task's readers once; two tasks side
    by side are tested above), 2 instances (the probes: 5) and 2 steps: the numbers come from x0 decoded through the
    VAE and read by interp.tasks.answers, and every claim gets its row with its rule."""
    from interp.apps import reproduce as R
    from interp.tasks import answers as A

    one = {"suite_chain_of_steps": {"goalmaze": [5]}, "suite_layer_swap": {"mirror": [3]},
           "suite_working_memory": {"loopmaze": [4]}}  # fmt: skip
    for k, v in one.items():
        monkeypatch.setitem(SUITE_TASKS, k, v)
    base = ["inputs.count=2", "sampler.steps=2"]
    sites = "capture.sites=[blocks.0.hook_resid_post, blocks.3.hook_resid_post]"
    overrides = {"suite_chain_of_steps": base,
                 "suite_layer_swap": base + ["sweep.interventions.0.layers=['0%:25%', '75%:100%']",
                                             "sweep.interventions.0.steps=[0]"],
                 "suite_working_memory": ["inputs.count=5", "sampler.steps=2", sites]}  # fmt: skip
    model = str(tiny_organism)
    report = reproduce(tmp_path / "x", model=model, only=list(one), overrides=overrides, progress=False)
    text = report.read_text()
    numbers = json.loads((tmp_path / "x" / "numbers.json").read_text())
    chain = numbers["suite_chain_of_steps"]["tasks"]["goalmaze"]["chain"]
    # the candidates of run 1 at the last step, read again from results.h5's x0 through the pipeline's VAE
    res = tmp_path / "x" / "suite_chain_of_steps" / "goalmaze" / "results.h5"
    exp = experiments(model=model, only=["suite_chain_of_steps"], overrides=base)["suite_chain_of_steps/goalmaze"]
    pm = R._load_models({"e": exp}, "cpu")[model]
    x0 = R._read(res)["x0"][0]
    last = R._decode(pm, x0[1, -1:])[0, -1]
    assert chain["samples"]["candidates"][1][-1] == A.candidates("goalmaze", last, R._suite_instances(exp)[1]).n
    swap = numbers["suite_layer_swap"]["tasks"]["mirror"]["swap"]
    assert sorted(swap["answer_flip"], key=float) == ["0.125", "0.875"] and swap["n"] == 2
    mem = numbers["suite_working_memory"]["tasks"]["loopmaze"]
    assert len(mem["memory"]["layout_curve_per_frame"]) == 9 and mem["memory"]["n"] == 5
    assert mem["probes"]["sites"] == ["blocks.0.hook_resid_post", "blocks.3.hook_resid_post"]
    assert len(mem["probes"]["control_wall_curve"]) == 2 and mem["probes"]["labels"]["layout"] == "wall"
    rows = [line for line in text.splitlines() if line.startswith("| ") and "claim |" not in line]
    want = [s for s in P.SPECS if s.analysis in one]
    assert len(rows) == len(want) == 6
    for row, s in zip(rows, want):
        assert row.startswith(f"| {s.claim}: {next(iter(one[s.analysis]))} level ")
        assert "**not enough samples (n=" in row or f"**{P.NA}**" in row
    assert "*suite_perception*:" in text and "control task" in text and "interp.tasks.answers" in text

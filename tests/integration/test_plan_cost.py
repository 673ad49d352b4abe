"""`interp run --plan` / `interp capture --plan`: rows, forwards, bytes and time known first, nothing written; the
run's progress bar counts denoising steps."""

from __future__ import annotations

import h5py
import pytest
from typer.testing import CliRunner

import interp.experiments.runner as runner_mod
from interp.apps.capture import CaptureConfig, capture, plan_capture
from interp.cli import app
from interp.experiments import Experiment, run_experiment
from interp.experiments.cost import estimate_seconds
from interp.experiments.runner import plan_run
from interp.models import load_model

runner = CliRunner()


def _exp(model) -> Experiment:
    return Experiment.validate_data({
        "model": str(model), "inputs": {"count": 3}, "max_batch": 12, "metrics": ["mse", "solve_rate"],
        "capture": {"x0": True, "sites": ["blocks.1.hook_resid_post"]},
        "interventions": [{"kind": "skip", "layers": 0}], "sweep": {"interventions.0.layers": [0, 1, 2]},
    })  # fmt: skip


class Counter:
    def __init__(self, loaded):
        self.n = 0
        loaded.transformer.register_forward_hook(lambda *a: setattr(self, "n", self.n + 1))


def _array_bytes(path, prefix: str) -> int:
    """Bytes of the arrays under ``prefix`` (the condition frames left out: the plan counts model outputs)."""
    sizes: list[int] = []
    with h5py.File(path) as f:
        f[prefix].visititems(lambda name, o: sizes.append(o.size * o.dtype.itemsize)
                             if isinstance(o, h5py.Dataset) and name != "condition_frames" else None)  # fmt: skip
    return sum(sizes)


def test_estimate_pays_the_first_step_once_then_the_warm_rate():
    assert estimate_seconds(3.0, 1.0, 4, 4) == 3.0  # the timed rows' first step alone
    assert estimate_seconds(3.0, 1.0, 4, 4 + 8) == pytest.approx(3.0 + 8 * 0.25)


def test_run_plan_counts_what_the_run_writes_and_writes_nothing(maze_dir, tmp_path):
    e = _exp(maze_dir)
    loaded = load_model(str(maze_dir))
    count = Counter(loaded)
    cost = plan_run(e, tmp_path / "a", loaded=loaded)
    assert count.n == 2 and not (tmp_path / "a").exists()  # two timed steps of the first batch, nothing on disk
    # 9 edited rows + 3 clean baselines, 2 steps, no guidance
    assert (cost.rows, cost.steps, cost.forwards) == (12, 2, 24) and cost.seconds > 0
    res = run_experiment(e, tmp_path / "a", loaded=loaded, wandb="disabled", progress=False)
    assert cost.bytes == _array_bytes(res.results, "group_0")  # finals, x0s and the site, as written
    again = plan_run(e, tmp_path / "a", loaded=loaded)
    assert again.forwards == 0 and "cache hit" in again.timed


def test_run_bar_ticks_every_step_of_every_batch(maze_dir, tmp_path, monkeypatch):
    ticks: list = []

    class Recording(runner_mod.Progress):
        def add_task(self, description, total=None, **kw):
            ticks.append(("total", total, description))
            return super().add_task(description, total=total, **kw)

        def advance(self, task, advance=1):
            ticks.append(advance)
            super().advance(task, advance)

    monkeypatch.setattr(runner_mod, "Progress", Recording)
    e = _exp(maze_dir).model_copy(update={"max_batch": 4})  # 3 batches of one sample's 3 points + baseline
    run_experiment(e, tmp_path / "b", wandb="disabled", progress=True)
    assert ticks[0][:2] == ("total", 6) and "3 batches x 2 steps" in ticks[0][2]
    assert ticks[1:] == [1] * 6


def test_capture_plan_counts_the_file_it_would_write(maze_dir, tmp_path):
    cfg = CaptureConfig(model=str(maze_dir), batch=2, sites=["blocks.*.hook_resid_post"], dtype="float16")
    cost = plan_capture(cfg)
    assert (cost.rows, cost.steps, cost.forwards) == (2, 2, 4)
    path = capture(cfg, tmp_path / "run.h5")
    with h5py.File(path) as f:
        written = sum(f[k].size * f[k].dtype.itemsize for k in ("latents", "v", "x0"))
        written += sum(f[f"cond/{k}"].size * 2 for k in f["cond"] if k != "steps")  # the sites, float16
    assert cost.bytes == written


def test_cli_plans_print_the_cost_and_write_nothing(maze_dir, tmp_path):
    res = runner.invoke(app, ["capture", str(maze_dir), "--plan", "--batch", "2"])
    assert res.exit_code == 0, res.output
    assert "forwards   4" in res.output and "writes" in res.output and "estimate" in res.output
    out = tmp_path / "r"
    exp = tmp_path / "e.yaml"
    exp.write_text(_exp(maze_dir).model_dump_json())
    res = runner.invoke(app, ["run", str(exp), "--plan", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "valid" in res.output and "rows       12" in res.output and not out.exists()
    assert not list(tmp_path.glob("**/*.h5"))

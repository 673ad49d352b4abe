"""A new intervention kind is one file: two kinds defined here alone (a site kind that reads another run, a latent
kind), registered by subclassing as the built-ins are, run through an Experiment on the tiny maze model."""

from __future__ import annotations

from typing import ClassVar, Literal

import pytest

from interp.experiments import Experiment, ExperimentError, run_experiment
from interp.interventions import Index, Read, SiteSpec, Spec, kinds, parse
from interp.interventions.base import as_positions, put, take


class Blend(SiteSpec):
    """value := (1 - alpha) value + alpha (the value of input ``other`` places on, same noise)."""

    kind: Literal["blend"] = "blend"
    alpha: float = 1.0
    other: int = 1
    source_metric: ClassVar[bool] = True  # mse_to_source compares with the blended-in run

    def reads(self, local, n, seed):
        return [Read(self.other, seed)]

    def edit(self, value, rows, pos, *, direction=None, block_input=None):
        mixed = (1 - self.alpha) * take(value, rows.target, pos) + self.alpha * take(value, rows.source, pos)
        return put(value, rows.target, pos, mixed)


class Damp(Spec):
    """The latent entering the selected steps scaled by ``factor`` at the selected latent frames."""

    kind: Literal["damp"] = "damp"
    frames: Index = None
    factor: float = 0.5

    @property
    def edits_latent(self) -> bool:
        return True

    def edit_latent(self, state, rows, pos, *, keys):
        v, back = as_positions(state.x)
        return back(put(v, rows.target, pos, self.factor * take(v, rows.target, pos)))


def _exp(model, interventions, metrics, **kw) -> Experiment:
    data = {"model": str(model), "inputs": {"count": 3}, "interventions": interventions, "metrics": metrics}
    return Experiment.validate_data({**data, **kw})


def test_defining_a_kind_registers_it():
    assert kinds()["blend"] is Blend and kinds()["damp"] is Damp
    assert parse({"kind": "blend", "alpha": 0.5, "layers": [1]}) == Blend(alpha=0.5, layers=[1])
    e = _exp("m", [{"kind": "blend", "alpha": 0.25}], ["mse", "mse_to_source"])
    assert Experiment.validate_data(e.model_dump(mode="json")) == e and isinstance(e.interventions[0], Blend)
    with pytest.raises(ExperimentError, match="interventions.0.beta: unknown field; allowed: steps, site, layers"):
        _exp("m", [{"kind": "blend", "beta": 1}], ["mse"])
    with pytest.raises(TypeError, match="kind 'patch' is already defined"):

        class Patch2(SiteSpec):
            kind: Literal["patch"] = "patch"


def test_a_new_site_kind_runs_through_an_experiment(maze_dir, tmp_path):
    """alpha 0 changes nothing; alpha 1 at every site and step reproduces the source's output, as a full patch."""
    e = _exp(maze_dir, [{"kind": "blend"}], ["mse", "mse_to_source"], sweep={"interventions.0.alpha": [0.0, 1.0]})
    res = run_experiment(e, tmp_path / "blend", wandb="disabled", progress=False)
    none, full = (p["metrics"] for p in res.summary["points"])
    assert none["mse"] < 1e-10 and none["mse_to_source"] > 1e-3
    assert full["mse_to_source"] < 1e-10 and full["mse"] > 1e-3


def test_a_new_latent_kind_runs_through_an_experiment(maze_dir, tmp_path):
    e = _exp(
        maze_dir, [{"kind": "damp", "steps": 0}], ["mse", "solve_rate"], sweep={"interventions.0.factor": [1.0, 0.0]}
    )
    res = run_experiment(e, tmp_path / "damp", wandb="disabled", progress=False)
    same, zeroed = (p["metrics"] for p in res.summary["points"])
    assert same["mse"] < 1e-10 and zeroed["mse"] > 1e-3

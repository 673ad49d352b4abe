"""Declarative experiments: an :class:`Experiment` (YAML) is planned into batches, run with per-row interventions,
and cached in ``DIR/results.h5`` keyed by (experiment, model weights, package version)."""

from importlib import import_module

from interp.experiments.plan import Plan, plan
from interp.experiments.schema import Experiment, ExperimentError, point_experiment, sweep_points

# the engine imports the model stack (diffusers, nnsight): it loads on first use (PEP 562), so that validating an
# experiment file (``interp run --plan``, ``Experiment.load``) starts without it
_LAZY = {"RunResult": "interp.experiments.runner", "run_experiment": "interp.experiments.verb",
         "read_metrics": "interp.store.results"}  # fmt: skip


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Experiment", "ExperimentError", "Plan", "plan", "point_experiment", "sweep_points", "run_experiment",
           "RunResult", "read_metrics"]  # fmt: skip

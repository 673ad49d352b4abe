"""Declarative experiments: an :class:`Experiment` (YAML) is planned into batches, run with per-row interventions,
and cached in ``DIR/results.h5`` keyed by (experiment, model weights, package version)."""

from interp.experiments.plan import Plan, plan
from interp.store.results import read_metrics
from interp.experiments.runner import RunResult
from interp.experiments.schema import Experiment, ExperimentError, point_experiment, sweep_points
from interp.experiments.verb import run_experiment

__all__ = ["Experiment", "ExperimentError", "Plan", "plan", "point_experiment", "sweep_points", "run_experiment",
           "RunResult", "read_metrics"]  # fmt: skip

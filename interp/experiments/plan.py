"""Sweep planning: a pure function of the experiment gives the sweep points, the samples and the batch plan.

A *unit* is one (sweep point, sample): its edited rows (one, or K members of an ensemble). Units are packed in
order (sample-major, so the points of one sample share its clean rows) into batches of at most ``max_batch`` rows; the clean rows they read (baselines, patch and
swap sources, ablation references) are added once per batch and shared by all its units. Samples of different
maze sizes never share a batch. A resumed run repeats the same batches, so its results are bit-identical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from interp.budget import Estimate, forward_bytes
from interp.experiments.schema import Experiment, ExperimentError, point_experiment, sweep_points
from interp.interventions.base import resolve_index


@dataclass(frozen=True)
class Sample:
    index: int  # global sample number
    group: int  # input group (one per maze size)
    local: int  # index inside its group
    size: int | None


@dataclass(frozen=True)
class Row:
    """One batch row: sample ``sample`` with initial noise ``slot`` of the batch noise drawn from ``seed`` (a sample's
    own run uses its own slot; a patch or swap source uses the target's, i.e. the same noise); ``unit`` (point,
    sample) for edited rows, None for clean rows."""

    sample: int
    seed: int
    slot: int
    unit: tuple[int, int] | None = None
    member: int = 0


@dataclass(frozen=True)
class Batch:
    index: int
    group: int
    units: tuple[tuple[int, int], ...]
    rows: tuple[Row, ...]

    def row_of(self, row: Row) -> int:
        return self.rows.index(row)


@dataclass(frozen=True)
class Plan:
    points: list[dict[str, Any]]
    experiments: list[Experiment]  # one per point
    samples: list[Sample]
    batches: list[Batch]


def samples_of(exp: Experiment, default_size: int | None = None) -> list[Sample]:
    if exp.inputs.is_suite:
        sizes = list(exp.inputs.levels)  # one group per level
    else:
        sizes = exp.inputs.sizes or [default_size] if exp.inputs.task == "maze" else [None]
    n = exp.inputs.group_size
    return [Sample(g * n + i, g, i, s) for g, s in enumerate(sizes) for i in range(n)]


def source_rows(exp: Experiment, iv, sample: Sample, seed: int) -> list[Row]:
    """Clean rows intervention ``iv`` reads for an edited row of ``sample`` with noise ``seed``: the runs its
    :meth:`~interp.interventions.Spec.reads` names (patch, swap, resample: one; mean ablation: the whole group)."""
    n = exp.inputs.group_size
    base = sample.index - sample.local
    rows = []
    for r in iv.reads(sample.local, n, seed):
        j = (sample.local + r.offset) % n
        rows.append(Row(base + j, r.seed, sample.local if r.same_noise else j))
    return rows


def member_seeds(exp: Experiment) -> list[int]:
    """The noise seeds of a unit's edited rows: an ensemble's members, else the base seed alone."""
    seeds = (iv.member_seeds(exp.sampler.seed) for iv in exp.interventions)
    return next((s for s in seeds if s is not None), [exp.sampler.seed])


def baseline(exp: Experiment, sample: Sample) -> Row:
    """The unintervened run of ``sample`` (base seed, own noise)."""
    return Row(sample.index, exp.sampler.seed, sample.local)


def unit_rows(exp: Experiment, p: int, sample: Sample, samples: list[Sample]) -> tuple[list[Row], list[Row]]:
    """(edited rows, clean rows) of one unit; the first clean row is its baseline (base seed, no edits)."""
    edited = [Row(sample.index, s, sample.local, (p, sample.index), k) for k, s in enumerate(member_seeds(exp))]
    clean = [baseline(exp, sample)]
    for r in edited:
        for iv in exp.interventions:
            clean += source_rows(exp, iv, sample, r.seed)
    return edited, list(dict.fromkeys(clean))


def plan(exp: Experiment, default_size: int | None = None) -> Plan:
    """The deterministic batch plan of ``exp`` (``default_size``: the maze size when ``inputs.sizes`` is None)."""
    points = sweep_points(exp)
    exps = [point_experiment(exp, c) for c in points]
    samples = samples_of(exp, default_size)
    batches: list[Batch] = []
    for group in sorted({s.group for s in samples}):
        units: list[tuple[int, int]] = []
        rows: list[Row] = []
        for s in (s for s in samples if s.group == group):
            for p, pexp in enumerate(exps):
                edited, clean = unit_rows(pexp, p, s, samples)
                new = [r for r in clean if r not in rows]
                need = len(edited) + len(new)
                if need > exp.max_batch and not units:
                    raise ExperimentError(f"max_batch={exp.max_batch} is too small: one sweep point of one sample "
                                          f"needs {need} rows ({len(edited)} edited + {len(new)} clean)")  # fmt: skip
                if units and len(rows) + need > exp.max_batch:
                    batches.append(Batch(len(batches), group, tuple(units), tuple(rows)))
                    units, rows, new = [], [], clean
                units.append((p, s.index))
                rows += edited + [r for r in new if r not in rows]
        if units:
            batches.append(Batch(len(batches), group, tuple(units), tuple(rows)))
    return Plan(points, exps, samples, batches)


def row_joins(pl: Plan, batch: Batch, steps: int) -> list[int]:
    """The step each row of ``batch`` is first computed at (prefix sharing). Until its unit's first edited step, an
    edited row with its baseline's noise runs exactly its baseline's trajectory, so it joins the batch there with
    the baseline's latent; an ensemble's members join together, at 0 when one has other noise. Clean rows: 0."""
    where = {s.index: s for s in pl.samples}
    first: dict[tuple[int, int], int] = {}
    for p, sample in batch.units:
        pexp = pl.experiments[p]
        mine = [r for r in batch.rows if r.unit == (p, sample)]
        own = all(r.seed == pexp.sampler.seed and r.slot == where[sample].local for r in mine)
        starts = [_first_step(iv, steps) for iv in pexp.interventions]
        first[(p, sample)] = min(starts, default=0) if own else 0
    return [0 if r.unit is None else first[r.unit] for r in batch.rows]


def _first_step(iv, steps: int) -> int:
    try:
        return resolve_index(iv.steps, steps, "steps")[0]
    except ValueError:  # steps outside the run: refused with its message before any forward (check_against_model)
        return 0


def row_steps(pl: Plan, steps: int, shared: bool = True) -> int:
    """Rows x steps the plan runs; ``shared``: less the steps before rows join their batch (:func:`row_joins`)."""
    return sum(len(b.rows) * steps - (sum(row_joins(pl, b, steps)) if shared else 0) for b in pl.batches)


def unit_members(exp: Experiment) -> int:
    """Edited rows per unit (an ensemble's members, else 1), without building the seed lists."""
    counts = [len(iv.seeds) if getattr(iv, "seeds", None) is not None else iv.k
              for iv in exp.interventions if iv.member_seeds(0) is not None]  # fmt: skip
    return max(counts, default=1)


def estimate(exp: Experiment, pl: Plan | None, *, steps: int, cfg: bool, latent_shape: tuple[int, ...], tokens: int,
             d_model: int, n_sites: int, weights: int, out=None, default_size: int | None = None,
             shared: bool = False) -> Estimate:  # fmt: skip
    """What running ``exp`` costs (:mod:`interp.budget`): from the batch plan ``pl``, or, before it is built
    (``pl=None``), from the counts alone (points x samples x members edited rows, no lists built). ``shared``: rows
    join their batch late (:func:`row_joins`), so the plan's row-forwards count only the steps they run."""
    n_points = exp.n_points()
    if exp.inputs.is_suite:
        sizes = list(exp.inputs.levels)
    else:
        sizes = (exp.inputs.sizes or [default_size]) if exp.inputs.task == "maze" else [None]
    n_samples = len(sizes) * exp.inputs.group_size
    units = n_points * n_samples
    if pl is None:
        rows, batch_rows = units * unit_members(exp), min(exp.max_batch, units * unit_members(exp))
    else:
        rows, batch_rows = sum(len(b.rows) for b in pl.batches), max((len(b.rows) for b in pl.batches), default=0)
    passes = 2 if cfg else 1
    latent = math.prod(latent_shape[1:])
    site_bytes = steps * tokens * d_model * (2 if exp.capture.dtype == "float16" else 4)
    x0 = exp.capture.x0 or "x0_distance" in exp.metrics
    held = batch_rows * (n_sites * steps * tokens * d_model * 4 + (steps * latent * 4 if x0 else 0))
    disk = units * (latent * 4 + (steps * latent * 4 if exp.capture.x0 else 0) + n_sites * site_bytes)
    return Estimate(f"experiment {exp.name!r}", memory=weights + forward_bytes(batch_rows * passes, tokens, d_model)
                    + held, disk=disk, forwards=(row_steps(pl, steps, shared) if pl is not None
                                                 else rows * steps) * passes, out=out,
                    detail=f"{n_points:,} points x {n_samples:,} samples, {rows:,} rows, {steps} steps"
                    + (", guidance" if cfg else ""))  # fmt: skip

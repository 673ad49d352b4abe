"""Attribution patching (AtP): gradient estimates of every sweep point's patching effect, in one forward and backward.

An experiment with ``method: atp`` is a patch sweep (one ``patch`` intervention, swept over sites / layers / steps /
frames / tokens / heads) whose points are *estimated* instead of run: per sample, the source run (no_grad) and the
target run (autograd on, through the nnsight trace of every step) read every site the points name; the metric
``mse_to_source`` (squared distance of the target's final latent to the source's) is differentiated once, and each
point's effect is the first-order estimate

    effect(point) ~= sum over its sites, steps, positions (and heads) of (a_source - a_target) . dmetric/da_target

(Nanda 2023; Kramar et al. 2024). The results file has the layout of the real sweep's (the same points and axes):
``metrics/mse_to_source`` holds the clean value plus the estimate, ``metrics/atp_effect`` the estimate alone and
``clean/metrics/mse_to_source`` the unpatched target's distance, so an estimate sits beside the real sweep of the
same YAML without ``method: atp``. ``atp_alphas`` > 1 averages the gradients over runs whose inputs (initial noise,
text, condition) are interpolated from the target's toward the source's (an integrated-gradients variant, as
EAP-IG; one more forward and backward per alpha).

``atp_verify`` = k (or a fraction of the points, ``"50%"``) then runs k points for real, as AtP* does (Kramar et
al. 2024): the k points with the largest mean over samples of ``|atp_effect|`` (ties: the earlier sweep point) are
one sub-experiment, the same patch sweep restricted to them (one axis of whole interventions, run by
:func:`interp.experiments.runner.execute` into ``DIR/verify``, batched and resumed as any run). Their real
``mse_to_source`` replaces the estimate in ``metrics/mse_to_source`` (the full sweep's values, up to float rounding
where its batches held other rows); ``metrics/atp_effect`` keeps every estimate and ``metrics/verified`` (points,
samples; bool) marks the real cells. summary.json records ``atp_verify`` (the count).

>>> from interp.experiments import Experiment, run_experiment
>>> res = run_experiment(Experiment.load("experiments/examples/atp.yaml"), "out/atp")
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import Tensor

from interp.adapters import TextConditioning
from interp.adapters.attention import check_video_positions, head_count, video_span
from interp.experiments import metrics as M
from interp.experiments.cost import Cost
from interp.experiments.plan import Plan
from interp.experiments.plan import plan as make_plan
from interp.experiments.runner import (
    GroupInputs,
    RunResult,
    _index_text,
    _summary,
    check_against_model,
    execute,
    group_inputs,
    plan_run,
    planned_forwards,
    sampler_of,
)
from interp.experiments.schema import Experiment, ExperimentError
from interp.interventions.base import as_positions, positions, resolve_index
from interp.models import LoadedModel, load_model
from interp.sites import HEAD_SITE_RE
from interp.store.results import ResultsWriter, is_complete, read_metrics
from interp.trace import ForwardPlan
from interp.trajectory import StepRecord, TrajectoryInputs, run_trajectory, traced_experts

Acts = dict[tuple[str, str, int], Tensor]  # (branch, site, step) -> value


def _collect(loaded, inputs: TrajectoryInputs, sampler, sites: list[str], steps: set[int], *,
             grad: bool) -> tuple[Tensor, Acts]:  # fmt: skip
    """A trajectory reading ``sites`` at ``steps``: (final latent, values; with ``grad``, in the autograd graph)."""
    acts: Acts = {}

    def plan(branch: str, step: int) -> ForwardPlan:
        return ForwardPlan(read=sites) if step in steps else ForwardPlan()

    def on_step(rec: StepRecord) -> None:
        for branch, values in rec.branches.items():
            for site, v in values.items():
                acts[(branch, site, rec.step)] = v

    traj = run_trajectory(loaded, inputs, sampler, plan=plan, on_step=on_step, keep=False, grad=grad)
    return traj.final, acts


def interpolate(target: TrajectoryInputs, source: TrajectoryInputs, alpha: float) -> TrajectoryInputs:
    """The inputs (initial noise, text, condition) ``alpha`` of the way from the target's to the source's."""
    mix = lambda a, b: a if a is None or not torch.is_floating_point(a) else a + alpha * (b - a)  # noqa: E731
    text = TextConditioning(mix(target.text.encoder_hidden_states, source.text.encoder_hidden_states),
                            {k: mix(v, source.text.extras[k]) for k, v in target.text.extras.items()})  # fmt: skip
    return replace(target, text=text, latents=mix(target.latents, source.latents),
                   condition=mix(target.condition, source.condition))  # fmt: skip


def attributions(
    loaded: LoadedModel,
    target: TrajectoryInputs,
    source: TrajectoryInputs,
    sampler,
    sites: list[str],
    steps: set[int],
    alphas: int = 1,
) -> tuple[Tensor, dict[tuple[str, str, int], Tensor]]:
    """(clean metric per row, attribution per (branch, site, step)): ``(a_source - a_target) * dmetric/da`` summed
    over the last feature axis, (batch, pos) or (batch, pos, head) for per-head sites; metric = ``mse_to_source``.
    ``alphas`` > 1: the gradient is averaged over runs of the inputs interpolated from the target's to the
    source's at alpha = k / alphas, k = 0..alphas-1 (integrated gradients along the input path, as EAP-IG)."""
    with torch.no_grad():
        src_final, src = _collect(loaded, source, sampler, sites, steps, grad=False)
    grads: dict[tuple[str, str, int], Tensor] = {}
    clean = None
    for j in range(alphas):
        run = target if alphas == 1 else interpolate(target, source, j / alphas)
        final, acts = _collect(loaded, run, sampler, sites, steps, grad=True)
        metric = M.mse(final, src_final)
        if clean is None:  # alpha 0: the target itself
            clean, tgt = metric.detach(), {k: v.detach() for k, v in acts.items()}
        keys = list(acts)
        # rows are independent: the gradient of the sum at each row is that row's own
        got = torch.autograd.grad(metric.sum(), [acts[k] for k in keys], allow_unused=True)
        for k, g in zip(keys, got):
            if g is not None:
                grads[k] = grads.get(k, 0) + g.float() / alphas
        del metric, got, acts, final
    out = {}
    for k in tgt:
        diff, _ = as_positions((src[k] - tgt[k]).float())
        g, _ = as_positions(grads[k] if k in grads else torch.zeros_like(diff))
        out[k] = (diff * g).sum(-1)
    return clean, out


def execute_atp(
    exp: Experiment,
    out: str | Path,
    *,
    loaded: LoadedModel | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> RunResult:
    """Estimate ``exp`` (``method: atp``) into ``out``: results.h5 and summary.json in the real sweep's layout."""
    console = console or Console(stderr=True)
    out = Path(out)
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    loaded = loaded or load_model(exp.model, exp.device)
    key = exp.key(loaded.weight_hash)
    results = out / "results.h5"
    extra = {"method": "atp", "atp_verify": exp.verify_count()}
    if is_complete(results, key):
        console.print(f"[green]cache hit[/green]: {results} (key {key[:12]}) holds this experiment; no model forward")
        summary = _summary(exp, results, key, loaded, time.perf_counter() - t0, True, extra)
        return RunResult(out, results, summary, True, [])
    if results.exists():
        raise FileExistsError(f"{results} holds a different experiment (or model); choose another --out or delete it")
    pl = make_plan(exp, int((loaded.task or {}).get("default_size", 0)) or None)
    sources = [iv.interventions[0].source for iv in pl.experiments]
    if any(s != sources[0] for s in sources):
        raise ExperimentError("method atp: every sweep point must read the same source run (do not sweep source)")
    sampler = sampler_of(exp, loaded)
    traced = next(iter(traced_experts(loaded).values()))
    groups = {g: group_inputs(exp, loaded, size) for g, size in sorted({(s.group, s.size) for s in pl.samples})}
    check_against_model(pl, traced, groups[0].latent_shape, sampler.steps)
    n_steps = sampler.steps
    # every (site, steps, positions, heads) a point sums over
    adapter, transformer = traced.adapter, traced.dit.transformer
    grid = adapter.token_grid(transformer, groups[0].latent_shape)
    n_video = grid[0] * grid[1] * grid[2]
    patch_t = adapter.patch_size(transformer)[0]
    lat_grid = tuple(groups[0].latent_shape[2:])
    terms: list[list[tuple[str, list[int], Tensor | None, Tensor | None]]] = []
    for pexp in pl.experiments:
        iv = pexp.interventions[0]
        steps = resolve_index(iv.steps, n_steps, "steps")
        point = []
        for name in iv.sites(traced.n_blocks):
            for site in traced.resolve(name):
                heads = None
                if iv.heads is not None and HEAD_SITE_RE.match(site):
                    n_heads = head_count(adapter, transformer, site)  # LTX-2's audio attentions: the audio stream's
                    heads = torch.tensor(resolve_index(iv.heads, n_heads, "heads"), dtype=torch.long)
                latent = site == "hook_out"
                pos = positions(iv.frames, iv.tokens, lat_grid if latent else grid, patch_t, latent=latent)
                if pos is not None and HEAD_SITE_RE.match(site):
                    check_video_positions(adapter, site)
                point.append((site, steps, pos, heads))
        terms.append(point)
    all_sites = traced.resolve(sorted({t[0] for point in terms for t in point}))
    all_steps = {s for point in terms for t in point for s in t[1]}
    src = sources[0]
    chunks = []  # (group, its samples), at most max_batch rows each
    for g in groups:
        idx = [s for s in pl.samples if s.group == g]
        chunks += [(g, idx[i : i + exp.max_batch]) for i in range(0, len(idx), exp.max_batch)]
    n_points, n_samples = len(pl.points), len(pl.samples)
    writer = ResultsWriter(results, key=key, model_hash=loaded.weight_hash, experiment_json=exp.canonical(),
                           points=pl.points, axes={k: v if isinstance(v, list) else list(range(*map(int, v.split(":"))))
                                                   for k, v in exp.sweep.items()}, n_batches=len(chunks), shard=None,
                           task_meta=loaded.task, sampler=sampler.describe(loaded.scheduler))  # fmt: skip
    try:
        for c, (g, members) in enumerate(chunks):
            if writer.done(c):
                continue
            gi = groups[g]
            writer.attrs(f"group_{g}", size=-1 if members[0].size is None else members[0].size,
                         samples=[s.index for s in pl.samples if s.group == g], grid=np.asarray(grid))  # fmt: skip
            target, source = _pair(gi, [s.local for s in members], exp.sampler.seed, src, exp.inputs.count)
            clean, attr = attributions(loaded, target, source, sampler, all_sites, all_steps, exp.atp_alphas)
            for p, point in enumerate(terms):
                est = torch.zeros(len(members))
                for site, steps, pos, heads in point:
                    for (branch, s_, st), a in attr.items():
                        if s_ != site or st not in steps:
                            continue
                        if pos is not None:
                            shift = (
                                video_span(adapter, site, a.shape[1], n_video).start if HEAD_SITE_RE.match(site) else 0
                            )
                            a = a[:, pos + shift]
                        if heads is not None:
                            a = a[..., heads]
                        est += a.reshape(len(members), -1).sum(1).cpu()
                for k, s in enumerate(members):
                    writer.write("metrics/atp_effect", (p, s.index), float(est[k]), (n_points, n_samples))
                    writer.write("metrics/mse_to_source", (p, s.index), float(clean[k] + est[k]), (n_points, n_samples))
            for k, s in enumerate(members):
                writer.write("clean/metrics/mse_to_source", s.index, float(clean[k]), (n_samples,))
            writer.mark(c)
        if extra["atp_verify"]:
            verify(exp, pl, writer, out / "verify", loaded=loaded, progress=progress, console=console)
        writer.finish()
    finally:
        writer.close()
    summary = _summary(exp, results, key, loaded, time.perf_counter() - t0, False, extra)
    return RunResult(out, results, summary, False, [])


def verified_points(effect: np.ndarray, k: int) -> list[int]:
    """The ``k`` sweep points ``atp_verify`` runs for real, in sweep order: the largest mean over samples of
    ``|effect|`` (``effect``: ``metrics/atp_effect``, (points, samples)); ties go to the earlier point."""
    return sorted(np.argsort(-np.abs(effect).mean(1), kind="stable")[:k].tolist())


def verify_experiment(exp: Experiment, pl: Plan, chosen: list[int]) -> Experiment:
    """The real patch sweep of ``exp`` (``method: atp``) restricted to the sweep points ``chosen``: one axis
    ``interventions.0`` of their whole patch interventions, named ``<name>/verify``."""
    data = exp.model_dump(mode="json")
    data.update(name=f"{exp.name}/verify", method="run", atp_alphas=1, atp_verify=0,
                sweep={"interventions.0": [pl.experiments[p].interventions[0].model_dump(mode="json")
                                           for p in chosen]})  # fmt: skip
    return Experiment.validate_data(data, "atp_verify")


def verify(exp: Experiment, pl: Plan, writer: ResultsWriter, out: Path, *, loaded: LoadedModel, progress: bool,
           console: Console) -> list[int]:  # fmt: skip
    """Run the ``exp.verify_count()`` points of the largest estimates for real (:func:`verify_experiment`, into
    ``out``; a finished run there is a cache hit) and write their ``mse_to_source`` over the estimates, with
    ``metrics/verified``. The chosen points are returned."""
    effect = writer.file["metrics/atp_effect"][:]
    chosen = verified_points(effect, exp.verify_count())
    sub = verify_experiment(exp, pl, chosen)
    console.print(f"atp_verify: running the {len(chosen)} points of the largest estimates for real into {out}")
    res = execute(sub, out, loaded=loaded, progress=progress, console=console)
    real = read_metrics(res.results)["metrics"]["mse_to_source"]  # (len(chosen), samples)
    mask = np.zeros(effect.shape, bool)
    for j, p in enumerate(chosen):
        writer.write("metrics/mse_to_source", (p, slice(None)), real[j], effect.shape)
        mask[p] = True
    writer.write("metrics/verified", slice(None), mask, effect.shape)
    writer.file.flush()
    return chosen


BACKWARD_FORWARDS = 2  # a backward pass is counted as this many forwards in plan_atp's row-forwards and time


def plan_atp(exp: Experiment, out: str | Path | None = None, *, loaded: LoadedModel | None = None,
             base_dir: str | Path | None = None) -> Cost:  # fmt: skip
    """What :func:`execute_atp` of ``exp`` will cost, writing nothing: per sample one source run and ``atp_alphas``
    target runs with autograd (each backward counted as ``BACKWARD_FORWARDS`` forwards), then the ``atp_verify``
    points' real sweep (its batch plan: any k points of one patch sweep need the same rows). The time scales the real
    sweep's timed first steps (:func:`~interp.experiments.runner.plan_run`) by the row-forwards."""
    loaded = loaded or load_model(exp.model, exp.device)
    if out is not None and is_complete(Path(out) / "results.h5", exp.key(loaded.weight_hash)):
        counts = planned_forwards(exp, loaded)  # no forward
        return Cost(counts["rows"], counts["steps"], 0, 0, 0.0, "cache hit: results.h5 holds this experiment")
    real = plan_run(exp, None, loaded=loaded, base_dir=base_dir)  # the whole sweep, run for real: rows and timing
    pl = make_plan(exp, int((loaded.task or {}).get("default_size", 0)) or None)
    n_points, n_samples = len(pl.points), len(pl.samples)
    passes = 2 if sampler_of(exp, loaded).cfg else 1  # as planned_forwards counts
    rows = n_samples * (1 + exp.atp_alphas)
    forwards = n_samples * real.steps * passes * (1 + (1 + BACKWARD_FORWARDS) * exp.atp_alphas)
    k = exp.verify_count()
    if k:
        sub = planned_forwards(verify_experiment(exp, pl, list(range(k))), loaded)
        rows, forwards = rows + sub["rows"], forwards + sub["row_forwards"]
    cells = n_points * n_samples
    nbytes = 8 * (2 * cells + n_samples) + (cells if k else 0)  # atp_effect, mse_to_source, clean; verified
    seconds = None if real.seconds is None else real.seconds * forwards / max(real.forwards, 1)
    timed = (f"{real.timed}, scaled to the row-forwards; a backward counted as {BACKWARD_FORWARDS} forwards; the real "
             f"sweep: {real.forwards:,} row-forwards")  # fmt: skip
    return Cost(rows, real.steps, forwards, nbytes, seconds, timed)


def _pair(gi: GroupInputs, local: list[int], seed: int, src, n: int) -> tuple[TrajectoryInputs, TrajectoryInputs]:
    """The target runs of samples ``local`` and their patch source runs (the rows a real sweep's batch holds)."""
    cache: dict = {}
    j = [(i + src.input) % n for i in local]
    s_seed = seed if src.seed is None else src.seed
    tgt_idx, src_idx = torch.tensor(local), torch.tensor(j)

    def inputs(idx: Tensor, noise: Tensor) -> TrajectoryInputs:
        return TrajectoryInputs(
            _index_text(gi.text, idx, n), tuple(noise.shape),
            negative=None if gi.negative is None else _index_text(gi.negative, idx, n),
            condition=None if gi.condition is None else gi.condition[idx], latents=noise,
            first_frame=None if gi.first_frame is None else gi.first_frame[idx], timestep_mask=gi.timestep_mask,
        )  # fmt: skip

    tgt_noise = torch.stack([gi.noise(seed, cache)[i] for i in local])
    src_noise = torch.stack([gi.noise(s_seed, cache)[i] for i in local])  # a patch source keeps the target's slot
    return inputs(tgt_idx, tgt_noise), inputs(src_idx, src_noise)

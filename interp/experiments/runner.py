"""The experiment engine: plan, batched trajectories with per-row edits, metrics, results.h5 and summary.json.

It returns results and draws nothing: figures and W&B logging belong to the verbs that ask for them
(:func:`interp.experiments.verb.run_experiment`, ``interp run``, ``interp launch``).

>>> from interp.experiments.runner import execute
>>> res = execute(Experiment.load("experiments/examples/skip.yaml"), "out/skip")
>>> res.cache_hit, res.summary["points"][0]["metrics"]
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from interp.adapters import TextConditioning
from interp.budget import model_bytes
from interp.experiments import metrics as M
from interp.experiments.cost import Cost, estimate_seconds, time_first_steps
from interp.experiments.plan import Batch, Plan, Row, Sample, baseline, estimate, row_joins, row_steps, source_rows
from interp.experiments.plan import plan as make_plan
from interp.experiments.schema import GENERIC_METRICS, LENS_METRICS, MAZE_METRICS, Experiment, ExperimentError
from interp.experiments.shard import rank_batches, shard_path
from interp.inputs import model_inputs
from interp.interventions.bind import Bound, compile_batch
from interp.interventions.bind import rows as make_rows
from interp.lens import Lens, resid_sites
from interp.models import LoadedModel, load_model
from interp.store.atomic import disk_full_names, write_atomic
from interp.store.codec import SCALE_SUFFIX, encode, nbytes, to_disk
from interp.store.results import ResultsWriter, is_complete, read_metrics
from interp.trajectory import (
    Guider,
    SamplerConfig,
    StepRecord,
    TrajectoryInputs,
    initial_latents,
    keeps_history,
    run_trajectory,
    traced_experts,
)


@dataclass
class RunResult:
    out: Path
    results: Path
    summary: dict
    cache_hit: bool
    figures: list[Path]


@dataclass
class GroupInputs:
    """The inputs of one input group (one maze size): all its samples, indexed by local sample number.

    Prompt inputs (``pipeline``) carry the pipeline's own negative text, first-frame latents, per-token timestep
    mask and initial noise: sample i of seed s is ``prepare_latents`` with ``Generator().manual_seed(s + i)``, as
    ``interp capture`` and ``__call__`` draw it (another seed than ``sampler.seed`` is drawn by encoding again); a
    pipeline that denoises more than the video (LTX-2's audio) has its ``guider`` and each seed's ``stream_noise``."""

    text: TextConditioning
    condition: torch.Tensor | None
    latent_shape: tuple[int, ...]  # (n, C, F, H, W)
    frames_uint8: torch.Tensor | None  # (n, H, W, 3) maze condition frames for the scorer
    init_sigma: float = 1.0
    negative: TextConditioning | None = None
    first_frame: torch.Tensor | None = None
    timestep_mask: torch.Tensor | None = None
    pipeline_noise: Callable[[int], torch.Tensor] | None = None
    timestep_kwargs: dict | None = None  # the pipeline's set_timesteps keywords (LTX's mu, Mochi's sigmas, ...)
    reference_frames: int = 0  # leading latent frames dropped before decoding (WanVACE's reference images)
    guider: Guider | None = None  # the pipeline's own guidance rule (LTX-2); None: classifier-free guidance
    # the initial latents of the streams denoised beside the video (LTX-2's packed audio), (n, ...) per stream, of a
    # seed: drawn from the same generators as the video's, after it, as __call__ draws them
    stream_noise: Callable[[int], dict[str, torch.Tensor]] | None = None

    def noise(self, seed: int, cache: dict) -> torch.Tensor:
        if seed not in cache:
            if self.pipeline_noise is not None:
                cache[seed] = self.pipeline_noise(seed)
            else:
                cache[seed] = initial_latents(self.latent_shape, seed, self.init_sigma)
        return cache[seed]

    def streams(self, rows: list[Row]) -> dict[str, torch.Tensor] | None:
        """Each row's own initial latents of every other stream (its seed's, its slot's), batched; None: no streams."""
        if self.stream_noise is None:
            return None
        drawn = {seed: self.stream_noise(seed) for seed in {r.seed for r in rows}}
        return {k: torch.stack([drawn[r.seed][k][r.slot] for r in rows]) for k in drawn[rows[0].seed]}


def _is_pipeline(loaded) -> bool:
    from interp.pipelines.components import PipelineModel

    return isinstance(loaded, PipelineModel)


def load_pipeline_of(exp: Experiment, device=None):
    """The whole pipeline prompt inputs need (:func:`interp.pipelines.components.load_pipeline`), on ``device``
    (default: the experiment's)."""
    from interp.pipelines.components import SUPPORTED_PIPELINES, PipelineError, load_pipeline

    try:
        return load_pipeline(exp.model, device=device or exp.device, pipeline_classes=SUPPORTED_PIPELINES)
    except PipelineError as e:
        raise ExperimentError(f"inputs.prompts: {e}") from None


def pipeline_group_inputs(exp: Experiment, loaded, level: int | None = None) -> GroupInputs:
    """Prompt / image / sample-folder inputs (or one ``level`` of a suite task) encoded once through the pipeline's
    own methods."""
    from interp.pipelines.components import PipelineError
    from interp.pipelines.inputs import encode_inputs

    prompts, images, _ = exp.inputs.prompt_inputs(level)
    sampler = sampler_of(exp, loaded)
    kw = dict(
        images=images,
        negative_prompt=exp.inputs.negative_prompt,
        num_frames=exp.inputs.frames or 81,
        height=exp.inputs.height or 480,
        width=exp.inputs.width or 832,
        guidance_scale=sampler.guidance_scale,
        max_sequence_length=exp.inputs.max_sequence_length,
        pipeline_kwargs=exp.inputs.pipeline_kwargs,
    )
    try:
        pi = encode_inputs(loaded, prompts, seed=exp.sampler.seed, **kw)
    except PipelineError as e:
        raise ExperimentError(f"inputs: {e}") from None
    ti = pi.trajectory
    lens = [m for m in exp.metrics if m in LENS_METRICS]
    if ti.streams and lens:  # the lens re-runs blocks on the video alone (a suite task's lens on such a pipeline)
        raise ExperimentError(f"metrics: {', '.join(lens)} read the x0 lens, which does not carry "
                              f"{loaded.pipeline_class}'s other streams ({', '.join(ti.streams)}); valid metrics "
                              f"here: {', '.join(GENERIC_METRICS)}")  # fmt: skip
    base = {exp.sampler.seed: ti}

    def encoded(seed: int) -> TrajectoryInputs:
        if seed not in base:
            base[seed] = encode_inputs(loaded, prompts, seed=seed, **kw).trajectory
        return base[seed]

    frames = torch.from_numpy(pi.images) if pi.images is not None else None
    return GroupInputs(ti.text, ti.condition, ti.latent_shape, frames, 1.0, negative=ti.negative,
                       first_frame=ti.first_frame, timestep_mask=ti.timestep_mask,
                       pipeline_noise=lambda seed: encoded(seed).latents, timestep_kwargs=ti.timestep_kwargs,
                       reference_frames=ti.reference_frames, guider=ti.guider,
                       stream_noise=(lambda seed: encoded(seed).streams) if ti.streams else None)  # fmt: skip


def sampler_of(exp: Experiment, loaded: LoadedModel) -> SamplerConfig:
    """The sampler with the model's task defaults filled in (then 20 steps, guidance 1)."""
    s = exp.sampler
    return SamplerConfig.from_task(loaded.task, steps=s.steps, shift=s.shift, guidance=s.guidance, seed=s.seed,
                                   precision=s.precision)  # fmt: skip


def group_inputs(exp: Experiment, loaded: LoadedModel, size: int | None) -> GroupInputs:
    if exp.inputs.uses_pipeline:
        return pipeline_group_inputs(exp, loaded, size if exp.inputs.is_suite else None)
    n = exp.inputs.count
    sigma = float(getattr(loaded.scheduler, "init_noise_sigma", 1.0))
    if exp.inputs.task == "maze":
        if not loaded.task or loaded.task.get("task") != "maze":
            raise ExperimentError(f"inputs.task: maze needs a maze model (interp.json task: maze); {loaded.name} has "
                                  f"task {(loaded.task or {}).get('task')!r}; use inputs.task: random")  # fmt: skip
        mi = model_inputs(loaded, n, exp.inputs.seed, size=size)
        return GroupInputs(mi.text, mi.condition, mi.latent_shape, mi.condition_frames, sigma)
    mi = model_inputs(loaded, n, exp.inputs.seed, frames=exp.inputs.frames, height=exp.inputs.height,
                      width=exp.inputs.width, task=False)  # fmt: skip
    return GroupInputs(mi.text, mi.condition, mi.latent_shape, None, sigma)


def _index_text(text: TextConditioning, idx: torch.Tensor, n: int) -> TextConditioning:
    pick = lambda v: v[idx] if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == n else v  # noqa: E731
    return TextConditioning(text.encoder_hidden_states[idx], {k: pick(v) for k, v in text.extras.items()})


def bind_unit(exp: Experiment, batch: Batch, unit: tuple[int, int], sample: Sample, directions: dict) -> list[Bound]:
    """The unit's interventions bound to the batch's rows."""
    p, _ = unit
    edited = [i for i, r in enumerate(batch.rows) if r.unit == unit]
    seeds = [batch.rows[i].seed for i in edited]
    out = []
    for j, iv in enumerate(exp.interventions):
        reads = [[batch.row_of(r) for r in source_rows(exp, iv, sample, s)] for s in seeds]
        out.append(Bound(iv, iv.bind_rows(edited, reads), keys=[sample.index] * len(edited),
                         direction=directions.get((p, j))))  # fmt: skip
    return out


def execute(
    exp: Experiment,
    out: str | Path,
    *,
    loaded: LoadedModel | None = None,
    progress: bool = True,
    base_dir: str | Path | None = None,
    on_batch: Callable[[int], None] | None = None,
    console: Console | None = None,
    shard: tuple[int, int] | None = None,
    force: bool = False,
) -> RunResult:
    """Run (or resume, or read from cache) ``exp`` into ``out``: results.h5 and summary.json (``figures`` empty).

    ``base_dir``: where relative paths in the experiment (steer direction files) are found. ``on_batch(i)`` is called
    after batch ``i`` is on disk (tests simulate a crash with it). ``shard=(rank, world)``: run only this rank's
    batches into ``DIR/shards/`` (no summary; :func:`interp.apps.launch.finalize` merges the shards). The run's
    cost (:func:`interp.experiments.plan.estimate`) is checked against the free memory, disk and caps first
    (``force``: run anyway); steer directions are loaded and checked before ``out`` is created.
    """
    console = console or Console(stderr=True)
    if exp.method != "run":
        raise ExperimentError(f"method {exp.method}: estimated, not run (interp.experiments.atp.execute_atp; "
                              "run_experiment and interp run dispatch to it)")  # fmt: skip
    out = Path(out)
    t0 = time.perf_counter()
    if exp.inputs.uses_pipeline:  # a whole pipeline encodes the prompts / images (loaded before out is made)
        loaded = loaded if _is_pipeline(loaded) else load_pipeline_of(exp)
    loaded = loaded or load_model(exp.model, exp.device)
    key = exp.key(loaded.weight_hash)
    results = out / "results.h5"
    if is_complete(results, key):
        console.print(f"[green]cache hit[/green]: {results} (key {key[:12]}) holds this experiment; no model forward")
        summary = _summary(exp, results, key, loaded, time.perf_counter() - t0, cache_hit=True)
        return RunResult(out, results, summary, True, [])
    if results.exists():
        raise FileExistsError(f"{results} holds a different experiment (or model); choose another --out or delete it")

    default_size = int((loaded.task or {}).get("default_size", 0)) or None
    sampler = sampler_of(exp, loaded)
    traced = next(iter(traced_experts(loaded).values()))
    sites = traced.resolve(exp.capture.sites) if exp.capture.sites else []

    def cost(pl: Plan | None, latent_shape: tuple[int, ...], streams: bool = False) -> int:  # refused before any write
        tokens = math.prod(loaded.adapter.token_grid(loaded.transformer, latent_shape)) if pl is not None else 1
        return estimate(exp, pl, steps=sampler.steps, cfg=sampler.cfg, latent_shape=latent_shape, tokens=tokens,
                        d_model=loaded.adapter.d_model(loaded.transformer), n_sites=len(sites),
                        weights=model_bytes(loaded.transformers.values()), out=out, default_size=default_size,
                        shared=shares_prefix(exp, loaded, streams)).check(force).disk  # fmt: skip

    cost(None, (1,))  # the counts alone (no sample or batch list is built yet)
    pl = make_plan(exp, default_size)
    groups = {g: group_inputs(exp, loaded, size) for g, size in sorted({(s.group, s.size) for s in pl.samples})}
    needed = cost(pl, groups[0].latent_shape, groups[0].stream_noise is not None)
    check_against_model(pl, traced, groups[0].latent_shape, sampler.steps)
    scoring = experiment_scoring(exp, loaded, pl, groups) if exp.scorer else None
    try:  # steer directions: loaded and checked before the output is created
        loads = {(p, j): iv.load_direction(base_dir) for p, e in enumerate(pl.experiments)
                 for j, iv in enumerate(e.interventions)}  # fmt: skip
    except (OSError, ValueError, KeyError) as e:
        raise ExperimentError(f"steer direction: {e.args[0] if isinstance(e, KeyError) and e.args else e}") from None
    directions = {k: v for k, v in loads.items() if v is not None}
    check_directions(pl, directions, loaded.adapter.d_model(loaded.transformer))
    axes = {k: v if isinstance(v, list) else list(range(*map(int, v.split(":")))) for k, v in exp.sweep.items()}
    mine = set(range(len(pl.batches)) if shard is None else rank_batches(len(pl.batches), *shard))
    target = results if shard is None else shard_path(out, *shard)
    if shard is not None and is_complete(target, key):
        console.print(f"{target}: this rank's {len(mine)} batches are already done")
        return RunResult(out, target, {"shard": list(shard), "batches": len(mine)}, False, [])
    out.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = ResultsWriter(target, key=key, model_hash=loaded.weight_hash, experiment_json=exp.canonical(),
                           points=pl.points, axes=axes, n_batches=len(pl.batches), shard=shard,
                           task_meta=loaded.task, sampler=sampler.describe(loaded.scheduler))  # fmt: skip
    if writer.resumed:
        console.print(f"resuming {writer.partial}: {writer.n_done}/{len(mine)} batches already done")
    with disk_full_names(target, needed):
        _run_batches(exp, pl, groups, loaded, traced, sampler, sites, directions, writer, scoring, mine, progress,
                     console, on_batch)  # fmt: skip
    if shard is not None:
        return RunResult(out, target, {"shard": list(shard), "batches": len(mine)}, False, [])
    summary = _summary(exp, results, key, loaded, time.perf_counter() - t0, cache_hit=False)
    return RunResult(out, results, summary, False, [])


def _run_batches(exp, pl, groups, loaded, traced, sampler, sites, directions, writer, scoring, mine, progress, console,
                 on_batch) -> None:  # fmt: skip
    """Every batch of ``mine`` not yet done, written as it ends; the file is finished when all are."""
    try:
        for g, size in sorted({(s.group, s.size) for s in pl.samples}):
            members = [s.index for s in pl.samples if s.group == g]
            grid = loaded.adapter.token_grid(loaded.transformer, groups[g].latent_shape)  # the file records its grid
            writer.attrs(f"group_{g}", size=-1 if size is None else size, samples=members, grid=np.asarray(grid))
            if groups[g].frames_uint8 is not None:
                frames = groups[g].frames_uint8.numpy()
                writer.write(f"group_{g}/condition_frames", slice(None), frames, frames.shape)
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn())  # fmt: skip
        with Progress(*columns, console=console, disable=not progress, transient=False) as bar:
            # one tick per denoising step of a batch (a batch runs all its rows at once)
            desc = f"{exp.name}: {len(mine)} batches x {sampler.steps} steps"
            task = bar.add_task(desc, total=len(mine) * sampler.steps, completed=writer.n_done * sampler.steps)
            for batch in pl.batches:
                if writer.done(batch.index) or batch.index not in mine:
                    continue
                _run_batch(exp, pl, batch, groups[batch.group], loaded, traced, sampler, sites, directions, writer,
                           scoring, tick=lambda: bar.advance(task))  # fmt: skip
                writer.mark(batch.index)
                if on_batch is not None:
                    on_batch(batch.index)
        writer.finish()
    finally:
        writer.close()


def check_directions(pl: Plan, directions: dict, d_model: int) -> None:
    """Every loaded steer direction is a finite vector of the model's width."""
    for (p, j), v in directions.items():
        where = f"interventions.{j}" + (f" at sweep point {pl.points[p]}" if pl.points[p] else "")
        if v.numel() != d_model:
            raise ExperimentError(f"{where}: the steer direction has {v.numel()} features; the model's sites have "
                                  f"{d_model}")  # fmt: skip
        if not torch.isfinite(v).all():
            raise ExperimentError(f"{where}: the steer direction holds NaN or infinite values")


def check_against_model(pl: Plan, traced, latent_shape: tuple[int, ...], steps: int) -> None:
    """Sites, layers, steps, frames and tokens of every sweep point checked against the model, before any forward."""
    for coords, pexp in zip(pl.points, pl.experiments):
        try:
            compile_batch(
                [Bound(iv, make_rows([0])) for iv in pexp.interventions], traced, (1, *latent_shape[1:]), steps
            )
        except (ValueError, KeyError, IndexError) as e:
            where = f"sweep point {coords}" if coords else "experiment"
            raise ExperimentError(f"{where}: {e.args[0] if e.args else e}") from None


@dataclass
class ExperimentScoring:
    """A resolved scorer with each sample's metadata (by global sample index) and how final latents become video."""

    fn: Callable
    name: str
    metas: dict[int, dict]
    decode: Callable  # (final latents (B, C, F, H, W), global sample indices) -> uint8 (B, F, H, W, 3)

    def scores(self, final: torch.Tensor, samples: list[int]) -> dict[str, np.ndarray]:
        from interp.scorers import score_videos

        videos = self.decode(final, samples)
        rows = score_videos(self.fn, videos, [self.metas[s] for s in samples], name=f"scorer {self.name}")
        return {f"score_{k}": np.array([r[k] for r in rows], np.float64) for k in sorted(rows[0])}


def experiment_scoring(exp: Experiment, loaded: LoadedModel, pl: Plan, groups: dict) -> ExperimentScoring:
    """``exp.scorer`` on decoded videos: the pipeline's VAE for prompt inputs, the pixels of a pixel-space maze
    model; the metadata each sample's scorer needs is checked here, before any forward."""
    from interp.scorers import ScorerError, check_metas, resolve, spec_name

    fn, name = resolve(exp.scorer), spec_name(exp.scorer)
    metas: dict[int, dict] = {}
    where = {s.index: s for s in pl.samples}
    if exp.inputs.uses_pipeline:
        from interp.pipelines.decode import decode_video

        base = {s.group: exp.inputs.prompt_inputs(s.size if exp.inputs.is_suite else None)[2] for s in pl.samples}
        for s in pl.samples:
            gi = groups[s.group]
            metas[s.index] = {**base[s.group][s.local], "task_meta": loaded.task}
            if gi.frames_uint8 is not None:
                metas[s.index]["first_frame"] = gi.frames_uint8[s.local].numpy()

        def decode(final, samples):
            gi = groups[where[samples[0]].group]  # a batch never mixes groups
            local = [where[i].local for i in samples]
            ff = None if gi.first_frame is None else gi.first_frame[local]
            return decode_video(loaded, final, first_frame=ff, reference_frames=gi.reference_frames)
    elif exp.inputs.task == "maze" and (loaded.task or {}).get("pixel_space"):
        from interp.tasks.maze import from_model_space

        for s in pl.samples:
            metas[s.index] = {"index": s.index, "first_frame": groups[s.group].frames_uint8[s.local].numpy(),
                              "task_meta": loaded.task}  # fmt: skip

        def decode(final, samples):
            return from_model_space(final.float().cpu()).numpy()
    else:
        raise ExperimentError(f"scorer {exp.scorer}: no decoded video to score with inputs.task: {exp.inputs.task} "
                              f"on {loaded.name}; scorers need prompt inputs (a whole pipeline) or a pixel-space "
                              "maze model")  # fmt: skip
    try:
        check_metas(fn, list(metas.values()), name=f"scorer {name}")
    except ScorerError as e:
        raise ExperimentError(str(e)) from None
    return ExperimentScoring(fn, name, metas, decode)


def _run_batch(exp: Experiment, pl: Plan, batch: Batch, gi: GroupInputs, loaded: LoadedModel, traced, sampler,
               sites: list[str], directions: dict, writer: ResultsWriter,
               scoring: ExperimentScoring | None = None, tick: Callable[[], None] | None = None) -> None:  # fmt: skip
    n = gi.latent_shape[0]
    local = {s.index: s for s in pl.samples}
    idx = torch.tensor([local[r.sample].local for r in batch.rows])
    lens_names = [m for m in exp.metrics if m in LENS_METRICS]
    lens_reads = resid_sites(traced.n_blocks) if lens_names else []
    reads = sites + [s for s in lens_reads if s not in sites]
    joins = row_joins(pl, batch, sampler.steps) if shares_prefix(exp, loaded, gi.stream_noise is not None) else None
    joined = joins is not None and any(joins)
    if not joined:  # a joined batch binds its edits per segment (joined_final)
        inputs, plan_fn, edit_latent = _batch_trajectory(pl, batch, gi, traced, sampler, reads, directions)
    want_x0 = exp.capture.x0 or "x0_distance" in exp.metrics
    x0s: list[torch.Tensor] = []
    acts: dict[str, list[torch.Tensor]] = {}
    lens = Lens(loaded, sampler, text=inputs.text, negative=inputs.negative) if lens_names else None
    lens_steps: list[dict[str, np.ndarray]] = []  # per step: metric -> (rows, blocks)

    def on_step(rec: StepRecord) -> None:
        if tick is not None:
            tick()
        if want_x0:
            x0s.append(rec.x0.to("cpu", torch.float32, copy=True))  # a copy on the host, whatever the device
        for branch, values in rec.branches.items():
            for site, v in values.items():
                if site in sites:
                    acts.setdefault(f"{branch}/{site}", []).append(v.clone())
        if lens is not None:  # the lens of every row's (edited) run, scored at this step; the streams are not kept
            step = lens.step(rec.step, rec.x, {b: [v[s] for s in lens_reads] for b, v in rec.branches.items()}, rec.x0)
            lens_steps.append(M.lens_scores(step.x0, gi.frames_uint8[idx], lens_names))

    if joined:
        final = joined_final(loaded, pl, batch, gi, traced, sampler, directions, joins, tick).float().cpu()
        final_streams: dict[str, torch.Tensor] = {}
    else:
        traj = run_trajectory(loaded, inputs, sampler, plan=plan_fn, edit_latent=edit_latent, on_step=on_step,
                              keep=False)  # fmt: skip
        final = traj.final.float().cpu()  # results are written and scored on the host
        final_streams = {f"final_{k}": v.float().cpu() for k, v in traj.final_streams.items()}  # each row's own
    x0 = torch.stack(x0s, 1) if want_x0 else None  # (B, steps, C, F, H, W)
    host = {name: torch.stack(vals).cpu() for name, vals in acts.items()}  # (steps, B, ...)
    n_points, n_samples, steps = len(pl.points), len(pl.samples), sampler.steps
    grp = f"group_{batch.group}"
    maze = [m for m in exp.metrics if m in MAZE_METRICS]

    # the clean baselines of this batch
    base_rows = sorted({batch.row_of(baseline(exp, local[s])) for _, s in batch.units})
    for r in base_rows:
        s = local[batch.rows[r].sample]
        writer.write(f"{grp}/clean_final", s.local, final[r].numpy(), (n, *final.shape[1:]))
        for name, v in final_streams.items():
            writer.write(f"{grp}/clean_{name}", s.local, v[r].numpy(), (n, *v.shape[1:]))
        if exp.capture.x0:
            writer.write(f"{grp}/clean_x0", s.local, x0[r].numpy(), (n, *x0.shape[1:]))
    if maze:
        conds = gi.frames_uint8[[local[batch.rows[r].sample].local for r in base_rows]]
        for name, vals in M.maze_scores(final[base_rows], conds, maze).items():
            for r, v in zip(base_rows, vals):
                writer.write(f"clean/metrics/{name}", batch.rows[r].sample, v, (n_samples,))
    if scoring is not None:
        bs = [batch.rows[r].sample for r in base_rows]
        for name, vals in scoring.scores(final[base_rows], bs).items():
            for s, v in zip(bs, vals):
                writer.write(f"clean/metrics/{name}", s, v, (n_samples,))

    # every unit: its first edited row against its baseline
    units = list(batch.units)
    rows = [batch.row_of(pl_row(batch, u)) for u in units]
    base = [batch.row_of(baseline(exp, local[s])) for _, s in units]
    scalars: dict[str, np.ndarray] = {}
    if "mse" in exp.metrics:
        scalars["mse"] = M.mse(final[rows], final[base]).numpy()
    if "cosine" in exp.metrics:
        scalars["cosine"] = M.cosine(final[rows], final[base]).numpy()
    if "mse_to_source" in exp.metrics:
        src = []
        for p, s in units:
            iv = next(i for i in pl.experiments[p].interventions if i.source_metric)
            src.append(batch.row_of(source_rows(pl.experiments[p], iv, local[s], pl_row(batch, (p, s)).seed)[0]))
        scalars["mse_to_source"] = M.mse(final[rows], final[src]).numpy()
    if maze:
        conds = gi.frames_uint8[[local[s].local for _, s in units]]
        scalars.update(M.maze_scores(final[rows], conds, maze))
    if scoring is not None:
        scalars.update(scoring.scores(final[rows], [s for _, s in units]))
    per_step = M.x0_distance(x0[rows], x0[base]).numpy() if "x0_distance" in exp.metrics else None
    lens_arr = {m: np.stack([st[m] for st in lens_steps], 1) for m in lens_names}  # (rows, steps, blocks)
    for k, (p, s) in enumerate(units):
        li = local[s].local
        for name, vals in scalars.items():
            writer.write(f"metrics/{name}", (p, s), vals[k], (n_points, n_samples))
        if per_step is not None:
            writer.write("metrics/x0_distance", (p, s), per_step[k], (n_points, n_samples, steps))
        for name, arr in lens_arr.items():
            writer.write(f"metrics/{name}", (p, s), arr[rows[k]], (n_points, n_samples, *arr.shape[1:]))
        writer.write(f"{grp}/final", (p, li), final[rows[k]].numpy(), (n_points, n, *final.shape[1:]))
        for name, v in final_streams.items():
            writer.write(f"{grp}/{name}", (p, li), v[rows[k]].numpy(), (n_points, n, *v.shape[1:]))
        if exp.capture.x0:
            writer.write(f"{grp}/x0", (p, li), x0[rows[k]].numpy(), (n_points, n, *x0.shape[1:]))
        for name, vals in host.items():
            codes, scale = encode(vals[:, rows[k]], exp.capture.dtype)
            codes = to_disk(codes.numpy(), exp.capture.dtype)
            writer.write(f"{grp}/{name}", (p, li), codes, (n_points, n, *codes.shape))
            writer.attrs_of(
                f"{grp}/{name}",
                storage_dtype=exp.capture.dtype,
                **({"scale": name.rsplit("/", 1)[-1] + SCALE_SUFFIX} if scale is not None else {}),
            )
            if scale is not None:
                writer.write(f"{grp}/{name}{SCALE_SUFFIX}", (p, li), scale.numpy(), (n_points, n, *scale.shape))


def shares_prefix(exp: Experiment, loaded: LoadedModel, streams: bool = False) -> bool:
    """Whether a batch's edited rows may join it at their first edited step (:func:`~interp.experiments.plan.
    row_joins`): only the final latents are kept (no x0, site or lens records per step), the scheduler steps from
    (output, timestep, latent) alone and can begin mid-schedule (``set_begin_index``: not DDIM's), and no other
    stream is denoised beside the video."""
    per_step = exp.capture.x0 or exp.capture.sites or any(m in LENS_METRICS or m == "x0_distance" for m in exp.metrics)
    sched = loaded.scheduler
    resumable = hasattr(sched, "set_begin_index") and not keeps_history(sched)
    return resumable and not (per_step or streams)


def joined_final(loaded: LoadedModel, pl: Plan, batch: Batch, gi: GroupInputs, traced, sampler, directions: dict,
                 joins: list[int], tick: Callable[[], None] | None = None) -> torch.Tensor:  # fmt: skip
    """The final latents of ``batch``'s rows, each row computed from the step it joins at (``joins``). The batch
    runs in segments between join steps, each over the rows joined by then with their edits bound to those rows;
    a row joining takes its baseline's latent and previous x0, which its own run would have had. Every row's
    trajectory is the one the whole batch would compute: rows of a batch never interact, except through the edits
    (sources and references are clean rows, which join at 0)."""
    local = {s.index: s for s in pl.samples}
    twin = [batch.row_of(baseline(pl.experiments[r.unit[0]], local[r.sample])) if r.unit else i
            for i, r in enumerate(batch.rows)]  # fmt: skip
    starts = sorted(set(joins))
    noise: dict = {}
    x = x0 = None  # every row's latent entering the segment and the previous step's x0 (rows not joined: unset)
    for j, begin in enumerate(starts):
        end = starts[j + 1] if j + 1 < len(starts) else sampler.steps
        active = [i for i, k in enumerate(joins) if k <= begin]
        rows = tuple(batch.rows[i] for i in active)
        units = tuple(u for u in batch.units if joins[batch.rows.index(pl_row(batch, u))] <= begin)
        sub = Batch(batch.index, batch.group, units, rows)
        inputs, plan_fn, edit_latent = _batch_trajectory(pl, sub, gi, traced, sampler, [], directions, noise)
        start = None
        if begin:
            new = [i for i in active if joins[i] == begin]
            x[new], x0[new] = x[[twin[i] for i in new]], x0[[twin[i] for i in new]]
            start = (begin, x[active], x0[active])
        last: list[torch.Tensor] = []

        def on_step(rec: StepRecord) -> None:
            if tick is not None:
                tick()
            last[:] = [rec.x0]

        traj = run_trajectory(loaded, inputs, sampler, plan=plan_fn, edit_latent=edit_latent, on_step=on_step,
                              start=start, stop=end, keep=False)  # fmt: skip
        if x is None:
            x = traj.final.new_zeros((len(batch.rows), *traj.final.shape[1:]))
            x0 = last[0].new_zeros((len(batch.rows), *last[0].shape[1:]))
        x[active], x0[active] = traj.final, last[0]
    return x


def _batch_trajectory(pl: Plan, batch: Batch, gi: GroupInputs, traced, sampler, sites: list[str], directions: dict,
                      cache: dict | None = None):  # fmt: skip
    """(trajectory inputs, forward plan, latent edit) of one batch: its rows' text, noise and edits (``cache``: the
    noise drawn per seed, kept between calls)."""
    n = gi.latent_shape[0]
    local = {s.index: s for s in pl.samples}
    idx = torch.tensor([local[r.sample].local for r in batch.rows])
    cache = {} if cache is None else cache
    noise = torch.stack([gi.noise(r.seed, cache)[r.slot] for r in batch.rows])
    shape = (len(batch.rows), *gi.latent_shape[1:])
    inputs = TrajectoryInputs(_index_text(gi.text, idx, n), shape,
                              negative=None if gi.negative is None else _index_text(gi.negative, idx, n),
                              condition=None if gi.condition is None else gi.condition[idx], latents=noise,
                              first_frame=None if gi.first_frame is None else gi.first_frame[idx],
                              timestep_mask=gi.timestep_mask, timestep_kwargs=gi.timestep_kwargs,
                              streams=gi.streams(batch.rows), guider=gi.guider)  # fmt: skip
    bound = [b for u in batch.units for b in bind_unit(pl.experiments[u[0]], batch, u, local[u[1]], directions)]
    plan_fn, edit_latent = compile_batch(bound, traced, shape, sampler.steps, sites)
    return inputs, plan_fn, edit_latent


def planned_forwards(exp, loaded) -> dict[str, int]:
    """What ``exp`` runs on ``loaded``, from the engine's batch plan (no forward): mazes, sweep points, batch rows,
    steps, row-steps (rows x steps, less the steps before rows join: :func:`joined_final`) and row-forwards =
    row-steps x forwards per step (2 with classifier-free guidance)."""
    pl = make_plan(exp, int((loaded.task or {}).get("default_size", 0)) or None)
    sampler = sampler_of(exp, loaded)
    rows = sum(len(b.rows) for b in pl.batches)
    steps = row_steps(pl, sampler.steps, shares_prefix(exp, loaded))  # rows joining late run fewer steps
    return {"mazes": len(pl.samples), "points": len(pl.points), "rows": rows, "steps": sampler.steps,
            "row_steps": steps, "row_forwards": steps * (2 if sampler.cfg else 1)}  # fmt: skip


def plan_run(exp: Experiment, out: str | Path | None = None, *, loaded: LoadedModel | None = None,
             base_dir: str | Path | None = None) -> Cost:  # fmt: skip
    """What :func:`execute` of ``exp`` will cost (:class:`~interp.experiments.cost.Cost`), writing nothing: the
    batch plan's rows and forwards, the bytes of results.h5, and the time estimated from the first two steps of
    the first batch (a cache hit in ``out``: nothing to run)."""
    if exp.inputs.task == "prompts":
        loaded = loaded if _is_pipeline(loaded) else load_pipeline_of(exp)
    loaded = loaded or load_model(exp.model, exp.device)
    counts = planned_forwards(exp, loaded)
    sampler = sampler_of(exp, loaded)
    if out is not None and is_complete(Path(out) / "results.h5", exp.key(loaded.weight_hash)):
        return Cost(counts["rows"], counts["steps"], 0, 0, 0.0, "cache hit: results.h5 holds this experiment")
    pl = make_plan(exp, int((loaded.task or {}).get("default_size", 0)) or None)
    traced = next(iter(traced_experts(loaded).values()))
    sites = traced.resolve(exp.capture.sites) if exp.capture.sites else []
    first = pl.batches[0]
    size = next(s.size for s in pl.samples if s.group == first.group)
    gi = group_inputs(exp, loaded, size)
    check_against_model(pl, traced, gi.latent_shape, sampler.steps)
    directions = {(p, j): d for p, e in enumerate(pl.experiments) for j, iv in enumerate(e.interventions)
                  if (d := iv.load_direction(base_dir)) is not None}  # fmt: skip
    inputs, plan_fn, edit_latent = _batch_trajectory(pl, first, gi, traced, sampler, sites, directions)

    def run(on_step):
        return run_trajectory(loaded, inputs, sampler, plan=plan_fn, edit_latent=edit_latent, on_step=on_step,
                              keep=False)  # fmt: skip

    one, warm, rec = time_first_steps(run, sampler.steps)
    # bytes per row: the final latent, x0 per step (capture.x0), each captured site per step and branch
    latent = rec.x_next[0].numel() * 4
    site_step = sum(nbytes(v[:1].shape, exp.capture.dtype) for values in rec.branches.values()
                    for v in values.values())  # fmt: skip
    per_row = latent + (sampler.steps * latent if exp.capture.x0 else 0) + sampler.steps * site_step
    units = len(pl.points) * len(pl.samples)
    clean = len(pl.samples) * (latent + (sampler.steps * latent if exp.capture.x0 else 0))
    seconds = estimate_seconds(one, warm, len(first.rows), counts["row_steps"])
    timed = f"first step {one:.2f} s, then {warm:.2f} s per step of a {len(first.rows)}-row batch"
    return Cost(counts["rows"], counts["steps"], counts["row_forwards"], units * per_row + clean, seconds, timed)


def pl_row(batch: Batch, unit: tuple[int, int]) -> Row:
    """The unit's first edited row (its result)."""
    return next(r for r in batch.rows if r.unit == unit and r.member == 0)


def _summary(exp: Experiment, results: Path, key: str, loaded: LoadedModel, wall: float, cache_hit: bool,
             extra: dict | None = None) -> dict:  # fmt: skip
    """summary.json: per point the mean of each metric over samples, the clean means; ``extra``: more top-level
    fields (``method: atp``: the method and its verify count)."""
    from interp.tasks.maze_score import solve_rate

    data = read_metrics(results)
    points = []
    for p, coords in enumerate(data["points"]):
        means = {}
        for name, arr in data["metrics"].items():
            vals = arr[p]
            means[name] = float(np.nanmean(vals))
        entry = {"coords": coords, "metrics": means}
        if "solve_rate" in data["metrics"]:
            ok = data["metrics"]["solve_rate"][p]
            entry["solve_rate_ci95"] = list(solve_rate([SimpleNamespace(success=bool(v)) for v in ok])[1:])
        points.append(entry)
    clean = {k: float(np.nanmean(v)) for k, v in data["clean"].items()}
    summary = {"name": exp.name, "key": key, "model": exp.model, "model_hash": loaded.weight_hash,
               "cache_hit": cache_hit, "wall_s": round(wall, 3), "axes": data["axes"], "clean": clean,
               "points": points, **(extra or {})}  # fmt: skip
    write_atomic(results.parent / "summary.json", json.dumps(summary, indent=2))
    return summary

"""Capture: run a traced trajectory and stream the chosen sites of every step into one HDF5 file (resumable).

Inputs (:mod:`interp.inputs`): a model with task metadata (``interp.json``) is fed
``interp.tasks.build_inputs(meta, batch, seed)``. Any other model gets documented random inputs: text embeddings
N(0, 1) of shape (batch, text_len, text_dim) drawn from ``torch.Generator().manual_seed(seed)`` (plus the family's
extras: an all-ones text mask, N(0, 1) pooled projections, embedded guidance 6.0 for HunyuanVideo), a latent of
(frames, height, width) (default: the adapter's small patch-aligned size), and zero text embeddings for the
unconditional branch. Initial noise comes from ``noise_seed``.

Prompts and images (``prompts``, ``images``, ``negative_prompt``): a whole diffusers pipeline
(:func:`interp.pipelines.components.load_pipeline`) encodes them with its own methods
(:func:`interp.pipelines.inputs.encode_inputs`); ``frames`` / ``height`` / ``width`` are then the pipeline's
``num_frames`` / ``height`` / ``width`` in pixels (default: the model's interp.json, else the pipeline's own
81 / 480 / 832), ``seed`` is the generator (sample i: ``torch.Generator().manual_seed(seed + i)``, so one sample equals
``pipe(..., generator=torch.Generator().manual_seed(seed))``), and the capture stores the final video decoded by
the pipeline's VAE as ``video`` and, for the steps ``x0_steps`` names, x0 decoded the same way as ``x0_video``.

Samples (``samples``): a folder of VBVR-Bench samples (:func:`interp.pipelines.samples.load_samples`) gives the
prompts and images (each sample's ``prompt.txt`` and ``first_frame.png``), and the scorers their ``final_frame.png``
and ``instance.json``.

Scorers (``scorer``, :mod:`interp.scorers`): a ``module:function`` called on every decoded video with its sample's
metadata; its named scores are stored per decoded step (``scores/x0/<name>``) and for the final video
(``scores/video/<name>``). A pipeline capture scores the step lens' steps and the final video; a pixel-space task
model (the maze models: x0 is the video) scores every step's x0. The scorer is resolved before anything is written.

The file describes itself (:mod:`interp.store.capture`): the resolved sampler, for a task model its task
metadata, instances and condition frames, and for a pipeline capture its prompts, image digests and images.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from interp.budget import Estimate, forward_bytes, model_bytes
from interp.experiments.cost import Cost, estimate_seconds, time_first_steps
from interp.inputs import ModelInputs, model_inputs
from interp.models import LoadedModel, load_model
from interp.store import Pool, RunWriter, partial_path
from interp.store.atomic import disk_full_names
from interp.store.capture import step_nbytes, step_values
from interp.store.codec import DtypeSpec, check_spec, nbytes, site_dtype
from interp.store.keep import TokenSpec, stored_steps, token_index
from interp.trace import ForwardPlan
from interp.trajectory import SamplerConfig, StepRecord, TrajectoryInputs, run_trajectory, schedule, traced_experts


class CaptureConfig(BaseModel):
    """Everything that determines a capture's contents (hashed into the file). ``None`` = task default or 20/1.0."""

    model_config = ConfigDict(extra="forbid")
    model: str
    steps: int | None = Field(None, ge=1)
    sites: list[str] = ["blocks.*.hook_resid_post"]
    seed: int = Field(0, ge=0)  # picks the inputs (task instances, random text)
    noise_seed: int = Field(0, ge=0)  # initial noise
    batch: int = Field(1, ge=1)
    # storage dtype (interp.store.codec): one for all sites, or {site glob: dtype}, the most specific glob winning
    dtype: DtypeSpec = "float32"
    pool: Pool = "none"
    guidance: float | None = None
    shift: float | None = None
    frames: int | None = Field(None, ge=1)  # latent size for random inputs (None: the model's default)
    height: int | None = Field(None, ge=1)
    width: int | None = Field(None, ge=1)
    text_len: int | None = Field(None, ge=1)
    device: str = "cpu"
    model_dtype: str | None = None
    # pipeline inputs (a whole diffusers pipeline; frames / height / width are then pixels)
    # fields added with the pipeline level; omitted from the hash while unset, so older captures keep their hash
    HASH_OMIT_IF_DEFAULT: ClassVar[tuple[str, ...]] = (
        "prompts",
        "negative_prompt",
        "images",
        "max_sequence_length",
        "x0_steps",
        "x0_downscale",
        "component_dtypes",
        "text_encoder_offload",
        "true_cfg_scale",
        "pipeline_kwargs",
        "scorer",
        "samples",
        "x0_overlap",
        "tokens",
        "step_stride",
        "store_steps",
    )
    prompts: list[str] | None = None
    negative_prompt: str | None = None
    images: list[str] | None = None  # image files, one per prompt (image-to-video)
    max_sequence_length: int | None = Field(None, ge=1)  # None: the pipeline's own default (Wan 512, CogVideoX 226)
    x0_steps: str | list[int] | None = None  # the step lens: "all", "every:K", "0,5,9" or a list
    x0_downscale: int = Field(1, ge=1)
    # on a GPU, decode the step lens on a side CUDA stream while the next steps run (the same frames; False: decode
    # in the loop, which then waits for each decode)
    x0_overlap: bool = True
    component_dtypes: dict[str, str] | None = None  # e.g. {"text_encoder": "bfloat16", "vae": "float32"}
    text_encoder_offload: Literal["none", "cpu", "release"] = "none"
    # HunyuanVideoPipeline's classifier-free guidance (with a negative prompt; its guidance_scale is embedded):
    # ``--true-cfg-scale 4``
    true_cfg_scale: float | None = None
    # the pipeline __call__'s other knobs by their own names (LTX2Pipeline's guidance terms, interp.pipelines.ltx2:
    # --set 'pipeline_kwargs={stg_scale: 0, modality_scale: 1}'); None: the pipeline's own defaults
    pipeline_kwargs: dict[str, Any] | None = None
    scorer: str | None = None  # 'module:function' (interp.scorers): scores of each decoded step and the final video
    samples: str | None = (
        None  # a folder of VBVR-Bench samples: their prompts and first frames (interp.pipelines.samples)
    )
    # what is kept (interp.store.keep): per-token sites' tokens (a box {frames, rows, cols} or a list of token
    # indices) and the steps stored (every step_stride-th, or the store_steps list); the trajectory runs every step
    tokens: TokenSpec = None
    step_stride: int | None = Field(None, ge=1)
    store_steps: list[int] | None = None

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: DtypeSpec) -> DtypeSpec:
        return check_spec(v)

    @model_validator(mode="after")
    def _keep(self) -> CaptureConfig:
        if self.tokens is not None and self.pool != "none":
            raise ValueError(f"tokens keeps some tokens of each per-token site; pool {self.pool!r} averages them all: "
                             "give one of them")  # fmt: skip
        if self.step_stride is not None and self.store_steps is not None:
            raise ValueError("give step_stride or store_steps, not both")
        return self

    @property
    def pipeline_inputs(self) -> bool:
        return self.prompts is not None or self.images is not None or self.samples is not None

    def resolved(self, loaded: LoadedModel) -> CaptureConfig:
        """Fill defaults from the model's task sampler settings (then steps=20, guidance=1.0):
        :meth:`SamplerConfig.from_task`."""
        s = SamplerConfig.from_task(loaded.task, steps=self.steps, shift=self.shift, guidance=self.guidance)
        return self.model_copy(update=dict(steps=s.steps, guidance=s.guidance_scale, shift=s.shift))

    def sampler(self) -> SamplerConfig:
        return SamplerConfig(steps=self.steps, shift=self.shift, guidance_scale=self.guidance, seed=self.noise_seed)


def capture_inputs(loaded: LoadedModel, config: CaptureConfig) -> ModelInputs:
    """The capture's inputs (:func:`interp.inputs.model_inputs`): task inputs when the model has task metadata,
    else the documented random inputs."""
    return model_inputs(loaded, config.batch, config.seed, frames=config.frames, height=config.height,
                        width=config.width, text_len=config.text_len)  # fmt: skip


def build_inputs(loaded: LoadedModel, config: CaptureConfig) -> TrajectoryInputs:
    """Task inputs when the model has task metadata, else the documented random inputs."""
    mi = capture_inputs(loaded, config)
    return TrajectoryInputs(mi.text, mi.latent_shape, condition=mi.condition)


def describe_capture(loaded: LoadedModel, mi: ModelInputs, sampler: SamplerConfig) -> dict:
    """What a capture records about itself: the resolved sampler and, for a task model, its task metadata,
    instances and condition frames (so readers need neither the model directory nor the task generators)."""
    d: dict = {"sampler": sampler.describe(loaded.scheduler)}
    if mi.task is not None:
        d["task_meta"] = mi.task
        d["instances"] = [json.dumps(m.to_dict()) for m in mi.instances]
        if mi.condition_frames is not None:
            d["condition_frames"] = mi.condition_frames.numpy()
    return d


def capture(
    config: CaptureConfig,
    out: str | Path,
    *,
    loaded: LoadedModel | None = None,
    overwrite: bool = False,
    progress: bool = False,
    on_step: Callable[[StepRecord], None] | None = None,
    timings: dict | None = None,
    force: bool = False,
) -> Path:
    """Run ``config`` and write ``out`` (resuming ``out.partial`` if a matching interrupted run left one). Its cost
    (:func:`estimate`) is checked against the free memory and disk first (``force``: run anyway).
    ``timings`` (a dict; pipeline captures) receives the seconds of each part (:func:`capture_pipeline`).

    >>> capture(CaptureConfig(model="tiny-wan", steps=4, sites=["blocks.*.hook_resid_post"]), "run.h5")
    """
    if not config.pipeline_inputs and config.x0_steps not in (None, "none", "", []):
        from interp.pipelines.components import PipelineError

        raise PipelineError("--x0-steps decodes x0 through a pipeline's VAE: it needs --prompt, --image or --samples "
                            "(a task model's capture stores its pixel-space x0 at every step already)")  # fmt: skip
    if config.pipeline_inputs:
        return capture_pipeline(config, out, loaded=loaded, overwrite=overwrite, progress=progress, on_step=on_step,
                                timings=timings, force=force)  # fmt: skip
    loaded = loaded or load_model(config.model, config.device, config.model_dtype)
    config = config.resolved(loaded)
    sampler = config.sampler()
    sites = next(iter(traced_experts(loaded).values())).resolve(config.sites)
    one = capture_inputs(loaded, config.model_copy(update={"batch": 1})).latent_shape  # sizes, before the batch
    grid = loaded.adapter.token_grid(loaded.transformer, (config.batch, *one[1:]))
    keep = Kept(config, grid)  # a token box outside the grid, a step outside the run: refused before anything runs
    cost = estimate(loaded, config, (config.batch, *one[1:]), sites, out).check(force)
    mi = capture_inputs(loaded, config)
    inputs = TrajectoryInputs(mi.text, mi.latent_shape, condition=mi.condition)
    timesteps, sigmas, branches = schedule(loaded, sampler)
    scoring = pixel_scoring(loaded, mi, config) if config.scorer else None
    writer = RunWriter(
        out, config=config, model_hash=loaded.weight_hash, family=loaded.family, timesteps=timesteps, sigmas=sigmas,
        branch_steps=keep.branches(branches), sites=sites, grid=grid, dtype=config.dtype, pool=config.pool,
        tokens=keep.tokens, token_box=keep.box, overwrite=overwrite, description=describe_capture(loaded, mi, sampler),
    )  # fmt: skip
    with disk_full_names(out, cost.disk):  # a full disk: one error naming the file, the partial kept (resumable)
        try:
            final = None
            if writer.start_step < sampler.steps:
                start = (writer.start_step, writer.start_latents()) if writer.start_step else None

                def step_hook(rec: StepRecord) -> None:
                    arrays = []
                    if scoring is not None:
                        arrays = scoring.step_arrays(rec.step, sampler.steps, list(range(sampler.steps)),
                                                     _pixels(rec.x0))  # fmt: skip
                    writer.on_step(rec, arrays)
                    if on_step is not None:
                        on_step(rec)

                traj = run_trajectory(loaded, inputs, sampler, read=sites, plan=keep.plan(sites, writer.reducer),
                                      on_step=step_hook, start=start, keep=False, progress=progress)  # fmt: skip
                final = traj.final
            if scoring is not None:
                if final is None:
                    final = torch.from_numpy(writer.file["latents"][-1])
                scoring.put_video(writer, _pixels(final))
            return writer.finish()
        finally:
            writer.close()


class Kept:
    """What a resolved capture keeps (:mod:`interp.store.keep`): ``tokens`` (flat indices; None: all), ``box``
    (their (frames, rows, cols) sizes when a box) and ``steps`` (the steps whose sites are stored)."""

    def __init__(self, config: CaptureConfig, grid: tuple[int, int, int]):
        self.tokens, self.box = token_index(config.tokens, grid)
        self.steps = stored_steps(config.steps, config.step_stride, config.store_steps)
        self.n_steps = config.steps

    def plan(self, sites: Sequence[str], reduce=None):
        """The trajectory's per-forward plan: read ``sites`` at the stored steps only, each value ``reduce`` d in the
        forward (None, with no reduce: ``sites`` at every step)."""
        if self.steps == list(range(self.n_steps)) and reduce is None:
            return None
        stored, reading = set(self.steps), ForwardPlan(read=list(sites), reduce=reduce)
        return lambda branch, step: reading if step in stored else ForwardPlan()

    def branches(self, branch_steps: dict[str, list[int]]) -> dict[str, list[int]]:
        """Each branch's steps that are stored."""
        keep = set(self.steps)
        return {b: [s for s in st if s in keep] for b, st in branch_steps.items()}


def estimate(loaded: LoadedModel, config: CaptureConfig, latent_shape: tuple[int, ...], sites: Sequence[str],
             out: str | Path | None = None) -> Estimate:  # fmt: skip
    """What a resolved capture costs (:mod:`interp.budget`): every stored step stores each site of every batch row
    (and branch) pooled as ``pool`` says, of the kept tokens, in its storage dtype (:func:`interp.store.codec.nbytes`:
    codes and scales), and every step the latents and x0; one step's values are held at a time."""
    grid = loaded.adapter.token_grid(loaded.transformer, latent_shape)
    tokens, d = math.prod(grid), loaded.adapter.d_model(loaded.transformer)
    keep = Kept(config, grid)
    kept_tokens = tokens if keep.tokens is None else len(keep.tokens)
    stored = {"none": kept_tokens, "mean": 1, "frame": grid[0]}.get(config.pool, kept_tokens)
    passes = 2 if config.sampler().cfg else 1
    rows, steps = config.batch * passes, config.steps
    shape = (config.batch, stored, d) if config.pool != "mean" else (config.batch, d)
    step_sites = passes * sum(nbytes(shape, site_dtype(config.dtype, s)) for s in sites)
    latents = 2 * config.batch * math.prod(latent_shape[1:]) * 4  # latents and x0 per step
    return Estimate(f"capture of {config.model}", out=Path(out).parent if out is not None else None,
                    memory=model_bytes(loaded.transformers.values()) + forward_bytes(rows, tokens, d) + 2 * step_sites,
                    disk=len(keep.steps) * step_sites + steps * latents, forwards=steps * rows,
                    detail=f"{steps} steps ({len(keep.steps)} stored) x {config.batch} samples"
                    f"{' x 2 branches' if passes == 2 else ''}, {len(sites)} sites of {stored} x {d} "
                    "values")  # fmt: skip


def plan_capture(config: CaptureConfig, *, loaded: LoadedModel | None = None) -> Cost:
    """What :func:`capture` of ``config`` will cost (:class:`~interp.experiments.cost.Cost`), writing nothing: its
    rows, forwards, the bytes of the file (latents, v, x0 and the sites of every step, as stored) and the time
    estimated from its first two steps."""
    if config.pipeline_inputs:
        raise ValueError(
            "--plan estimates captures of a transformer (task or random inputs); with --prompt, --image or "
            "--samples the pipeline's encoders and VAE run too, which it does not time yet"
        )
    loaded = loaded or load_model(config.model, config.device, config.model_dtype)
    config = config.resolved(loaded)
    mi = capture_inputs(loaded, config)
    inputs = TrajectoryInputs(mi.text, mi.latent_shape, condition=mi.condition)
    sampler = config.sampler()
    _, _, branches = schedule(loaded, sampler)
    sites = next(iter(traced_experts(loaded).values())).resolve(config.sites)
    grid = loaded.adapter.token_grid(loaded.transformer, inputs.latent_shape)
    keep = Kept(config, grid)

    def run(on_step):
        return run_trajectory(loaded, inputs, sampler, read=sites, on_step=on_step, keep=False)

    one, warm, rec = time_first_steps(run, sampler.steps)
    latents, stored = step_values(rec, config.pool, grid, config.dtype, keep.tokens)
    per_step = step_nbytes(latents[1:], [])  # x_next, v, x0
    per_kind: dict[str, int] = {}  # cond / uncond: the sites' bytes of one forward (the same for either expert)
    for item in stored:
        kind = item[0].split("/")[-1]
        per_kind[kind] = per_kind.get(kind, 0) + step_nbytes([], [item])
    total = step_nbytes(latents[:1], []) + sampler.steps * per_step
    total += sum(per_kind.get(b.split("/")[-1], 0) * len(steps) for b, steps in keep.branches(branches).items())
    forwards = config.batch * sum(len(steps) for steps in branches.values())
    seconds = estimate_seconds(one, warm, config.batch, config.batch * sampler.steps)
    timed = f"first step {one:.2f} s, then {warm:.2f} s per step of {config.batch} sample(s)"
    return Cost(config.batch, sampler.steps, forwards, total, seconds, timed)


class Scoring:
    """A resolved scorer with each sample's metadata (:mod:`interp.scorers`)."""

    def __init__(self, spec: str, metas: list[dict]):
        from interp.scorers import check_metas, resolve, spec_name

        self.fn, self.name, self.metas = resolve(spec), spec_name(spec), metas
        check_metas(self.fn, metas, name=f"scorer {self.name}")

    def score(self, videos) -> list[dict]:
        from interp.scorers import score_videos

        return score_videos(self.fn, videos, self.metas, name=f"scorer {self.name}")

    def step_arrays(self, index: int, rows: int, steps: list[int], videos) -> list[tuple]:
        from interp.store import score_step_arrays

        return score_step_arrays(index, rows, self.score(videos), self.name, steps)

    def put_video(self, writer: RunWriter, videos) -> None:
        from interp.store import put_video_scores

        put_video_scores(writer, self.score(videos), self.name)


def _pixels(x: torch.Tensor):
    """A pixel-space model's x0 / final latent (B, 3, F, H, W) in [-1, 1] -> uint8 (B, F, H, W, 3)."""
    from interp.tasks.maze import from_model_space

    return from_model_space(x.detach().cpu()).numpy()


def pixel_scoring(loaded: LoadedModel, mi: ModelInputs, config: CaptureConfig) -> Scoring:
    """Scoring of a transformer-level capture: only a pixel-space task model's x0 is a video to score."""
    from interp.scorers import ScorerError

    if mi.task is None or mi.latent_shape[1] != 3:
        raise ScorerError(f"--scorer {config.scorer}: {config.model} has no decoded video to score (a latent model "
                          "with random inputs); give --prompt / --image (a whole pipeline decodes x0 with "
                          "--x0-steps), or a pixel-space task model")  # fmt: skip
    metas = [{"index": i, "instance": m.to_dict(), "task_meta": mi.task} for i, m in enumerate(mi.instances)]
    if mi.condition_frames is not None:
        for m, f in zip(metas, mi.condition_frames.numpy()):
            m["first_frame"] = f
    return Scoring(config.scorer, metas)


def pipeline_metas(prompts: list[str], image_files: list[str] | None, images, negative_prompt, task_meta) -> list[dict]:
    """Each pipeline sample's scorer metadata: prompt, image file and pixels, and what its VBVR-Bench sample folder
    holds (:func:`interp.scorers.sample_meta`)."""
    from interp.scorers import sample_meta

    n = max(len(prompts), len(image_files or []))
    metas = []
    for i in range(n):
        m: dict = {"index": i, "prompt": prompts[i] if i < len(prompts) else None, "negative_prompt": negative_prompt}
        if task_meta is not None:
            m["task_meta"] = task_meta
        if image_files:
            m["image"] = str(image_files[i])
            m.update(sample_meta(image_files[i]))
        if images is not None:
            m["first_frame"] = np.asarray(images[i])
        metas.append(m)
    return metas


def load_for_inputs(config: CaptureConfig):
    """The whole pipeline a prompt / image capture needs (per-component dtypes: ``model_dtype`` for the
    transformers, ``component_dtypes`` for any component)."""
    from interp.pipelines.components import SUPPORTED_PIPELINES, load_pipeline

    dtypes: dict[str, str] = {}
    if config.model_dtype:
        dtypes.update(transformer=config.model_dtype, transformer_2=config.model_dtype)
    dtypes.update(config.component_dtypes or {})
    return load_pipeline(config.model, dtype=dtypes, device=config.device,
                         text_encoder_offload=config.text_encoder_offload,
                         pipeline_classes=SUPPORTED_PIPELINES)  # fmt: skip


def capture_pipeline(
    config: CaptureConfig,
    out: str | Path,
    *,
    loaded=None,
    overwrite: bool = False,
    progress: bool = False,
    on_step: Callable[[StepRecord], None] | None = None,
    timings: dict | None = None,
    force: bool = False,
) -> Path:
    """A capture from prompts / images through a whole pipeline (see the module doc). Every input is checked and
    encoded before anything is written: a bad input is one :class:`~interp.pipelines.components.PipelineError`.

    The step lens (:class:`~interp.pipelines.decode.StepLens`) decodes x0 beside the loop on a GPU; a lens step is
    marked done once its frames are written, so a resumed file never lacks a done step's ``x0_video``.
    ``timings`` (a dict) receives seconds: ``encode`` (the inputs encoded and the file opened), ``loop`` (the
    denoising steps and the step lens, until its last frames are decoded; the device synchronised), ``decode`` (the
    final video), ``finish`` (the file written) and, for an overlapped lens, ``lens_gpu_s`` (its decodes' time on
    their stream)."""
    from interp.pipelines.components import PipelineError, PipelineModel
    from interp.pipelines.decode import StepLens, decode_video, x0_steps
    from interp.pipelines.inputs import encode_inputs
    from interp.pipelines.ltx2 import AUDIO, decode_audio

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists (a complete capture); pass overwrite to replace it")
    if config.noise_seed != 0:
        raise PipelineError("with prompts, --seed is the generator of the initial noise (sample i: seed + i); "
                            "--noise-seed is for random inputs only")  # fmt: skip
    if config.samples is not None:  # the folder's prompts and first frames, checked before anything is loaded
        from interp.pipelines.samples import SampleError, load_samples

        if config.prompts is not None or config.images is not None:
            raise PipelineError("--samples gives each sample's prompt and first frame: give --samples, or --prompt "
                                "(and --image), not both")  # fmt: skip
        try:
            ss = load_samples(config.samples)
        except SampleError as e:
            raise PipelineError(str(e)) from None
        config = config.model_copy(update=dict(prompts=[s.prompt for s in ss], images=[str(s.first_frame) for s in ss]))
    n = len(config.prompts or config.images or [])
    if config.scorer:  # a bad scorer fails before any model is loaded
        from interp.scorers import resolve

        resolve(config.scorer)
    if config.batch not in (1, n):
        raise PipelineError(f"batch {config.batch} with {n} prompt(s): the batch is one sample per prompt")
    loaded = loaded or load_for_inputs(config)
    if not isinstance(loaded, PipelineModel):
        raise PipelineError(f"{config.model}: prompts and images need a whole pipeline (load_pipeline), not a "
                            "transformer-level LoadedModel")  # fmt: skip
    # unset knobs: the model's task sampler, else the pipeline's own __call__ defaults (50 steps; guidance_scale:
    # Wan 5, CogVideoX 6, LTX 3, HunyuanVideo 6 (embedded))
    from interp.pipelines.inputs import call_default

    fb = call_default(loaded.pipeline, "guidance_scale")
    s = SamplerConfig.from_task(loaded.task, steps=config.steps, shift=config.shift, guidance=config.guidance,
                                fallback={"steps": 50, "guidance": 5.0 if fb is None else fb})  # fmt: skip
    config = config.model_copy(update=dict(steps=s.steps, guidance=s.guidance_scale, shift=s.shift, batch=n))
    sel = x0_steps(config.x0_steps, config.steps)
    # unset video size: the model's task metadata (the organism's 9 x 96 x 96), else the pipeline's own defaults
    meta = loaded.task or {}
    clock = _Clock(loaded, timings)
    pi = encode_inputs(
        loaded, list(config.prompts or []), images=config.images, negative_prompt=config.negative_prompt,
        num_frames=config.frames or meta.get("frames", 81), height=config.height or meta.get("height", 480),
        width=config.width or meta.get("width", 832),
        guidance_scale=config.guidance, seed=config.seed, max_sequence_length=config.max_sequence_length,
        true_cfg_scale=config.true_cfg_scale, pipeline_kwargs=config.pipeline_kwargs,
    )  # fmt: skip
    inputs = pi.trajectory
    config = config.model_copy(update=dict(frames=pi.num_frames, height=pi.height, width=pi.width))
    loop_guidance = config.guidance if pi.loop_guidance is None else pi.loop_guidance
    sampler = SamplerConfig(steps=config.steps, shift=config.shift, guidance_scale=loop_guidance, seed=config.seed)
    try:  # a scheduler the loop cannot step as the pipeline does (or a knob it ignores): one clear error
        timesteps, sigmas, branches = schedule(loaded, sampler, inputs)
    except PipelineError:
        raise
    except ValueError as e:
        raise PipelineError(f"{loaded.pipeline_class}: {e}") from e
    sites = next(iter(traced_experts(loaded).values())).resolve(config.sites)
    grid = loaded.adapter.token_grid(loaded.transformer, inputs.latent_shape)
    keep = Kept(config, grid)
    estimate(loaded, config, inputs.latent_shape, sites, out).check(force)  # before the file is created
    description = {
        "sampler": {**sampler.describe(loaded.scheduler), "pipeline": loaded.pipeline_class,
                    "num_frames": pi.num_frames, "height": pi.height, "width": pi.width,
                    "seed_convention": "sample i: Generator().manual_seed(seed + i)",
                    **({"guidance_scale": config.guidance, "true_cfg_scale": config.true_cfg_scale}
                       if pi.loop_guidance is not None else {}), **({"call": pi.knobs} if pi.knobs else {})},
        "prompts": pi.prompts, "image_digests": pi.image_digests, "negative_prompt": pi.negative_prompt,
        "images": pi.images,
    }  # fmt: skip
    if loaded.task is not None:
        description["task_meta"] = loaded.task
    scoring = None
    if config.scorer:
        scoring = Scoring(config.scorer, pipeline_metas(pi.prompts, config.images, pi.images, pi.negative_prompt,
                                                        loaded.task))  # fmt: skip
    writer = RunWriter(
        out, config=config, model_hash=loaded.weight_hash, family=loaded.family, timesteps=timesteps, sigmas=sigmas,
        branch_steps=keep.branches(branches), sites=sites, grid=grid, dtype=config.dtype, pool=config.pool,
        tokens=keep.tokens, token_box=keep.box, overwrite=overwrite, description=description,
    )  # fmt: skip
    lens = {s: i for i, s in enumerate(sel)}
    lens_attrs = {"steps": json.dumps(sel), "downscale": config.x0_downscale,
                  "axes": "step,batch,frame,height,width,rgb"}  # fmt: skip
    decoder = StepLens(loaded, downscale=config.x0_downscale, first_frame=inputs.first_frame,
                       reference_frames=inputs.reference_frames, overlap=config.x0_overlap) if sel else None  # fmt: skip
    pending: list[int] = []  # lens steps whose frames are still decoding, in step order

    def flush(wait: bool) -> None:
        while pending and (wait or decoder.ready(pending[0])):
            s = pending.pop(0)
            frames = decoder.result(s)
            arrays = [("x0_video", lens[s], frames, len(sel), lens_attrs)]
            if scoring is not None:
                arrays += scoring.step_arrays(lens[s], len(sel), sel, frames)
            writer.put_rows(s, arrays)

    clock.mark("encode")
    try:
        final = None
        try:  # the other streams (LTX-2's audio) where the partial file left them
            final_streams = writer.start_streams(inputs.streams or {})
        except ValueError as e:
            raise PipelineError(f"{e}; delete {partial_path(out)} to start again") from None
        if writer.start_step < sampler.steps:
            start = (writer.start_step, writer.start_latents()) if writer.start_step else None

            def step_hook(rec: StepRecord) -> None:
                if rec.step in lens:
                    decoder.submit(rec.step, rec.x0)
                    pending.append(rec.step)
                # the step's values go now (its record is not held); a lens step is marked done with its frames
                writer.on_step(rec, done=rec.step not in lens)
                flush(wait=False)
                if on_step is not None:
                    on_step(rec)

            traj = run_trajectory(loaded, inputs, sampler, read=sites, plan=keep.plan(sites, writer.reducer),
                                  on_step=step_hook, start=start, keep=False, progress=progress,
                                  start_streams=final_streams)  # fmt: skip
            flush(wait=True)
            final, final_streams = traj.final, traj.final_streams
        clock.mark("loop")
        if timings is not None and decoder is not None and decoder.gpu_seconds:
            timings["lens_gpu_s"] = timings.get("lens_gpu_s", 0.0) + sum(decoder.gpu_seconds)
        if final is None:  # resumed a file whose steps were all done
            final = torch.from_numpy(writer.file["latents"][-1])
        video = decode_video(loaded, final, first_frame=inputs.first_frame, reference_frames=inputs.reference_frames)
        clock.mark("decode")
        writer.put_array("video", video, {"axes": "batch,frame,height,width,rgb"})
        if AUDIO in final_streams:  # LTX-2: the final audio latents and the vocoder's waveform
            latents_a, wave = decode_audio(loaded, final_streams[AUDIO])
            writer.put_array("audio_latents", latents_a, {"axes": "batch,channel,frame,mel_bin"})
            rate = int(loaded.pipeline.vocoder.config.output_sampling_rate)
            writer.put_array("audio", wave, {"axes": "batch,channel,sample", "sample_rate": rate})
        if scoring is not None:
            scoring.put_video(writer, video)
        path = writer.finish()
        clock.mark("finish")
        return path
    finally:
        writer.close()


class _Clock:
    """Seconds between marks, added into ``timings`` (nothing when it is None); the model's device is synchronised
    at each mark."""

    def __init__(self, loaded: LoadedModel, timings: dict | None):
        self.timings = timings
        if timings is not None:
            self.device = next(loaded.transformer.parameters()).device
            self.t = self._now()

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def mark(self, name: str) -> None:
        if self.timings is not None:
            t = self._now()
            self.timings[name] = self.timings.get(name, 0.0) + t - self.t
            self.t = t

"""Capture: run a traced trajectory and stream the chosen sites of every step into one HDF5 file (resumable).

Inputs (:mod:`interp.inputs`): a model with task metadata (``interp.json``) is fed
``interp.tasks.build_inputs(meta, batch, seed)``. Any other model gets documented random inputs: text embeddings
N(0, 1) of shape (batch, text_len, text_dim) drawn from ``torch.Generator().manual_seed(seed)`` (plus the family's
extras: an all-ones text mask, N(0, 1) pooled projections, embedded guidance 6.0 for HunyuanVideo), a latent of
(frames, height, width) (default: the adapter's small patch-aligned size), and zero text embeddings for the
unconditional branch. Initial noise comes from ``noise_seed``.

The file describes itself (:mod:`interp.store.capture`): the resolved sampler, and for a task model its task
metadata, instances and condition frames.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from interp.inputs import ModelInputs, model_inputs
from interp.models import LoadedModel, load_model
from interp.store import Pool, RunWriter
from interp.trajectory import SamplerConfig, StepRecord, TrajectoryInputs, run_trajectory, schedule, traced_experts


class CaptureConfig(BaseModel):
    """Everything that determines a capture's contents (hashed into the file). ``None`` = task default or 20/1.0."""

    model_config = ConfigDict(extra="forbid")
    model: str
    steps: int | None = Field(None, ge=1)
    sites: list[str] = ["blocks.*.hook_resid_post"]
    seed: int = 0  # picks the inputs (task instances, random text)
    noise_seed: int = 0  # initial noise
    batch: int = Field(1, ge=1)
    dtype: Literal["float32", "float16"] = "float32"
    pool: Pool = "none"
    guidance: float | None = None
    shift: float | None = None
    frames: int | None = None  # latent size for random inputs
    height: int | None = None
    width: int | None = None
    text_len: int | None = None
    device: str = "cpu"
    model_dtype: str | None = None

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
) -> Path:
    """Run ``config`` and write ``out`` (resuming ``out.partial`` if a matching interrupted run left one).

    >>> capture(CaptureConfig(model="tiny-wan", steps=4, sites=["blocks.*.hook_resid_post"]), "run.h5")
    """
    loaded = loaded or load_model(config.model, config.device, config.model_dtype)
    config = config.resolved(loaded)
    mi = capture_inputs(loaded, config)
    inputs = TrajectoryInputs(mi.text, mi.latent_shape, condition=mi.condition)
    sampler = config.sampler()
    timesteps, sigmas, branches = schedule(loaded, sampler)
    sites = next(iter(traced_experts(loaded).values())).resolve(config.sites)
    grid = loaded.adapter.token_grid(loaded.transformer, inputs.latent_shape)
    writer = RunWriter(
        out, config=config, model_hash=loaded.weight_hash, family=loaded.family, timesteps=timesteps, sigmas=sigmas,
        branch_steps=branches, sites=sites, grid=grid, dtype=config.dtype, pool=config.pool, overwrite=overwrite,
        description=describe_capture(loaded, mi, sampler),
    )  # fmt: skip
    try:
        if writer.start_step < sampler.steps:
            start = (writer.start_step, writer.start_latents()) if writer.start_step else None

            def step_hook(rec: StepRecord) -> None:
                writer.on_step(rec)
                if on_step is not None:
                    on_step(rec)

            run_trajectory(loaded, inputs, sampler, read=sites, on_step=step_hook, start=start, keep=False,
                           progress=progress)  # fmt: skip
        return writer.finish()
    finally:
        writer.close()

"""Task evaluation: sample a model on held-out task instances, score the videos from pixels, write samples.h5.

The maze instances come from the held-out evaluation stream (``--seed`` picks them); the initial noise of sample i
is drawn from (noise_seed, i) alone, so a sample's video does not depend on the batch it ran in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from interp.adapters import TextConditioning
from interp.models import LoadedModel, load_model
from interp.store.samples import write_samples_file
from interp.tasks import maze as mz
from interp.tasks import maze_inputs
from interp.tasks.maze_score import MazeScore, score_batch, solve_rate
from interp.trajectory import EVAL_FALLBACK, SamplerConfig, StepRecord, TrajectoryInputs, run_trajectory


@dataclass
class EvalResult:
    size: int
    steps: int
    shift: float
    videos: np.ndarray  # (K, F, H, W, 3) uint8
    conditions: np.ndarray  # (K, H, W, 3) uint8
    mazes: list
    scores: list[MazeScore]
    x0_steps: np.ndarray | None = None  # (K, steps, F, H, W, 3) uint8 when kept
    sigmas: list[float] = field(default_factory=list)

    @property
    def solve_rate(self) -> tuple[float, float, float]:
        return solve_rate(self.scores)

    def summary(self) -> dict:
        rate, lo, hi = self.solve_rate
        s = self.scores
        return {
            "size": self.size, "n": len(s), "steps": self.steps, "shift": self.shift,
            "solve_rate": rate, "ci95": [lo, hi],
            "path_recall": float(np.mean([x.path_recall for x in s])),
            "extra_cells": float(np.mean([x.extra_cells for x in s])),
            "goal_reached": float(np.mean([x.goal_reached for x in s])),
            "wall_crossings": float(np.mean([x.wall_crossings for x in s])),
            "first_frame_fidelity": float(np.mean([x.first_frame_fidelity for x in s])),
        }  # fmt: skip


def sample_noise(shape: tuple[int, ...], noise_seed: int, index: int) -> torch.Tensor:
    """Initial noise of sample ``index``: a function of (noise_seed, index) only."""
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([noise_seed, index]).generate_state(1)[0]))
    return torch.randn(shape, generator=g)


def eval_maze(
    model: str | LoadedModel,
    size: int = 5,
    n: int = 16,
    steps: int | None = None,
    seed: int = 0,
    noise_seed: int = 0,
    shift: float | None = None,
    batch: int = 32,
    device: str | None = None,
    keep_x0: bool = False,
    progress: bool = False,
) -> EvalResult:
    """Sample ``n`` held-out mazes of ``size`` and score them."""
    loaded = model if isinstance(model, LoadedModel) else load_model(model, device)
    meta = loaded.task or {}
    if meta.get("task") != "maze":
        raise ValueError(f"model {loaded.name!r} has no maze task metadata (interp.json with task: maze)")
    config = SamplerConfig.from_task(meta, steps=steps, shift=shift, fallback=EVAL_FALLBACK)
    steps, shift = config.steps, config.shift
    mazes = mz.eval_mazes(size, n, seed)
    videos, conds, x0s, sigmas = [], [], [], []
    columns = (TextColumn(f"eval {size}x{size}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("mazes", total=n)
        for lo in range(0, n, batch):
            chunk = mazes[lo : lo + batch]
            ti = maze_inputs(meta, chunk)
            latents = torch.stack([sample_noise(ti.latent_shape[1:], noise_seed, lo + i) for i in range(len(chunk))])
            inputs = TrajectoryInputs(TextConditioning(ti.encoder_hidden_states), ti.latent_shape,
                                      condition=ti.condition, latents=latents)  # fmt: skip
            per_step: list[torch.Tensor] = []

            def keep(rec: StepRecord) -> None:
                if keep_x0:
                    per_step.append(mz.from_model_space(rec.x0.cpu()))
                if lo == 0:
                    sigmas.append(rec.sigma)

            traj = run_trajectory(loaded, inputs, config, on_step=keep, keep=False)
            videos.append(mz.from_model_space(traj.final.cpu()))
            conds.append(ti.condition_frames)
            if keep_x0:
                x0s.append(torch.stack(per_step, dim=1))
            bar.advance(task, len(chunk))
    video = torch.cat(videos).numpy()
    cond = torch.cat(conds).numpy()
    scores = score_batch(video, cond)
    x0_steps = torch.cat(x0s).numpy() if keep_x0 else None
    return EvalResult(size, steps, shift, video, cond, mazes, scores, x0_steps, sigmas)


def write_samples(result: EvalResult, path: str | Path, attrs: dict | None = None) -> Path:
    """Write ``samples.h5`` atomically: video, condition, maze specs, per-sample scores, summary attributes."""
    scores = {key: np.array([getattr(s, key) for s in result.scores]) for key in MazeScore.__dataclass_fields__}
    return write_samples_file(
        path, videos=result.videos, conditions=result.conditions, instances=[json.dumps(m.to_dict()) for m in result.mazes],
        scores=scores, attrs={**result.summary(), **(attrs or {})}, x0=result.x0_steps, sigmas=result.sigmas,
    )  # fmt: skip


def parse_sizes(spec: str) -> list[int]:
    """'5' -> [5]; '3-8' -> [3..8]; '4,6' -> [4, 6]."""
    sizes: list[int] = []
    for part in str(spec).split(","):
        a, _, b = part.partition("-")
        sizes.extend(range(int(a), int(b) + 1) if b else [int(a)])
    bad = [s for s in sizes if s not in mz.SIZES]
    if bad or not sizes:
        raise ValueError(f"maze sizes must be within {list(mz.SIZES)} (e.g. '5', '3-8', '4,6'), got {spec!r}")
    return sizes

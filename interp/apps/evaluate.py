"""Task evaluation: sample a model on held-out task instances, score the videos from pixels, write samples.h5.

The maze instances come from the held-out evaluation stream (``--seed`` picks them); the initial noise of sample i
is drawn from (noise_seed, i) alone, so a sample's video does not depend on the batch it ran in.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from interp.adapters import TextConditioning
from interp.budget import Estimate, forward_bytes, model_bytes
from interp.models import LoadedModel, load_model, read_json
from interp.store.atomic import write_atomic
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
    force: bool = False,
) -> EvalResult:
    """Sample ``n`` held-out mazes of ``size`` and score them (the cost, :func:`estimate_maze`, is checked first;
    ``force``: run anyway)."""
    if n < 1 or batch < 1 or (steps is not None and steps < 1):
        raise ValueError(f"n, batch and steps must be at least 1 (got n={n}, batch={batch}, steps={steps})")
    loaded = model if isinstance(model, LoadedModel) else load_model(model, device)
    meta = loaded.task or {}
    if meta.get("task") != "maze":
        raise ValueError(f"model {loaded.name!r} has no maze task metadata (interp.json with task: maze)")
    config = SamplerConfig.from_task(meta, steps=steps, shift=shift, fallback=EVAL_FALLBACK)
    steps, shift = config.steps, config.shift
    estimate_maze(loaded, config, size, n, batch, seed, keep_x0).check(force)
    mazes = mz.eval_mazes(size, n, seed)
    videos, conds, x0s, sigmas = [], [], [], []
    columns = (TextColumn(f"{size}x{size} mazes: denoising step"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("steps", total=-(-n // batch) * steps)  # one tick per denoising step of each batch
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
                bar.advance(task)

            traj = run_trajectory(loaded, inputs, config, on_step=keep, keep=False)
            videos.append(mz.from_model_space(traj.final.cpu()))
            conds.append(ti.condition_frames)
            if keep_x0:
                x0s.append(torch.stack(per_step, dim=1))
    video = torch.cat(videos).numpy()
    cond = torch.cat(conds).numpy()
    scores = score_batch(video, cond)
    x0_steps = torch.cat(x0s).numpy() if keep_x0 else None
    return EvalResult(size, steps, shift, video, cond, mazes, scores, x0_steps, sigmas)


def estimate_maze(loaded: LoadedModel, config: SamplerConfig, size: int, n: int, batch: int, seed: int = 0,
                  keep_x0: bool = False) -> Estimate:  # fmt: skip
    """What :func:`eval_maze` costs (:mod:`interp.budget`): ``n`` trajectories in batches, their videos (and every
    step's x0 with ``keep_x0``) held and written."""
    shape = maze_inputs(loaded.task, mz.eval_mazes(size, 1, seed)).latent_shape
    tokens, d = (
        math.prod(loaded.adapter.token_grid(loaded.transformer, shape)),
        loaded.adapter.d_model(loaded.transformer),
    )
    passes, video = 2 if config.cfg else 1, math.prod(shape[1:])  # uint8 pixels
    kept = n * video * (2 + (config.steps if keep_x0 else 0))
    return Estimate(f"eval of {loaded.name} ({size}x{size})", forwards=n * config.steps * passes, disk=kept,
                    memory=model_bytes(loaded.transformers.values()) + forward_bytes(min(n, batch) * passes, tokens, d)
                    + kept, detail=f"{n} mazes x {config.steps} steps, batch {min(n, batch)}")  # fmt: skip


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


# ---- task-suite models (interp.json "task": "suite": the organism) ------------------------------------------------
def model_meta(model: str) -> tuple[Path | None, dict | None]:
    """(directory, interp.json) of a built-in name or local directory, without loading any weights; (None, None)
    for the seeded tiny built-ins."""
    from interp.models import BUILTINS, resolve_path

    builtin = BUILTINS.get(str(model))
    if builtin is not None:
        path = builtin.path
        if path is None:
            return None, None
        if not builtin.available:
            raise FileNotFoundError(f"built-in {model!r} is not trained yet: {path} does not exist")
    else:
        path = resolve_path(model)
    meta = path / "interp.json"
    return path, (read_json(meta) if meta.is_file() else None)


def is_suite(meta: dict | None) -> bool:
    return bool(meta) and meta.get("task") == "suite"


@dataclass
class SuiteEval:
    """Rows of :func:`interp.pipelines.evaluate.evaluate` and, when kept, every sample."""

    rows: list[dict]
    sampler: dict
    samples: dict = field(default_factory=dict)  # videos, conditions, tasks, levels, instances, prompts, scores


def suite_sampler(meta: dict, steps: int | None = None, guidance: float | None = None,
                  shift: float | None = None) -> dict:  # fmt: skip
    """The sampler of a run: the model's interp.json ``sampler``, overridden where given."""
    s = dict(meta.get("sampler") or {})
    return {"steps": int(steps if steps is not None else s.get("steps", 50)),
            "guidance": float(guidance if guidance is not None else s.get("guidance", 1.0)),
            "shift": float(shift if shift is not None else s.get("shift", 5.0)),
            "negative_prompt": meta.get("negative_prompt", "")}  # fmt: skip


def load_suite_pipeline(path: Path, device: str = "cpu", shift: float | None = None):
    """The model's ``WanImageToVideoPipeline`` in float32 on ``device`` (its scheduler's shift replaced if given)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from interp.pipelines.organism import load_pipeline

    pipe = load_pipeline(path, device=device)
    pipe.set_progress_bar_config(disable=True)
    if shift is not None:
        pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, shift=shift)
    return pipe


def eval_suite(
    model: str,
    selection: dict[str, list],
    n: int = 16,
    steps: int | None = None,
    guidance: float | None = None,
    shift: float | None = None,
    seed: int = 0,
    batch: int = 32,
    device: str = "cpu",
    keep_samples: bool = True,
    log=None,
    force: bool = False,
) -> SuiteEval:
    """Held-out success per (task, level) of a suite model through :func:`interp.pipelines.evaluate.evaluate` (its
    row-forwards and kept videos checked first, :mod:`interp.budget`; ``force``: run anyway)."""
    from interp.pipelines import evaluate as ev

    path, meta = model_meta(model)
    if not is_suite(meta):
        raise ValueError(f"model {model!r} has no task-suite metadata (interp.json with task: suite)")
    sampler = suite_sampler(meta, steps, guidance, shift)
    jobs = n * sum(len(levels) for levels in selection.values())
    video = int(meta.get("frames", 9)) * int(meta.get("height", 96)) * int(meta.get("width", 96)) * 3
    passes = 2 if float(sampler["guidance"]) > 1 else 1
    Estimate(f"eval of {model}", forwards=jobs * int(sampler["steps"]) * passes,
             memory=(jobs if keep_samples else min(jobs, batch)) * video * 2,
             disk=jobs * video * 2 if keep_samples else 0,
             detail=f"{jobs} samples x {sampler['steps']} steps").check(force)  # fmt: skip
    pipe = load_suite_pipeline(path, device, shift)
    sampler["shift"] = float(pipe.scheduler.config.shift)
    fields = ("videos", "conditions", "tasks", "levels", "instances", "prompts", "scores")
    samples: dict[str, list] = {k: [] for k in fields}

    def keep(chunk, images, prompts, videos, scores):
        if not keep_samples:
            return
        for (name, level, inst), img, p, v, sc in zip(chunk, images, prompts, videos, scores):
            for k, x in zip(samples, (v, img, name, level, inst, p, sc)):
                samples[k].append(x)

    rows = ev.evaluate(pipe, list(selection), n=n, steps=sampler["steps"], guidance=sampler["guidance"], batch=batch,
                       seed=seed, device=device, levels=selection, log=log or (lambda m: None),
                       on_batch=keep)  # fmt: skip
    sampler.update(seed=seed, batch_cfg=True, noise="sample i of the run: torch.Generator().manual_seed(seed + i)",
                   instances="suite.heldout(task, level, n, seed); goalmaze: both targets of n // 2 held-out "
                             "mazes")  # fmt: skip
    return SuiteEval(rows, sampler, samples if keep_samples else {})


def suite_table(rows: list[dict], title: str):
    from rich.table import Table

    table = Table("task", "level", "n", "success", "95% CI", "other goal", title=title)
    for r in rows:
        lo, hi = r["ci95"]
        other = f"{r['reached_other']:.3f}" if "reached_other" in r else ""
        table.add_row(r["task"], str(r["level"]), str(r["n"]), f"{r['success']:.3f}", f"[{lo:.3f}, {hi:.3f}]", other)
    return table


def write_suite_eval(res: SuiteEval, out: str | Path, model: str, n: int) -> Path:
    """``out/eval.json`` (rows and sampler) and, when samples were kept, ``out/samples.h5``."""
    from interp.store.samples import write_suite_samples

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if res.samples and res.samples["videos"]:
        s = res.samples
        write_suite_samples(out / "samples.h5", videos=np.stack(s["videos"]), conditions=np.stack(s["conditions"]),
                            tasks=s["tasks"], levels=s["levels"], instances=s["instances"], prompts=s["prompts"],
                            scores=s["scores"], sampler=res.sampler,
                            attrs={"model": model, "n_per_level": n})  # fmt: skip
    path = out / "eval.json"
    write_atomic(path, json.dumps({"model": model, "n": n, "sampler": res.sampler, "results": res.rows}, indent=1))
    return path


# ---- a pipeline on a folder of VBVR-Bench samples ---------------------------------------------------------------
DEFAULT_SAMPLE_SCORER = "interp.scorers:final_frame"


def eval_samples(model: str, samples: str | Path, out: str | Path, *, scorer: str | None = None,
                 steps: int | None = None, guidance: float | None = None, seed: int = 0, batch: int = 1,
                 device: str = "cpu", force: bool = False, progress: bool = True) -> dict:  # fmt: skip
    """A whole pipeline run on every sample of a VBVR-Bench-style folder (``<sample>/first_frame.png``,
    ``prompt.txt``, optional ``final_frame.png``, ``ground_truth.mp4``): each sample's prompt and first frame through
    the pipeline's own methods (an ``interp capture --samples`` with no sites), the final video scored by ``scorer``
    (default: SSIM / PSNR of the last frame against ``final_frame.png``); returns and writes ``out/eval.json``: the
    mean of each score with its bootstrap 95% interval over samples, and the per-sample scores. The capture with the
    videos is ``out/samples.h5``."""
    from interp.apps.capture import CaptureConfig, capture  # the capture verb (loads diffusers) only when run
    from interp.report import stats as st
    from interp.store import load_cache

    out = Path(out)
    cfg = CaptureConfig(model=model, samples=str(samples), scorer=scorer or DEFAULT_SAMPLE_SCORER, sites=[],
                        steps=steps, guidance=guidance, seed=seed, batch=batch, device=device)  # fmt: skip
    path = capture(cfg, out / "samples.h5", progress=progress, force=force)
    with load_cache(path) as c:
        video = (c.scores or {}).get("video") or {}
        names = list(c.prompts or [])
    scores = {k: np.asarray(v, float) for k, v in video.items()}
    summary = {k: {"mean": (iv := st.mean(v)).est, "ci95": [iv.lo, iv.hi], "n": int(len(v))} for k, v in scores.items()}
    res = {"model": model, "samples": str(samples), "scorer": cfg.scorer, "n": len(names), "scores": summary,
           "per_sample": {k: v.tolist() for k, v in scores.items()}}  # fmt: skip
    write_atomic(out / "eval.json", json.dumps(res, indent=2))
    return res

"""``interp lens``: the x0 lens of a model over (step, block), scored by the task's scorer; ``lens.h5`` and a figure.

Runs the model on ``n`` task instances (or reads a capture holding every ``blocks.*.hook_resid_post``), reads each
block's stream out as x0 (:mod:`interp.lens`), turns it into frames (a pixel-space model's x0 is the video) and
scores every (step, block) video with the scorer (default: the task's own, ``maze`` for maze models: solve rate and
path recall of the last frame). Also the root-mean-square distance of every lens x0 to the model's own, and the check
that the last block's lens is the model's x0 exactly. With ``tuned``, a tuned lens (one affine map per block) is
fitted on ``fit_n`` other instances (``fit_seed``) and scored beside the plain one.

Writes ``OUT/lens.h5`` (:mod:`interp.store.lens`), ``OUT/lens.png`` (step x block heatmaps) and ``OUT/lens.json``
(per step: the first block whose mean score reaches ``threshold``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from interp.inputs import ModelInputs, model_inputs
from interp.lens import (
    LensStep,
    cache_sampler,
    fit_tuned_lens,
    lens_frames,
    lens_from_cache,
    n_blocks,
    pixel_space,
    run_lens,
)
from interp.models import LoadedModel, load_model
from interp.pipelines.components import load_pipeline, read_index
from interp.pipelines.decode import x0_steps
from interp.report.lens import first_readable, lens_figure
from interp.scorers import check_metas, resolve, score_videos, spec_name
from interp.store import load_cache, write_lens
from interp.trajectory import SamplerConfig, TrajectoryInputs

TASK_SCORERS = {"maze": "maze", "goalmaze": "goalmaze", "loopmaze": "loopmaze", "mirror": "mirror",
                "permanence": "permanence"}  # fmt: skip
"""A task model's default scorer, by its ``interp.json`` task."""
FIGURE_SCORES = ("success", "path_recall", "extra_cells")
"""Scores the figure shows when the scorer gives them (the maze scorer's solve rate, path recall and extra cells:
a garbled frame drawn all in trail colour recalls the whole path, and its extra cells say so)."""
RATES = ("success", "path_recall")
"""Scores in [0, 1], higher is better: lens.json gives the first block reaching the threshold for these."""


class LensConfig(BaseModel):
    """One lens run. ``None``: the model's task default (sampler: its interp.json, else 20 steps)."""

    model_config = ConfigDict(extra="forbid")
    model: str
    capture: str | None = None  # read this capture (every blocks.*.hook_resid_post stored) instead of running
    n: int = Field(8, ge=1)  # task instances (a live run)
    size: int | None = None  # maze size
    seed: int = 0  # picks the instances
    noise_seed: int = 0
    steps: int | None = Field(None, ge=1)
    shift: float | None = None
    guidance: float | None = None
    lens_steps: str | list[int] | None = "all"  # steps scored: "all", "every:K", "0,5,9"
    scorer: str | None = None  # 'module:function' (interp.scorers); default: the task's own
    tuned: bool = False
    fit_n: int = Field(8, ge=1)
    fit_seed: int = 1000
    ridge: float = Field(1e-3, ge=0)
    threshold: float = 0.5  # the mean score at which a step's answer counts as readable (lens.json)
    device: str = "cpu"
    model_dtype: str | None = None


def _sampler(loaded: LoadedModel, cfg: LensConfig) -> SamplerConfig:
    s = SamplerConfig.from_task(loaded.task, steps=cfg.steps, shift=cfg.shift, guidance=cfg.guidance)
    return s.model_copy(update={"seed": cfg.noise_seed})


def _scoring(loaded: LoadedModel, cfg: LensConfig, mi: ModelInputs | None, condition_frames):
    """(scorer fn, name, per-sample metas), or None when there is nothing to score with."""
    task = (loaded.task or {}).get("task")
    spec = cfg.scorer or TASK_SCORERS.get(task)
    if spec is None:
        return None
    fn, name = resolve(spec), spec_name(spec)
    b = len(condition_frames) if condition_frames is not None else (mi.latent_shape[0] if mi else 0)
    metas = [{"index": i, "task_meta": loaded.task} for i in range(b)]
    for i, m in enumerate(metas):
        if condition_frames is not None:
            m["first_frame"] = np.asarray(condition_frames[i])
        if mi is not None and mi.instances:
            m["instance"] = mi.instances[i].to_dict()
    check_metas(fn, metas, name=f"scorer {name}")
    return fn, name, metas


def lens(cfg: LensConfig, out: str | Path, *, loaded: LoadedModel | None = None, progress: bool = False) -> dict:
    """Run (or read) the lens of ``cfg`` and write ``out``/lens.h5, lens.png, lens.json; returns lens.json's data."""
    out = Path(out)
    if (out / "lens.h5").exists():
        raise FileExistsError(f"{out / 'lens.h5'} exists; choose another --out or delete it")
    cache = load_cache(cfg.capture) if cfg.capture is not None else None
    c = cache.config if cache is not None else {}
    from_prompts = any(c.get(k) is not None for k in ("prompts", "images", "samples"))
    model_dir = Path(cfg.model)
    index = read_index(model_dir) if (model_dir / "model_index.json").is_file() else {}
    if from_prompts and index.get("expand_timesteps"):
        raise ValueError(f"{cfg.capture}: per-token timesteps (Wan2.2 TI2V expand_timesteps); the lens of a capture "
                         "does not rebuild them")  # fmt: skip
    if loaded is None and from_prompts and cfg.scorer is not None:  # the lens' frames need the pipeline's VAE
        loaded = load_pipeline(cfg.model, device=cfg.device)
    loaded = loaded or load_model(cfg.model, cfg.device, cfg.model_dtype)
    blocks = n_blocks(loaded)
    tuned = None
    if cache is not None:
        sampler = cache_sampler(cache)
        mi = None
        if not from_prompts:
            mi = model_inputs(loaded, int(c.get("batch", 1)), int(c.get("seed", 0)), frames=c.get("frames"),
                              height=c.get("height"), width=c.get("width"), text_len=c.get("text_len"))  # fmt: skip
        elif loaded.adapter.readout_reads_text:
            raise ValueError(f"{cfg.capture}: a {loaded.family} capture from prompts; the lens needs its text "
                             "conditioning, which a prompt capture does not store")  # fmt: skip
        condition_frames = cache.condition_frames if cache.condition_frames is not None else cache.images
        steps = x0_steps(cfg.lens_steps, sampler.steps)
    else:
        sampler = _sampler(loaded, cfg)
        mi = model_inputs(loaded, cfg.n, cfg.seed, size=cfg.size)
        condition_frames = None if mi.condition_frames is None else mi.condition_frames.numpy()
        steps = x0_steps(cfg.lens_steps, sampler.steps)
    scoring = _scoring(loaded, cfg, mi, condition_frames)
    if scoring is not None and not _has_frames(loaded):
        raise ValueError(f"{cfg.model}: its x0 is a latent; scoring the lens needs a pixel-space task model (or "
                         "leave --scorer unset for the x0 distances only)")  # fmt: skip
    if cfg.tuned:
        fit_mi = model_inputs(loaded, cfg.fit_n, cfg.fit_seed, size=cfg.size)
        tuned = fit_tuned_lens(loaded, _traj_inputs(fit_mi), sampler, ridge=cfg.ridge)

    variants = ("plain", "tuned") if tuned is not None else ("plain",)
    rows: dict[str, dict[str, list]] = {v: {} for v in variants}
    model_rows: dict[str, list] = {}
    exact: list[bool] = []
    timesteps: list[float] = []

    def score(x0: torch.Tensor) -> dict[str, np.ndarray]:
        """(blocks, B, ...) x0 -> score name -> (blocks, B)."""
        got: dict[str, list] = {}
        videos = lens_frames(loaded, x0.flatten(0, 1))
        videos = videos.reshape(x0.shape[0], x0.shape[1], *videos.shape[1:])
        for blk in videos:
            for k, v in _score_rows(scoring, blk).items():
                got.setdefault(k, []).append(v)
        return {k: np.stack(v) for k, v in got.items()}

    def on_lens(ls: LensStep) -> None:
        if ls.step not in steps:
            return
        exact.append(bool(torch.equal(ls.x0[-1], ls.model_x0)))
        timesteps.append(ls.timestep)
        for variant in variants:
            x0 = ls.x0 if variant == "plain" else ls.tuned
            named = {"x0_rmse": _rmse(x0, ls.model_x0)}
            if scoring is not None:
                named.update(score(x0))
            for k, v in named.items():
                rows[variant].setdefault(k, []).append(v)
        if scoring is not None:
            for k, v in score(ls.model_x0[None]).items():
                model_rows.setdefault(k, []).append(v[0])

    if cache is not None:
        text = None if mi is None else mi.text
        for ls in lens_from_cache(loaded, cache, text=text, tuned=tuned, steps=steps):
            on_lens(ls)
        cache.close()
    else:
        run_lens(loaded, _traj_inputs(mi), sampler, on_lens=on_lens, tuned=tuned, progress=progress)

    scores = {v: {k: np.stack(a) for k, a in named.items()} for v, named in rows.items()}
    model_scores = {k: np.stack(a) for k, a in model_rows.items()}
    summary = {
        "model": cfg.model, "family": loaded.family, "steps": steps, "timesteps": timesteps, "blocks": blocks,
        "samples": int(scores["plain"]["x0_rmse"].shape[-1]), "scorer": None if scoring is None else scoring[1],
        "exact": bool(all(exact)), "threshold": cfg.threshold,
    }  # fmt: skip
    shown = [k for k in FIGURE_SCORES if k in scores["plain"]] or [k for k in scores["plain"] if k != "x0_rmse"][:2]
    for v in variants:
        summary[v] = {k: {"mean": scores[v][k].mean(-1).tolist()} for k in shown}
        for k in shown:
            if k in RATES:
                summary[v][k]["first_readable_block"] = first_readable(scores[v][k].mean(-1), cfg.threshold)
        summary[v]["x0_rmse"] = {"mean": scores[v]["x0_rmse"].mean(-1).tolist()}
    summary["model_x0"] = {k: model_scores[k].mean(-1).tolist() for k in shown}
    out.mkdir(parents=True, exist_ok=True)
    write_lens(out / "lens.h5", scores=scores, exact=np.array(exact), model_scores=model_scores,
               config=cfg.model_dump(mode="json"), model=cfg.model, family=loaded.family,
               scorer=summary["scorer"] or "", sampler=sampler.describe(loaded.scheduler), steps=steps,
               timesteps=timesteps, blocks=blocks, samples=summary["samples"])  # fmt: skip
    lens_figure(out / "lens.h5", out / "lens.png", scores=shown or ["x0_rmse"])
    (out / "lens.json").write_text(json.dumps(summary, indent=1))
    return summary


def _traj_inputs(mi: ModelInputs) -> TrajectoryInputs:
    return TrajectoryInputs(mi.text, mi.latent_shape, condition=mi.condition)


def _has_frames(loaded: LoadedModel) -> bool:
    return pixel_space(loaded) or getattr(loaded, "vae", None) is not None


def _rmse(x0: torch.Tensor, ref: torch.Tensor) -> np.ndarray:
    """(blocks, B, ...) vs (B, ...) -> (blocks, B)."""
    d = (x0.float() - ref.float()[None]) ** 2
    return d.flatten(2).mean(-1).sqrt().cpu().numpy()


def _score_rows(scoring, videos) -> dict[str, np.ndarray]:
    fn, name, metas = scoring
    rows = score_videos(fn, videos, metas, name=f"scorer {name}")
    return {k: np.array([r[k] for r in rows], np.float64) for k in sorted(rows[0])}

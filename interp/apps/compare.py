"""Layer specialization across models on the same mazes, and across the tasks of a suite model: per-layer profiles
on a normalized depth axis (0 = first block, 1 = last), CKA between layers and across models, and a verdict on
whether the specialization is task-agnostic.

A suite model (``interp.json`` ``task: suite``, the organism) gives one profile per task of ``tasks`` (named
``organism/loopmaze``, ...): held-out instances of the task's level in ``levels`` through the whole pipeline (prompt,
first frame, classifier-free guidance), all from one noise, success = the task's pixel scorer; its probes read the
task's ``layout`` and ``answer`` labels (:func:`interp.tasks.answers.probe_labels`; columns ``wall_probe`` and
``path_probe``), its swap flip is an output the scorer accepts for the other instance.

For every model (video DiTs through :mod:`interp.trajectory`, maze LMs through :mod:`interp.lm.run`), on the same
held-out mazes ``eval_mazes(size, n, seed)``:

- ``skip``: skip damage of block i = clean exact-solve rate - solve rate with block i the identity (DiT: at every
  denoising step; LM: at every position of every decoding forward).
- ``swap``: layer i's value comes from another maze (maze b+1 for maze b). Swap flip rate = share of mazes whose
  output becomes the *other* maze's exact solution; swap damage = clean rate - share that still solve their own maze.
  DiT: ``blocks.i.{swap_site}`` (default ``hook_attn_out``, the paper's swap of a block's attention) at every token
  over the first ``swap_steps`` of the denoising steps (default half), all rows sharing one noise; LM:
  ``blocks.i.hook_resid_post`` at the grid tokens (the maze input), in every decoding forward; the answer positions
  stay the model's own.
- ``probe``: linear-probe test accuracy (``probes.run_probes``, no control task) of per-block labels ``wall`` and
  ``path`` (on the solution; open blocks only) from ``blocks.i.hook_resid_post``. DiT: at step ``probe_step``, tokens
  of every frame; LM: at the grid tokens (causal: a block's token sees only the blocks before it in raster order).
- ``cka``: linear CKA between the layers of one model, and across models, on tokens aligned by (maze, block):
  DiT tokens of frame ``cka_frame`` at step ``probe_step``, LM grid tokens (across models only where the inputs are
  the same: the maze models with each other; a suite task's profile with itself).

Is the specialization task-agnostic (:data:`AGNOSTIC_RULE`)? The Spearman rank correlation of two per-depth
profiles (on a common depth grid), with a 95% percentile bootstrap interval over samples (each profile's samples
resampled; paired when the two ran on the same inputs), for every pair of profiles; the verdict reads the skip-damage
profiles of the suite model's tasks.
"""

from __future__ import annotations

import csv
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from scipy.stats import rankdata

from interp.adapters import TextConditioning
from interp.apps.evaluate import sample_noise
from interp.budget import Estimate
from interp.interventions.skip import Skip
from interp.interventions.swap import Swap
from interp.lens import lens_frames, run_lens
from interp.lm import is_lm_path
from interp.lm import tokens as T
from interp.lm.model import load_lm
from interp.lm.run import generate, grid_acts, resid_sites, run_interventions
from interp.models import load_model
from interp.pipelines.components import SUPPORTED_PIPELINES, load_pipeline
from interp.pipelines.decode import decode_video
from interp.pipelines.inputs import encode_inputs
from interp.report import stats as st
from interp.report.save import save_figure
from interp.store.atomic import write_atomic
from interp.store.plain import write_plain
from interp.tasks import answers, maze_inputs, suite
from interp.tasks import maze as mz
from interp.tasks.maze_score import score_batch
from interp.trace import ForwardPlan
from interp.trajectory import EVAL_FALLBACK, SamplerConfig, TrajectoryInputs, run_trajectory
from probes import ProbeConfig, run_probes

MEASURES = ("skip", "swap", "probe", "cka", "lens")
COLUMNS = ("skip_damage", "swap_flip", "swap_damage", "wall_probe", "path_probe", "lens_solve")
TITLES = {"skip_damage": "skip damage (clean - skipped)", "swap_flip": "swap flip rate (to the other maze)",
          "swap_damage": "swap damage (clean - own solve)", "wall_probe": "wall probe accuracy",
          "path_probe": "path probe accuracy", "lens_solve": "x0 lens solve rate (block's readout)"}  # fmt: skip


class CompareConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: list[str]
    size: int = 5
    n: int = Field(32, ge=1)
    seed: int = Field(0, ge=0)
    noise_seed: int = Field(0, ge=0)
    steps: int = Field(20, ge=1)
    probe_step: int = Field(0, ge=0)
    cka_frame: int = -1
    swap_site: str = "hook_attn_out"  # DiT: which hook of block i carries the other maze's value
    swap_steps: float = Field(0.5, gt=0.0, le=1.0)  # DiT: the first fraction of the steps (at least one) it is swapped
    measures: list[str] = list(MEASURES)
    device: str = "cpu"
    probe_bootstrap: int = Field(20, ge=1)
    tokens_per_sample: int = Field(64, ge=0)
    layers: list[int] | None = None  # the blocks profiled (default: every block of each model)
    layer_stride: int | None = Field(None, ge=1)  # or every k-th block of each model from block 0, and its last
    tasks: list[str] = ["loopmaze", "mirror"]  # a suite model: one profile per task
    # a suite task's level: where the organism is neither at ceiling nor at the floor (its eval.json: loopmaze 4
    # 0.77, mirror 3 0.81, goalmaze 4 0.93)
    levels: dict[str, int] = {"loopmaze": 4, "mirror": 3, "goalmaze": 4}

    @model_validator(mode="after")
    def _one_layer_choice(self):
        if self.layers is not None and self.layer_stride is not None:
            raise ValueError(
                "give layers (the same blocks of every model) or layer_stride (every k-th block of each "
                "model, and its last), not both"
            )
        return self

    def profiled_layers(self, n_layers: int) -> list[int]:
        """The blocks profiled of a model with ``n_layers`` blocks."""
        if self.layer_stride is not None:
            return sorted(set(range(0, n_layers, self.layer_stride)) | {n_layers - 1})
        return list(range(n_layers)) if self.layers is None else list(self.layers)

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v):
        bad = [t for t in v if t not in answers.ANSWER_TASKS]
        if bad:
            raise ValueError(f"tasks {bad} have no probe labels; choose from {list(answers.ANSWER_TASKS)}")
        return v

    @field_validator("measures")
    @classmethod
    def _measures(cls, v):
        bad = [m for m in v if m not in MEASURES]
        if bad:
            raise ValueError(f"unknown measures {bad}; choose from {list(MEASURES)}")
        return v

    @field_validator("size")
    @classmethod
    def _size(cls, v):
        if v not in mz.SIZES:
            raise ValueError(f"maze size must be one of {list(mz.SIZES)}")
        return v


@dataclass
class Profile:
    model: str
    family: str
    n_layers: int  # the model's blocks
    clean: float  # exact solve rate of the unintervened model on these inputs
    values: dict[str, np.ndarray] = field(default_factory=dict)  # column -> (profiled layers,)
    samples: dict[str, np.ndarray] = field(default_factory=dict)  # column -> (profiled layers, samples)
    layers: list[int] | None = None  # the profiled blocks (None: every block)
    inputs: str = ""  # what it ran on (profiles with the same inputs are paired: same samples, same tokens)
    source: str = ""  # the model it profiles (a suite model's tasks share it)
    task: str | None = None  # a suite model's task

    @property
    def profiled(self) -> list[int]:
        return list(range(self.n_layers)) if self.layers is None else list(self.layers)

    @property
    def depth(self) -> np.ndarray:
        return np.asarray(self.profiled, float) / max(self.n_layers - 1, 1)


@dataclass
class CompareResult:
    profiles: list[Profile]
    cka: dict[str, np.ndarray]  # "A|B" -> (layers of A, layers of B); "A|A" within a model
    rows: list[dict]
    markdown: str
    figure: Path | None = None
    agnostic: dict = field(default_factory=dict)  # the task-agnostic verdict and every pair's profile correlations


# ---------------------------------------------------------------------------------------------------------------
# CKA


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) of two (examples, features) matrices with the same rows."""
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    xy = (y.T @ x).pow(2).sum()
    xx = (x.T @ x).pow(2).sum().sqrt()
    yy = (y.T @ y).pow(2).sum().sqrt()
    return float(xy / (xx * yy)) if xx > 0 and yy > 0 else float("nan")


def cka_matrix(a: list[torch.Tensor], b: list[torch.Tensor]) -> np.ndarray:
    return np.array([[linear_cka(x, y) for y in b] for x in a])


# ---------------------------------------------------------------------------------------------------------------
# DiTs


def _stream_reads(n_layers: int, step: int):
    """``(plan, on_step, got)`` for a trajectory that reads every block's ``hook_resid_post`` at ``step``; ``got``
    fills with {block: value} of the first (conditional) branch, float32 on the CPU."""
    sites = [f"blocks.{i}.hook_resid_post" for i in range(n_layers)]
    got: dict[int, torch.Tensor] = {}

    def plan(branch, s):
        return ForwardPlan(read=sites) if s == step else ForwardPlan()

    def keep(rec):
        if rec.step == step:
            acts = rec.branches[next(iter(rec.branches))]  # the conditional branch
            got.update({i: acts[site].float().cpu() for i, site in enumerate(sites)})

    return plan, keep, got


def _swap_plan(cfg: CompareConfig, layer: int):
    """The per-forward plan that puts row b+1's ``swap_site`` of block ``layer`` into row b (the next input, same
    noise) over the first ``swap_steps`` of the steps."""
    edit = {f"blocks.{layer}.{cfg.swap_site}": lambda name, step, v: v.roll(-1, 0)}
    last = max(1, round(cfg.swap_steps * cfg.steps))
    return lambda branch, s: ForwardPlan(edit=edit) if s < last else ForwardPlan()


class _DiT:
    def __init__(self, name: str, cfg: CompareConfig):
        self.cfg = cfg
        self.loaded = load_model(name, cfg.device)
        if (self.loaded.task or {}).get("task") != "maze":
            raise ValueError(f"{name}: no maze task metadata (interp.json); compare needs models trained on mazes")
        self.name, self.family, self.source = name, self.loaded.family, name
        self.n_layers = len(self.loaded.adapter.blocks(self.loaded.transformer))

    def _inputs(self, mazes) -> tuple[TrajectoryInputs, SamplerConfig, np.ndarray]:
        """All mazes in one batch, from the same noise (swap needs both); the sampler; the condition frames."""
        meta = self.loaded.task
        ti = maze_inputs(meta, mazes)
        noise = sample_noise(ti.latent_shape[1:], self.cfg.noise_seed, 0)
        latents = noise[None].expand(len(mazes), *noise.shape).clone()
        inputs = TrajectoryInputs(TextConditioning(ti.encoder_hidden_states), ti.latent_shape, condition=ti.condition,
                                  latents=latents)  # fmt: skip
        sc = SamplerConfig.from_task(meta, steps=self.cfg.steps, fallback=EVAL_FALLBACK)
        return inputs, sc, ti.condition_frames.numpy()

    def _run(self, mazes, plan=None, on_step=None) -> np.ndarray:
        """Final videos (K, F, H, W, 3) uint8 and the condition frames."""
        inputs, sc, cond = self._inputs(mazes)
        traj = run_trajectory(self.loaded, inputs, sc, plan=plan, on_step=on_step, keep=False)
        return mz.from_model_space(traj.final.cpu()).numpy(), cond

    def _solved(self, video, cond) -> np.ndarray:
        return np.array([s.success for s in score_batch(video, cond)], float)

    def clean_and_acts(self, mazes) -> tuple[np.ndarray, dict[int, torch.Tensor]]:
        plan, keep, got = _stream_reads(self.n_layers, self.cfg.probe_step)
        video, cond = self._run(mazes, plan, keep)
        return self._solved(video, cond), got

    def skip(self, mazes, layer: int) -> np.ndarray:
        video, cond = self._run(mazes, lambda b, s: ForwardPlan(skip=[f"blocks.{layer}"]))
        return self._solved(video, cond)

    def swap(self, mazes, layer: int) -> np.ndarray:
        """(2, mazes): flipped, own solved, with block ``layer``'s ``swap_site`` from maze b+1 over the first
        steps."""
        video, cond = self._run(mazes, _swap_plan(self.cfg, layer))
        return np.stack([self._solved(video, np.roll(cond, -1, axis=0)), self._solved(video, cond)])

    def lens(self, mazes, layers: list[int]) -> np.ndarray:
        """(layers, mazes): does block i's x0-lens readout at ``probe_step`` solve the maze?"""
        inputs, sc, cond = self._inputs(mazes)
        x0 = _lens_x0(self.loaded, inputs, sc, self.cfg.probe_step)
        return np.stack([self._solved(lens_frames(self.loaded, x0[i]), cond) for i in layers])

    def grid_frames(self, mazes) -> int:
        return int(self.loaded.task["frames"])

    def probe(self, acts, mazes, frames: int, tmp: Path) -> dict[str, np.ndarray]:
        return _probe(acts, mazes, frames, self.cfg, tmp)


class _Suite:
    """One task of a suite model (the organism): held-out instances of one level through the whole pipeline, all
    from one noise (a swap's source shares it), success = the task's pixel scorer."""

    def __init__(self, name: str, pm, task: str, cfg: CompareConfig):
        self.cfg, self.pm = cfg, pm
        self.name, self.family, self.source = f"{name}/{task}", pm.family, name
        self.n_layers = len(pm.adapter.blocks(pm.transformer))
        self.task_name, self.task = task, suite.get_task(task)
        if task not in cfg.levels:
            raise ValueError(f"no level for task {task!r}: set levels.{task} (levels: {list(self.task.levels)})")
        self.level = cfg.levels[task]
        suite.level_index(self.task, self.level)
        self.items = suite.heldout(self.task, self.level, cfg.n, cfg.seed)
        meta = pm.task
        self.sampler = SamplerConfig.from_task(meta, steps=cfg.steps, fallback=EVAL_FALLBACK)
        pi = encode_inputs(pm, [self.task.prompt(x) for x in self.items],
                           images=[self.task.render(x)[0] for x in self.items],
                           negative_prompt=meta.get("negative_prompt"), num_frames=int(meta["frames"]),
                           height=int(meta["height"]), width=int(meta["width"]),
                           guidance_scale=self.sampler.guidance_scale, seed=cfg.noise_seed)  # fmt: skip
        ti = pi.trajectory
        ti.latents = ti.latents[:1].expand_as(ti.latents).clone()  # one noise for every instance
        self.inputs = ti

    def _run(self, plan=None, on_step=None) -> np.ndarray:
        traj = run_trajectory(self.pm, self.inputs, self.sampler, plan=plan, on_step=on_step, keep=False)
        return decode_video(self.pm, traj.final)

    def _solved(self, videos, items) -> np.ndarray:
        return np.array([self.task.score(v, x)["success"] for v, x in zip(videos, items)], float)

    def clean_and_acts(self, _items) -> tuple[np.ndarray, dict[int, torch.Tensor]]:
        plan, keep, got = _stream_reads(self.n_layers, self.cfg.probe_step)
        return self._solved(self._run(plan, keep), self.items), got

    def skip(self, _items, layer: int) -> np.ndarray:
        return self._solved(self._run(lambda b, s: ForwardPlan(skip=[f"blocks.{layer}"])), self.items)

    def swap(self, _items, layer: int) -> np.ndarray:
        """(2, instances): solves instance b+1 and not b, solves its own, with block ``layer``'s ``swap_site`` from
        instance b+1 over the first steps."""
        video = self._run(_swap_plan(self.cfg, layer))
        own = self._solved(video, self.items)
        other = self._solved(video, self.items[1:] + self.items[:1])
        return np.stack([other * (1 - own), own])

    def lens(self, _items, layers: list[int]) -> np.ndarray:
        """(layers, instances): does block i's x0-lens readout at ``probe_step``, decoded by the VAE, pass the
        task's scorer?"""
        x0 = _lens_x0(self.pm, self.inputs, self.sampler, self.cfg.probe_step)
        return np.stack([self._solved(lens_frames(self.pm, x0[i]), self.items) for i in layers])

    def grid_frames(self, _items) -> int:
        return int(self.inputs.latent_shape[2])

    def probe(self, acts, _items, frames: int, tmp: Path) -> dict[str, np.ndarray]:
        labels = [answers.probe_labels(self.task_name, x, frames) for x in self.items]
        arrays = {k: np.stack([lab[k] for lab in labels]) for k in ("layout", "answer")}
        return _probe(acts, None, frames, self.cfg, tmp, arrays=arrays, side=suite.GRID)


class _LM:
    def __init__(self, name: str, cfg: CompareConfig):
        self.cfg = cfg
        self.loaded = load_lm(name, cfg.device)
        self.name, self.family, self.n_layers, self.source = name, "lm", self.loaded.n_layers, name

    def clean_and_acts(self, mazes):
        self.toks, outs = generate(self.loaded, mazes)
        rate = np.array([T.walk(m, a)["exact"] for m, a in zip(mazes, outs)], float)
        acts = grid_acts(self.loaded, mazes, resid_sites(self.loaded))
        return rate, {i: acts[f"blocks.{i}.hook_resid_post"] for i in range(self.n_layers)}

    def skip(self, mazes, layer: int) -> np.ndarray:
        return np.asarray(run_interventions(self.loaded, mazes, [Skip(site=f"blocks.{layer}")], self.toks)["exact"],
                          float)  # fmt: skip

    def swap(self, mazes, layer: int) -> np.ndarray:
        """(2, mazes): flipped, own exact, with layer ``layer``'s residual at the grid tokens from maze b+1."""
        spec = Swap(site=f"blocks.{layer}.hook_resid_post", tokens=":")
        r = run_interventions(self.loaded, mazes, [spec], self.toks)
        return np.stack([np.asarray(r["flip"], float), np.asarray(r["exact"], float)])

    def grid_frames(self, mazes) -> int:
        return 1

    def probe(self, acts, mazes, frames: int, tmp: Path) -> dict[str, np.ndarray]:
        return _probe(acts, mazes, frames, self.cfg, tmp)


def _lens_x0(loaded, inputs: TrajectoryInputs, sampler: SamplerConfig, step: int) -> torch.Tensor:
    """The x0 lens (:func:`interp.lens.run_lens`) of one run at ``step``: (blocks, batch, C, F, H, W)."""
    got = {}
    run_lens(loaded, inputs, sampler, on_lens=lambda ls: got.setdefault("x0", ls.x0) if ls.step == step else None)
    return got["x0"]


def _open(name: str, cfg: CompareConfig) -> list:
    """The profiled units of one model: a maze LM, a maze DiT, or one per task of a suite model."""
    if is_lm_path(name):
        return [_LM(name, cfg)]
    meta = load_model(name, "cpu").task or {}  # the metadata alone decides (interp.json)
    if meta.get("task") == "suite":
        pm = load_pipeline(name, device=cfg.device, pipeline_classes=SUPPORTED_PIPELINES)
        return [_Suite(name, pm, t, cfg) for t in cfg.tasks]
    return [_DiT(name, cfg)]


# ---------------------------------------------------------------------------------------------------------------
# probes


def _probe(acts: dict[int, torch.Tensor], mazes, frames: int, cfg: CompareConfig, tmp: Path,
           arrays: dict[str, np.ndarray] | None = None, side: int | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """wall / path probe test accuracy per layer (``acts``' keys, in order), through probes.run_probes on a
    plain-layout capture; ``arrays``: the labels themselves (a suite task's ``layout`` and ``answer``, reported as
    the wall and path columns)."""
    s = side or mazes[0].side
    path = tmp / "acts.h5"
    write_plain(
        path,
        {f"blocks.{i}.hook_resid_post": v.numpy()[None] for i, v in acts.items()},
        instances=None if mazes is None else [json.dumps(m.to_dict()) for m in mazes],
        grid=(frames, s, s),
    )
    names = list(arrays) if arrays else ["wall", "path"]
    pc = ProbeConfig(labels=names, sites=["blocks.*.hook_resid_post"], control="none",
                     bootstrap=cfg.probe_bootstrap, tokens_per_sample=cfg.tokens_per_sample, seed=cfg.seed)  # fmt: skip
    res = run_probes(path, pc, arrays=arrays, progress=False)
    layers = sorted(acts)
    order = [layers.index(int(site.split(".")[1])) for site in res.sites]
    out = {}
    for label, column in zip(names, ("wall_probe", "path_probe")):
        acc = res.labels[label].metrics["accuracy"][0, 0]
        v = np.full(len(acts), np.nan)
        v[order] = acc
        out[column] = v
    return out


# ---------------------------------------------------------------------------------------------------------------
# the comparison


def _cka_tokens(acts: dict[int, torch.Tensor], frames: int, frame: int, side: int) -> list[torch.Tensor]:
    """Per layer (mazes * blocks, d): the tokens of one frame, ordered (maze, block)."""
    out = []
    for i in sorted(acts):
        v = acts[i].reshape(acts[i].shape[0], frames, side * side, -1)[:, frame]
        out.append(v.reshape(-1, v.shape[-1]))
    return out


def compare(cfg: CompareConfig, out: str | Path | None = None, progress: bool = True,
            force: bool = False) -> CompareResult:  # fmt: skip
    """Profiles and CKA for ``cfg.models`` (a suite model: one profile per task of ``cfg.tasks``) and the
    task-agnostic verdict; with ``out``: profiles.csv / .json / .md, cka.json, compare.png. The row-forwards (per
    profile: the clean run, one per layer for skip, one per layer for swap) are checked first (:mod:`interp.budget`;
    ``force``: run anyway)."""
    Estimate(f"compare of {len(cfg.models)} models", forwards=cfg.n * cfg.steps * len(cfg.models),
             detail=f"{cfg.n} mazes x {cfg.steps} steps, the clean runs alone").check(force)  # fmt: skip
    mazes = mz.eval_mazes(cfg.size, cfg.n, cfg.seed)
    profiles, tokens = [], {}
    for name in cfg.models:
        for m in _open(name, cfg):
            profiles.append(_profile(m, mazes, cfg, tokens, force, progress))
    cka: dict[str, np.ndarray] = {}
    names = list(tokens)
    for i, a in enumerate(names):
        for b in names[i:]:
            (ia, ta), (ib, tb) = tokens[a], tokens[b]
            if a == b or (ia == ib and ta[0].shape[0] == tb[0].shape[0]):  # across models: the same inputs only
                cka[f"{a}|{b}"] = cka_matrix(ta, tb)
    rows = table_rows(profiles, cka)
    agn = agnostic(profiles, cka)
    md = markdown(cfg, profiles, cka, rows, agn)
    res = CompareResult(profiles, cka, rows, md, agnostic=agn)
    if out is not None:
        res.figure = write(res, cfg, Path(out))
    return res


def _profile(m, mazes, cfg: CompareConfig, tokens: dict, force: bool, progress: bool) -> Profile:
    """One unit's profile (and its CKA tokens into ``tokens``)."""
    suite_unit = isinstance(m, _Suite)
    items = m.items if suite_unit else mazes
    layers = cfg.profiled_layers(m.n_layers)
    bad = [i for i in layers if not 0 <= i < m.n_layers]
    if bad:
        raise ValueError(f"layers {bad} outside {m.name}'s blocks 0..{m.n_layers - 1}")
    per_layer = ("skip" in cfg.measures) + ("swap" in cfg.measures)
    steps = 1 if m.family == "lm" else cfg.steps
    what = f"{m.task_name} level {m.level} instances" if suite_unit else "mazes"
    Estimate(f"compare of {m.name}", forwards=cfg.n * steps * (1 + per_layer * len(layers)),
             detail=f"{cfg.n} {what} x {steps} steps x (1 + {per_layer} x {len(layers)} layers)",
             ).check(force)  # fmt: skip
    log = (lambda msg: print(f"[compare] {m.name}: {msg}", flush=True)) if progress else (lambda msg: None)
    clean, acts = m.clean_and_acts(items)
    log(f"clean success rate {clean.mean():.3f} ({m.n_layers} blocks)")
    inputs = (f"{m.task_name} level {m.level}, n {cfg.n}, seed {cfg.seed}" if suite_unit
              else f"mazes {cfg.size}x{cfg.size}, n {cfg.n}, seed {cfg.seed}")  # fmt: skip
    p = Profile(m.name, m.family, m.n_layers, float(clean.mean()), layers=layers, inputs=inputs,
                source=m.source, task=m.task_name if suite_unit else None)  # fmt: skip
    if "skip" in cfg.measures:
        p.samples["skip_damage"] = clean[None] - _per_layer(m.skip, items, layers, "skip", log)
        log("skip " + " ".join(f"{x:.2f}" for x in p.samples["skip_damage"].mean(1)))
    if "swap" in cfg.measures:
        flip_own = _per_layer(m.swap, items, layers, "swap (flip, own solve)", log)  # (layers, 2, samples)
        p.samples["swap_flip"], p.samples["swap_damage"] = flip_own[:, 0], clean[None] - flip_own[:, 1]
        log("swap flip " + " ".join(f"{x:.2f}" for x in p.samples["swap_flip"].mean(1)))
    p.values.update({k: v.mean(1) for k, v in p.samples.items()})
    frames = m.grid_frames(items)
    kept = {i: acts[i] for i in layers}
    if "probe" in cfg.measures:
        with tempfile.TemporaryDirectory() as tmp:
            p.values.update(m.probe(kept, items, frames, Path(tmp)))
        log("wall " + " ".join(f"{x:.2f}" for x in p.values["wall_probe"]))
    if "lens" in cfg.measures and hasattr(m, "lens"):  # DiTs (an LM's logit lens is another measure)
        p.samples["lens_solve"] = np.asarray(m.lens(items, layers), float)
        p.values["lens_solve"] = p.samples["lens_solve"].mean(1)
        log("lens " + " ".join(f"{x:.2f}" for x in p.values["lens_solve"]))
    if "cka" in cfg.measures:
        side = suite.GRID if suite_unit else mazes[0].side
        tokens[m.name] = (inputs, _cka_tokens(kept, frames, cfg.cka_frame % frames, side))
    return p


def _per_layer(measure, items, layers: list[int], what: str, log) -> np.ndarray:
    """``measure(items, i)`` (per-sample values, or a stack of them) for every layer of ``layers``, logging each
    mean as it comes (a CPU sweep takes minutes)."""
    values = []
    for k, i in enumerate(layers):
        t0 = time.perf_counter()
        values.append(np.asarray(measure(items, i), float))
        shown = ", ".join(f"{v:.3f}" for v in np.atleast_1d(values[-1].mean(-1)))
        log(f"{what} layer {i} ({k + 1}/{len(layers)}): {shown} ({time.perf_counter() - t0:.1f} s)")
    return np.array(values)


# ---------------------------------------------------------------------------------------------------------------
# is the specialization task-agnostic?

AGNOSTIC_COLUMN = "skip_damage"
AGNOSTIC_STRONG = 0.5
AGNOSTIC_RULE = (
    "rho = Spearman rank correlation of two per-depth skip-damage profiles (each resampled onto a common depth grid "
    "of the shorter profile's length), with a 95% percentile bootstrap interval over samples (each profile's "
    f"samples resampled, {st.N_BOOT} resamples, seed {st.SEED}; paired when both ran on the same inputs); null: "
    f"rho = 0 (no shared depth profile). Task-agnostic holds when every pair of the suite model's tasks has rho >= "
    f"{AGNOSTIC_STRONG} with its interval above 0; partly when every pair's interval is above 0; does not hold when "
    "some pair's interval lies at or below 0; else not enough samples; not measured with fewer than two tasks or a "
    "flat profile (no block's skip costs anything: rho undefined)"
)


def _grid(n: int, k: int) -> np.ndarray:
    """(n, k) linear interpolation of an n-point profile over depth onto k evenly spaced depths."""
    eye = np.eye(n)
    return np.stack([np.interp(np.linspace(0, 1, k), np.linspace(0, 1, n), e) for e in eye])


def _rho_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair of two (rows, depths) arrays on a common depth grid (the shorter's); NaN where
    a row is flat."""
    k = min(a.shape[1], b.shape[1])
    a, b = a @ _grid(a.shape[1], k), b @ _grid(b.shape[1], k)
    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    ra, rb = ra - ra.mean(1, keepdims=True), rb - rb.mean(1, keepdims=True)
    den = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    flat = (np.ptp(a, 1) == 0) | (np.ptp(b, 1) == 0) | np.isnan(a).any(1) | np.isnan(b).any(1) | (k < 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(flat, np.nan, (ra * rb).sum(1) / np.where(den > 0, den, 1))


def spearman(a, b) -> float:
    """Spearman's rho of two profiles over depth (the longer resampled onto the shorter's grid); NaN when one is
    flat."""
    return float(_rho_rows(np.asarray(a, float)[None], np.asarray(b, float)[None])[0])


def profile_corr(a: np.ndarray, b: np.ndarray, paired: bool = False) -> st.Interval:
    """rho of two per-sample profiles (layers, samples) with a percentile bootstrap interval over samples."""
    est = spearman(a.mean(1), b.mean(1))
    rng = np.random.default_rng(st.SEED)
    na, nb = a.shape[1], b.shape[1]
    ia = rng.integers(0, na, (st.N_BOOT, na))
    ib = ia if paired and na == nb else rng.integers(0, nb, (st.N_BOOT, nb))
    reps = _rho_rows(a[:, ia].mean(2).T, b[:, ib].mean(2).T)
    reps = reps[~np.isnan(reps)]
    if np.isnan(est) or len(reps) < st.N_BOOT // 2:  # mostly flat resamples: no interval
        return st.Interval(est, float("nan"), float("nan"), min(na, nb))
    lo, hi = np.quantile(reps, [(1 - st.LEVEL) / 2, 1 - (1 - st.LEVEL) / 2])
    return st.Interval(est, float(lo), float(hi), min(na, nb))


def agnostic_verdict(pairs: list[st.Interval]) -> str:
    """The verdict of :data:`AGNOSTIC_RULE` from the suite tasks' pairwise intervals."""
    if not pairs:
        return "not measured (fewer than two tasks of a suite model)"
    if any(np.isnan(iv.est) or np.isnan(iv.lo) for iv in pairs):
        return "not measured (a flat profile: rho undefined)"
    if all(iv.lo > 0 for iv in pairs):
        return "holds" if all(iv.est >= AGNOSTIC_STRONG for iv in pairs) else "partly"
    if any(iv.hi <= 0 for iv in pairs):
        return "does not hold"
    return "not enough samples"


def agnostic(profiles: list[Profile], cka: dict[str, np.ndarray] | None = None) -> dict:
    """Every pair of profiles' rank correlations per column (with an interval where per-sample values exist), and
    the verdict: do the suite model's tasks share one skip-damage profile over depth?"""
    pairs = []
    for i, a in enumerate(profiles):
        for b in profiles[i + 1 :]:
            row = {"a": a.model, "b": b.model, "tasks_of_one_model": a.task is not None and b.task is not None
                   and (a.source or a.model) == (b.source or b.model)}  # fmt: skip
            for c in COLUMNS + ("cka_next",):
                va, vb = _column(a, c, cka), _column(b, c, cka)
                if va is None or vb is None:
                    continue
                if c in a.samples and c in b.samples:
                    iv = profile_corr(a.samples[c], b.samples[c], paired=a.inputs == b.inputs)
                    row[c] = {"rho": iv.est, "lo": iv.lo, "hi": iv.hi}
                else:
                    row[c] = {"rho": spearman(va, vb), "lo": None, "hi": None}
            pairs.append(row)
    tasks = [r for r in pairs if r["tasks_of_one_model"] and AGNOSTIC_COLUMN in r]
    ivs = [st.Interval(r[AGNOSTIC_COLUMN]["rho"], r[AGNOSTIC_COLUMN]["lo"], r[AGNOSTIC_COLUMN]["hi"], 0)
           for r in tasks]  # fmt: skip
    return {"column": AGNOSTIC_COLUMN, "rule": AGNOSTIC_RULE, "verdict": agnostic_verdict(ivs),
            "task_pairs": [f"{r['a']} vs {r['b']}" for r in tasks], "pairs": pairs}  # fmt: skip


def _column(p: Profile, c: str, cka: dict | None) -> np.ndarray | None:
    if c == "cka_next":
        m = (cka or {}).get(f"{p.model}|{p.model}")
        return None if m is None or len(m) < 2 else np.array([m[i, i + 1] for i in range(len(m) - 1)])
    return p.values.get(c)


def table_rows(profiles: list[Profile], cka: dict[str, np.ndarray]) -> list[dict]:
    rows = []
    for p in profiles:
        within = cka.get(f"{p.model}|{p.model}")
        for k, i in enumerate(p.profiled):
            r = {"model": p.model, "family": p.family, "layer": i, "depth": round(float(p.depth[k]), 4),
                 "clean_solve": p.clean}  # fmt: skip
            for c in COLUMNS:
                r[c] = float(p.values[c][k]) if c in p.values else None
            r["cka_next"] = float(within[k, k + 1]) if within is not None and k + 1 < len(within) else None
            rows.append(r)
    return rows


def _f(x) -> str:
    return "" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.2f}"


def _iv(d: dict | None) -> str:
    if d is None:
        return ""
    if np.isnan(d["rho"]):
        return "flat"
    if d.get("lo") is None or np.isnan(d["lo"]):
        return _f(d["rho"])
    return f"{d['rho']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}]"


def agnostic_markdown(agn: dict) -> list[str]:
    """The verdict line, its rule and every pair's rank correlations."""
    pairs = ", ".join(agn["task_pairs"]) or "no pair"
    lines = ["", f"**Is the specialization task-agnostic?** {agn['verdict']} ({pairs})", "",
             f"Rule: {agn['rule']}.", "",
             "| profiles | skip damage rho | swap flip rho | swap damage rho | wall (layout) probe rho | "
             "path (answer) probe rho | x0 lens solve rho | CKA with next rho |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in agn["pairs"]:
        cells = " | ".join(_iv(r.get(c)) for c in COLUMNS + ("cka_next",))
        lines.append(f"| {r['a']} vs {r['b']} | {cells} |")
    return lines


def markdown(cfg: CompareConfig, profiles: list[Profile], cka: dict[str, np.ndarray], rows: list[dict],
             agn: dict | None = None) -> str:  # fmt: skip
    suites = sorted({p.inputs for p in profiles if "/" in p.model})
    lines = [(f"Suite tasks: {cfg.n} held-out instances each ({'; '.join(suites)}), one noise, success = the task's "
              "pixel scorer; probes: the task's layout (wall column) and answer (path column) labels. ") * bool(suites)
             + f"Mazes: {cfg.n} held-out {cfg.size}x{cfg.size} (seed {cfg.seed}); DiTs: {cfg.steps} steps, probes and "
             f"CKA and the x0 lens at step {cfg.probe_step}; DiT swap: {cfg.swap_site} over the first "
             f"{max(1, round(cfg.swap_steps * cfg.steps))} steps.", "",
             "| model | family | blocks | clean solve | peak skip damage (depth) | swap flip > 0.5 (depths) | "
             "wall probe (min-max) | path probe (min-max) | x0 lens solves >= half of clean (first depth) |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for p in profiles:
        v, d = p.values, p.depth
        skip = f"{v['skip_damage'].max():.2f} ({d[int(np.argmax(v['skip_damage']))]:.2f})" if "skip_damage" in v else ""
        if "swap_flip" in v:
            hi = d[v["swap_flip"] > 0.5]
            swap = (f"{hi.min():.2f}-{hi.max():.2f}" if hi.max() > hi.min() else f"{hi[0]:.2f}") if len(hi) else "none"
        else:
            swap = ""
        rng = lambda k: f"{np.nanmin(v[k]):.2f}-{np.nanmax(v[k]):.2f}" if k in v else ""  # noqa: E731
        lens = ""
        if "lens_solve" in v:
            ok = np.flatnonzero(v["lens_solve"] >= 0.5 * p.clean) if p.clean > 0 else []
            lens = f"{d[ok[0]]:.2f} ({v['lens_solve'][ok[0]]:.2f})" if len(ok) else "none"
        lines.append(f"| {p.model} | {p.family} | {p.n_layers} | {p.clean:.2f} | {skip} | {swap} | "
                     f"{rng('wall_probe')} | {rng('path_probe')} | {lens} |")  # fmt: skip
    across = [k for k in cka if k.split("|")[0] != k.split("|")[1]]
    if across:
        lines += ["", "| models | mean CKA along the matched depth (diagonal of the resampled matrix) | max CKA |",
                  "|---|---|---|"]  # fmt: skip
        for k in across:
            m = cka[k]
            la, lb = m.shape
            diag = [m[i, round(i * (lb - 1) / max(la - 1, 1))] for i in range(la)]
            lines.append(f"| {k.replace('|', ' vs ')} | {np.nanmean(diag):.2f} | {np.nanmax(m):.2f} |")
    if agn is not None:
        lines += agnostic_markdown(agn)
    lines += ["", "| model | layer | depth | skip damage | swap flip | swap damage | wall probe | path probe | "
              "x0 lens solve | CKA with next |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        cells = " | ".join(_f(r[c]) for c in COLUMNS + ("cka_next",))
        lines.append(f"| {r['model']} | {r['layer']} | {r['depth']:.2f} | {cells} |")
    return "\n".join(lines) + "\n"


def _inputs_title(profiles: list[Profile], cfg: CompareConfig) -> str:
    """What the profiles ran on, for the figure's title: the mazes, a suite model's tasks, or both."""
    tasks = list(dict.fromkeys(p.task for p in profiles if p.task))
    parts = [f"{cfg.size}x{cfg.size} mazes"] if any(p.task is None for p in profiles) else []
    parts += [", ".join(tasks)] if tasks else []
    return f"{cfg.n} per profile: " + " and ".join(parts)


def write(res: CompareResult, cfg: CompareConfig, out: Path) -> Path:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # here, after choosing Agg: at the top it would fix every importer's backend

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "profiles.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(res.rows[0]))
        w.writeheader()
        w.writerows(res.rows)
    write_atomic(out / "profiles.json", json.dumps({"config": cfg.model_dump(), "rows": res.rows,
                                                    "agnostic": res.agnostic}, indent=2, default=float))  # fmt: skip
    write_atomic(out / "profiles.md", res.markdown)
    write_atomic(out / "cka.json", json.dumps({k: np.nan_to_num(v, nan=-1).tolist() for k, v in res.cka.items()}))

    panels = [c for c in COLUMNS if any(c in p.values for p in res.profiles)]
    heat = list(res.cka)
    ncol = max(len(panels), min(len(heat), 4), 1)
    nrow = 1 + (1 + (len(heat) - 1) // ncol if heat else 0)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 3.0 * nrow), squeeze=False)
    for ax, c in zip(axes[0], panels):
        for p in res.profiles:
            if c in p.values:
                ax.plot(p.depth, p.values[c], marker="o", ms=3, label=f"{p.model} ({p.family}, {p.n_layers})")
        ax.set_title(TITLES[c], fontsize=9)
        ax.set_xlabel("normalized depth (0 = first block, 1 = last)", fontsize=7)
        ax.set_xlim(-0.03, 1.03)
    for ax in axes[0][len(panels) :]:
        ax.axis("off")
    if panels:
        axes[0][0].legend(fontsize=6)
    flat = [ax for row in axes[1:] for ax in row]
    for ax, k in zip(flat, heat):
        a, b = k.split("|")
        m = res.cka[k]
        im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto",
                       extent=(-0.5 / max(m.shape[1] - 1, 1), 1 + 0.5 / max(m.shape[1] - 1, 1),
                               -0.5 / max(m.shape[0] - 1, 1), 1 + 0.5 / max(m.shape[0] - 1, 1)))  # fmt: skip
        ax.set_title(f"CKA: {a}" if a == b else f"CKA: {a} vs {b}", fontsize=8)
        ax.set_ylabel(f"{a} depth", fontsize=7)
        ax.set_xlabel(f"{b} depth", fontsize=7)
        fig.colorbar(im, ax=ax, fraction=0.046)
    for ax in flat[len(heat) :]:
        ax.axis("off")
    fig.suptitle(f"layer specialization: {_inputs_title(res.profiles, cfg)}", fontsize=10)
    fig.tight_layout()
    path = out / "compare.png"
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path

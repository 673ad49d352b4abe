"""Layer specialization across models on the same mazes: per-layer profiles on a normalized depth axis
(0 = first block, 1 = last) and CKA between layers and across models.

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
  DiT tokens of frame ``cka_frame`` at step ``probe_step``, LM grid tokens.
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
from pydantic import BaseModel, ConfigDict, Field, field_validator

from interp.adapters import TextConditioning
from interp.apps.evaluate import sample_noise
from interp.budget import Estimate
from interp.interventions.skip import Skip
from interp.interventions.swap import Swap
from interp.lm import is_lm_path
from interp.lm import tokens as T
from interp.lm.model import load_lm
from interp.lm.run import generate, grid_acts, resid_sites, run_interventions
from interp.models import load_model
from interp.report.save import save_figure
from interp.store.atomic import write_atomic
from interp.store.plain import write_plain
from interp.tasks import maze as mz
from interp.tasks import maze_inputs
from interp.tasks.maze_score import score_batch
from interp.trace import ForwardPlan
from interp.trajectory import EVAL_FALLBACK, SamplerConfig, TrajectoryInputs, run_trajectory
from probes import ProbeConfig, run_probes

MEASURES = ("skip", "swap", "probe", "cka")
COLUMNS = ("skip_damage", "swap_flip", "swap_damage", "wall_probe", "path_probe")


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
    n_layers: int
    clean: float  # exact solve rate of the unintervened model on these mazes
    values: dict[str, np.ndarray] = field(default_factory=dict)  # column -> (n_layers,)

    @property
    def depth(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.n_layers) if self.n_layers > 1 else np.zeros(1)


@dataclass
class CompareResult:
    profiles: list[Profile]
    cka: dict[str, np.ndarray]  # "A|B" -> (layers of A, layers of B); "A|A" within a model
    rows: list[dict]
    markdown: str
    figure: Path | None = None


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


class _DiT:
    def __init__(self, name: str, cfg: CompareConfig):
        self.cfg = cfg
        self.loaded = load_model(name, cfg.device)
        if (self.loaded.task or {}).get("task") != "maze":
            raise ValueError(f"{name}: no maze task metadata (interp.json); compare needs models trained on mazes")
        self.name, self.family = name, self.loaded.family
        self.n_layers = len(self.loaded.adapter.blocks(self.loaded.transformer))

    def _run(self, mazes, plan=None, on_step=None) -> np.ndarray:
        """Final videos (K, F, H, W, 3) uint8: all mazes in one batch, from the same noise (swap needs both)."""
        meta = self.loaded.task
        ti = maze_inputs(meta, mazes)
        noise = sample_noise(ti.latent_shape[1:], self.cfg.noise_seed, 0)
        latents = noise[None].expand(len(mazes), *noise.shape).clone()
        inputs = TrajectoryInputs(TextConditioning(ti.encoder_hidden_states), ti.latent_shape, condition=ti.condition,
                                  latents=latents)  # fmt: skip
        sc = SamplerConfig.from_task(meta, steps=self.cfg.steps, fallback=EVAL_FALLBACK)
        traj = run_trajectory(self.loaded, inputs, sc, plan=plan, on_step=on_step, keep=False)
        return mz.from_model_space(traj.final.cpu()).numpy(), ti.condition_frames.numpy()

    def _solved(self, video, cond) -> np.ndarray:
        return np.array([s.success for s in score_batch(video, cond)], float)

    def clean_and_acts(self, mazes) -> tuple[float, dict[int, torch.Tensor]]:
        sites = [f"blocks.{i}.hook_resid_post" for i in range(self.n_layers)]
        got: dict = {}

        def plan(branch, step):
            return ForwardPlan(read=sites) if step == self.cfg.probe_step else ForwardPlan()

        def keep(rec):
            if rec.step == self.cfg.probe_step:
                acts = rec.branches[next(iter(rec.branches))]
                got.update({i: acts[s].float().cpu() for i, s in enumerate(sites)})

        video, cond = self._run(mazes, plan, keep)
        return float(self._solved(video, cond).mean()), got

    def skip(self, mazes, layer: int) -> float:
        video, cond = self._run(mazes, lambda b, s: ForwardPlan(skip=[f"blocks.{layer}"]))
        return float(self._solved(video, cond).mean())

    def swap(self, mazes, layer: int) -> tuple[float, float]:
        """(flip rate, own solve rate) with block ``layer``'s ``swap_site`` from maze b+1 over the first steps."""
        site = f"blocks.{layer}.{self.cfg.swap_site}"
        edit = {site: lambda name, step, v: v.roll(-1, 0)}  # row b gets row b+1's (maze b+1, same noise)
        last = max(1, round(self.cfg.swap_steps * self.cfg.steps))

        video, cond = self._run(mazes, lambda b, s: ForwardPlan(edit=edit) if s < last else ForwardPlan())
        return float(self._solved(video, np.roll(cond, -1, axis=0)).mean()), float(self._solved(video, cond).mean())

    def grid_frames(self, mazes) -> int:
        return int(self.loaded.task["frames"])


class _LM:
    def __init__(self, name: str, cfg: CompareConfig):
        self.cfg = cfg
        self.loaded = load_lm(name, cfg.device)
        self.name, self.family, self.n_layers = name, "lm", self.loaded.n_layers

    def clean_and_acts(self, mazes):
        self.toks, answers = generate(self.loaded, mazes)
        rate = float(np.mean([T.walk(m, a)["exact"] for m, a in zip(mazes, answers)]))
        acts = grid_acts(self.loaded, mazes, resid_sites(self.loaded))
        return rate, {i: acts[f"blocks.{i}.hook_resid_post"] for i in range(self.n_layers)}

    def skip(self, mazes, layer: int) -> float:
        return float(run_interventions(self.loaded, mazes, [Skip(site=f"blocks.{layer}")], self.toks)["exact"].mean())

    def swap(self, mazes, layer: int) -> tuple[float, float]:
        """(flip rate, own exact rate) with layer ``layer``'s residual at the grid tokens from maze b+1."""
        spec = Swap(site=f"blocks.{layer}.hook_resid_post", tokens=":")
        r = run_interventions(self.loaded, mazes, [spec], self.toks)
        return float(r["flip"].mean()), float(r["exact"].mean())

    def grid_frames(self, mazes) -> int:
        return 1


def _open(name: str, cfg: CompareConfig):
    return _LM(name, cfg) if is_lm_path(name) else _DiT(name, cfg)


# ---------------------------------------------------------------------------------------------------------------
# probes


def _probe(acts: dict[int, torch.Tensor], mazes, frames: int, cfg: CompareConfig, tmp: Path) -> dict[str, np.ndarray]:
    """wall / path probe test accuracy per layer, through probes.run_probes on a plain-layout capture."""
    s = mazes[0].side
    path = tmp / "acts.h5"
    write_plain(
        path,
        {f"blocks.{i}.hook_resid_post": v.numpy()[None] for i, v in acts.items()},
        instances=[json.dumps(m.to_dict()) for m in mazes],
        grid=(frames, s, s),
    )
    pc = ProbeConfig(labels=["wall", "path"], sites=["blocks.*.hook_resid_post"], control="none",
                     bootstrap=cfg.probe_bootstrap, tokens_per_sample=cfg.tokens_per_sample, seed=cfg.seed)  # fmt: skip
    res = run_probes(path, pc, progress=False)
    order = [int(site.split(".")[1]) for site in res.sites]
    out = {}
    for label in ("wall", "path"):
        acc = res.labels[label].metrics["accuracy"][0, 0]
        v = np.full(len(acts), np.nan)
        v[order] = acc
        out[f"{label}_probe"] = v
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
    """Profiles and CKA for ``cfg.models``; with ``out``: profiles.csv / .json / .md, cka.json, compare.png. The
    row-forwards (per model: the clean run, one per layer for skip, two per layer for swap) are checked first
    (:mod:`interp.budget`; ``force``: run anyway)."""
    Estimate(f"compare of {len(cfg.models)} models", forwards=cfg.n * cfg.steps * len(cfg.models),
             detail=f"{cfg.n} mazes x {cfg.steps} steps, the clean runs alone").check(force)  # fmt: skip
    mazes = mz.eval_mazes(cfg.size, cfg.n, cfg.seed)
    side = mazes[0].side
    profiles, tokens = [], {}
    for name in cfg.models:
        m = _open(name, cfg)
        per_layer = ("skip" in cfg.measures) + 2 * ("swap" in cfg.measures)
        steps = 1 if m.family == "lm" else cfg.steps
        Estimate(f"compare of {name}", forwards=cfg.n * steps * (1 + per_layer * m.n_layers),
                 detail=f"{cfg.n} mazes x {steps} steps x (1 + {per_layer} x {m.n_layers} layers)",
                 ).check(force)  # fmt: skip
        log = (lambda msg: print(f"[compare] {name}: {msg}", flush=True)) if progress else (lambda msg: None)
        clean, acts = m.clean_and_acts(mazes)
        log(f"clean exact solve rate {clean:.3f} ({m.n_layers} blocks)")
        p = Profile(name, m.family, m.n_layers, clean)
        if "skip" in cfg.measures:
            p.values["skip_damage"] = clean - _per_layer(m.skip, mazes, m.n_layers, "skip", log)
            log("skip " + " ".join(f"{x:.2f}" for x in p.values["skip_damage"]))
        if "swap" in cfg.measures:
            flip_own = _per_layer(m.swap, mazes, m.n_layers, "swap (flip, own solve)", log)
            p.values["swap_flip"], p.values["swap_damage"] = flip_own[:, 0], clean - flip_own[:, 1]
            log("swap flip " + " ".join(f"{x:.2f}" for x in p.values["swap_flip"]))
            log("swap damage " + " ".join(f"{x:.2f}" for x in p.values["swap_damage"]))
        frames = m.grid_frames(mazes)
        if "probe" in cfg.measures:
            with tempfile.TemporaryDirectory() as tmp:
                p.values.update(_probe(acts, mazes, frames, cfg, Path(tmp)))
            log("wall " + " ".join(f"{x:.2f}" for x in p.values["wall_probe"]))
        if "cka" in cfg.measures:
            frame = cfg.cka_frame % frames
            tokens[name] = _cka_tokens(acts, frames, frame, side)
        profiles.append(p)
        del acts
    cka: dict[str, np.ndarray] = {}
    names = list(tokens)
    for i, a in enumerate(names):
        for b in names[i:]:
            cka[f"{a}|{b}"] = cka_matrix(tokens[a], tokens[b])
    rows = table_rows(profiles, cka)
    md = markdown(cfg, profiles, cka, rows)
    res = CompareResult(profiles, cka, rows, md)
    if out is not None:
        res.figure = write(res, cfg, Path(out))
    return res


def _per_layer(measure, mazes, n_layers: int, what: str, log) -> np.ndarray:
    """``measure(mazes, i)`` (a number or a tuple) for every layer, logging each as it comes (a CPU sweep takes
    minutes)."""
    values = []
    for i in range(n_layers):
        t0 = time.perf_counter()
        values.append(measure(mazes, i))
        shown = ", ".join(f"{v:.3f}" for v in np.atleast_1d(values[-1]))
        log(f"{what} layer {i + 1}/{n_layers}: {shown} ({time.perf_counter() - t0:.1f} s)")
    return np.array(values)


def table_rows(profiles: list[Profile], cka: dict[str, np.ndarray]) -> list[dict]:
    rows = []
    for p in profiles:
        within = cka.get(f"{p.model}|{p.model}")
        for i in range(p.n_layers):
            r = {"model": p.model, "family": p.family, "layer": i, "depth": round(float(p.depth[i]), 4),
                 "clean_solve": p.clean}  # fmt: skip
            for c in COLUMNS:
                r[c] = float(p.values[c][i]) if c in p.values else None
            r["cka_next"] = float(within[i, i + 1]) if within is not None and i + 1 < p.n_layers else None
            rows.append(r)
    return rows


def _f(x) -> str:
    return "" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.2f}"


def markdown(cfg: CompareConfig, profiles: list[Profile], cka: dict[str, np.ndarray], rows: list[dict]) -> str:
    lines = [f"Mazes: {cfg.n} held-out {cfg.size}x{cfg.size} (seed {cfg.seed}); DiTs: {cfg.steps} steps, probes and "
             f"CKA at step {cfg.probe_step}; DiT swap: {cfg.swap_site} over the first "
             f"{max(1, round(cfg.swap_steps * cfg.steps))} steps.", "",
             "| model | family | blocks | clean solve | peak skip damage (depth) | swap flip > 0.5 (depths) | "
             "wall probe (min-max) | path probe (min-max) |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for p in profiles:
        v, d = p.values, p.depth
        skip = f"{v['skip_damage'].max():.2f} ({d[int(np.argmax(v['skip_damage']))]:.2f})" if "skip_damage" in v else ""
        if "swap_flip" in v:
            hi = d[v["swap_flip"] > 0.5]
            swap = (f"{hi.min():.2f}-{hi.max():.2f}" if hi.max() > hi.min() else f"{hi[0]:.2f}") if len(hi) else "none"
        else:
            swap = ""
        rng = lambda k: f"{np.nanmin(v[k]):.2f}-{np.nanmax(v[k]):.2f}" if k in v else ""  # noqa: E731
        lines.append(f"| {p.model} | {p.family} | {p.n_layers} | {p.clean:.2f} | {skip} | {swap} | "
                     f"{rng('wall_probe')} | {rng('path_probe')} |")  # fmt: skip
    across = [k for k in cka if k.split("|")[0] != k.split("|")[1]]
    if across:
        lines += ["", "| models | mean CKA along the matched depth (diagonal of the resampled matrix) | max CKA |",
                  "|---|---|---|"]  # fmt: skip
        for k in across:
            m = cka[k]
            la, lb = m.shape
            diag = [m[i, round(i * (lb - 1) / max(la - 1, 1))] for i in range(la)]
            lines.append(f"| {k.replace('|', ' vs ')} | {np.nanmean(diag):.2f} | {np.nanmax(m):.2f} |")
    lines += ["", "| model | layer | depth | skip damage | swap flip | swap damage | wall probe | path probe | "
              "CKA with next |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['model']} | {r['layer']} | {r['depth']:.2f} | {_f(r['skip_damage'])} | {_f(r['swap_flip'])} | "
                     f"{_f(r['swap_damage'])} | {_f(r['wall_probe'])} | {_f(r['path_probe'])} | {_f(r['cka_next'])} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def write(res: CompareResult, cfg: CompareConfig, out: Path) -> Path:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # here, after choosing Agg: at the top it would fix every importer's backend

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "profiles.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(res.rows[0]))
        w.writeheader()
        w.writerows(res.rows)
    write_atomic(out / "profiles.json", json.dumps({"config": cfg.model_dump(), "rows": res.rows}, indent=2))
    write_atomic(out / "profiles.md", res.markdown)
    write_atomic(out / "cka.json", json.dumps({k: np.nan_to_num(v, nan=-1).tolist() for k, v in res.cka.items()}))

    panels = [c for c in COLUMNS if any(c in p.values for p in res.profiles)]
    heat = list(res.cka)
    ncol = max(len(panels), min(len(heat), 4), 1)
    nrow = 1 + (1 + (len(heat) - 1) // ncol if heat else 0)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 3.0 * nrow), squeeze=False)
    titles = {"skip_damage": "skip damage (clean - skipped)", "swap_flip": "swap flip rate (to the other maze)",
              "swap_damage": "swap damage (clean - own solve)",
              "wall_probe": "wall probe accuracy", "path_probe": "path probe accuracy"}  # fmt: skip
    for ax, c in zip(axes[0], panels):
        for p in res.profiles:
            if c in p.values:
                ax.plot(p.depth, p.values[c], marker="o", ms=3, label=f"{p.model} ({p.family}, {p.n_layers})")
        ax.set_title(titles[c], fontsize=9)
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
    fig.suptitle(f"layer specialization: {cfg.n} mazes {cfg.size}x{cfg.size}", fontsize=10)
    fig.tight_layout()
    path = out / "compare.png"
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return path

"""Running the maze LM: hooked forwards by TransformerLens site names, greedy decoding, held-out evaluation,
captures for ``probes``, and :func:`run_lm_experiment` (the experiment YAML kinds patch, skip, ablate, swap).

Axes. A DiT's sites are (step, batch, token, d_model) with tokens on the (frame, row, col) block grid. The LM's
position axis is its sequence; two index fields of an intervention select positions on it:

- ``steps``: answer positions, step k = the position whose logits predict answer token k (``<sep>`` for k = 0);
- ``tokens``: grid positions, token i = maze block i in row-major order (as a DiT's token i of frame 0);
- both ``None``: every position. When both are given, their union. ``frames`` does not apply (an error).

Sources (patch, swap, ablate mean / resample) are the *clean greedy runs* of the other inputs of the same size: the
target's value at position p is replaced by the source run's value at p (positions past the source's end are left
alone). Greedy decoding is deterministic, so a patch's ``source.seed`` has no meaning here and is ignored.

The engine of :mod:`interp.experiments` drives a diffusion loop (noise, schedulers, x0, a latent per step), which
the LM has none of; this is a parallel runner over the same :class:`~interp.experiments.Experiment` objects and
intervention data classes, writing ``summary.json`` (not ``results.h5``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from interp.experiments.schema import point_experiment, sweep_points
from interp.interventions.ablate import resample_offset
from interp.interventions.base import resolve_index
from interp.lm import tokens as T
from interp.lm.model import load_lm
from interp.store.atomic import write_atomic
from interp.store.plain import write_plain
from interp.tasks import maze as mz

Hooks = list[tuple[str, Callable]]


def _bridge(model):
    return getattr(model, "bridge", model)


def n_layers(model) -> int:
    return int(_bridge(model).cfg.n_layers)


@torch.no_grad()
def forward(model, toks: torch.Tensor, hooks: Hooks = ()) -> torch.Tensor:
    b = _bridge(model)
    if not hooks:
        return b(toks)
    return b.run_with_hooks(toks, fwd_hooks=list(hooks))


@torch.no_grad()
def generate(
    model, mazes: list[mz.Maze], hooks: Callable[[int], Hooks] | None = None
) -> tuple[torch.Tensor, list[list[int]]]:
    """Greedy answers for mazes of one size; ``hooks(seq_len)`` gives the forward hooks of each decoding step.

    Returns the full sequences (B, T) and each maze's answer tokens (up to and including ``<eos>``)."""
    size = mazes[0].size
    if any(m.size != size for m in mazes):
        raise ValueError("generate takes mazes of one size")
    dev = next(_bridge(model).parameters()).device
    toks = torch.from_numpy(np.stack([T.prompt(m) for m in mazes])).to(dev)
    done = torch.zeros(len(mazes), dtype=torch.bool, device=dev)
    for _ in range(T.max_moves(size) + 1):
        logits = forward(model, toks, hooks(toks.shape[1]) if hooks else ())
        nxt = logits[:, -1].argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, T.PAD), nxt)
        toks = torch.cat([toks, nxt[:, None]], dim=1)
        done |= nxt == T.EOS
        if done.all():
            break
    p = T.prompt_len(size)
    answers = []
    for row in toks[:, p:].tolist():
        answers.append(row[: row.index(T.EOS) + 1] if T.EOS in row else [t for t in row if t != T.PAD])
    return toks.cpu(), answers


def wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p, z = k / n, 1.959964
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def eval_lm(model, sizes: list[int], n: int, seed: int = 0, batch: int = 128, stream: int | None = None) -> list[dict]:
    """Exact solution accuracy per maze size on the held-out mazes ``mz.eval_mazes(size, n, seed)`` (or, with
    ``stream``, a validation stream), with its 95% Wilson interval, first-move accuracy and goal reached."""
    rows = []
    for size in sizes:
        if stream is None:
            mazes = mz.eval_mazes(size, n, seed)
        else:
            mazes = [mz.generate(size, mz.maze_rng(stream, size, seed, i)) for i in range(n)]
        res = []
        for lo in range(0, n, batch):
            chunk = mazes[lo : lo + batch]
            _, answers = generate(model, chunk)
            res += [T.walk(m, a) for m, a in zip(chunk, answers)]
        k = sum(r["exact"] for r in res)
        rows.append({"size": size, "n": n, "exact": k / n, "ci95": list(wilson(k, n)),
                     "first_move": float(np.mean([r["first_move"] for r in res])),
                     "goal_reached": float(np.mean([r["goal_reached"] for r in res])),
                     "wall_hits": float(np.mean([r["wall_hits"] for r in res]))})  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------------------------------
# activations


@torch.no_grad()
def grid_acts(model, mazes: list[mz.Maze], sites: list[str]) -> dict[str, torch.Tensor]:
    """Site values at the grid tokens of the prompts: site -> (B, (2n+1)^2, d_model), float32 on the CPU."""
    b = _bridge(model)
    dev = next(b.parameters()).device
    toks = torch.from_numpy(np.stack([T.prompt(m) for m in mazes])).to(dev)
    _, cache = b.run_with_cache(toks, names_filter=lambda name: name in sites)
    pos = torch.from_numpy(T.grid_positions(mazes[0].size)).to(dev)
    missing = [s for s in sites if s not in cache]
    if missing:
        raise KeyError(f"sites {missing} not in the LM; e.g. blocks.0.hook_resid_post, blocks.0.hook_attn_out")
    return {s: cache[s][:, pos].float().cpu() for s in sites}


def resid_sites(model) -> list[str]:
    return [f"blocks.{i}.hook_resid_post" for i in range(n_layers(model))]


def capture_lm(
    model, mazes: list[mz.Maze], path: str | Path, sites: list[str] | None = None, config: dict | None = None
) -> Path:
    """A capture in the store's plain layout, readable by ``probes`` (``interp probe``): per site a dataset shaped
    (1, batch, (2n+1)^2, d_model) of the grid tokens (one "step": the prompt), ``grid`` = (1, 2n+1, 2n+1),
    ``task/instances``. Written atomically."""
    sites = sites or resid_sites(model)
    acts = grid_acts(model, mazes, sites)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    s = mazes[0].side
    return write_plain(path, {site: v.numpy()[None] for site, v in acts.items()},
                       instances=[json.dumps(m.to_dict()) for m in mazes], grid=(1, s, s), timesteps=np.zeros(1),
                       family="lm", config={"model": getattr(model, "name", "lm"), "batch": len(mazes), **(config or {})},
                       axes="step (one: the prompt), batch, token (grid blocks, row-major), d_model")  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# interventions


def lm_positions(spec, size: int) -> np.ndarray | None:
    """Sequence positions an intervention selects (see the module doc); None: all."""
    if getattr(spec, "frames", None) is not None:
        raise ValueError("frames do not apply to a language model; use steps (answer positions) or tokens (grid)")
    steps, tokens = spec.steps, getattr(spec, "tokens", None)
    if steps is None and tokens is None:
        return None
    pos: set[int] = set()
    if steps is not None:
        pos |= {T.answer_position(size, k) for k in resolve_index(steps, T.max_moves(size) + 1, "steps")}
    if tokens is not None:
        grid = T.grid_positions(size)
        pos |= {int(grid[i]) for i in resolve_index(tokens, len(grid), "tokens")}
    return np.array(sorted(pos))


def _site_names(spec, n: int) -> list[str]:
    names = spec.sites(n)
    out = []
    for s in names:
        if "*" in s:
            raise ValueError(f"site {s!r}: name blocks through layers, not a glob, on a language model")
        if s in ("hook_out",) or s.endswith("hook_cross_attn_out"):
            raise ValueError(f"site {s!r} does not exist on a language model (no latent output, no cross-attention)")
        out.append(s)
    return out


class LMEdits:
    """Compiles a list of interventions (applied together) into forward hooks for one batch of mazes."""

    def __init__(self, model, mazes: list[mz.Maze], interventions: list, clean: dict):
        self.n_layers = n_layers(model)
        size = mazes[0].size
        n = len(mazes)
        self.items = []  # (kind, sites, positions, src rows or None, spec)
        for spec in interventions:
            kind = spec.kind
            if kind not in ("patch", "skip", "ablate", "swap"):
                raise ValueError(
                    f"intervention kind {kind!r} does not run on a language model (patch, skip, ablate, swap do)"
                )
            pos = lm_positions(spec, size)
            src = None
            if kind == "patch":
                src = (np.arange(n) + spec.source.input) % n
            elif kind == "swap":
                src = (np.arange(n) + spec.other) % n
            elif kind == "ablate" and spec.mode == "resample":
                src = np.array([(i + resample_offset(spec.seed, i, n)) % n for i in range(n)])
            if kind == "skip":
                layers = [int(s.split(".")[1]) for s in _site_names(spec, self.n_layers)]
                self.items.append((kind, layers, pos, None, spec))
            else:
                self.items.append((kind, _site_names(spec, self.n_layers), pos, src, spec))
        self.clean = clean  # site -> (values (N, T, d), lengths (N,))

    def sites_needed(self) -> list[str]:
        return sorted({s for kind, sites, _, src, spec in self.items if kind != "skip"
                       and (src is not None or spec.kind == "ablate" and spec.mode == "mean") for s in sites})  # fmt: skip

    def hooks(self, seq_len: int) -> Hooks:
        out: Hooks = []
        for kind, sites, pos, src, spec in self.items:
            p = torch.arange(seq_len) if pos is None else torch.from_numpy(pos[pos < seq_len])
            if len(p) == 0:
                continue
            if kind == "skip":
                for layer in sites:
                    store: dict = {}
                    out.append((f"blocks.{layer}.hook_resid_pre", _keep(store)))
                    out.append((f"blocks.{layer}.hook_resid_post", _skip(store, p)))
                continue
            for site in sites:
                out.append((site, self._edit(kind, site, p, src, spec)))
        return out

    def _edit(self, kind, site, p, src, spec):
        def fn(value, hook):
            v = value.clone()
            pp = p.to(v.device)
            if kind == "ablate" and spec.mode == "zero":
                v[:, pp] = 0
                return v
            vals, lens = self.clean[site]
            vals = vals.to(v.device, v.dtype)
            if kind == "ablate" and spec.mode == "mean":
                n = vals.shape[0]
                valid = (torch.arange(vals.shape[1])[None, :] < lens[:, None]).to(v.device)  # (N, T)
                for i in range(v.shape[0]):
                    others = torch.ones(n, dtype=torch.bool, device=v.device)
                    others[i] = False
                    w = (valid & others[:, None])[:, pp].float()  # (N, P)
                    mean = (vals[:, pp] * w[..., None]).sum(0) / w.sum(0).clamp(min=1)[:, None]
                    v[i, pp] = mean
                return v
            s = torch.as_tensor(src, device=v.device)
            ok = pp[None, :] < lens.to(v.device)[s][:, None]  # (B, P): source positions that exist
            new = vals[s][:, pp]
            v[:, pp] = torch.where(ok[..., None], new, v[:, pp])
            return v

        return fn


def _keep(store):
    def fn(value, hook):
        store["pre"] = value
        return value

    return fn


def _skip(store, p):
    def fn(value, hook):
        v = value.clone()
        pp = p.to(v.device)
        v[:, pp] = store["pre"][:, pp]
        return v

    return fn


@torch.no_grad()
def clean_cache(model, toks: torch.Tensor, sites: list[str]) -> dict:
    """Site values of full clean sequences (N, T) padded with ``<pad>`` after ``<eos>``: site -> (values, lengths)."""
    lens = torch.tensor([int((row != T.PAD).sum()) for row in toks])
    if not sites:
        return {}
    b = _bridge(model)
    dev = next(b.parameters()).device
    _, cache = b.run_with_cache(toks.to(dev), names_filter=lambda n: n in sites)
    return {s: (cache[s].float(), lens) for s in sites}


def run_interventions(model, mazes: list[mz.Maze], interventions: list, clean_toks: torch.Tensor | None = None) -> dict:
    """Greedy answers under ``interventions`` (applied together) for mazes of one size; per-maze metrics.

    ``exact``: the answer is the maze's solution; ``flip``: it is the *source* maze's solution (patch / swap)."""
    if clean_toks is None:
        clean_toks, _ = generate(model, mazes)
    edits = LMEdits(model, mazes, interventions, {})
    edits.clean = clean_cache(model, clean_toks, edits.sites_needed())
    _, answers = generate(model, mazes, edits.hooks)
    res = [T.walk(m, a) for m, a in zip(mazes, answers)]
    out = {k: np.array([r[k] for r in res], float) for k in ("exact", "first_move", "goal_reached")}
    srcs = [src for kind, _, _, src, _ in edits.items if kind in ("patch", "swap") and src is not None]
    if srcs:
        src = srcs[-1]
        out["flip"] = np.array(
            [a == T.answer(mazes[j]) and j != i for i, (a, j) in enumerate(zip(answers, src))], float
        )
    out["answers"] = answers
    return out


def run_lm_experiment(exp, out: str | Path) -> dict:
    """Run an :class:`~interp.experiments.Experiment` whose model is a maze LM: every sweep point, every maze size;
    writes ``out/summary.json`` (per point: coordinates, size, mean and per-maze metrics; plus the clean run)."""
    if exp.inputs.task != "maze":
        raise ValueError("a maze LM runs maze inputs only (inputs.task: maze)")
    model = load_lm(exp.model)
    sizes = exp.inputs.sizes or [int(model.meta.get("default_size", 5))]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"experiment": json.loads(exp.canonical()), "model": exp.model, "weight_hash": model.weight_hash,
               "axes": "steps = answer positions, tokens = grid blocks", "clean": [], "points": []}  # fmt: skip
    cleans = {}
    for size in sizes:
        mazes = mz.eval_mazes(size, exp.inputs.count, exp.inputs.seed)
        toks, answers = generate(model, mazes)
        cleans[size] = (mazes, toks)
        ex = [T.walk(m, a)["exact"] for m, a in zip(mazes, answers)]
        summary["clean"].append({"size": size, "exact": float(np.mean(ex)), "per_maze": [float(x) for x in ex]})
    for coords in sweep_points(exp) or [{}]:
        pe = point_experiment(exp, coords) if coords else exp
        for size in sizes:
            mazes, toks = cleans[size]
            r = run_interventions(model, mazes, pe.interventions, toks)
            summary["points"].append({
                "coords": coords, "size": size,
                "mean": {k: float(v.mean()) for k, v in r.items() if k != "answers"},
                "per_maze": {k: v.tolist() for k, v in r.items() if k != "answers"},
            })  # fmt: skip
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    return summary

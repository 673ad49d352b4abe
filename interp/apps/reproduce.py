"""``interp reproduce``: run the paper's analyses (``interp/data/paper/*.yaml``, package data) and write
``DIR/REPORT.md``.

Each analysis is one experiment file run by the experiment engine; this module only adds the measures the engine
does not compute (read from ``results.h5``), the figures, and the claims table (:mod:`interp.report.paper`).

>>> from interp.apps.reproduce import reproduce
>>> reproduce("out/paper", quick=True)             # ~10 minutes on 2 CPU cores; numbers indicative
>>> print(plan_table(plan_sizes()))                # the full run's size per analysis, without running it
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image
from rich.console import Console

from interp.experiments import Experiment, read_metrics, run_experiment
from interp.experiments.runner import load_pipeline_of, planned_forwards, sampler_of
from interp.interventions import resolve_index
from interp.models import BUILTINS, PAPER_DIR, load_model
from interp.pipelines.decode import decode_video
from interp.report.figures import _plt, _save, curves, heatmap, x0_filmstrip
from interp.report.paper import write_report
from interp.report.save import save_image
from interp.store.atomic import write_atomic
from interp.store.plain import write_plain
from interp.store.results import read_group, read_site_rows
from interp.tasks import answers as ans
from interp.tasks import build_inputs
from interp.tasks import maze as mz
from interp.tasks.candidates import CONTRAST, MIN_LEN, candidate_routes, sharp_answer
from interp.tasks.maze import AGENT_PX, BLOCK_PX, OPEN, PALETTE, TRAIL
from interp.tasks.maze_score import reachable, read_blocks, score_video
from interp.tasks.suite import get_task
from probes import run_probes

ANALYSES = (
    "chain_of_steps",
    "noise_step_vs_frame",
    "layer_swap",
    "layer_skip",
    "working_memory",
    "seed_ensemble",
    "prompt_swap",
    "suite_layer_skip",
    "suite_noise_step_vs_frame",
    "suite_seed_ensemble",
    "suite_chain_of_steps",
    "suite_layer_swap",
    "suite_working_memory",
)
MAZE_ANALYSES = ANALYSES[:6]  # the maze model's (maze-wan, maze-cogvideox): maze inputs
# a suite model's (the organism): the suite's tasks through the whole pipeline, scored by each task's pixel scorer
SUITE_ANALYSES = (
    "prompt_swap",
    "suite_layer_skip",
    "suite_noise_step_vs_frame",
    "suite_seed_ensemble",
    "suite_chain_of_steps",
    "suite_layer_swap",
    "suite_working_memory",
)
# the suite analyses run once per task (inputs.task / inputs.levels replaced; the file's own task is the first):
# {analysis: {task: levels}}; levels where the organism is neither at ceiling nor at the floor (eval.json: loopmaze
# 4: 0.77, mirror 3: 0.81), the hardest ones for the ensemble (loopmaze 5: 0.55, mirror 4: 0.46: room to gain)
SUITE_TASKS: dict[str, dict[str, list[int]]] = {
    "suite_layer_skip": {"loopmaze": [4], "mirror": [3]},
    "suite_noise_step_vs_frame": {"loopmaze": [4], "mirror": [3]},
    "suite_seed_ensemble": {"loopmaze": [5], "mirror": [4]},
    # Chain-of-Steps needs routes (interp.tasks.answers.ROUTE_TASKS): loopmaze (>= 2 shortest paths per maze) and
    # goalmaze (two goals) at a level with room to explore (goalmaze 5: 0.665)
    "suite_chain_of_steps": {"loopmaze": [4], "goalmaze": [5]},
    "suite_layer_swap": {"loopmaze": [4], "mirror": [3]},
    "suite_working_memory": {"loopmaze": [4], "mirror": [3]},
}

_Q = 8  # quick: denoising steps
_QUARTERS = ["0%", "25%", "50%", "75%"]
QUICK: dict[str, list[str]] = {
    "chain_of_steps": ["inputs.sizes=[8]", "inputs.count=3", f"sampler.steps={_Q}"],
    "noise_step_vs_frame": ["inputs.sizes=[4]", "inputs.count=3", f"sampler.steps={_Q}", "sweep.interventions.0=" + json.dumps(
        [{"kind": "noise", "mode": m, "steps": s, "seed": 123} for m in ("replace", "renoise") for s in range(_Q)]
        + [{"kind": "noise", "frames": f, "seed": 123} for f in ["0%", "25%", "50%", "75%", "100%"]])],
    "layer_swap": ["inputs.sizes=[4]", "inputs.count=3", f"sampler.steps={_Q}", "sweep.interventions.0.steps=[0, '0%:30%']"],
    "layer_skip": ["inputs.sizes=[4]", "inputs.count=3", f"sampler.steps={_Q}",
                   "sweep.interventions.0.steps=['0%:50%', '50%:100%']", "sweep.interventions.0.layers=" + json.dumps(_QUARTERS)],
    "working_memory": ["inputs.sizes=[6]", "inputs.count=8", f"sampler.steps={_Q}"],
    "seed_ensemble": ["inputs.sizes=[8]", "inputs.count=3", f"sampler.steps={_Q}", "sweep.interventions.0=" + json.dumps(
        [{"kind": "ensemble", "seeds": [1], "steps": 0}, {"kind": "ensemble", "seeds": [2], "steps": 0},
         {"kind": "ensemble", "k": 3, "layers": "25%:50%", "steps": 0}])],  # the paper's configuration only
    "prompt_swap": ["inputs.count=4", f"sampler.steps={_Q}", "sweep.interventions.0.steps=[0]"],
    # the suite's: 2 instances per task (2 tasks), the rows the rules need at least once
    "suite_layer_skip": ["inputs.count=2", f"sampler.steps={_Q}",
                         "sweep.interventions.0.layers=['0%', '50%', '87.5%']"],
    "suite_noise_step_vs_frame": ["inputs.count=2", f"sampler.steps={_Q}", "sweep.interventions.0=" + json.dumps(
        [{"kind": "noise", "mode": "replace", "steps": s, "seed": 123} for s in ("0%", "50%", "100%")]
        + [{"kind": "noise", "mode": "replace", "frames": f, "seed": 123} for f in ("50%", "100%")])],
    "suite_seed_ensemble": ["inputs.count=2", f"sampler.steps={_Q}", "sweep.interventions.0=" + json.dumps(
        [{"kind": "ensemble", "seeds": [1], "steps": 0}, {"kind": "ensemble", "seeds": [2], "steps": 0},
         {"kind": "ensemble", "k": 3, "layers": "25%:50%", "steps": 0}])],
    "suite_chain_of_steps": ["inputs.count=2", f"sampler.steps={_Q}"],
    "suite_layer_swap": ["inputs.count=2", f"sampler.steps={_Q}", "sweep.interventions.0.steps=[0, '0%:30%']"],
    # 6 instances (the probes' 60/20/20 split by instance needs 5), every other block
    "suite_working_memory": ["inputs.count=6", f"sampler.steps={_Q}", "capture.sites=" + json.dumps(
        [f"blocks.{i}.hook_resid_post" for i in range(0, 16, 2)])],
}  # fmt: skip
PROBE_THRESHOLD = 0.9


def experiment(name: str, quick: bool = False, overrides: list[str] | None = None, paper_dir: Path = PAPER_DIR):
    return Experiment.load(Path(paper_dir) / f"{name}.yaml", (QUICK[name] if quick else []) + list(overrides or []))


def experiments(
    *, quick: bool = False, device: str = "cpu", model: str | None = None, only: list[str] | None = None,
    overrides: list[str] | dict[str, list[str]] | None = None, paper_dir: str | Path = PAPER_DIR,
) -> dict:  # fmt: skip
    """The analyses' experiments (``only``, else all), validated: ``model`` replaces every file's model;
    ``overrides`` (``key=value``) apply after the quick profile: a list to every file, a dict {analysis: [...]} per
    file. A suite analysis (:data:`SUITE_TASKS`) gives one experiment per task, keyed ``analysis/task``."""
    names = list(only or default_analyses(model))
    bad = [n for n in names if n not in ANALYSES]
    if bad:
        raise ValueError(f"unknown analyses {bad}; known: {list(ANALYSES)}")
    extra = [f"device={device}"] + ([f"model={model}"] if model else [])
    per = overrides if isinstance(overrides, dict) else {n: list(overrides or []) for n in names}
    out = {}
    for n in names:
        for key, task in run_keys(n):
            inputs = [] if task is None else [f"inputs.task={task}", f"inputs.levels={SUITE_TASKS[n][task]}"]
            out[key] = experiment(n, quick, extra + inputs + per.get(n, []), Path(paper_dir))
    return out


def run_keys(name: str) -> list[tuple[str, str | None]]:
    """An analysis's runs: ``(name, None)``, or ``(name/task, task)`` per task of a suite analysis."""
    return [(f"{name}/{t}", t) for t in SUITE_TASKS[name]] if name in SUITE_TASKS else [(name, None)]


def default_analyses(model: str | None) -> tuple[str, ...]:
    """What ``interp reproduce`` runs when not told: a suite model's analyses for a model whose ``interp.json``
    says ``task: suite`` (the organism), else the maze model's (maze-wan when no model is given)."""
    if model is None:
        return MAZE_ANALYSES
    builtin = BUILTINS.get(str(model))
    path = builtin.path if builtin is not None else Path(model)
    meta = path / "interp.json" if path is not None else None
    task = json.loads(meta.read_text()).get("task") if meta is not None and meta.is_file() else None
    return SUITE_ANALYSES if task == "suite" else MAZE_ANALYSES


def plan_table(plans: dict[str, dict[str, int]]) -> str:
    """The planned sizes, one line per analysis and the total."""
    keys, widths = ("mazes", "points", "rows", "steps", "row_forwards"), (8, 8, 8, 8, 14)
    nw = max([22, *(len(n) + 2 for n in plans)])
    lines = [f"{'analysis':<{nw}}" + "".join(f"{k:>{w}}" for k, w in zip(keys, widths))]
    lines += [f"{n:<{nw}}" + "".join(f"{p[k]:>{w},}" for k, w in zip(keys, widths)) for n, p in plans.items()]
    lines.append(f"{'total':<{nw}}" + " " * sum(widths[:-1]) + f"{sum(p['row_forwards'] for p in plans.values()):>14,}")
    return "\n".join(lines)


def plan_sizes(**kwargs) -> dict[str, dict[str, int]]:
    """:func:`planned_forwards` of every analysis :func:`experiments` gives for ``kwargs``; models load on the CPU."""
    exps = experiments(**kwargs)
    loaded = {m: load_model(m, "cpu") for m in {e.model for e in exps.values()}}
    return {n: planned_forwards(e, loaded[e.model]) for n, e in exps.items()}


def reproduce(
    out: str | Path, *, quick: bool = False, device: str = "cpu", model: str | None = None,
    only: list[str] | None = None, overrides: list[str] | dict[str, list[str]] | None = None,
    paper_dir: str | Path = PAPER_DIR,
    progress: bool = True, threads: int | None = None,
) -> Path:  # fmt: skip
    """Run every analysis (or ``only``) into ``out/<analysis>/`` and write ``out/REPORT.md``; returns its path.
    The options are :func:`experiments`'; the planned row-forwards are printed first."""
    console = Console(stderr=True)
    if threads:  # CPU threads; 1 avoids the collapse of 2 threads on a busy 2-core machine
        torch.set_num_threads(threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    exps = experiments(quick=quick, device=device, model=model, only=only, overrides=overrides, paper_dir=paper_dir)
    names = list(exps)
    loaded = _load_models(exps, device)
    sizes = {n: planned_forwards(e, loaded[e.model]) for n, e in exps.items()}
    console.print(plan_table(sizes), highlight=False, soft_wrap=True)
    command = (f"interp reproduce{' --quick' if quick else ''} --out {out} --device {device}"
               + (f" --model {model}" if model else "") + (f" --threads {threads}" if threads else "")
               + (f" --only {','.join(only)}" if only else ""))  # fmt: skip
    # an analysis not run now keeps its numbers, figures and timing from an earlier invocation into the same folder
    # (`--only` adds to a report); one run now replaces its own
    prev = {f: json.loads((out / f).read_text()) if (out / f).exists() else {} for f in REPORT_FILES}
    numbers: dict[str, dict] = {}
    figures: dict[str, list[str]] = {}
    timings: dict[str, dict] = {}
    for name in names:
        exp = exps[name]
        analysis, _, task = name.partition("/")
        t = time.perf_counter()
        console.print(f"[bold]{name}[/bold]: {exp.name}")
        res = run_experiment(exp, out / name, loaded=loaded[exp.model], wandb="disabled", progress=progress,
                             base_dir=Path(paper_dir), console=console)  # fmt: skip
        nums, figs = ANALYZE[analysis](res.results, exp, loaded[exp.model], out / name)
        if task:  # a suite analysis: its numbers per task, side by side
            nums = {**nums, "inputs": f"{task} level {exp.inputs.levels}"}
            numbers.setdefault(analysis, {"tasks": {}})["tasks"][task] = nums
        else:
            numbers[name] = nums
        figures.setdefault(analysis, []).extend(str(p.relative_to(out)) for p in figs)
        timings[name] = {"wall_s": round(time.perf_counter() - t, 1), "cache_hit": res.cache_hit, "command": command,
                         "model": exp.model, "device": _device_name(device), "torch_threads": torch.get_num_threads(),
                         "row_forwards": sizes[name]["row_forwards"], "key": res.summary.get("key")}  # fmt: skip
        old = prev["timings.json"].get(name)
        if res.cache_hit and old and not old.get("cache_hit") and old.get("key") == timings[name]["key"]:
            # the same experiment, computed earlier: how it ran then
            timings[name] = {**old, "cache_hit": False}
        for f, now in zip(REPORT_FILES, (numbers, figures, timings)):
            write_atomic(out / f, json.dumps({**prev[f], **now}, indent=1, default=_json))
    wall = time.perf_counter() - t0
    numbers, figures = {**prev["numbers.json"], **numbers}, {**prev["figures.json"], **figures}
    # the timings of every analysis in the report: this invocation's, and the earlier ones' of analyses kept
    shown = {k: v for k, v in {**prev["timings.json"], **timings}.items() if k.partition("/")[0] in numbers}
    header = _header(shown, names, exps, loaded, quick=quick, wall=wall)
    report = write_report(out, numbers, figures, header=header)
    console.print(f"wrote {report} ({wall:.0f} s)")
    return report


def _device_name(device: str) -> str:
    """The machine an analysis ran on, for the report: the GPU's name, or the CPU's core count."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        return f"one {torch.cuda.get_device_name(dev)}"
    return f"{dev.type} ({os.cpu_count()} cores)"


REPORT_FILES = ("numbers.json", "figures.json", "timings.json")
"""What a report folder keeps besides the analyses' folders: every verdict's numbers, the figures per analysis and
the timing (with the command, model, threads and size) of each analysis, merged over invocations into the folder."""


def _header(timings: dict[str, dict], names: list[str], exps: dict, loaded: dict, *, quick: bool, wall: float) -> dict:
    """The report's header: each fact once when every analysis shares it, else per analysis (an analysis kept from
    an earlier invocation into the folder says how it ran)."""

    def one_or_each(key: str) -> str:
        by: dict[str, list[str]] = {}  # value -> the analyses that share it
        for k, v in timings.items():
            by.setdefault(str(v.get(key, "not recorded")), []).append(k)
        if len(by) == 1:
            return next(iter(by))
        return "; ".join(f"{', '.join(ks)}: {v}" for v, ks in by.items())

    models = sorted({v["model"] for v in timings.values() if "model" in v} | {e.model for e in exps.values()})
    first = exps[names[0]]
    analyses = dict.fromkeys(k.partition("/")[0] for k in timings)
    return {
        "title": "Demystifying Video Reasoning, reproduced on " + ", ".join(models),
        "profile": ("quick (2 CPU cores; few inputs and 8 denoising steps: the numbers are indicative, not conclusive)"
                    if quick else "full"),
        "command": one_or_each("command"),
        "device": one_or_each("device"),
        "torch threads": one_or_each("torch_threads"),
        "size": f"{sum(v.get('row_forwards', 0) for v in timings.values()):,} row-forwards ("
        + ", ".join(f"{n} {v.get('row_forwards', 0):,}" for n, v in timings.items()) + ")",
        "wall time": f"{sum(v['wall_s'] for v in timings.values()):.0f} s for the analyses as computed ("
        + ", ".join(f"{k} {v['wall_s']:.0f} s{' (cache hit)' if v['cache_hit'] else ''}" for k, v in timings.items())
        + f"); this invocation {wall:.0f} s",
        "model weights": loaded[first.model].weight_hash[:16],
        "experiments": ", ".join(f"`interp/data/paper/{n}.yaml`" for n in analyses)
        + "".join(f"; {n} on " + ", ".join(f"{t} level {lv}" for t, lv in SUITE_TASKS[n].items())
                  for n in analyses if n in SUITE_TASKS)
        + (" with the quick overrides listed in `interp/reproduce.py` (QUICK)" if quick else ""),
    }  # fmt: skip


def _load_models(exps: dict, device: str) -> dict:
    """Each model the experiments run, loaded once: the whole pipeline where an experiment encodes prompts (a suite
    task: the analyses decode x0 and final latents through its VAE), else the transformer alone."""
    out = {}
    for e in exps.values():
        if e.model not in out or (e.inputs.uses_pipeline and not hasattr(out[e.model], "pipeline")):
            out[e.model] = load_pipeline_of(e, device) if e.inputs.uses_pipeline else load_model(e.model, device)
    return out


def _json(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


# ---- reading results -------------------------------------------------------------------------------------------------
def _read(results: Path, acts: bool = True) -> dict:
    """The metrics and group 0's arrays; a suite task's pixel-scorer success (``score_success``) is read as the
    ``solve_rate`` the maze analyses use. ``acts=False``: the captured sites' names only (read them one at a time
    with :func:`interp.store.results.read_site_rows`)."""
    data = read_metrics(results)
    for part in ("metrics", "clean"):
        if "solve_rate" not in data[part] and "score_success" in data[part]:
            data[part]["solve_rate"] = np.asarray(data[part]["score_success"], float)
    g = read_group(results, "group_0", acts=acts)
    data["size"] = int(g["attrs"]["size"])
    data["grid"] = tuple(int(v) for v in g["attrs"].get("grid", ()))
    for k in ("final", "clean_final", "x0", "clean_x0", "condition_frames"):
        if k in g:
            data[k] = g[k]
    data["acts"] = g["acts"]
    return data


def _what(exp, d: dict, n: int) -> str:
    """What was run, for setups and titles: ``n mazes of 6x6`` or ``n loopmaze instances of level [4]``."""
    if exp.inputs.is_suite:
        return f"{n} {exp.inputs.task} instances of level {exp.inputs.levels} (success: the task's pixel scorer)"
    return f"{n} mazes of {d['size']}x{d['size']}"


def _videos(x: np.ndarray) -> np.ndarray:
    """model-space (..., 3, F, H, W) -> uint8 (..., F, H, W, 3)."""
    return mz.from_model_space(torch.from_numpy(np.asarray(x))).numpy()


def _last_blocks(video: np.ndarray):
    return read_blocks(video[-1])


def _soft_trail(frame: np.ndarray) -> np.ndarray:
    """Per block, how far its ring colour sits from open (0) toward trail (1), clipped to [0, 1]."""
    b = rearrange(frame.astype(np.float32), "(h p) (w q) c -> h w (p q) c", p=BLOCK_PX, q=BLOCK_PX)
    inner = np.zeros((BLOCK_PX, BLOCK_PX), bool)
    lo = (BLOCK_PX - AGENT_PX) // 2
    inner[lo : lo + AGENT_PX, lo : lo + AGENT_PX] = True
    ring = b[:, :, ~inner.ravel()].mean(2)
    o, t = PALETTE[OPEN].astype(np.float32), PALETTE[TRAIL].astype(np.float32)
    return np.clip(((ring - o) @ (t - o)) / ((t - o) @ (t - o)), 0, 1)


def _shrink(path: Path, scale: float = 0.6, colors: int = 128) -> None:
    """Filmstrips are large: downscale and store with a small palette (maze pictures have few colours)."""
    im = Image.open(path).convert("RGB")
    im = im.resize((int(im.width * scale), int(im.height * scale)), Image.LANCZOS)
    save_image(im.quantize(colors, method=Image.Quantize.FASTOCTREE), path, optimize=True)


def _components(cells: set) -> int:
    """Number of 4-connected components of a set of (row, col) cells."""
    seen, n = set(), 0
    for c in cells:
        if c not in seen:
            n += 1
            seen |= reachable(cells, c)
    return n


def _trail(classes: np.ndarray, open_: np.ndarray) -> set:
    return {tuple(b) for b in np.argwhere((classes == TRAIL) & open_)}


def _layout(cond: np.ndarray):
    layout, _ = read_blocks(cond)
    return layout, layout == OPEN


def _band(frac: float) -> int:
    return 0 if frac < 0.25 else 1 if frac < 0.75 else 2


def _frac(spec, n: int) -> tuple[int, float]:
    i = resolve_index(spec, n, "layers")[0]
    return i, i / n


# ---- analyses: (numbers, figures) --------------------------------------------------------------------------------------
def analyze_chain(results: Path, exp, loaded, out: Path):
    d = _read(results)
    x0 = d["x0"][0]  # (n, steps, C, F, H, W)
    n, steps = x0.shape[:2]
    final = _videos(d["final"][0])
    alt = np.zeros((n, steps))
    cand = np.zeros((n, steps))
    soft_off = np.zeros((n, steps))
    sharp = np.zeros((n, steps))  # sharp connected candidate routes (interp.tasks.candidates) per run and step
    commit = np.zeros(n, int)
    explore = np.zeros(n, bool)
    for i in range(n):
        layout, open_ = _layout(d["condition_frames"][i])
        full_layout = read_blocks(d["condition_frames"][i])[0]
        star = _trail(_last_blocks(final[i])[0], open_)
        vids = _videos(x0[i])
        sets = []
        for s in range(steps):
            t = _trail(_last_blocks(vids[s])[0], open_)
            sets.append(t)
            off = t - star
            alt[i, s] = len(off)
            cand[i, s] = (1 if t & star else 0) + _components(off)
            sharp[i, s] = candidate_routes(vids[s][-1], layout=full_layout).n
            soft = _soft_trail(vids[s][-1])
            mask = open_.copy()
            for b in star:
                mask[b] = False
            soft_off[i, s] = float(soft[mask].sum())
        same = [st == star for st in sets]
        c = steps - 1
        while c > 0 and same[c - 1]:
            c -= 1
        commit[i] = c if same[-1] else steps
        explore[i] = bool((alt[i, : max(commit[i], 1)] >= 2).any())
    mean_alt, mean_cand = alt.mean(0), cand.mean(0)
    late = slice(int(np.floor(0.8 * steps)), steps)
    before = slice(0, max(int(np.floor(0.8 * steps)), 1))
    sharp_peak, sharp_late = sharp[:, before].max(1), sharp[:, late].mean(1)
    chain = {
        "steps": steps, "n": n, "explore_share": float(explore.mean()), "peak_alt": float(mean_alt.max()),
        "late_alt": float(mean_alt[late].mean()), "peak_candidates": float(mean_cand.max()),
        "peak_step": int(mean_cand.argmax()), "late_candidates": float(mean_cand[late].mean()),
        "commit_median": float(np.median(commit)), "commit": commit.tolist(),
        "alt_curve": mean_alt.tolist(), "candidates_curve": mean_cand.tolist(), "soft_off_curve": soft_off.mean(0).tolist(),
        "solve_rate": float(np.mean(d["metrics"]["solve_rate"][0])),
        "sharp_candidates_curve": sharp.mean(0).tolist(),
        "samples": {"explore": (sharp_peak >= 2).tolist(), "peak_candidates": sharp_peak.tolist(),
                    "late_candidates": sharp_late.tolist(), "contrast": CONTRAST, "min_len": MIN_LEN,
                    "candidates": sharp.tolist()},
    }  # fmt: skip
    figs = [curves(range(steps), {"sharp candidate routes": chain["sharp_candidates_curve"],
                                  "candidate paths (any trail)": mean_cand, "off-path lit blocks": mean_alt,
                                  "off-path trail mass (soft)": chain["soft_off_curve"]},
                   out / "chain_candidates.png", xlabel="denoising step", ylabel="mean per run",
                   title=f"{d['size']}x{d['size']}: candidates in x0 per step (n={n})")]  # fmt: skip
    order = np.argsort(-alt.max(1), kind="stable")
    for tag, i in (("most_exploring", int(order[0])), ("typical", int(order[len(order) // 2]))):
        figs += [p for p in x0_filmstrip(torch.from_numpy(x0[i]), torch.from_numpy(d["condition_frames"][i]),
                                         out / f"chain_filmstrip_{tag}", rows=min(steps, 8),
                                         title=f"x0 per step, {tag} run (maze {i})") if p.suffix == ".png"]  # fmt: skip
    for p in figs[1:]:
        _shrink(p)
    setup = (
        f"{n} mazes of {d['size']}x{d['size']}, {steps} steps; x0's last frame read as blocks at every step; "
        f"a candidate is a sharp connected route (interp.tasks.candidates: contrast >= {CONTRAST}, >= {MIN_LEN} "
        "blocks); the older 'candidate paths' and 'off-path lit blocks' count any block nearest the trail "
        "colour, blur included."
    )
    return {"chain": chain, "setup": setup}, figs


NOISE_PARTS = {"replace": "noise", "renoise": "noise_renoise"}  # noise mode -> its entry in the numbers


def analyze_noise(results: Path, exp, loaded, out: Path):
    d = _read(results)
    rates = d["metrics"]["solve_rate"].mean(1)
    change = d["metrics"]["mse"].mean(1) if "mse" in d["metrics"] else None  # output vs the unintervened run's
    clean = float(np.mean(d["clean"]["solve_rate"]))
    n = int(d["metrics"]["solve_rate"].shape[1])
    frames = d["final"].shape[3]
    n_steps = sampler_of(exp, loaded).steps
    step_pts: dict[str, dict[int, int]] = {}  # mode -> step -> sweep point
    frame_pts: dict[str, dict[int, float]] = {}  # mode -> frame -> solve rate
    frame_rows: dict[str, dict[int, int]] = {}  # mode -> frame -> sweep point
    solved = np.asarray(d["metrics"]["solve_rate"], float)  # (points, n)
    for p, coords in enumerate(d["points"]):
        iv = next(iter(coords.values()))
        mode = iv.get("mode", "replace")
        if iv.get("frames") is not None:
            fi = resolve_index(iv["frames"], frames, "frames")[0]
            frame_pts.setdefault(mode, {})[fi] = float(rates[p])
            frame_rows.setdefault(mode, {})[fi] = p
        else:
            step_pts.setdefault(mode, {})[resolve_index(iv["steps"], n_steps, "steps")[0]] = p
    numbers: dict = {}
    for mode, pts in step_pts.items():
        at = sorted(pts)
        curve = [float(rates[pts[s]]) for s in at]
        fr = frame_pts.get(mode, {})
        numbers[NOISE_PARTS[mode]] = {
            "mode": mode, "clean": clean, "n": n, "steps": n_steps, "step_at": at, "step_curve": curve,
            "step_min": float(min(curve)), "step_argmin": int(at[int(np.argmin(curve))]),
            "change_curve": None if change is None else [float(change[pts[s]]) for s in at],
            "frame_rates": {f"frame {f}": r for f, r in sorted(fr.items())},
            "frame_mid": [r for f, r in sorted(fr.items()) if 0 < f < frames - 1],
            "samples": {"clean": np.asarray(d["clean"]["solve_rate"], float).tolist(),
                        "step": [solved[pts[s]].tolist() for s in at],
                        "frame": {f"frame {f}": solved[q].tolist() for f, q in sorted(frame_rows.get(mode, {}).items())},
                        "frame_mid_keys": [f"frame {f}" for f in sorted(fr) if 0 < f < frames - 1]},
        }  # fmt: skip
    plt = _plt()
    fig, ax = plt.subplots(1, 3 if change is not None else 2, figsize=(11 if change is not None else 8, 3),
                           gridspec_kw={"width_ratios": [2, 1.4, 1][: 3 if change is not None else 2]})  # fmt: skip
    labels = {
        "replace": "replace: latent := N(0, 1) (paper)",
        "renoise": "renoise: noise resampled at the step's level",
    }
    for mode, part in ((m, numbers[NOISE_PARTS[m]]) for m in step_pts):
        ax[0].plot(part["step_at"], part["step_curve"], marker="o", ms=3, label=labels[mode])
        if change is not None:
            ax[-1].plot(part["step_at"], part["change_curve"], marker="o", ms=3, label=mode)
    if change is not None:
        ax[-1].set(xlabel="step noised", ylabel="MSE to the unintervened video", yscale="log", title="output change")
        ax[-1].legend(fontsize=7)
    ax[0].axhline(clean, ls="--", c="grey", lw=1, label="unintervened")
    ax[0].set(xlabel=f"step noised (all frames), of {n_steps}", ylabel="solve rate", ylim=(-0.05, 1.05),
              title="noise at one step")  # fmt: skip
    ax[0].legend(fontsize=7)
    for k, (mode, fr) in enumerate(frame_pts.items()):
        fs = sorted(fr)
        width = 0.8 / len(frame_pts)
        ax[1].bar(np.arange(len(fs)) + k * width, [fr[f] for f in fs], width, label=mode, align="edge")
        ax[1].set_xticks(np.arange(len(fs)) + 0.4, [str(f) for f in fs])
    ax[1].axhline(clean, ls="--", c="grey", lw=1)
    ax[1].set(xlabel="latent frame noised (every step)", ylim=(-0.05, 1.05), title="noise at one frame")
    if len(frame_pts) > 1:
        ax[1].legend(fontsize=7)
    figs = [_save(fig, out / "noise_step_vs_frame.png")]
    swept = ", ".join(f"{m}: {len(p)}" for m, p in step_pts.items())
    setup = (
        f"{_what(exp, d, n)}, {n_steps} denoising steps; swept steps per mode ({swept}); frames "
        f"noised at every step ({', '.join(frame_pts) or 'none'}). `replace` (the paper's protocol): the latent "
        "entering the step := fresh N(0, 1), whatever the step's noise level, so at a late step (sigma small) it "
        "is a far larger perturbation than at an early one and leaves fewer steps to redraw the video. `renoise` "
        "(level-matched): the latent entering step s, (1 - sigma_s) x0 + sigma_s eps_hat with x0 the model's "
        "prediction at step s-1, gets fresh noise at the same level: (1 - sigma_s) x0 + sigma_s eps (the model's "
        "belief kept, its noise resampled; at the first step, where a flow-matching sigma is 1, the two coincide). "
        "Right panel: how far each intervention moves the final video from the unintervened one (mean MSE), "
        "which shows where a perturbation changes the sample even when the solve rate does not move."
    )
    numbers["setup"] = setup
    return numbers, figs


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def analyze_swap(results: Path, exp, loaded, out: Path):
    d = _read(results)
    n_blocks = sum(1 for _ in loaded.adapter.blocks(loaded.transformer))
    final = _videos(d["final"])  # (P, n, F, H, W, 3)
    n = final.shape[1]
    mazes = mz.eval_mazes(d["size"], n, exp.inputs.seed)
    other = exp.interventions[0].other
    sols = []
    walls = []
    for m in mazes:
        sols.append({b for b in mz.block_path(m)[1:-1]})
        walls.append(mz.layout_blocks(m) == mz.WALL)
    per: dict = {}
    for p, coords in enumerate(d["points"]):
        layers = coords.get("interventions.0.layers", exp.interventions[0].layers)
        steps = str(coords.get("interventions.0.steps", exp.interventions[0].steps))
        blocks, frac = _band_frac(layers, n_blocks)  # a band (or one block): its middle as a depth fraction
        li = f"{blocks[0]}-{blocks[-1]}" if len(blocks) > 1 else str(blocks[0])
        ans, struct = [], []
        for i in range(n):
            j = (i + other) % n
            cls, _ = _last_blocks(final[p, i])
            t = {tuple(b) for b in np.argwhere(cls == mz.TRAIL)}
            ans.append(_jaccard(t, sols[j]) > _jaccard(t, sols[i]))
            diff = walls[i] != walls[j]
            w = cls == mz.WALL
            struct.append(bool(diff.any()) and float((w[diff] == walls[j][diff]).mean()) > 0.5)
        per.setdefault(steps, {})[frac] = (li, float(np.mean(ans)), float(np.mean(struct)), ans, struct)
    # the step range whose best layer flips most (the first step is the paper's protocol; all are reported)
    first = max(per, key=lambda k: max(v[1] for v in per[k].values()))
    rows = per[first]
    flips = {f: v[1] for f, v in rows.items()}
    best = max(flips, key=flips.get)

    def bands(k):
        return [float(np.mean([v[k] for f, v in rows.items() if _band(f) == b] or [np.nan])) for b in range(3)]

    swap = {"answer_flip": flips, "best_layer": rows[best][0], "n": n, "band_answer": bands(1), "band_structure": bands(2),
            "steps": first, "per_steps": {s: {str(v[0]): [v[1], v[2]] for v in r.values()} for s, r in per.items()},
            "samples": {"flip": {str(f): [float(a) for a in v[3]] for f, v in rows.items()},
                        "structure": {str(f): [float(a) for a in v[4]] for f, v in rows.items()}}}  # fmt: skip
    series = {}
    for s, r in per.items():
        fr = sorted(r)
        series[f"answer follows B (steps {s})"] = [r[f][1] for f in fr]
        series[f"walls follow B (steps {s})"] = [r[f][2] for f in fr]
    fr = sorted(rows)
    figs = [curves(list(range(len(fr))), series, out / "swap_per_band.png", xlabel=_band_axis([rows[f][0] for f in fr]),
                   ylabel="share of runs",
                   title=f"B's hidden states put into A's run ({d['size']}x{d['size']}, n={n})")]  # fmt: skip
    site = exp.interventions[0].site
    setup = (
        f"{n} mazes of {d['size']}x{d['size']}; B = the next maze (same noise); `{site}` of a band of blocks swapped "
        f"at steps {list(per)}; answer = trail closer (Jaccard) to B's solution than to A's; the verdicts read the "
        f"step range whose best layer flips most ({first})."
    )
    return {"swap": swap, "setup": setup}, figs


def analyze_skip(results: Path, exp, loaded, out: Path):
    d = _read(results)
    n_blocks = sum(1 for _ in loaded.adapter.blocks(loaded.transformer))
    clean = float(np.mean(d["clean"]["solve_rate"]))
    rates = d["metrics"]["solve_rate"].mean(1)
    ax = d["axes"]
    steps_vals, layer_vals = ax["interventions.0.steps"], ax["interventions.0.layers"]
    grid = clean - rates.reshape(len(steps_vals), len(layer_vals))
    idx = [_frac(v, n_blocks) for v in layer_vals]
    band_drop = [float(np.mean([grid[:, k].mean() for k, (_, f) in enumerate(idx) if _band(f) == b] or [np.nan]))
                 for b in range(3)]  # fmt: skip
    w = np.unravel_index(np.argmax(grid), grid.shape)
    skip = {"clean": clean, "band_drop": band_drop, "n": int(d["metrics"]["solve_rate"].shape[1]), "step_drop": grid.mean(1).tolist(),
            "worst": [str(steps_vals[w[0]]), idx[w[1]][0], float(grid[w])], "grid": grid.tolist(),
            "layers": [i for i, _ in idx], "step_ranges": [str(s) for s in steps_vals],
            "samples": {"clean": np.asarray(d["clean"]["solve_rate"], float).tolist(),
                        "solved": np.asarray(d["metrics"]["solve_rate"], float).reshape(
                            len(steps_vals), len(layer_vals), -1).tolist(),
                        "fracs": [f for _, f in idx]}}  # fmt: skip
    what = f"{exp.inputs.task}: success drop" if exp.inputs.is_suite else "solve-rate drop"
    figs = [heatmap(grid, steps_vals, [i for i, _ in idx], out / "skip_drop_step_x_layer.png", row_name="steps skipped",
                    col_name="block skipped", title=f"{what} (clean {clean:.2f})")]  # fmt: skip
    setup = f"{_what(exp, d, d['metrics']['solve_rate'].shape[1])}; one block made the identity over a step range."
    return {"skip": skip, "setup": setup}, figs


def analyze_memory(results: Path, exp, loaded, out: Path):
    d = _read(results, acts=False)
    x0 = d["x0"][0]
    n, steps = x0.shape[:2]
    frames = x0.shape[3]
    fid = np.zeros((n, steps, frames))
    ok = np.zeros((n, steps), bool)
    wrong_path = np.zeros((n, steps), bool)  # any trail reaching the goal, blur included (the older measure)
    sharp_ans = np.full((n, steps), "none", dtype=object)  # sharp complete routes only (interp.tasks.candidates)
    for i in range(n):
        cond = d["condition_frames"][i]
        layout, _ = read_blocks(cond)
        vids = _videos(x0[i])
        for s in range(steps):
            for f in range(frames):
                cls, _ = read_blocks(vids[s][f])
                cls = np.where(cls == mz.TRAIL, mz.OPEN, cls)
                fid[i, s, f] = float((cls == layout).mean())
            sc = score_video(vids[s], cond)
            ok[i, s] = sc.success
            wrong_path[i, s] = sc.goal_reached and not sc.success
            sharp_ans[i, s] = sharp_answer(vids[s][-1], cond)
    final_ok = np.asarray(d["metrics"]["solve_rate"][0], bool)
    mid = slice(0, steps - 1)
    loose_fix = final_ok & wrong_path[:, mid].any(1)
    fix = final_ok & (sharp_ans[:, mid] == "wrong").any(1)
    brk = ~final_ok & (sharp_ans[:, mid] == "right").any(1)
    last = fid[:, :, -1].mean(0)
    half = slice(steps // 2, steps)
    first95 = next((s for s in range(steps) if last[s] >= 0.95), None)
    memory = {"layout_final": float(last[-1]), "layout_min_late": float(last[half].min()), "layout_first_step": first95,
              "layout_curve_per_frame": fid.mean(0).T.tolist(), "wrong_then_right": float(fix.mean()),
              "right_then_wrong": float(brk.mean()), "n_fix": int(fix.sum()), "n_break": int(brk.sum()), "n": n,
              "final": float(final_ok.mean()), "solved_curve": ok.mean(0).tolist(), "steps": steps,
              "wrong_then_right_any_trail": float(loose_fix.mean()),
              "sharp_wrong_curve": (sharp_ans == "wrong").mean(0).tolist(),
              "samples": {"fix": fix.tolist(), "break": brk.tolist(), "layout_final": fid[:, -1, -1].tolist(),
                          "layout_min_late": fid[:, half, -1].min(1).tolist()}}  # fmt: skip
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(8, 3))
    for f in range(frames):
        ax[0].plot(range(steps), fid.mean(0)[:, f], marker="o", ms=2, label=f"frame {f}")
    ax[0].set(xlabel="step", ylabel="layout blocks kept", title="working memory: layout in x0", ylim=(0, 1.02))
    ax[0].legend(fontsize=6)
    ax[1].plot(range(steps), ok.mean(0), marker="o", ms=2, label="x0 solves the maze")
    ax[1].plot(range(steps), wrong_path.mean(0), marker="o", ms=2, label="x0 draws a wrong start-goal trail (any)")
    ax[1].plot(range(steps), (sharp_ans == "wrong").mean(0), marker="o", ms=2, label="x0 draws a sharp wrong route")
    ax[1].set(xlabel="step", ylabel="share of runs", title="answers in x0 per step", ylim=(-0.02, 1.02))
    ax[1].legend(fontsize=6)
    figs = [_save(fig, out / "memory_layout_and_answers.png")]
    numbers = {"memory": memory}
    probes, pfigs = _probe_steps(results, d, exp, loaded, out)
    if probes is not None:
        numbers["probes"] = probes
    setup = (
        f"{n} mazes of {d['size']}x{d['size']}, {steps} steps; x0 decoded at every step; probes: logistic, every "
        f"captured block ({len([k for k in d['acts'] if k.startswith('cond/')])} sites), last-frame tokens (one per "
        "block of the maze), labels wall (the layout) and path (the solution), classes balanced; 60/20/20 split by "
        "maze; control task: each token position gets a random label (Hewitt and Liang)."
    )
    numbers["setup"] = setup
    return numbers, figs + pfigs


def _probe_steps(results: Path, d: dict, exp, loaded, out: Path):
    """Perception before action on a maze model: probes of ``wall`` (the layout) and ``path`` (the solution) at
    every captured block, at :data:`SUITE_PROBE_STEPS` steps, on the last frame's tokens, with a position control
    task (:func:`_probes_by_block`)."""
    if loaded.task is None:
        return None, []
    n = d["x0"].shape[1] if "x0" in d else len(d["condition_frames"])
    mazes = list(build_inputs(loaded.task, n, exp.inputs.seed, d["size"]).instances)
    return _probes_by_block(results, d, exp, out, labels=("wall", "path"), mazes=mazes,
                            label_names={"layout": "wall", "answer": "path"}, title="maze")  # fmt: skip


def _probes_by_block(results: Path, d: dict, exp, out: Path, *, labels: tuple[str, str], label_names: dict[str, str],
                     title: str, arrays: dict | None = None, mazes: list | None = None):  # fmt: skip
    """Linear probes of two labels (``labels``: the layout's, read by the perception rule as ``wall``, and the
    answer's, read as ``path``) at every captured block, at :data:`SUITE_PROBE_STEPS` steps evenly spaced over the
    trajectory, on the last latent frame's tokens, with a position control task (Hewitt and Liang): the best block's
    curve per label, its control-task curve and selectivity, and every block's curves. Reads one site at a time
    (the probed steps only), so a capture of every block at every step is never held in memory."""
    sites = sorted((k for k in d["acts"] if k.startswith("cond/")), key=lambda k: int(k.split(".")[1]))
    n = d["x0"].shape[1] if "x0" in d else 0
    if not sites or n < 5:
        return None, []
    steps = d["x0"].shape[2]
    frames, rows, cols = d["grid"]
    at = sorted(set(np.linspace(0, steps - 1, min(SUITE_PROBE_STEPS, steps)).round().astype(int).tolist()))
    per = rows * cols
    last = slice((frames - 1) * per, frames * per)
    acts = {}
    for k in sites:  # (points, n, steps, tokens, d): the probed steps of point 0, last latent frame
        v = read_site_rows(results, "group_0", k, (0, slice(None), at))
        acts[k.split("/", 1)[1]] = np.swapaxes(v[:, :, last], 0, 1)  # (steps probed, n, tokens, d)
    plain = out / "probe_input.h5"
    write_plain(plain, acts, grid=(1, rows, cols))
    try:
        res = run_probes(plain, labels=list(labels), arrays=arrays, mazes=mazes, control="position", bootstrap=200,
                         device=str(exp.device), progress=False, out=out / "probes")  # fmt: skip
    finally:
        plain.unlink(missing_ok=True)
    probes = {"threshold": PROBE_THRESHOLD, "steps": len(at), "probed_steps": at, "n": n, "sites": res.sites,
              "labels": label_names}  # fmt: skip
    roles = {"wall": "layout", "path": "answer"}  # the rule's key -> the label's role
    names = dict(zip(labels, roles))  # label -> the rule's key
    for lab, key in names.items():
        m = res.labels[lab].metrics
        acc = m["accuracy"]  # (3, steps, sites)
        best = acc[0].argmax(1)
        pick = np.arange(len(at))
        probes[f"{key}_curve"] = acc[0][pick, best].tolist()
        probes[f"{key}_lo"], probes[f"{key}_hi"] = acc[1][pick, best].tolist(), acc[2][pick, best].tolist()
        probes[f"control_{key}_curve"] = m["control_accuracy"][0][pick, best].tolist()
        probes[f"selectivity_{key}_lo"] = m["selectivity"][1][pick, best].tolist()
        probes[f"{key}_by_block"] = acc[0].tolist()  # (steps probed, sites): every block's curve
        probes[f"control_{key}_by_block"] = m["control_accuracy"][0].tolist()
        t = next((s for s in range(len(at)) if acc[0][s].max() >= PROBE_THRESHOLD), None)
        site = None if t is None else res.sites[int(np.argmax(acc[0][t] >= PROBE_THRESHOLD))]
        first = "layout" if key == "wall" else "path"  # the rule's t_layout / t_path
        probes[f"t_{first}"], probes[f"site_{first}"] = t, site
        probes[f"depth_{first}"] = None if site is None else res.sites.index(site)
        probes[f"acc0_{key}"] = float(acc[0][0].max())
    series = {f"{roles[key]} ({label_names[roles[key]]})": probes[f"{key}_curve"] for key in names.values()}
    series |= {f"{roles[key]}: control task": probes[f"control_{key}_curve"] for key in names.values()}
    figs = [curves(at, series, out / "probes_per_step.png", xlabel="step", ylabel="probe accuracy (best block)",
                   title=f"{title}: perception before action (n={n})")]  # fmt: skip
    for lab, key in names.items():
        figs.append(heatmap(np.asarray(probes[f"{key}_by_block"]), at, [s.split(".")[1] for s in res.sites],
                            out / f"probes_{roles[key]}_step_x_block.png", row_name="step", col_name="block",
                            title=f"{roles[key]} ({label_names[roles[key]]}) probe accuracy"))  # fmt: skip
    return probes, figs


def analyze_ensemble(results: Path, exp, loaded, out: Path):
    d = _read(results)
    solved = d["metrics"]["solve_rate"]  # (P, n)
    clean = np.asarray(d["clean"]["solve_rate"], float)
    n = len(clean)
    singles, ens = {}, {}
    for p, coords in enumerate(d["points"]):
        iv = next(iter(coords.values()))
        if iv.get("seeds") is not None and len(iv["seeds"]) == 1:
            singles[iv["seeds"][0]] = p
        else:
            ens[f"layers {iv.get('layers')}, steps {iv.get('steps')}"] = p
    members = [None] + [singles[s] for s in sorted(singles)]
    finals = [d["clean_final"]] + [d["final"][p] for p in members[1:]]
    wins = [clean] + [solved[p] for p in members[1:]]
    chosen = []
    for i in range(n):
        x = np.stack([f[i].reshape(-1) for f in finals])
        dist = ((x[:, None] - x[None]) ** 2).mean(-1).sum(1)
        chosen.append(wins[int(np.argmin(dist))][i])
    rates = {k: float(solved[p].mean()) for k, p in ens.items()}
    paper_name = next((k for k in rates if "25%:50%" in k and k.endswith("steps 0")), next(iter(rates), None))
    best_name = max(rates, key=rates.get) if rates else None
    ensemble = {"single": float(clean.mean()), "best_of_3": float(np.mean(chosen)),
                "oracle": float(np.max(np.stack(wins), 0).mean()), "paper_config": rates.get(paper_name, float("nan")),
                "paper_config_name": paper_name, "best_config": rates.get(best_name, float("nan")),
                "best_config_name": best_name, "configs": rates, "n": n,
                "seed_rates": [float(w.mean()) for w in wins],
                "samples": {"single": clean.tolist(), "best_of_3": [float(c) for c in chosen],
                            "paper_config": (solved[ens[paper_name]] if paper_name in ens else clean * np.nan).tolist()}}  # fmt: skip
    plt = _plt()
    names = ["one seed", "best-of-3 (medoid)", "oracle best-of-3", *rates]
    vals = [ensemble["single"], ensemble["best_of_3"], ensemble["oracle"], *rates.values()]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
    ax.barh(range(len(names)), vals, color=["grey", "tab:blue", "lightgrey"] + ["tab:green"] * len(rates))
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    where = f"{exp.inputs.task} level {exp.inputs.levels}" if exp.inputs.is_suite else f"{d['size']}x{d['size']}"
    ax.set(xlabel="solve rate", xlim=(0, 1), title=f"seed ensemble, {where} (n={n})")
    figs = [_save(fig, out / "ensemble_rates.png")]
    setup = (
        f"{_what(exp, d, n)}; seeds 0, 1, 2; ensemble = block outputs averaged over the band "
        "at the steps given (its output is seed 0's member); best-of-3 picks the sample with the smallest summed "
        "squared distance to the other two (no scorer). The best swept configuration is chosen on the same mazes."
    )
    return {"ensemble": ensemble, "setup": setup}, figs


def _band_axis(blocks: list[str]) -> str:
    """A band-swap figure's x label: each band's index and its blocks (``0: blocks 0-3, 1: blocks 4-7``)."""
    return "band swapped (" + ", ".join(f"{i}: blocks {b}" for i, b in enumerate(blocks)) + ")"


def _band_frac(spec, n: int) -> tuple[list[int], float]:
    """The blocks of a layer band and its middle as a depth fraction (a quarter band 25%:50% -> 0.375)."""
    idx = resolve_index(spec, n, "layers")
    return idx, (idx[0] + idx[-1] + 1) / 2 / n


def analyze_prompt_swap(results: Path, exp, loaded, out: Path):
    """Prompt swap (goalmaze pairs): a flip is an A-run that reaches B's goal (the other prompt's) and not its own,
    read by the task's pixel scorer; the clean runs' rate of the same is the null's baseline."""
    d = read_metrics(results)
    n_blocks = sum(1 for _ in loaded.adapter.blocks(loaded.transformer))
    other = np.asarray(d["metrics"]["score_reached_other"])  # (points, samples)
    target = np.asarray(d["metrics"]["score_reached_target"])
    flips = (other > 0.5) & (target < 0.5)
    c = {k: np.asarray(v) for k, v in d["clean"].items()}
    clean_flip = (c["score_reached_other"] > 0.5) & (c["score_reached_target"] < 0.5)
    clean_ok = c["score_success"] > 0.5
    n = flips.shape[1]
    iv = exp.interventions[0]
    per: dict = {}
    for p, coords in enumerate(d["points"]):
        layers = coords.get("interventions.0.layers", iv.layers)
        steps = str(coords.get("interventions.0.steps", iv.steps))
        blocks, frac = _band_frac(layers, n_blocks)
        per.setdefault(steps, {})[frac] = (f"{blocks[0]}-{blocks[-1]}", flips[p].astype(float))
    first = max(per, key=lambda k: max(v[1].mean() for v in per[k].values()))  # the most-flipping step range
    rows = per[first]
    fr = sorted(rows)
    best = max(fr, key=lambda f: rows[f][1].mean())

    def bands(k):
        return [float(np.mean([rows[f][1].mean() for f in fr if _band(f) == b] or [np.nan])) for b in range(3)]

    swap = {"answer_flip": {f: float(rows[f][1].mean()) for f in fr}, "best_layer": rows[best][0], "n": n,
            "band_answer": bands(1), "steps": first, "clean_flip": float(clean_flip.mean()),
            "clean_success": float(clean_ok.mean()),
            "per_steps": {s: {r[f][0]: float(r[f][1].mean()) for f in sorted(r)} for s, r in per.items()},
            "samples": {"flip": {str(f): rows[f][1].tolist() for f in fr}}}  # fmt: skip
    series = {f"steps {s}": [r[f][1].mean() for f in sorted(r)] for s, r in per.items()}
    xs = list(range(len(fr)))
    figs = [curves(xs, series, out / "prompt_swap_per_band.png", xlabel=_band_axis([rows[f][0] for f in fr]),
                   ylabel="share of runs reaching B's goal",
                   title="B's prompt's residual stream put into A's run "
                         f"(goalmaze {exp.inputs.levels}, n={n})")]  # fmt: skip
    setup = (
        f"{exp.inputs.count} goalmaze mazes of level {exp.inputs.levels}, each run with both prompts ({n} runs; "
        f"B = the same first frame with the other prompt, same noise); `{iv.site}` of a band of blocks swapped "
        f"at steps {list(per)}; flip = A's run reaches B's goal and not its own (the task's pixel scorer); clean "
        f"runs: success {clean_ok.mean():.2f}, other goal {clean_flip.mean():.2f}; the verdict reads the step "
        f"range whose best band flips most ({first})."
    )
    return {"prompt_swap": swap, "setup": setup}, figs


# ---- the suite's analyses that read decoded x0 (the organism: latents decoded through the pipeline's VAE) -----------
SUITE_PROBE_STEPS = 11  # probed steps, evenly spaced from the first to the last (every 10% of the trajectory)


def _suite_instances(exp) -> list[dict]:
    """The instances a suite experiment ran, in sample order (its one level)."""
    return [m["instance"] for m in exp.inputs.prompt_inputs(exp.inputs.levels[0])[2]]


def _decode(loaded, latents: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Latents (..., C, F, H, W) -> uint8 videos (..., F', H', W', 3) through the pipeline's VAE, in chunks."""
    vae = getattr(loaded, "vae", None)
    if vae is None:
        raise ValueError(f"{loaded.name}: the suite analyses decode latents and need the whole pipeline (its VAE)")
    p = next(vae.parameters())
    x = np.asarray(latents, np.float32)
    flat = x.reshape(-1, *x.shape[-4:])
    parts = [decode_video(loaded, torch.from_numpy(flat[i : i + chunk]).to(p.device, p.dtype))
             for i in range(0, len(flat), chunk)]  # fmt: skip
    v = np.concatenate(parts)
    return v.reshape(*x.shape[:-4], *v.shape[1:])


def _strip(frames: np.ndarray, path: Path, k: int = 10) -> Path:
    """A row of ``k`` evenly spaced frames (steps, H, W, 3) with a white gap, saved as PNG."""
    idx = sorted(set(np.linspace(0, len(frames) - 1, min(k, len(frames))).round().astype(int).tolist()))
    gap = np.full((frames.shape[1], 4, 3), 255, np.uint8)
    row = np.concatenate([x for i in idx for x in (frames[i], gap)][:-1], 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(Image.fromarray(row), path)
    return path


def analyze_suite_chain(results: Path, exp, loaded, out: Path):
    """Chain-of-Steps on a route task: sharp candidate routes in every step's decoded x0 (last frame)."""
    d = _read(results)
    task, insts = exp.inputs.task, _suite_instances(exp)
    x0 = d["x0"][0]  # (n, steps, C, F, H, W) latents
    n, steps = x0.shape[:2]
    sharp, off = np.zeros((n, steps)), np.zeros((n, steps))
    commit = np.zeros(n, int)
    vids_of = {}
    for i in range(n):
        vids = _decode(loaded, x0[i])  # (steps, F, H, W, 3)
        vids_of[i] = vids[:, -1]
        # the final answer: the last step's x0 is the final latent (the flow-matching step to sigma 0 lands on it)
        star = ans.trail(task, vids[-1][-1], insts[i])
        sets = [ans.trail(task, vids[s][-1], insts[i]) for s in range(steps)]
        for s in range(steps):
            sharp[i, s] = ans.candidates(task, vids[s][-1], insts[i]).n
            off[i, s] = len(sets[s] - star)
        c = steps - 1
        while c > 0 and sets[c - 1] == star:
            c -= 1
        commit[i] = c if sets[-1] == star else steps
    late = slice(int(np.floor(0.8 * steps)), steps)
    before = slice(0, max(int(np.floor(0.8 * steps)), 1))
    peak, late_n = sharp[:, before].max(1), sharp[:, late].mean(1)
    curve = sharp.mean(0)
    chain = {
        "steps": steps, "n": n, "explore_share": float((peak >= 2).mean()), "peak_alt": float(off.mean(0).max()),
        "late_alt": float(off.mean(0)[late].mean()), "peak_candidates": float(curve.max()),
        "peak_step": int(curve.argmax()), "late_candidates": float(curve[late].mean()),
        "commit_median": float(np.median(commit)), "commit": commit.tolist(), "candidates_curve": curve.tolist(),
        "sharp_candidates_curve": curve.tolist(), "alt_curve": off.mean(0).tolist(),
        "solve_rate": float(np.mean(d["metrics"]["solve_rate"][0])),
        "samples": {"explore": (peak >= 2).tolist(), "peak_candidates": peak.tolist(),
                    "late_candidates": late_n.tolist(), "contrast": CONTRAST, "min_len": MIN_LEN,
                    "candidates": sharp.tolist()},
    }  # fmt: skip
    figs = [curves(range(steps), {"sharp candidate routes": curve, "sharp trail off the final answer": off.mean(0)},
                   out / "chain_candidates.png", xlabel="denoising step", ylabel="mean per run",
                   title=f"{task} level {exp.inputs.levels}: candidates in x0 per step (n={n})")]  # fmt: skip
    most = int(np.argmax(peak))
    figs.append(_strip(vids_of[most], out / "chain_x0_most_exploring.png"))
    right = "two goals: a route to either is complete" if task == "goalmaze" else "any shortest path is right"
    setup = (
        f"{_what(exp, d, n)}, {steps} steps; x0 decoded through the VAE at every step, its last frame read as blocks; "
        f"a candidate is a sharp connected route (interp.tasks.answers: trail colour >= {CONTRAST} of the way from "
        f"open, >= {MIN_LEN} blocks; {right})."
    )
    return {"chain": chain, "setup": setup}, figs


def analyze_suite_memory(results: Path, exp, loaded, out: Path):
    """Working memory, self-correction (decoded x0 at every step) and perception before action (probes of every
    captured block, with a control task) on a suite task."""
    d = _read(results, acts=False)
    task, insts = exp.inputs.task, _suite_instances(exp)
    scorer = get_task(task)
    x0 = d["x0"][0]
    n, steps = x0.shape[:2]
    fid, ok = None, np.zeros((n, steps), bool)
    answer = np.full((n, steps), "none", dtype=object)
    for i in range(n):
        vids = _decode(loaded, x0[i])
        if fid is None:
            fid = np.zeros((n, steps, vids.shape[1]))
        for s in range(steps):
            fid[i, s] = ans.layout_fidelity(task, vids[s], insts[i])
            answer[i, s] = ans.answer(task, vids[s][-1], insts[i])
            ok[i, s] = scorer.score(vids[s], insts[i])["success"] > 0.5
    final_ok = np.asarray(d["metrics"]["solve_rate"][0]) > 0.5
    mid = slice(0, steps - 1)
    fix = final_ok & (answer[:, mid] == "wrong").any(1)
    brk = ~final_ok & (answer[:, mid] == "right").any(1)
    last = fid[:, :, -1].mean(0)
    half = slice(steps // 2, steps)
    memory = {"layout_final": float(last[-1]), "layout_min_late": float(last[half].min()),
              "layout_first_step": next((s for s in range(steps) if last[s] >= 0.95), None),
              "layout_curve_per_frame": fid.mean(0).T.tolist(), "wrong_then_right": float(fix.mean()),
              "right_then_wrong": float(brk.mean()), "n_fix": int(fix.sum()), "n_break": int(brk.sum()), "n": n,
              "final": float(final_ok.mean()), "solved_curve": ok.mean(0).tolist(), "steps": steps,
              "sharp_wrong_curve": (answer == "wrong").mean(0).tolist(),
              "sharp_right_curve": (answer == "right").mean(0).tolist(),
              "samples": {"fix": fix.tolist(), "break": brk.tolist(), "layout_final": fid[:, -1, -1].tolist(),
                          "layout_min_late": fid[:, half, -1].min(1).tolist()}}  # fmt: skip
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(8, 3))
    ax[0].plot(range(steps), last, marker="o", ms=2, label="last frame")
    ax[0].plot(range(steps), fid.mean((0, 2)), marker="o", ms=2, label="all frames")
    ax[0].set(xlabel="step", ylabel="layout blocks kept", title=f"{task}: layout in x0", ylim=(0, 1.02))
    ax[0].legend(fontsize=6)
    for key, label in (("solved_curve", "x0 solves the task"), ("sharp_right_curve", "sharp right answer"),
                       ("sharp_wrong_curve", "sharp wrong answer")):  # fmt: skip
        ax[1].plot(range(steps), memory[key], marker="o", ms=2, label=label)
    ax[1].set(xlabel="step", ylabel="share of runs", title="answers in x0 per step", ylim=(-0.02, 1.02))
    ax[1].legend(fontsize=6)
    figs = [_save(fig, out / "memory_layout_and_answers.png")]
    numbers = {"memory": memory}
    probes, pfigs = _suite_probes(results, d, exp, insts, out)
    if probes is not None:
        numbers["probes"] = probes
    numbers["setup"] = (
        f"{_what(exp, d, n)}, {steps} steps; x0 decoded through the VAE at every step; layout = the blocks of the "
        "same class in every frame of the solution video; answers read from sharp blocks only (interp.tasks.answers); "
        f"probes: logistic, every captured block ({len([k for k in d['acts'] if k.startswith('cond/')])} sites), "
        f"last-latent-frame tokens, labels layout = {ans.LABEL_NAMES[task]['layout']}, answer = "
        f"{ans.LABEL_NAMES[task]['answer']}; 60/20/20 split by instance; control task: each token position gets a "
        "random label (Hewitt and Liang)."
    )
    return numbers, figs + pfigs


def _suite_probes(results: Path, d: dict, exp, insts: list[dict], out: Path):
    """Probes of ``layout`` and ``answer`` (:func:`interp.tasks.answers.probe_labels`) at every captured block
    (:func:`_probes_by_block`)."""
    if len(insts) < 5:
        return None, []
    labels = [ans.probe_labels(exp.inputs.task, inst, 1) for inst in insts]
    arrays = {name: np.stack([lab[name] for lab in labels]) for name in ("layout", "answer")}  # (n, 1, rows, cols)
    return _probes_by_block(results, d, exp, out, labels=("layout", "answer"), arrays=arrays,
                            label_names=ans.LABEL_NAMES[exp.inputs.task], title=exp.inputs.task)  # fmt: skip


def analyze_suite_swap(results: Path, exp, loaded, out: Path):
    """Layer-band swap on a suite task: B (the next instance, same noise) put into A's run; a flip is an output the
    task's scorer accepts for B and not for A; structure: A's and B's differing layout blocks follow B."""
    d = _read(results)
    task, insts = exp.inputs.task, _suite_instances(exp)
    scorer = get_task(task)
    n_blocks = sum(1 for _ in loaded.adapter.blocks(loaded.transformer))
    iv = exp.interventions[0]
    videos = _decode(loaded, d["final"])  # (P, n, F, H, W, 3)
    clean = _decode(loaded, d["clean_final"])
    n = videos.shape[1]
    other = [(i + int(iv.other)) % n for i in range(n)]
    lay = [ans.layout(task, inst) for inst in insts]

    def read(video, i):
        j = other[i]
        flip = scorer.score(video, insts[j])["success"] > 0.5 and scorer.score(video, insts[i])["success"] < 0.5
        (la, sa), (lb, sb) = lay[i], lay[j]
        diff = sa & sb & (la != lb)
        got = ans.frame_classes(task, video[-1])
        return flip, bool(diff.any()) and float((got[diff] == lb[diff]).mean()) > 0.5

    clean_flip = np.array([read(clean[i], i)[0] for i in range(n)], float)
    per: dict = {}
    for p, coords in enumerate(d["points"]):
        layers = coords.get("interventions.0.layers", iv.layers)
        steps = str(coords.get("interventions.0.steps", iv.steps))
        blocks, frac = _band_frac(layers, n_blocks)
        got = np.array([read(videos[p, i], i) for i in range(n)], float)
        per.setdefault(steps, {})[frac] = (f"{blocks[0]}-{blocks[-1]}", got[:, 0], got[:, 1])
    first = max(per, key=lambda k: max(v[1].mean() for v in per[k].values()))  # the most-flipping step range
    rows = per[first]
    fr = sorted(rows)
    best = max(fr, key=lambda f: rows[f][1].mean())

    def bands(k):
        return [float(np.mean([rows[f][k].mean() for f in fr if _band(f) == b] or [np.nan])) for b in range(3)]

    swap = {"answer_flip": {f: float(rows[f][1].mean()) for f in fr}, "best_layer": rows[best][0], "n": n,
            "band_answer": bands(1), "band_structure": bands(2), "steps": first,
            "clean_flip": float(clean_flip.mean()), "clean_success": float(np.mean(d["clean"]["solve_rate"])),
            "per_steps": {s: {r[f][0]: [float(r[f][1].mean()), float(r[f][2].mean())] for f in sorted(r)}
                          for s, r in per.items()},
            "samples": {"flip": {str(f): rows[f][1].tolist() for f in fr},
                        "structure": {str(f): rows[f][2].tolist() for f in fr}}}  # fmt: skip
    series = {}
    for s, r in per.items():
        series[f"solves B (steps {s})"] = [r[f][1].mean() for f in sorted(r)]
        series[f"layout follows B (steps {s})"] = [r[f][2].mean() for f in sorted(r)]
    figs = [curves(list(range(len(fr))), series, out / "swap_per_band.png", xlabel=_band_axis([rows[f][0] for f in fr]),
                   ylabel="share of runs",
                   title=f"B's residual stream put into A's run ({task} {exp.inputs.levels}, n={n})")]  # fmt: skip
    setup = (
        f"{_what(exp, d, n)}; B = the next instance (same noise); `{iv.site}` of a band of blocks swapped at steps "
        f"{list(per)}; flip = A's output solves B and not A (the task's pixel scorer); structure = the layout blocks "
        f"where A and B differ follow B in the last frame (majority); clean runs solve B {clean_flip.mean():.2f}; the "
        f"verdicts read the step range whose best band flips most ({first})."
    )
    return {"swap": swap, "setup": setup}, figs


ANALYZE = {"chain_of_steps": analyze_chain, "noise_step_vs_frame": analyze_noise, "layer_swap": analyze_swap,
           "layer_skip": analyze_skip, "working_memory": analyze_memory, "seed_ensemble": analyze_ensemble,
           "prompt_swap": analyze_prompt_swap, "suite_layer_skip": analyze_skip,
           "suite_noise_step_vs_frame": analyze_noise, "suite_seed_ensemble": analyze_ensemble,
           "suite_chain_of_steps": analyze_suite_chain, "suite_layer_swap": analyze_suite_swap,
           "suite_working_memory": analyze_suite_memory}  # fmt: skip

"""The README's demo: the trained maze model solves a few held-out mazes on CPU; the solution forms across steps."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from interp.apps.evaluate import eval_maze, write_samples
from interp.models import BUILTINS
from interp.report.filmstrip import filmstrip_gif, filmstrip_png, pick_steps
from interp.tasks.maze_score import score_video


def run_demo(out: str | Path, model: str = "maze-wan", n: int = 4, size: int = 5, steps: int = 30, seed: int = 0) -> dict:
    console = Console()
    out = Path(out)
    builtin = BUILTINS.get(model)
    if builtin is not None and not builtin.available:
        raise FileNotFoundError(f"{model} weights are missing at {builtin.path}; run `interp train` first")
    console.print(f"[bold]interp demo[/]: {model} solves {n} held-out {size}x{size} mazes ({steps} Euler steps, CPU)")
    res = eval_maze(model, size=size, n=n, steps=steps, seed=seed, keep_x0=True, progress=True)
    write_samples(res, out / "samples.h5", {"model": model, "seed": seed})
    rows = pick_steps(res.steps, 8)
    for i in range(n):
        x0 = res.x0_steps[i]
        verdicts = [score_video(x0[s], res.conditions[i]).success for s in rows]
        labels = [f"step {s} σ={res.sigmas[s]:.2f}" for s in rows]
        title = f"maze {i} ({size}x{size}): per-step x0 prediction — final {'solved' if res.scores[i].success else 'wrong'}"
        filmstrip_png(x0[rows], out / f"filmstrip_{i}.png", labels, verdicts, title)
        all_labels = [f"step {s} σ={res.sigmas[s]:.2f}" for s in range(res.steps)]
        all_verdicts = [score_video(x0[s], res.conditions[i]).success for s in range(res.steps)]
        filmstrip_gif(x0, out / f"filmstrip_{i}.gif", all_labels, all_verdicts)
    summ = res.summary()
    lo, hi = summ["ci95"]
    console.print(f"solve rate {summ['solve_rate']:.2f} (95% CI {lo:.2f}-{hi:.2f}) on {n} mazes; "
                  f"path recall {summ['path_recall']:.2f}; filmstrips in {out}/")  # fmt: skip
    return summ

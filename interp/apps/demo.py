"""The README's demo: the trained maze model solves a few held-out mazes on CPU; the solution forms across steps."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from interp.apps.evaluate import eval_maze, write_samples
from interp.models import BUILTINS
from interp.report.filmstrip import filmstrip_gif, filmstrip_png, pick_steps
from interp.tasks.maze_score import score_video


def run_demo(
    out: str | Path, model: str = "maze-wan", n: int = 4, size: int = 5, steps: int = 30, seed: int = 0
) -> dict:
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
        title = (
            f"maze {i} ({size}x{size}): per-step x0 prediction — final {'solved' if res.scores[i].success else 'wrong'}"
        )
        filmstrip_png(x0[rows], out / f"filmstrip_{i}.png", labels, verdicts, title)
        all_labels = [f"step {s} σ={res.sigmas[s]:.2f}" for s in range(res.steps)]
        all_verdicts = [score_video(x0[s], res.conditions[i]).success for s in range(res.steps)]
        filmstrip_gif(x0, out / f"filmstrip_{i}.gif", all_labels, all_verdicts)
    summ = res.summary()
    lo, hi = summ["ci95"]
    console.print(f"solve rate {summ['solve_rate']:.2f} (95% CI {lo:.2f}-{hi:.2f}) on {n} mazes; "
                  f"path recall {summ['path_recall']:.2f}; filmstrips in {out}/")  # fmt: skip
    return summ


def run_suite_demo(out: str | Path, model: str = "organism", selection: dict | None = None, n: int = 2,
                   steps: int = 20, seed: int = 0, x0_rows: int = 6, guidance: float | None = None,
                   device: str = "cpu") -> dict:  # fmt: skip
    """A task-suite model (the organism) on ``n`` held-out instances of each selected (task, level), one batch.

    Writes per sample ``<task>_<level>_<j>_filmstrip.png`` (the x0 prediction of ``x0_rows`` steps, decoded by the
    pipeline's VAE, with the task scorer's verdict per step) and ``<task>_<level>_<j>.gif`` (the final video), plus
    ``samples.h5``; prints the success per task. Returns {task: success rate}.
    """
    import imageio.v3 as iio
    import numpy as np
    from rich.table import Table

    from interp.apps.evaluate import is_suite, load_suite_pipeline, model_meta, suite_sampler
    from interp.pipelines.evaluate import eval_instances
    from interp.pipelines.sampling import sample_i2v
    from interp.store.samples import write_suite_samples
    from interp.tasks import suite

    console = Console()
    out = Path(out)
    path, meta = model_meta(model)
    if not is_suite(meta):
        raise ValueError(f"model {model!r} has no task-suite metadata (interp.json with task: suite)")
    if selection is None:
        selection = {t: list(suite.get_task(t).levels[:1]) for t in meta.get("tasks") or list(suite.TASKS)}
    sampler = suite_sampler(meta, steps, guidance)
    jobs = [(name, lv, inst) for name, levels in selection.items() for lv in levels
            for inst in eval_instances(name, lv, n, seed)[:n]]  # fmt: skip
    console.print(f"[bold]interp demo[/]: {model} on {len(jobs)} held-out samples "
                  f"({', '.join(f'{t} {lv}' for t, lvs in selection.items() for lv in lvs)}), "
                  f"{sampler['steps']} steps, guidance {sampler['guidance']:g}, {device}")  # fmt: skip
    pipe = load_suite_pipeline(path, device)
    tasks = [suite.get_task(name) for name, _, _ in jobs]
    images = [t.render(inst)[0] for t, (_, _, inst) in zip(tasks, jobs)]
    prompts = [t.prompt(inst) for t, (_, _, inst) in zip(tasks, jobs)]
    rows = pick_steps(sampler["steps"], x0_rows)
    sigmas: list[float] = []
    videos, x0 = sample_i2v(pipe, images, prompts, num_inference_steps=sampler["steps"],
                            guidance_scale=sampler["guidance"], seed=seed, num_frames=suite.FRAMES,
                            height=suite.SIZE, width=suite.SIZE,
                            negative_prompt=sampler["negative_prompt"], device=device, batch_cfg=True,
                            on_step=lambda rec: sigmas.append(rec.sigma), keep_x0_steps=rows)  # fmt: skip
    scores, per_task = [], {}
    counter: dict = {}
    for i, (task, (name, lv, inst)) in enumerate(zip(tasks, jobs)):
        sc = task.score(videos[i], inst)
        scores.append(sc)
        per_task.setdefault((name, lv), []).append(sc["success"])
        j = counter[(name, lv)] = counter.get((name, lv), -1) + 1
        verdicts = [bool(task.score(x0[i, r], inst)["success"]) for r in range(len(rows))]
        labels = [f"step {s} σ={sigmas[s]:.2f}" for s in rows]
        verdict = "solved" if sc["success"] else "wrong"
        title = f"{name} {lv} #{j}: \u201c{prompts[i]}\u201d: per-step x0 \u2014 final {verdict}"
        filmstrip_png(x0[i], out / f"{name}_{lv}_{j}_filmstrip.png", labels, verdicts, title)
        big = np.repeat(np.repeat(videos[i], 3, axis=1), 3, axis=2)
        iio.imwrite(out / f"{name}_{lv}_{j}.gif", big, extension=".gif", duration=300, loop=0)
    sampler.update(seed=seed, batch_cfg=True, noise="sample i: torch.Generator().manual_seed(seed + i)")
    write_suite_samples(out / "samples.h5", videos=videos, conditions=np.stack(images), tasks=[j[0] for j in jobs],
                        levels=[j[1] for j in jobs], instances=[j[2] for j in jobs], prompts=prompts, scores=scores,
                        sampler=sampler, attrs={"model": model, "demo": True}, x0=x0, x0_steps=rows)  # fmt: skip
    table = Table("task", "level", "solved", "success", title=f"{model}: held-out demo")
    for (name, lv), s in per_task.items():
        table.add_row(name, str(lv), f"{int(sum(s))}/{len(s)}", f"{np.mean(s):.2f}")
    console.print(table)
    console.print(f"filmstrips (x0 at steps {rows}) and GIFs in {out}/")
    return {f"{name}_{lv}": float(np.mean(s)) for (name, lv), s in per_task.items()}

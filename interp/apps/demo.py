"""The README's demo: the trained maze model solves a few held-out mazes on CPU; the solution forms across steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from interp.apps.evaluate import eval_maze, write_samples
from interp.models import BUILTINS
from interp.report.filmstrip import filmstrip_gif, filmstrip_png, pick_steps
from interp.tasks import maze as mz
from interp.tasks.maze_score import score_video

# the maze demo's defaults, chosen by measurement (python -m benchmarks.demo_x0; benchmarks/results/demo_x0.txt): at
# 7x7 with 16 Euler steps the x0 of the first steps is wrong for every maze (0 of 4 solved at step 0, 6 trail cells
# off the path) and solves all 4 from step 4 on; sampling them took 114 CPU seconds (on 2 idle cores: 57-114 s).
# At 5x5 the step-0 x0 already solves every maze; at 8x8 / 12 steps 1 of 4 goes from wrong to solved.
DEMO_SIZE, DEMO_STEPS, DEMO_N = 7, 16, 4


def run_demo(
    out: str | Path, model: str = "maze-wan", n: int = DEMO_N, size: int = DEMO_SIZE, steps: int = DEMO_STEPS,
    seed: int = 0,
) -> dict:  # fmt: skip
    console = Console()
    out = Path(out)
    builtin = BUILTINS.get(model)
    if builtin is not None and not builtin.available:
        raise FileNotFoundError(f"{model} weights are missing at {builtin.path}; run `interp train` first")
    console.print(f"[bold]interp demo[/]: {model} solves {n} held-out {size}x{size} mazes ({steps} Euler steps, CPU)")
    res = eval_maze(model, size=size, n=n, steps=steps, seed=seed, keep_x0=True, progress=True)
    write_samples(res, out / "samples.h5", {"model": model, "seed": seed})
    rows = pick_steps(res.steps, 8)
    solved, off = np.zeros((n, res.steps), bool), np.zeros((n, res.steps))
    for i in range(n):
        x0 = res.x0_steps[i]
        per_step = [score_video(x0[s], res.conditions[i]) for s in range(res.steps)]
        solved[i] = [sc.success for sc in per_step]
        off[i] = [sc.extra_cells for sc in per_step]
        all_labels = [f"step {s} σ={res.sigmas[s]:.2f}" for s in range(res.steps)]
        all_verdicts = [sc.success for sc in per_step]
        title = (
            f"maze {i} ({size}x{size}): per-step x0 prediction — final {'solved' if res.scores[i].success else 'wrong'}"
        )
        filmstrip_png(x0[rows], out / f"filmstrip_{i}.png", [all_labels[s] for s in rows],
                      [all_verdicts[s] for s in rows], title, legend=mz.LEGEND)  # fmt: skip
        filmstrip_gif(x0, out / f"filmstrip_{i}.gif", all_labels, all_verdicts, legend=mz.LEGEND)
    summ = res.summary()
    summ["x0_solved"] = solved.sum(0).tolist()  # per step: mazes whose x0 prediction the scorer calls solved
    summ["x0_off_path"] = off.mean(0).round(2).tolist()  # per step: mean trail cells of the x0 off the solution
    lo, hi = summ["ci95"]
    console.print(f"solve rate {summ['solve_rate']:.2f} (95% CI {lo:.2f}-{hi:.2f}) on {n} mazes; "
                  f"path recall {summ['path_recall']:.2f}")  # fmt: skip
    console.print(f"x0 prediction at steps {rows}: solves {' '.join(str(int(solved[:, s].sum())) for s in rows)} "
                  f"of {n} mazes; trail cells off the path {' '.join(f'{off[:, s].mean():.1f}' for s in rows)}",
                  soft_wrap=True)  # fmt: skip
    console.print(f"samples (videos, per-step x0, scores) in {out / 'samples.h5'}", soft_wrap=True)
    console.print(f"[bold]open {out / 'filmstrip_0.gif'}[/] to watch the solution form step by step "
                  f"({out / 'filmstrip_0.png'}: {len(rows)} steps x {x0.shape[1]} frames)", soft_wrap=True)  # fmt: skip
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
    columns = (TextColumn(f"{len(jobs)} samples: denoising step"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console) as bar:
        tick = bar.add_task("steps", total=sampler["steps"])

        def on_step(rec) -> None:
            sigmas.append(rec.sigma)
            bar.advance(tick)

        videos, x0 = sample_i2v(pipe, images, prompts, num_inference_steps=sampler["steps"],
                                guidance_scale=sampler["guidance"], seed=seed, num_frames=suite.FRAMES,
                                height=suite.SIZE, width=suite.SIZE,
                                negative_prompt=sampler["negative_prompt"], device=device, batch_cfg=True,
                                on_step=on_step, keep_x0_steps=rows)  # fmt: skip
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
    first = f"{jobs[0][0]}_{jobs[0][1]}_0"
    console.print(f"[bold]open {out / (first + '_filmstrip.png')}[/] (the VAE-decoded x0 at steps {rows}, the "
                  f"scorer's verdict per row) and {out / (first + '.gif')} (the final video); one pair per sample",
                  soft_wrap=True)  # fmt: skip
    return {f"{name}_{lv}": float(np.mean(s)) for (name, lv), s in per_task.items()}

"""``interp run``'s library side: the engine's results (:func:`interp.experiments.runner.execute`), then the figures
and the W&B log the verb asks for. The engine itself draws nothing.

>>> from interp.experiments import Experiment, run_experiment
>>> res = run_experiment(Experiment.load("experiments/examples/skip.yaml"), "out/skip")
>>> res.cache_hit, res.summary["points"][0]["metrics"], res.figures
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from interp.experiments.atp import execute_atp, plan_atp
from interp.experiments.cost import Cost
from interp.experiments.runner import RunResult, execute, plan_run
from interp.experiments.schema import Experiment, ExperimentError
from interp.models import LoadedModel
from interp.report.figures import experiment_figures
from interp.tracking import Tracker


def run_experiment(
    exp: Experiment,
    out: str | Path,
    *,
    loaded: LoadedModel | None = None,
    wandb: str = "offline",
    progress: bool = True,
    base_dir: str | Path | None = None,
    on_batch: Callable[[int], None] | None = None,
    console: Console | None = None,
    shard: tuple[int, int] | None = None,
    force: bool = False,
) -> RunResult:
    """Run (or resume, or read from cache) ``exp`` into ``out``: results.h5, summary.json, figures/*.png, and a W&B
    log of a new run (``wandb`` mode). A shard (``shard=(rank, world)``) gets neither figures nor a log."""
    console = console or Console(stderr=True)
    if exp.method == "atp":
        if shard is not None:
            raise ExperimentError("method atp runs one forward and backward per sample: it is not sharded")
        res = execute_atp(exp, out, loaded=loaded, progress=progress, console=console)
        if res.cache_hit:
            return res
        k = exp.verify_count()
        what = f"estimates; {k} points run for real" if k else "estimates"
        console.print(f"wrote {res.results} and {res.out / 'summary.json'} (attribution patching {what})")
        return res
    res = execute(exp, out, loaded=loaded, progress=progress, base_dir=base_dir, on_batch=on_batch, console=console,
                  shard=shard, force=force)  # fmt: skip
    if shard is not None:
        return res
    if res.cache_hit:  # a figure a killed run left missing or empty is drawn again
        return replace(res, figures=draw_figures(res.results, res.out, redraw=False))
    figures = draw_figures(res.results, res.out)
    log_wandb(exp, res.summary, figures, res.out, wandb)
    console.print(f"wrote {res.results}, {res.out / 'summary.json'} and {len(figures)} figures")
    return replace(res, figures=figures)


def draw_figures(results: Path, out: Path, redraw: bool = True) -> list[Path]:
    """The experiment's figures under ``out/figures`` (``redraw=False``: only those missing or empty)."""
    return experiment_figures(results, out / "figures", redraw=redraw)


def log_wandb(exp: Experiment, summary: dict, figures: list[Path], out: Path, mode: str) -> None:
    tracker = Tracker("interp", config=exp.model_dump(mode="json") | {"key": summary["key"]}, mode=mode,
                      dir=out / "wandb", name=exp.name)  # fmt: skip
    try:
        for p, point in enumerate(summary["points"]):
            coords = {f"sweep/{k}": (v if isinstance(v, (int, float)) else str(v)) for k, v in point["coords"].items()}
            tracker.log({**coords, **{f"metrics/{k}": v for k, v in point["metrics"].items()}}, step=p)
        for path in figures:
            tracker.log_image(f"figures/{path.stem}", path)
    except Exception as err:  # logging never fails a run
        print(f"[interp] W&B logging stopped: {type(err).__name__}: {err}")
    finally:
        tracker.finish()


def plan_experiment(exp: Experiment, out: str | Path | None = None, *, loaded: LoadedModel | None = None,
                    base_dir: str | Path | None = None) -> Cost:  # fmt: skip
    """``interp run --plan``: what running ``exp`` into ``out`` will cost, writing nothing (a patch sweep with
    ``method: atp``: :func:`~interp.experiments.atp.plan_atp`; else :func:`~interp.experiments.runner.plan_run`)."""
    fn = plan_atp if exp.method == "atp" else plan_run
    return fn(exp, out, loaded=loaded, base_dir=base_dir)

"""Experiment figures (matplotlib, PNG): step x layer heatmaps of any metric, metric-vs-step and metric-vs-layer
curves, and per-step x0 filmstrips (via :mod:`interp.report.filmstrip`) with the scorer's verdict per step."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch
from jaxtyping import Float

from interp.experiments.metrics import frame_verdicts
from interp.report.filmstrip import filmstrip_gif, filmstrip_png, pick_steps
from interp.report.save import missing, save_figure
from interp.store.results import read_group_arrays, read_metrics
from interp.tasks import maze as maze_task


def _plt():
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # here, after choosing Agg: at the top it would fix every importer's backend

    return plt


def _label(v) -> str:
    if isinstance(v, dict):  # a whole intervention swept: its non-default fields
        return " ".join(f"{k}={_label(x)}" for k, x in v.items() if k not in ("kind", "seed") and x is not None)
    return str(v) if not isinstance(v, list) else ",".join(map(str, v))


def heatmap(
    values: Float[np.ndarray, "rows cols"], row_labels: Sequence, col_labels: Sequence, path: str | Path, *,
    row_name: str = "", col_name: str = "", title: str = "",
) -> Path:  # fmt: skip
    """One metric over two sweep axes (e.g. step x layer), annotated when small."""
    plt = _plt()
    values = np.asarray(values, dtype=float)
    r, c = values.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * max(c, 4), 1.0 + 0.35 * max(r, 4)))
    im = ax.imshow(values, aspect="auto", cmap="viridis", origin="lower")
    ax.set_xticks(range(c), [_label(v) for v in col_labels], rotation=90 if c > 12 else 0, fontsize=7)
    ax.set_yticks(range(r), [_label(v) for v in row_labels], fontsize=7)
    ax.set_xlabel(col_name)
    ax.set_ylabel(row_name)
    if r * c <= 64:
        for i in range(r):
            for j in range(c):
                ax.text(j, i, f"{values[i, j]:.2g}", ha="center", va="center", fontsize=6, color="w")
    fig.colorbar(im, ax=ax)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def curves(
    x: Sequence, series: dict[str, Sequence[float]], path: str | Path, *, xlabel: str = "", ylabel: str = "",
    title: str = "", baseline: float | None = None,
) -> Path:  # fmt: skip
    """Metric-vs-step or metric-vs-layer lines (one per series), with the unintervened value dashed."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    xs = list(range(len(x))) if any(isinstance(v, (list, str, dict)) for v in x) else list(x)
    for name, ys in series.items():
        ax.plot(xs, ys, marker="o", ms=3, label=name)
    if baseline is not None:
        ax.axhline(baseline, ls="--", c="grey", lw=1, label="unintervened")
    if xs != list(x):
        ax.set_xticks(xs, [_label(v) for v in x], fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if len(series) > 1 or baseline is not None:
        ax.legend(fontsize=6)
    return _save(fig, path)


def x0_filmstrip(
    x0: Float[torch.Tensor, "steps 3 frames h w"], condition: torch.Tensor | None, path: str | Path, *,
    rows: int = 8, title: str = "",
) -> list[Path]:  # fmt: skip
    """PNG and GIF of a run's per-step x0 (maze pixel space), each step labelled with the scorer's verdict."""
    steps = pick_steps(x0.shape[0], rows)
    sel = x0[steps]
    videos = maze_task.from_model_space(sel).numpy()
    verdicts = frame_verdicts(sel, condition) if condition is not None else None
    labels = [f"step {s}" for s in steps]
    path = Path(path)
    return [filmstrip_png(videos, path.with_suffix(".png"), labels, verdicts, title=title, legend=maze_task.LEGEND),
            filmstrip_gif(videos, path.with_suffix(".gif"), labels, verdicts, legend=maze_task.LEGEND)]  # fmt: skip


def _save(fig, path: str | Path) -> Path:
    fig.tight_layout()
    try:
        return save_figure(fig, path, dpi=110)
    finally:
        _plt().close(fig)


def experiment_figures(results: str | Path, out: str | Path, max_lines: int = 12, redraw: bool = True) -> list[Path]:
    """Every figure an experiment's results support: per scalar metric a heatmap (two sweep axes) or a curve (one
    axis); x0 distance vs step per point; x0 filmstrips of the first sample (intervened and clean) when stored.
    ``redraw=False`` (a cache hit): draw only the figures that are missing or empty."""
    data = read_metrics(results)
    heatmap_, curves_ = (heatmap, curves) if redraw else (_if_missing(heatmap), _if_missing(curves))
    out = Path(out)
    axes = data["axes"]
    names = list(axes)
    short = [n.split(".")[-1] for n in names]
    made: list[Path] = []
    for metric, arr in data["metrics"].items():
        if arr.ndim == 4:  # the x0 lens: (points, samples, steps, blocks), one step x block heatmap per point
            mean = np.nanmean(arr, axis=1)
            for i, p in enumerate(data["points"][:max_lines]):
                where = ", ".join(f"{s}={_label(v)}" for s, v in zip(short, p.values()))
                made.append(heatmap(mean[i], range(arr.shape[2]), range(arr.shape[3]), out / f"{metric}_point{i}.png",
                                    row_name="step", col_name="block", title=f"{metric} {where}".strip()))  # fmt: skip
            continue
        if arr.ndim == 3:  # per step: (points, samples, steps)
            mean = np.nanmean(arr, axis=1)
            series = {", ".join(f"{s}={_label(v)}" for s, v in zip(short, p.values())) or "run": mean[i]
                      for i, p in enumerate(data["points"][:max_lines])}  # fmt: skip
            made.append(curves_(range(arr.shape[2]), series, out / f"{metric}_vs_step.png", xlabel="step",
                               ylabel=metric, title=f"{metric} per step"))  # fmt: skip
            continue
        mean = np.nanmean(arr, axis=1)
        base = data["clean"].get(metric)
        base = float(np.nanmean(base)) if base is not None else None
        if len(names) == 2:
            grid = mean.reshape(len(axes[names[0]]), len(axes[names[1]]))
            made.append(heatmap_(grid, axes[names[0]], axes[names[1]], out / f"{metric}_{short[0]}_x_{short[1]}.png",
                                row_name=short[0], col_name=short[1], title=metric))  # fmt: skip
        elif len(names) == 1:
            made.append(curves_(axes[names[0]], {metric: mean}, out / f"{metric}_vs_{short[0]}.png", xlabel=short[0],
                               ylabel=metric, title=f"{metric} vs {short[0]}", baseline=base))  # fmt: skip
    made += _filmstrips(results, data, out, redraw)
    return made


def _if_missing(draw):
    """``draw(..., path)`` only when ``path`` is missing or empty."""

    def wrapped(*args, **kw):
        path = Path(args[-1])
        return draw(*args, **kw) if missing(path) else path

    return wrapped


def _filmstrips(results, data, out: Path, redraw: bool = True) -> list[Path]:
    made: list[Path] = []
    g = read_group_arrays(results, "group_0", {"x0": (0, 0), "clean_x0": (0,), "condition_frames": (0,)})
    if g is None or "x0" not in g or data["experiment"]["inputs"]["task"] != "maze":
        return made
    cond = torch.from_numpy(g["condition_frames"]) if "condition_frames" in g else None
    stems = [out / "x0_point0_sample0", out / "x0_clean_sample0"]
    if not redraw and not missing(*(s.with_suffix(x) for s in stems for x in (".png", ".gif"))):
        return [s.with_suffix(x) for s in stems for x in (".png", ".gif")]
    made += x0_filmstrip(torch.from_numpy(g["x0"]), cond, out / "x0_point0_sample0",
                         title=f"x0 per step, point {data['points'][0] or 'run'}, sample 0")  # fmt: skip
    made += x0_filmstrip(torch.from_numpy(g["clean_x0"]), cond, out / "x0_clean_sample0",
                         title="x0 per step, unintervened, sample 0")  # fmt: skip
    return made

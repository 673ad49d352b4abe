"""The x0 lens' figure: step x block heatmaps of its task scores (plain and tuned side by side), from ``lens.h5``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from jaxtyping import Float

import interp.experiments  # noqa: F401 - first: report.figures imports experiments.metrics, whose package imports it
from interp.report.figures import _plt, _save
from interp.store import read_lens

LABELS = {"success": "solve rate", "path_recall": "path recall", "extra_cells": "extra cells",
          "x0_rmse": "RMS distance to the model's x0"}  # fmt: skip
RATES = ("success", "path_recall")  # in [0, 1]: one colour scale for every panel


def first_readable(mean: Float[np.ndarray, "steps blocks"], threshold: float) -> list[int | None]:
    """Per step, the first block whose mean score reaches ``threshold`` (None when none does)."""
    out = []
    for row in np.asarray(mean):
        hit = np.flatnonzero(row >= threshold)
        out.append(int(hit[0]) if len(hit) else None)
    return out


def lens_figure(lens_file: str | Path, path: str | Path, *, scores: Sequence[str] = RATES) -> Path:
    """One heatmap per (score, variant): rows the scored steps, columns the blocks, the mean over samples."""
    plt = _plt()
    data = read_lens(lens_file)
    attrs = data["attrs"]
    variants = [v for v in ("plain", "tuned") if v in data]
    scores = [s for s in scores if s in data["plain"]]
    steps, blocks = attrs["steps"], int(attrs["blocks"])
    size = (1.5 + 0.32 * max(blocks, 6) * len(variants), 0.9 + 0.17 * max(len(steps), 8) * len(scores))
    fig, axes = plt.subplots(len(scores), len(variants), squeeze=False, figsize=size)
    for i, name in enumerate(scores):
        bounded = name in RATES
        for j, variant in enumerate(variants):
            ax = axes[i][j]
            mean = data[variant][name].mean(-1)
            im = ax.imshow(mean, aspect="auto", origin="upper", cmap="viridis",
                           vmin=0 if bounded else None, vmax=1 if bounded else None)  # fmt: skip
            ax.set_xticks(range(blocks), [str(b) for b in range(blocks)], fontsize=6)
            every = max(1, len(steps) // 10)
            ax.set_yticks(range(0, len(steps), every), [str(s) for s in steps[::every]], fontsize=6)
            ax.set_xlabel("block (resid_post)", fontsize=7)
            ax.set_ylabel("step", fontsize=7)
            ax.set_title(f"{variant} lens: {LABELS.get(name, name)}", fontsize=8)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle(f"x0 lens of {attrs['model']} ({attrs['samples']} samples)", fontsize=9)
    return _save(fig, path)

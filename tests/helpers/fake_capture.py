"""Capture files with chosen contents, written by the real store writer (no model): for token-map and viewer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from interp.store import RunWriter
from interp.trajectory import StepRecord


def write_capture(
    path: str | Path,
    acts: dict[str, np.ndarray],
    x0: np.ndarray,
    grid: tuple[int, int, int],
    config: dict | None = None,
    final: np.ndarray | None = None,
) -> Path:
    """``acts``: site -> (steps, B, tokens, d); ``x0``: (steps, B, C, F, H, W); ``final``: the last latent
    (default: the last x0). The per-step latents are x0 too (their values do not matter here)."""
    steps = x0.shape[0]
    config = config or {"model": "tiny-wan", "seed": 0, "batch": x0.shape[1]}
    w = RunWriter(
        path, config=config, model_hash="test", family="wan", timesteps=torch.linspace(1000, 0, steps),
        sigmas=torch.linspace(1, 0, steps), branch_steps={"cond": list(range(steps))}, sites=list(acts), grid=grid,
    )  # fmt: skip
    final = x0[-1] if final is None else final
    for s in range(steps):
        x = torch.from_numpy(np.ascontiguousarray(x0[s], dtype=np.float32))
        nxt = torch.from_numpy(np.ascontiguousarray(final if s == steps - 1 else x0[s + 1], dtype=np.float32))
        branches = {
            "cond": {k: torch.from_numpy(np.ascontiguousarray(v[s], dtype=np.float32)) for k, v in acts.items()}
        }
        w.on_step(StepRecord(s, 0.0, 0.0, "transformer", x, x, x, nxt, branches))
    return w.finish()

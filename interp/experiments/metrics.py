"""Metrics of one sweep point's samples: the maze pixel scorer, latent distances to the unintervened run, and the x0
lens' maze scores after every block (:mod:`interp.lens`)."""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange
from jaxtyping import Float, UInt8
from torch import Tensor

from interp.experiments.schema import LENS_METRICS, MAZE_METRICS
from interp.tasks import maze as maze_task
from interp.tasks.maze_score import score_batch

SCORE_FIELD = {"solve_rate": "success", "path_recall": "path_recall", "extra_cells": "extra_cells",
               "wall_crossings": "wall_crossings", "goal_reached": "goal_reached"}  # fmt: skip


def mse(a: Float[Tensor, "n *rest"], b: Float[Tensor, "n *rest"]) -> Float[Tensor, " n"]:
    return rearrange((a.float() - b.float()) ** 2, "n ... -> n (...)").mean(1)


def cosine(a: Float[Tensor, "n *rest"], b: Float[Tensor, "n *rest"]) -> Float[Tensor, " n"]:
    return torch.nn.functional.cosine_similarity(rearrange(a.float(), "n ... -> n (...)"),
                                                 rearrange(b.float(), "n ... -> n (...)"), dim=1)  # fmt: skip


def x0_distance(x0: Float[Tensor, "n steps *rest"], clean: Float[Tensor, "n steps *rest"]) -> Float[Tensor, "n steps"]:
    """Root-mean-square difference of the per-step x0 predictions."""
    return rearrange((x0.float() - clean.float()) ** 2, "n s ... -> n s (...)").mean(-1).sqrt()


def maze_scores(
    final: Float[Tensor, "n 3 frames h w"], conditions: UInt8[Tensor, "n h w 3"], names: list[str]
) -> dict[str, np.ndarray]:
    """The pixel scorer on the decoded videos: per sample, each requested maze metric."""
    scores = score_batch(maze_task.from_model_space(final), conditions)
    return {m: np.array([float(getattr(s, SCORE_FIELD[m])) for s in scores]) for m in names if m in MAZE_METRICS}


def frame_verdicts(x0: Float[Tensor, "steps 3 frames h w"], condition: UInt8[Tensor, "h w 3"]) -> list[bool]:
    """The scorer's verdict (solved or not) on each step's x0 video."""
    videos = maze_task.from_model_space(x0)
    return [s.success for s in score_batch(videos, condition.expand(len(videos), *condition.shape))]


def lens_scores(
    x0: Float[Tensor, "blocks n 3 frames h w"], conditions: UInt8[Tensor, "n h w 3"], names: list[str]
) -> dict[str, np.ndarray]:
    """The maze scorer on one step's x0 lens (x0 read after every block): each requested lens metric, (n, blocks)."""
    want = [LENS_METRICS[m] for m in names if m in LENS_METRICS]
    per_block = [maze_scores(x0[b].float().cpu(), conditions, want) for b in range(x0.shape[0])]
    return {m: np.stack([p[LENS_METRICS[m]] for p in per_block], 1) for m in names if m in LENS_METRICS}

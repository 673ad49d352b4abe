"""Reasoning tasks rendered as videos, with pixel-only scorers.

A model directory's ``interp.json`` names its task; :func:`build_inputs` turns that metadata into the model inputs
of a batch of task instances (conditioning, latent shape, text embeddings), so capture, eval and experiments feed
a task model without knowing the task.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from interp.tasks import maze as maze_task


@dataclass
class TaskInputs:
    """Model inputs for a batch of task instances."""

    latent_shape: tuple[int, ...]  # (B, C, F, H, W) of the generated video
    condition: torch.Tensor  # (B, Cc, F, H, W), concatenated to the latent along channels
    encoder_hidden_states: torch.Tensor  # (B, L, text_dim): the task models' fixed null prompt
    condition_frames: torch.Tensor  # (B, H, W, 3) uint8: the given first frames, for the scorer
    instances: list = field(default_factory=list)  # the task objects (e.g. Maze), for labels and scoring
    targets: torch.Tensor | None = None  # (B, F, H, W, 3) uint8 ground-truth videos


def maze_inputs(meta: dict, mazes: list) -> TaskInputs:
    """Inputs of the maze model for the given mazes (all of one size)."""
    sizes = {m.size for m in mazes}
    if len(sizes) != 1:
        raise ValueError(f"a batch must hold mazes of one size, got sizes {sorted(sizes)}")
    frames = int(meta["frames"])
    videos = torch.stack([torch.from_numpy(maze_task.render_video(m, frames)) for m in mazes])
    x = maze_task.to_model_space(videos)
    condition = maze_task.condition_from_first_frame(x[:, :, 0], frames)
    text = torch.zeros(len(mazes), int(meta.get("text_len", 1)), int(meta["text_dim"]))
    return TaskInputs(tuple(x.shape), condition, text, videos[:, 0], list(mazes), videos)


def build_inputs(meta: dict, batch: int, seed: int, size: int | None = None) -> TaskInputs:
    """Inputs for ``batch`` task instances chosen by ``seed`` (held-out evaluation stream)."""
    task = meta.get("task")
    if task != "maze":
        raise ValueError(f"unknown task {task!r}; known tasks: ['maze']")
    size = int(size or meta.get("default_size", 5))
    return maze_inputs(meta, maze_task.eval_mazes(size, batch, seed))

"""The one builder of model inputs: a task model (``interp.json``) gets ``interp.tasks.build_inputs`` of its task,
any other model the documented random inputs.

Random inputs: text embeddings N(0, 1) of shape (batch, text_len, text_dim) drawn from
``torch.Generator().manual_seed(seed)`` (plus the family's extras, each adapter's ``default_extras``: an all-ones
text mask, N(0, 1) pooled projections, embedded guidance 6.0 for HunyuanVideo; N(0, 1) ByT5 embeddings and zero
image embeddings for HunyuanVideo 1.5; N(0, 1) audio latents and audio text for LTX-2; WanVACE's control latents are
zeros), a latent of (frames, height, width) (default: the adapter's small patch-aligned size), and, for a family
that concatenates a condition, a N(0, 1) condition from the same generator. Capture, experiments and the benchmark
all build their inputs here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from interp.adapters import TextConditioning
from interp.models import LoadedModel
from interp.tasks import build_inputs as task_inputs


@dataclass
class ModelInputs:
    """Inputs of one batch: the conditioning, the latent shape, and (task models) the task's own record."""

    text: TextConditioning
    latent_shape: tuple[int, ...]  # (B, C, F, H, W)
    condition: torch.Tensor | None = None
    condition_frames: torch.Tensor | None = None  # (B, H, W, 3) uint8: the task's given first frames
    instances: list = field(default_factory=list)  # the task objects (e.g. Maze)
    task: dict | None = None  # the task metadata the inputs were built from


def model_inputs(loaded: LoadedModel, batch: int, seed: int, *, size: int | None = None, frames: int | None = None,
                 height: int | None = None, width: int | None = None, text_len: int | None = None,
                 task: bool = True) -> ModelInputs:  # fmt: skip
    """Task inputs (``batch`` instances chosen by ``seed``, of maze size ``size``) when the model has task metadata
    and ``task``, else the documented random inputs of ``seed`` (latent (frames, height, width), ``text_len``)."""
    if task and loaded.task:
        ti = task_inputs(loaded.task, batch, seed, size)
        shape = tuple(ti.latent_shape)
        shape = shape if len(shape) == 5 else (batch, *shape)
        return ModelInputs(TextConditioning(ti.encoder_hidden_states), shape, ti.condition, ti.condition_frames,
                           list(ti.instances), loaded.task)  # fmt: skip
    a, t = loaded.adapter, loaded.transformer
    g = torch.Generator().manual_seed(seed)
    text = a.random_text(t, batch, g, text_len)
    f, h, w = a.default_latent_size(t)
    size3 = (frames or f, height or h, width or w)
    cc = a.condition_channels(t)
    condition = torch.randn(batch, cc, *size3, generator=g) if cc else None
    return ModelInputs(text, (batch, a.latent_channels(t), *size3), condition)

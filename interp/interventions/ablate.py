"""``ablate``: a site's value set to zero, to its mean over a reference set, or resampled from another input.

The reference set is the experiment's inputs (of the same size) run clean with the target's noise seed; the mean is
taken per step and per position. ``resample`` reads one reference input, picked per target by ``seed``. ``heads``
(per-head sites, e.g. ``blocks.{i}.attn.hook_z``): only those heads are ablated (head ablation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from jaxtyping import Float
from pydantic import model_validator

from interp.interventions.base import Index, Read, Rows, SiteSpec, check_heads, on_heads, put, take

if TYPE_CHECKING:
    from torch import Tensor


class Ablate(SiteSpec):
    kind: Literal["ablate"] = "ablate"
    mode: Literal["zero", "mean", "resample"] = "zero"
    seed: int = 0  # resample: which other input each target reads
    heads: Index = None  # per-head sites only: the heads ablated (None: the whole value)

    @model_validator(mode="after")
    def _heads(self) -> Ablate:
        check_heads(self.site, self.heads)
        return self

    def reads(self, local, n, seed):
        if self.mode == "mean":  # every input of the group, each with its own noise
            return [Read(j - local, seed, same_noise=False) for j in range(n)]
        if self.mode == "resample":
            return [Read(resample_offset(self.seed, local, n), seed, same_noise=False)]
        return []

    def bind_rows(self, target, reads):
        return Rows.of(target, group=reads) if self.mode == "mean" else super().bind_rows(target, reads)

    def edit(self, value, rows, pos, *, direction=None, block_input=None):
        return on_heads(value, self.heads, lambda v: apply_ablate(self, v, rows, pos))


def resample_offset(seed: int, input_index: int, n_inputs: int) -> int:
    """The offset (1..n-1) of the input a resampled target reads; a pure function of (seed, input)."""
    if n_inputs < 2:
        raise ValueError("ablate mode=resample needs at least 2 inputs")
    rng = np.random.default_rng([seed, input_index])
    return int(rng.integers(1, n_inputs))


def apply_ablate(
    spec: Ablate, value: Float[Tensor, "batch pos d"], rows: Rows, pos: Tensor | None
) -> Float[Tensor, "batch pos d"]:
    if spec.mode == "zero":
        n = len(rows.target)
        shape = (n, value.shape[1] if pos is None else len(pos), *value.shape[2:])
        return put(value, rows.target, pos, value.new_zeros(shape))
    if spec.mode == "mean":
        return put(value, rows.target, pos, take(value, rows.group, pos).mean(dim=1))
    return put(value, rows.target, pos, take(value, rows.source, pos))

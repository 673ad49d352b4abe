"""``noise``: the latent entering a step replaced by (``mix=1``) or mixed with fresh noise, at chosen steps and/or
latent frames (the paper's noise-at-step and noise-at-frame probes): ``x := (1 - mix) x + mix eps``.

Fresh noise is N(0, 1) drawn per (``seed``, step, input) so it does not depend on how a sweep is batched.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from jaxtyping import Float
from pydantic import Field
from torch import Tensor

from interp.interventions.base import Index, Rows, Spec, put, take


class Noise(Spec):
    kind: Literal["noise"] = "noise"
    frames: Index = None
    mix: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = 0


def fresh_noise(seed: int, step: int, keys: list[int], shape: tuple[int, ...]) -> Float[Tensor, "n *shape"]:
    """One N(0,1) tensor of ``shape`` per key (the target's input index), reproducible per (seed, step, key)."""
    out = []
    for k in keys:
        s = int(np.random.SeedSequence([seed, step, k]).generate_state(1)[0])
        out.append(torch.randn(shape, generator=torch.Generator().manual_seed(s)))
    return torch.stack(out)


def apply_noise(
    spec: Noise, x: Float[Tensor, "batch frames feat"], rows: Rows, pos: Tensor | None, eps: Float[Tensor, "n frames feat"]
) -> Float[Tensor, "batch frames feat"]:
    """``x`` in (batch, frames, features) layout; ``eps`` fresh noise for the target rows, same layout."""
    e = eps if pos is None else eps[:, pos]
    if spec.mix == 1.0:
        return put(x, rows.target, pos, e)
    return put(x, rows.target, pos, (1 - spec.mix) * take(x, rows.target, pos) + spec.mix * e.to(x))

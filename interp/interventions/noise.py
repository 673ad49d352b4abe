"""``noise``: fresh noise put into the latent entering a step, at chosen steps and/or latent frames (the paper's
noise-at-step and noise-at-frame probes). Two modes:

- ``replace`` (the paper's protocol): ``x := (1 - mix) x + mix eps``; with ``mix=1`` the latent becomes N(0, 1)
  whatever the step's noise level, so at late steps it is a far larger perturbation than at early ones.
- ``renoise`` (level-matched): the latent entering step s is ``x = a_s x0 + b_s eps_hat`` (flow matching:
  ``a_s = 1 - sigma_s``, ``b_s = sigma_s``; ``x0`` the clean prediction of step s-1 that ``x`` was stepped from,
  ``eps_hat`` the noise this leaves). Its noise is resampled, the model's belief kept:
  ``x := a_s x0 + b_s (sqrt(1 - mix^2) eps_hat + mix eps)``. ``mix=1`` draws the noise afresh; a smaller ``mix``
  resamples part of it, and the latent stays at the schedule's noise level either way. At the first step there is
  no prediction yet (flow matching: ``sigma_0 = 1``), so the whole latent counts as noise: ``x0 := 0``.

Fresh noise ``eps`` is N(0, 1) drawn per (``seed``, step, input) so it does not depend on how a sweep is batched.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import numpy as np
from jaxtyping import Float
from pydantic import Field

from interp.interventions.base import Index, Rows, Spec, as_positions, put, take

if TYPE_CHECKING:
    from torch import Tensor


class Noise(Spec):
    kind: Literal["noise"] = "noise"
    mode: Literal["replace", "renoise"] = "replace"
    frames: Index = None
    mix: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = 0

    @property
    def edits_latent(self) -> bool:
        return True

    def edit_latent(self, state, rows, pos, *, keys):
        eps = fresh_noise(self.seed, state.step, keys, tuple(state.x.shape[1:]))
        if state.x.is_cuda:  # from pinned memory, queued: a copy from pageable memory would wait for the device
            eps = eps.pin_memory().to(state.x.device, non_blocking=True)
        eps = eps.to(state.x)
        v, back = as_positions(state.x)
        x0 = None if state.x0 is None else as_positions(state.x0)[0]
        e, _ = as_positions(eps)
        return back(apply_noise(self, v, rows, pos, e, x0=x0, signal=state.signal, noise=state.noise))


def fresh_noise(seed: int, step: int, keys: list[int], shape: tuple[int, ...]) -> Float[Tensor, "n *shape"]:
    """One N(0,1) tensor of ``shape`` per key (the target's input index), reproducible per (seed, step, key)."""
    import torch  # torch loads on first use: validating an experiment file needs none (benchmarks/startup.py)

    out = []
    for k in keys:
        s = int(np.random.SeedSequence([seed, step, k]).generate_state(1)[0])
        out.append(torch.randn(shape, generator=torch.Generator().manual_seed(s)))
    return torch.stack(out)


def apply_noise(
    spec: Noise,
    x: Float[Tensor, "batch frames feat"],
    rows: Rows,
    pos: Tensor | None,
    eps: Float[Tensor, "n frames feat"],
    *,
    x0: Float[Tensor, "batch frames feat"] | None = None,
    signal: float = 0.0,
    noise: float = 1.0,
) -> Float[Tensor, "batch frames feat"]:
    """``x`` in (batch, frames, features) layout; ``eps`` fresh noise for the target rows, same layout. ``renoise``
    reads ``x0`` (None: the latent is all noise) and the step's ``x = signal * x0 + noise * eps`` coefficients."""
    import torch  # torch loads on first use: validating an experiment file needs none (benchmarks/startup.py)

    e = (eps if pos is None else eps[:, pos]).to(x)
    if spec.mode == "replace":
        return put(
            x, rows.target, pos, e if spec.mix == 1.0 else (1 - spec.mix) * take(x, rows.target, pos) + spec.mix * e
        )
    if noise <= 0:
        raise ValueError(f"renoise at a step without noise (noise level {noise}): there is no noise to resample")
    clean = torch.zeros_like(e) if x0 is None else take(x0, rows.target, pos).to(x)
    if spec.mix < 1.0:
        eps_hat = (take(x, rows.target, pos) - signal * clean) / noise
        e = math.sqrt(1 - spec.mix**2) * eps_hat + spec.mix * e
    return put(x, rows.target, pos, signal * clean + noise * e)

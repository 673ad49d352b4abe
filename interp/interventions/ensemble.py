"""``ensemble``: K noise seeds of one input run together; at the selected sites and steps every member's hidden
state is replaced by the members' mean (``target: hidden``), or the latents are averaged (``target: latent``) -- the
paper's training-free seed ensemble. The ensemble's output is its first member's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from jaxtyping import Float
from pydantic import Field, model_validator

from interp.interventions.base import Rows, SiteSpec, as_positions, put, take

if TYPE_CHECKING:
    from torch import Tensor


class Ensemble(SiteSpec):
    """Members' noise seeds: ``seeds`` if given, else the base seed and the ``k - 1`` seeds after it."""

    kind: Literal["ensemble"] = "ensemble"
    k: int = Field(3, ge=1, le=10_000)  # members run as rows of one batch: more never fits
    seeds: list[int] | None = None
    target: Literal["hidden", "latent"] = "hidden"

    @model_validator(mode="after")
    def _check(self) -> Ensemble:
        if self.seeds is not None and len(self.seeds) < 1:
            raise ValueError("ensemble seeds must list at least one seed")
        if self.target == "latent" and self.tokens is not None:
            raise ValueError("ensemble target=latent selects latent frames, not tokens; drop tokens")
        return self

    def member_seeds(self, base: int) -> list[int]:
        return list(self.seeds) if self.seeds is not None else [base + i for i in range(self.k)]

    @property
    def edits_latent(self) -> bool:
        return self.target == "latent"

    def bind_rows(self, target, reads):
        return Rows.of(target, group=[target])  # the unit's rows are the members

    def edit_latent(self, state, rows, pos, *, keys):
        v, back = as_positions(state.x)
        return back(apply_ensemble(self, v, rows, pos))

    def edit(self, value, rows, pos, *, direction=None, block_input=None):
        return apply_ensemble(self, value, rows, pos)


def apply_ensemble(
    spec: Ensemble, value: Float[Tensor, "batch pos d"], rows: Rows, pos: Tensor | None
) -> Float[Tensor, "batch pos d"]:
    """``rows.group``: (n_ensembles, K) member rows; each member gets its ensemble's mean."""
    g = rows.group
    mean = take(value, g, pos).mean(dim=1, keepdim=True).expand(-1, g.shape[1], -1, -1)
    return put(value, g.flatten(), pos, mean.flatten(0, 1))

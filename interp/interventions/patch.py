"""``patch``: activations of a source run (another input and/or noise seed) written into the target run."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from jaxtyping import Float
from pydantic import BaseModel, ConfigDict

from interp.interventions.base import Read, Rows, SiteSpec, put, take

if TYPE_CHECKING:
    from torch import Tensor


class Source(BaseModel):
    """The source run: the input ``input`` places after the target's (cyclic; 0: the same input), with noise
    ``seed`` (``None``: the target's own noise seed)."""

    model_config = ConfigDict(extra="forbid")
    input: int = 0
    seed: int | None = None


class Patch(SiteSpec):
    """At the selected sites, steps and positions, the target's value := the source run's value there."""

    kind: Literal["patch"] = "patch"
    source: Source = Source(seed=1)
    source_metric: ClassVar[bool] = True

    def reads(self, local, n, seed):
        return [Read(self.source.input, seed if self.source.seed is None else self.source.seed)]

    def edit(self, value, rows, pos, *, direction=None, block_input=None):
        return apply_patch(self, value, rows, pos)


def apply_patch(
    spec: Patch | SiteSpec, value: Float[Tensor, "batch pos d"], rows: Rows, pos: Tensor | None
) -> Float[Tensor, "batch pos d"]:
    return put(value, rows.target, pos, take(value, rows.source, pos))

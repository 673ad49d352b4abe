"""``patch``: activations of a source run (another input and/or noise seed) written into the target run; ``heads``
(per-head sites, e.g. ``blocks.{i}.attn.hook_z``): only those heads' values (head patching)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from jaxtyping import Float
from pydantic import BaseModel, ConfigDict, model_validator

from interp.interventions.base import Index, Read, Rows, SiteSpec, check_heads, on_heads, put, take

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
    heads: Index = None  # per-head sites only: the heads patched (None: the whole value)
    source_metric: ClassVar[bool] = True

    @model_validator(mode="after")
    def _heads(self) -> Patch:
        check_heads(self.site, self.heads)
        return self

    def reads(self, local, n, seed):
        return [Read(self.source.input, seed if self.source.seed is None else self.source.seed)]

    def edit(self, value, rows, pos, *, direction=None, block_input=None):
        return on_heads(value, self.heads, lambda v: apply_patch(self, v, rows, pos))


def apply_patch(
    spec: Patch | SiteSpec, value: Float[Tensor, "batch pos d"], rows: Rows, pos: Tensor | None
) -> Float[Tensor, "batch pos d"]:
    return put(value, rows.target, pos, take(value, rows.source, pos))

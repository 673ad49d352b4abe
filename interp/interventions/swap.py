"""``swap``: hidden states of input B put into the run of input A (the paper's layer-wise swap).

A patch whose source is another input with the same noise; the usual use is one layer (or band) at the first step,
then asking whose answer the output gives (metric ``mse_to_source``, or the maze scorer against B).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from interp.interventions.base import Read, SiteSpec
from interp.interventions.patch import apply_patch


class Swap(SiteSpec):
    """Input B is the input ``other`` places after A (cyclic, so every input is an A once)."""

    kind: Literal["swap"] = "swap"
    other: int = Field(1, ne=0)
    source_metric: ClassVar[bool] = True

    def reads(self, local, n, seed):
        return [Read(self.other, seed)]

    def edit(self, value, rows, pos, *, direction=None, block_input=None):
        return apply_patch(self, value, rows, pos)


apply_swap = apply_patch

"""``swap``: hidden states of input B put into the run of input A (the paper's layer-wise swap).

A patch whose source is another input with the same noise; the usual use is one layer (or band) at the first step,
then asking whose answer the output gives (metric ``mse_to_source``, or the maze scorer against B).
``other: pair`` is the input's pair: with a suite task's ``pairs`` inputs (goalmaze), the same image with the other
prompt, so the swap moves only what the text made of it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import field_validator

from interp.interventions.base import Read, SiteSpec
from interp.interventions.patch import apply_patch


class Swap(SiteSpec):
    """Input B is the input ``other`` places after A (cyclic, so every input is an A once); ``pair``: half the
    group's inputs after A (a suite task's ``pairs`` inputs: the same image with the other prompt)."""

    kind: Literal["swap"] = "swap"
    other: int | Literal["pair"] = 1
    source_metric: ClassVar[bool] = True

    @field_validator("other")
    @classmethod
    def _other(cls, v):
        if v == 0:
            raise ValueError("other: 0 is the input itself; give an offset (1, -1, ...) or pair")
        return v

    def reads(self, local, n, seed):
        if self.other == "pair":
            if n % 2:
                raise ValueError(f"swap other: pair needs paired inputs (an even group, inputs.pairs: true), got {n}")
            return [Read(n // 2, seed)]
        return [Read(self.other, seed)]

    def edit(self, value, rows, pos, *, direction=None, block_input=None):
        return apply_patch(self, value, rows, pos)


apply_swap = apply_patch

"""``skip``: a block's output replaced by its input (the block becomes the identity at the selected positions)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from jaxtyping import Float
from pydantic import field_validator

from interp.interventions.base import Rows, SiteSpec, put, take

if TYPE_CHECKING:
    from torch import Tensor


class Skip(SiteSpec):
    """``site`` names a block (``blocks.{layer}``); to remove one sublayer use ``ablate`` with ``mode: zero``."""

    kind: Literal["skip"] = "skip"
    site: str = "blocks.{layer}"

    @field_validator("site")
    @classmethod
    def _block(cls, v: str) -> str:
        if v.count(".") != 1 or not v.startswith("blocks."):
            raise ValueError(f"skip takes a block, blocks.{{layer}} or blocks.<i>, got {v!r}; "
                             "for a sublayer use ablate with mode: zero")  # fmt: skip
        return v

    reads_block_input: ClassVar[bool] = True  # edit() reads the block's input (its hook_resid_pre)

    def edit(self, value, rows, pos, *, direction=None, block_input=None):
        return apply_skip(self, value, rows, pos, block_input)


def apply_skip(
    spec: Skip,
    value: Float[Tensor, "batch pos d"],
    rows: Rows,
    pos: Tensor | None,
    block_input: Float[Tensor, "batch pos d"],
) -> Float[Tensor, "batch pos d"]:
    """``value`` is the block's output (its ``hook_resid_post``), ``block_input`` its ``hook_resid_pre``."""
    return put(value, rows.target, pos, take(block_input, rows.target, pos))

"""What a capture keeps of each step: a subset of the tokens and a subset of the steps (the trajectory still runs
every step; only the chosen ones are stored).

Tokens (``tokens`` of the capture config): a box in the latent token grid, ``{"frames": [0, 2], "rows": [a, b],
"cols": [a, b]}`` (frames: a list of frame indices; rows / cols: half-open ranges ``[a, b)`` as in Python slices;
any of the three left out: all of that axis), or an explicit list of flat token indices (row-major over frame, row,
col); they apply to the per-token sites of the latent grid ((B, tokens, d_model), unpooled), while ``hook_out``,
per-head attention sites and modulation sites are stored whole. Steps: ``step_stride: K`` (steps 0, K, 2K, ...) or
``store_steps: [0, 10, 49]``; the forwards of the other steps read no site.

A file records what it holds: ``/stored_tokens`` (n, 3) int32 (frame, row, col of each stored token, in stored
order) and ``/stored_token_index`` (n,) int64 (their flat indices in the full grid), root attribute
``stored_token_box`` (JSON (frames, rows, cols) sizes) when the tokens form a box; each branch's ``steps`` lists
the steps stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

Index = Annotated[int, Field(ge=0)]


class TokenBox(BaseModel):
    """A box of the latent token grid: frames (a list), rows and cols (half-open ``[a, b)``); None: the whole axis."""

    model_config = ConfigDict(extra="forbid")
    frames: list[Index] | None = None
    rows: tuple[Index, Index] | None = None
    cols: tuple[Index, Index] | None = None


TokenSpec = TokenBox | list[Index] | None


def _range(name: str, r: tuple[int, int] | None, n: int, grid) -> np.ndarray:
    if r is None:
        return np.arange(n)
    a, b = r
    if not 0 <= a < b <= n:
        raise ValueError(f"tokens.{name} [{a}, {b}) is outside the token grid (frames, rows, cols) {tuple(grid)}: "
                         f"valid ranges are [a, b) with 0 <= a < b <= {n}")  # fmt: skip
    return np.arange(a, b)


def token_index(spec: TokenSpec, grid: Sequence[int]) -> tuple[np.ndarray | None, tuple[int, int, int] | None]:
    """``(flat indices, box)`` of the stored tokens of a (f, h, w) grid: None for every token; ``box`` is the
    (frames, rows, cols) sizes of a box (None for a list). One ValueError for anything outside the grid."""
    if spec is None:
        return None, None
    f, h, w = (int(g) for g in grid)
    if isinstance(spec, TokenBox):
        frames = np.arange(f) if spec.frames is None else np.asarray(spec.frames, np.int64)
        bad = [int(x) for x in frames if x >= f]
        if bad or len(set(frames.tolist())) != len(frames) or not len(frames):
            raise ValueError(f"tokens.frames {list(map(int, frames))}: give distinct frames of the token grid "
                             f"(frames, rows, cols) {(f, h, w)}, each in 0..{f - 1}")  # fmt: skip
        rows, cols = _range("rows", spec.rows, h, (f, h, w)), _range("cols", spec.cols, w, (f, h, w))
        idx = (frames[:, None, None] * h * w + rows[None, :, None] * w + cols[None, None, :]).reshape(-1)
        return idx.astype(np.int64), (len(frames), len(rows), len(cols))
    idx = np.asarray(list(spec), np.int64)
    n = f * h * w
    bad = [int(i) for i in idx if i >= n]
    if not len(idx) or bad:
        raise ValueError(f"tokens {bad[:8] or '[]'}: give token indices in 0..{n - 1} (the token grid (frames, rows, "
                         f"cols) {(f, h, w)} holds {n} tokens), or a box {{frames, rows, cols}}")  # fmt: skip
    if len(np.unique(idx)) != len(idx):
        raise ValueError(f"tokens: {len(idx) - len(np.unique(idx))} repeated token indices; give each token once")
    return idx, None


def stored_steps(steps: int, stride: int | None, chosen: Sequence[int] | None) -> list[int]:
    """The steps a capture stores: every ``stride``-th (from 0), the ``chosen`` list, or all of them."""
    if stride is not None and chosen is not None:
        raise ValueError("give step_stride or store_steps, not both")
    if chosen is not None:
        bad = [int(s) for s in chosen if not 0 <= s < steps]
        if bad or not len(chosen):
            raise ValueError(f"store_steps {bad or '[]'}: give steps in 0..{steps - 1} (the capture runs {steps})")
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"store_steps {list(chosen)}: each step once")
        return sorted(int(s) for s in chosen)
    return list(range(0, steps, stride or 1))

"""Mirroring: reflect a k x k pattern across a vertical gray axis, revealed column by column from the axis outward.

The canvas is the suite's ``GRID`` x ``GRID`` grid of blocks (background "open"). Column ``axis`` (5 or 6) is a
full-height "gray" line. Left of it, at rows ``row..row+k-1`` and columns ``col..col+k-1`` (``col + k - 1 < axis``,
a gap of ``axis - col - k`` empty columns to the axis), lies a random pattern of k x k cells, each one block of a
palette colour or empty ("open"); the right side starts empty. Frame f (1..FRAMES-1) shows the mirror image
(block column c -> ``2 * axis - c``) of the ``ceil(f * k / (FRAMES - 1))`` pattern columns nearest the axis, so the
last frame shows the full mirror.

Levels are the pattern side k in (2, 3, 4); the colours drawn grow with k (2, 4, 5 colours). Patterns are never
empty and never left-right symmetric (the mirror always differs from a plain copy).

Instance (JSON): ``{"task", "level": k, "axis", "row", "col", "pattern": k x k colour names ("open" = empty)}``.
"""

from __future__ import annotations

import json

import numpy as np
from jaxtyping import UInt8

from interp.tasks.suite import BLOCK, COLORS, FRAMES, GRID, classify_blocks, register

NAMES = list(COLORS)  # the scorer classifies every block against the whole palette
_IDX = {n: i for i, n in enumerate(NAMES)}
OPEN, AXIS = _IDX["open"], _IDX["gray"]
_PAL = np.array([COLORS[n] for n in NAMES], dtype=np.uint8)

LEVELS = (2, 3, 4)
PALETTES = {  # level -> the colours a cell may take (besides empty)
    2: ("red", "blue"),
    3: ("red", "blue", "cyan", "trail"),
    4: ("red", "blue", "cyan", "trail", "start"),
}
AXES = (5, 6)
PROMPT = "mirror the pattern across the gray line"


def revealed(k: int, frame: int) -> int:
    """How many pattern columns (nearest the axis first) are mirrored in ``frame``."""
    return -(-frame * k // (FRAMES - 1))


class Mirror:
    name = "mirror"
    levels = LEVELS
    prompts = (PROMPT,)

    def generate(self, level, rng: np.random.Generator) -> dict:
        if level not in PALETTES:
            raise ValueError(f"mirror has no level {level!r}; levels: {list(LEVELS)}")
        k, colors = level, ("open",) + PALETTES[level]
        axis = AXES[int(rng.integers(len(AXES)))]
        room = min(axis, GRID - 1 - axis)  # columns on the narrower side of the axis
        gap = int(rng.integers(0, room - k + 1))
        col, row = axis - gap - k, int(rng.integers(0, GRID - k + 1))
        while True:
            idx = rng.integers(0, len(colors), size=(k, k))
            if idx.any() and not np.array_equal(idx, idx[:, ::-1]):
                break
        pattern = [[colors[i] for i in r] for r in idx.tolist()]
        return {"task": self.name, "level": k, "axis": axis, "row": row, "col": col, "pattern": pattern}

    def prompt(self, instance: dict) -> str:
        return PROMPT

    def classes(self, instance: dict) -> np.ndarray:
        """(FRAMES, GRID, GRID) palette indices of the solution video."""
        k, a, r0, c0 = instance["level"], instance["axis"], instance["row"], instance["col"]
        pat = np.array([[_IDX[n] for n in row] for row in instance["pattern"]], dtype=np.int64)
        g = np.full((FRAMES, GRID, GRID), OPEN, dtype=np.int64)
        g[:, :, a] = AXIS
        g[:, r0 : r0 + k, c0 : c0 + k] = pat
        mirrored = pat[:, ::-1]  # right-side columns 2a-c0-k+1 .. 2a-c0, nearest the axis first
        m0 = 2 * a - c0 - k + 1
        for f in range(1, FRAMES):
            n = revealed(k, f)
            g[f, r0 : r0 + k, m0 : m0 + n] = mirrored[:, :n]
        return g

    def render(self, instance: dict) -> UInt8[np.ndarray, "frames h w 3"]:
        blocks = _PAL[self.classes(instance)]
        return np.repeat(np.repeat(blocks, BLOCK, axis=1), BLOCK, axis=2)

    def score(self, video: UInt8[np.ndarray, "frames h w 3"], instance: dict) -> dict[str, float]:
        video = np.asarray(video)
        if video.shape[0] != FRAMES or video.shape[1:3] != (GRID * BLOCK, GRID * BLOCK):
            raise ValueError(
                f"expected a video of shape ({FRAMES}, {GRID * BLOCK}, {GRID * BLOCK}, 3), got {video.shape}"
            )
        k, a, r0, c0 = instance["level"], instance["axis"], instance["row"], instance["col"]
        truth = self.classes(instance)
        last, mid = FRAMES - 1, (FRAMES - 1) // 2
        cls = classify_blocks(video[[mid, last]], NAMES)
        got, want = cls[1], truth[last]
        m0 = 2 * a - c0 - k + 1
        right = (slice(r0, r0 + k), slice(m0, m0 + k))
        left = (slice(r0, r0 + k), slice(c0, c0 + k))
        return {
            "success": float(
                np.array_equal(got, want)
            ),  # mirror right, rest of the right side empty, left and axis kept
            "cell_accuracy": float((got[right] == want[right]).mean()),
            "left_fidelity": float((got[left] == want[left]).mean()),
            "axis_fidelity": float((got[:, a] == AXIS).mean()),
            "progress": float((cls[0][right] == truth[mid][right]).mean()),
        }

    def key(self, instance: dict) -> bytes:
        return json.dumps(
            [self.name, instance["axis"], instance["row"], instance["col"], instance["pattern"]], separators=(",", ":")
        ).encode()


TASK = register(Mirror())

__all__ = ["TASK", "Mirror", "revealed"]

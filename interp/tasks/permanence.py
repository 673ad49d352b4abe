"""Object permanence: a red block keeps moving behind a gray occluder and reappears where its motion says.

The canvas is the suite's ``GRID`` x ``GRID`` grid of blocks (background "open"). One red block moves at a constant
velocity of one block per frame (``(vr, vc)`` with one component +-1 and the other in {-1, 0, +1}) in a straight
line; its two previous positions are drawn as a "purple" tail in every frame (frame 0 included, where the tail lies
at ``start - v`` and ``start - 2v``), so the velocity can be read from frame 0 alone: the red block is the head, the
tail points backwards. A gray rectangle (the occluder) is drawn over everything, so the object and its tail pass
behind it: the object is hidden in the frames ``hidden[0]..hidden[1]`` (a contiguous run inside 1..7) and visible in
frame 0, in every other frame and in the last frame.

Levels are the number of frames the object is hidden (the occluder's thickness along the motion): level 1 hides it
for 1-2 frames, level 2 for 3-4, level 3 for 5-6, level 4 for 7 (frames 1 to 7: the object is seen only in the first
and the last frame). The shipped organism is trained on levels 1-3 only, so level 4 measures how far its working
memory extrapolates. Instances are drawn with the motion "mostly horizontal"
(``vc = +-1``) and then transposed with probability 1/2, so vertical motion behind horizontal bars occurs too.

Instance (JSON): ``{"task", "level", "start": [r, c], "velocity": [vr, vc], "occluder": [r0, c0, r1, c1]`` (blocks,
half-open), ``"hidden": [first, last]`` (frames, inclusive)``}``.
"""

from __future__ import annotations

import json

import numpy as np
from jaxtyping import UInt8

from interp.tasks.suite import BLOCK, COLORS, FRAMES, GRID, classify_blocks, register

NAMES = list(COLORS)  # the scorer classifies every block against the whole palette
_IDX = {n: i for i, n in enumerate(NAMES)}
OPEN, OBJECT, TAIL, OCCLUDER = _IDX["open"], _IDX["red"], _IDX["purple"], _IDX["gray"]
_PAL = np.array([COLORS[n] for n in NAMES], dtype=np.uint8)

LEVELS = (1, 2, 3, 4)
HIDDEN_FRAMES = {1: (1, 2), 2: (3, 4), 3: (5, 6), 4: (7, 7)}  # level -> (min, max) number of frames the object is hidden
TAIL_LEN = 2
PROMPT = "the red ball keeps moving behind the gray wall"


def _start_range(v: int) -> tuple[int, int]:
    """Inclusive range of start coordinates whose positions start + t*v, t in [-TAIL_LEN, FRAMES-1], stay inside."""
    lo = max(0, TAIL_LEN * v, -(FRAMES - 1) * v)
    hi = min(GRID - 1, GRID - 1 + TAIL_LEN * v, GRID - 1 - (FRAMES - 1) * v)
    return lo, hi


def positions(instance: dict) -> list[tuple[int, int]]:
    """The object's true block (r, c) in frames 0..FRAMES-1."""
    (r, c), (vr, vc) = instance["start"], instance["velocity"]
    return [(r + k * vr, c + k * vc) for k in range(FRAMES)]


def occluder_mask(instance: dict) -> np.ndarray:
    r0, c0, r1, c1 = instance["occluder"]
    m = np.zeros((GRID, GRID), dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


def visible(instance: dict) -> list[bool]:
    """Whether the object is visible (not behind the occluder) in frames 0..FRAMES-1."""
    m = occluder_mask(instance)
    return [not m[p] for p in positions(instance)]


class Permanence:
    name = "permanence"
    levels = LEVELS
    prompts = (PROMPT,)

    def generate(self, level, rng: np.random.Generator) -> dict:
        if level not in HIDDEN_FRAMES:
            raise ValueError(f"permanence has no level {level!r}; levels: {list(LEVELS)}")
        lo, hi = HIDDEN_FRAMES[level]
        w = int(rng.integers(lo, hi + 1))  # frames hidden
        h0 = int(rng.integers(1, FRAMES - w))  # first hidden frame; the last one, h0 + w - 1, is <= FRAMES - 2
        h1 = h0 + w - 1
        # in "x-major" coordinates: x is the motion's +-1 axis, y the other
        vx = 1 if rng.integers(2) else -1
        vy = int(rng.integers(-1, 2))
        (xl, xh), (yl, yh) = _start_range(vx), _start_range(vy)
        x0 = int(rng.integers(xl, xh + 1))
        y0 = int(rng.integers(yl, yh + 1))
        xa, xb = sorted((x0 + h0 * vx, x0 + h1 * vx))
        ya, yb = sorted((y0 + h0 * vy, y0 + h1 * vy))
        m_lo, m_hi = (1, 4) if vy == 0 else (0, 3)  # the occluder's margin across the motion, on each side
        ya = max(0, ya - int(rng.integers(m_lo, m_hi)))
        yb = min(GRID - 1, yb + int(rng.integers(m_lo, m_hi)))
        start, vel, occ = [y0, x0], [vy, vx], [ya, xa, yb + 1, xb + 1]
        if rng.integers(2):  # transpose: x becomes the row axis
            start, vel, occ = start[::-1], vel[::-1], [occ[1], occ[0], occ[3], occ[2]]
        return {"task": self.name, "level": level, "start": start, "velocity": vel, "occluder": occ, "hidden": [h0, h1]}

    def prompt(self, instance: dict) -> str:
        return PROMPT

    def classes(self, instance: dict) -> np.ndarray:
        """(FRAMES, GRID, GRID) palette indices of the solution video."""
        (vr, vc), pos = instance["velocity"], positions(instance)
        r0, c0, r1, c1 = instance["occluder"]
        g = np.full((FRAMES, GRID, GRID), OPEN, dtype=np.int64)
        for k, (r, c) in enumerate(pos):
            for t in range(1, TAIL_LEN + 1):
                g[k, r - t * vr, c - t * vc] = TAIL
            g[k, r, c] = OBJECT
        g[:, r0:r1, c0:c1] = OCCLUDER
        return g

    def render(self, instance: dict) -> UInt8[np.ndarray, "frames h w 3"]:
        blocks = _PAL[self.classes(instance)]  # (F, GRID, GRID, 3)
        return np.repeat(np.repeat(blocks, BLOCK, axis=1), BLOCK, axis=2)

    def score(self, video: UInt8[np.ndarray, "frames h w 3"], instance: dict) -> dict[str, float]:
        video = np.asarray(video)
        if video.shape[0] != FRAMES or video.shape[1:3] != (GRID * BLOCK, GRID * BLOCK):
            raise ValueError(
                f"expected a video of shape ({FRAMES}, {GRID * BLOCK}, {GRID * BLOCK}, 3), got {video.shape}"
            )
        cls = classify_blocks(video, NAMES)
        occ = occluder_mask(instance)
        pos, vis = positions(instance), visible(instance)
        red_out = (cls == OBJECT) & ~occ  # red blocks outside the occluder, per frame
        right = []
        for k in range(1, FRAMES):
            expected = np.zeros((GRID, GRID), dtype=bool)
            if vis[k]:
                expected[pos[k]] = True
            right.append(bool(np.array_equal(red_out[k], expected)))
        occluder_fidelity = float((cls[1:, occ] == OCCLUDER).mean())
        h0, h1 = instance["hidden"]
        shown = [k for k in range(h0, FRAMES) if red_out[k].any()]  # frames from the occlusion on with red showing
        reappear = bool(shown) and shown[0] == h1 + 1 and right[h1]  # right[k - 1] is frame k
        return {
            "success": float(all(right) and occluder_fidelity == 1.0),
            "final_position": float(right[-1]),
            "reappear_time": float(reappear),
            "frame_accuracy": float(np.mean(right)),
            "occluder_fidelity": occluder_fidelity,
        }

    def key(self, instance: dict) -> bytes:
        return json.dumps(
            [self.name, instance["start"], instance["velocity"], instance["occluder"]], separators=(",", ":")
        ).encode()


TASK = register(Permanence())

__all__ = ["TASK", "Permanence", "occluder_mask", "positions", "visible"]

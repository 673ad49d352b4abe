"""Object permanence: a red block keeps moving behind a gray occluder and reappears where its motion says.

The canvas is the suite's ``GRID`` x ``GRID`` grid of blocks (background "open"). One red block moves at a constant
velocity of one block per frame (``(vr, vc)`` with one component +-1 and the other in {-1, 0, +1}) in a straight
line; its two previous positions are drawn as a "purple" tail in every frame (frame 0 included, where the tail lies
at ``start - v`` and ``start - 2v``), so the velocity can be read from frame 0 alone: the red block is the head, the
tail points backwards. A gray rectangle (the occluder) is drawn over everything, so the object and its tail pass
behind it: the object is hidden in the frames ``hidden[0]..hidden[1]`` (a contiguous run inside 1..7) and visible in
frame 0, in every other frame and in the last frame.

Levels 1-4 are the number of frames the object is hidden (the occluder's thickness along the motion): level 1 hides
it for 1-2 frames, level 2 for 3-4, level 3 for 5-6, level 4 for 7 (frames 1 to 7: the object is seen only in the
first and the last frame). Levels 5 and 6 load working memory instead: two and three objects, each as a level 1-2
object (hidden 1-4 frames) with its own occluder, their footprints (every position of the object and its tail, and
its occluder) disjoint, so each object is hidden only behind its own occluder. The shipped organism is trained on
levels 1-3 only, so levels 4-8 measure how far its working memory extrapolates: to longer occlusions (4), to more
objects held at once (5, 6) and to a weaker cue (7, 8: a level-2 or level-3 object whose tail is one block instead
of two, so its velocity is read from two blocks of frame 0; the scorer reads only the red blocks). Instances are
drawn with the motion "mostly horizontal" (``vc = +-1``) and then transposed with probability 1/2, so vertical
motion behind horizontal bars occurs too.

Instance (JSON): ``{"task", "level", "start": [r, c], "velocity": [vr, vc], "occluder": [r0, c0, r1, c1]`` (blocks,
half-open), ``"hidden": [first, last]`` (frames, inclusive)``}``; levels 5-6: ``{"task", "level", "objects": [...]}``,
one ``{"start", "velocity", "occluder", "hidden"}`` per object; levels 7-8 add ``"tail": 1``.
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

SINGLE_LEVELS = (1, 2, 3, 4)
HIDDEN_FRAMES = {
    1: (1, 2),
    2: (3, 4),
    3: (5, 6),
    4: (7, 7),
}  # level -> (min, max) number of frames the object is hidden
OBJECTS = {5: 2, 6: 3}  # the working-memory levels: level -> number of objects (each hidden 1-4 frames)
SHORT_TAIL = {7: 2, 8: 3}  # the weak-cue levels: level -> the single-object level drawn, with a one-block tail
LEVELS = SINGLE_LEVELS + tuple(OBJECTS) + tuple(SHORT_TAIL)
MAX_TRIES, TRIES_EACH = 1000, 50  # a multi-object instance: attempts, and draws of each object (disjoint footprints)
TAIL_LEN = 2
PROMPT = "the red ball keeps moving behind the gray wall"


def _start_range(v: int) -> tuple[int, int]:
    """Inclusive range of start coordinates whose positions start + t*v, t in [-TAIL_LEN, FRAMES-1], stay inside."""
    lo = max(0, TAIL_LEN * v, -(FRAMES - 1) * v)
    hi = min(GRID - 1, GRID - 1 + TAIL_LEN * v, GRID - 1 - (FRAMES - 1) * v)
    return lo, hi


def objects(instance: dict) -> list[dict]:
    """The instance's objects, each a dict with ``start``, ``velocity``, ``occluder`` and ``hidden``."""
    return instance["objects"] if "objects" in instance else [instance]


def footprint(obj: dict) -> np.ndarray:
    """(GRID, GRID) bool: every block the object or its tail occupies in any frame, and its occluder."""
    (vr, vc), m = obj["velocity"], occluder_mask(obj)
    for r, c in positions(obj):
        for t in range(obj.get("tail", TAIL_LEN) + 1):
            m[r - t * vr, c - t * vc] = True
    return m


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
        if level in OBJECTS:  # objects drawn in turn, each until its footprint misses the ones before; else anew
            for _ in range(MAX_TRIES):
                objs, taken = [], np.zeros((GRID, GRID), dtype=bool)
                while len(objs) < OBJECTS[level]:
                    for _ in range(TRIES_EACH):
                        obj = self._one(int(rng.integers(1, 3)), rng)
                        if not (footprint(obj) & taken).any():
                            break
                    else:
                        break  # stuck: start the instance again
                    del obj["task"], obj["level"]
                    objs.append(obj)
                    taken |= footprint(obj)
                if len(objs) == OBJECTS[level]:
                    return {"task": self.name, "level": level, "objects": objs}
            raise RuntimeError(f"no {OBJECTS[level]} disjoint objects in {MAX_TRIES} attempts")
        if level in SHORT_TAIL:
            return {**self._one(SHORT_TAIL[level], rng), "level": level, "tail": 1}
        return self._one(level, rng)

    def _one(self, level, rng: np.random.Generator) -> dict:
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
        g = np.full((FRAMES, GRID, GRID), OPEN, dtype=np.int64)
        for obj in objects(instance):
            (vr, vc), pos = obj["velocity"], positions(obj)
            for k, (r, c) in enumerate(pos):
                for t in range(1, obj.get("tail", TAIL_LEN) + 1):
                    g[k, r - t * vr, c - t * vc] = TAIL
                g[k, r, c] = OBJECT
        for obj in objects(instance):
            r0, c0, r1, c1 = obj["occluder"]
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
        objs = objects(instance)
        occ = np.any([occluder_mask(o) for o in objs], axis=0)
        red_out = (cls == OBJECT) & ~occ  # red blocks outside the occluders, per frame
        right = []
        tracks = [(positions(o), visible(o)) for o in objs]
        for k in range(1, FRAMES):
            expected = np.zeros((GRID, GRID), dtype=bool)
            for pos, vis in tracks:
                if vis[k]:
                    expected[pos[k]] = True
            right.append(bool(np.array_equal(red_out[k], expected)))
        occluder_fidelity = float((cls[1:, occ] == OCCLUDER).mean())
        back = []  # per object: red shows again first in the frame after its occlusion, where its motion says
        for o in objs:
            h0, h1 = o["hidden"]
            # one object: red anywhere outside the occluder; several: in its footprint (disjoint: red there is its)
            own = footprint(o) if len(objs) > 1 else np.ones((GRID, GRID), dtype=bool)
            shown = [k for k in range(h0, FRAMES) if (red_out[k] & own).any()]
            back.append(bool(shown) and shown[0] == h1 + 1 and bool(red_out[h1 + 1][positions(o)[h1 + 1]]))
        reappear = all(back) and (len(objs) > 1 or right[objs[0]["hidden"][1]])  # right[k - 1] is frame k
        return {
            "success": float(all(right) and occluder_fidelity == 1.0),
            "final_position": float(right[-1]),
            "reappear_time": float(reappear),
            "frame_accuracy": float(np.mean(right)),
            "occluder_fidelity": occluder_fidelity,
        }

    def key(self, instance: dict) -> bytes:
        parts = [[o["start"], o["velocity"], o["occluder"]] for o in objects(instance)]
        key = [self.name, *parts[0]] if len(parts) == 1 else [self.name, parts]  # one object: levels 1-4's key
        if "tail" in instance:
            key.append(instance["tail"])
        return json.dumps(key, separators=(",", ":")).encode()


TASK = register(Permanence())

__all__ = [
    "LEVELS",
    "OBJECTS",
    "SINGLE_LEVELS",
    "TASK",
    "Permanence",
    "footprint",
    "objects",
    "occluder_mask",
    "positions",
    "visible",
]

"""Chain-of-Steps candidates and self-correction answers on hand-made x0 frames: blur is not a candidate, two sharp
distinct routes are two, one sharp route is one; a sharp complete wrong route is "wrong", blur is "none"."""

from __future__ import annotations

import numpy as np
import torch

from interp.tasks import maze as mz
from interp.tasks.candidates import CONTRAST, candidate_routes, sharp_answer
from interp.tasks.maze import GOAL, OPEN, START, TRAIL, WALL

# a 5x5 block grid, walls round the edge, an open 3x3 room: start at (1, 1), goal at (3, 3)
#   W W W W W
#   W S . . W
#   W . W . W
#   W . . G W
#   W W W W W
# two routes: right-then-down (1,2) (1,3) (2,3), and down-then-right (2,1) (3,1) (3,2)
LAYOUT = np.full((5, 5), WALL)
LAYOUT[1:4, 1:4] = OPEN
LAYOUT[2, 2] = WALL
LAYOUT[1, 1], LAYOUT[3, 3] = START, GOAL
UPPER = [(1, 2), (1, 3), (2, 3)]
LOWER = [(2, 1), (3, 1), (3, 2)]


def _frame(classes) -> np.ndarray:
    c = torch.as_tensor(np.asarray(classes))[None]
    return mz.render(c, torch.zeros_like(c, dtype=torch.bool)).numpy()[0]


COND = _frame(LAYOUT)


def _with_trail(*routes):
    c = LAYOUT.copy()
    for r in routes:
        for b in r:
            c[b] = TRAIL
    return _frame(c)


def _blend(frame_a, frame_b, w):
    """w of the way from frame_a to frame_b (a blur: low-contrast trail)."""
    return np.clip(frame_a.astype(np.float32) * (1 - w) + frame_b.astype(np.float32) * w, 0, 255).astype(np.uint8)


def test_one_sharp_route_is_one():
    c = candidate_routes(_with_trail(UPPER), COND)
    assert c.n == 1 and c.complete == [True] and c.routes[0] == frozenset(UPPER)


def test_two_sharp_distinct_routes_are_two():
    c = candidate_routes(_with_trail(UPPER, LOWER), COND)
    assert c.n == 2 and all(c.complete)
    assert set(c.routes) == {frozenset(UPPER), frozenset(LOWER)}


def test_blur_is_not_a_candidate():
    sharp = _with_trail(UPPER, LOWER)
    faint = _blend(COND, sharp, CONTRAST - 0.25)  # both routes drawn faintly: a low-contrast trail
    assert candidate_routes(faint, COND).n == 0
    assert sharp_answer(faint, COND) == "none"
    # a spatial blur of the sharp frame (each pixel the mean of a 3-block window, as an early x0 averages over
    # neighbouring layouts): no candidate either
    k = 3 * mz.BLOCK_PX
    pad = np.pad(sharp.astype(np.float32), ((k // 2, k // 2), (k // 2, k // 2), (0, 0)), mode="edge")
    cs = pad.cumsum(0).cumsum(1)
    cs = np.pad(cs, ((1, 0), (1, 0), (0, 0)))
    h, w = sharp.shape[:2]
    box = (cs[k : k + h, k : k + w] - cs[:h, k : k + w] - cs[k : k + h, :w] + cs[:h, :w]) / (k * k)
    assert candidate_routes(box.astype(np.uint8), COND).n == 0
    # one sharp route over a faint second one: one candidate
    mixed = _blend(_with_trail(UPPER), sharp, 0.3)
    assert candidate_routes(mixed, COND).n == 1


def test_partial_branches_and_detached_pieces():
    # a sharp trail leaving the start and branching: two partial routes (neither reaches the goal)
    c = candidate_routes(_with_trail([(1, 2), (1, 3)], [(2, 1), (3, 1)]), COND)
    assert c.n == 2 and c.complete == [False, False]
    # a single sharp block is below the connectivity threshold
    assert candidate_routes(_with_trail([(1, 2)]), COND).n == 0


def test_sharp_answer_right_wrong_none():
    # in LAYOUT the shortest route is ambiguous; use a perfect variant with the lower route walled off
    lay = LAYOUT.copy()
    lay[3, 1] = WALL
    cond = _frame(lay)
    right = lay.copy()
    for b in UPPER:
        right[b] = TRAIL
    assert sharp_answer(_frame(right), cond) == "right"
    wrong = lay.copy()
    for b in LOWER:  # through the wall at (3, 1): a sharp complete route, not the solution
        wrong[b] = TRAIL
    assert sharp_answer(_frame(wrong), cond) == "wrong"
    assert sharp_answer(_blend(cond, _frame(wrong), 0.3), cond) == "none"  # a faint wrong route is not an answer
    partial = lay.copy()
    partial[1, 2] = partial[1, 3] = TRAIL
    assert sharp_answer(_frame(partial), cond) == "none"  # incomplete

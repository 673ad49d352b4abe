"""Candidate routes in one x0 frame of a maze task: sharp, connected trails, not blur.

A block is *sharp trail* when the mean colour of its ring (the block minus the agent's centre square) lies at least
``CONTRAST`` of the way from the open colour to the trail colour (projection onto the open -> trail colour axis)
and no farther than ``SPREAD`` (in that axis's units) off the axis: a faint, washed-out blend of trail into open
(the blur of early denoising steps) projects low and is not sharp. Wall blocks painted as trail count (a route
through a wall is a wrong route); the start and goal blocks are the routes' terminals.

A *candidate route* is a maximal simple path of sharp trail blocks (4-connected) that leaves the start, ending at the
goal (a *complete* route) or where the sharp trail stops, with at least ``MIN_LEN`` trail blocks; two candidates
differ in at least one block. Sharp trail not connected to the start counts as one candidate per connected piece of
at least ``MIN_LEN`` blocks (a route drawn from the goal, or a detached segment). Enumeration stops at ``MAX_ROUTES``
(a blob of sharp trail is not a set of routes; its count is capped and flagged).

>>> from interp.tasks.candidates import candidate_routes
>>> routes = candidate_routes(x0_last_frame, condition_frame)   # uint8 (H, W, 3) each
>>> len(routes.routes), routes.complete
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from einops import rearrange

from interp.tasks.maze import AGENT_PX, BLOCK_PX, GOAL, OPEN, PALETTE, START, TRAIL, WALL
from interp.tasks.maze_score import read_blocks, reachable

CONTRAST = 0.6  # a sharp trail block's ring sits >= 60% of the way from open to trail
SPREAD = 0.35  # ... and within 0.35 (in units of the open->trail distance) of that colour axis
MIN_LEN = 2  # a candidate has >= 2 sharp trail blocks
MAX_ROUTES = 16


@dataclass
class Candidates:
    routes: list[frozenset]  # each candidate's trail blocks (start and goal excluded)
    complete: list[bool]  # the candidate joins the start to the goal
    capped: bool = False  # enumeration stopped at MAX_ROUTES
    sharp: set = field(default_factory=set)  # every sharp trail block

    @property
    def n(self) -> int:
        return len(self.routes)

    def complete_routes(self) -> list[frozenset]:
        return [r for r, c in zip(self.routes, self.complete) if c]


def trail_strength(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per block: the ring colour's position on the open (0) -> trail (1) axis, and its distance off the axis
    (both in units of the open-trail colour distance)."""
    b = rearrange(np.asarray(frame).astype(np.float32), "(h p) (w q) c -> h w (p q) c", p=BLOCK_PX, q=BLOCK_PX)
    inner = np.zeros((BLOCK_PX, BLOCK_PX), bool)
    lo = (BLOCK_PX - AGENT_PX) // 2
    inner[lo : lo + AGENT_PX, lo : lo + AGENT_PX] = True
    ring = b[:, :, ~inner.ravel()].mean(2)
    o, t = PALETTE[OPEN].astype(np.float32), PALETTE[TRAIL].astype(np.float32)
    axis = t - o
    scale = float(axis @ axis)
    proj = ((ring - o) @ axis) / scale
    off = ring - o - proj[..., None] * axis
    return proj, np.sqrt((off**2).sum(-1) / scale)


def sharp_blocks(frame: np.ndarray, layout: np.ndarray, contrast: float = CONTRAST, spread: float = SPREAD) -> set:
    proj, off = trail_strength(frame)
    mask = (proj >= contrast) & (off <= spread) & (layout != START) & (layout != GOAL)
    return {tuple(int(v) for v in b) for b in np.argwhere(mask)}


def _nbs(b):
    r, c = b
    return ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))


def candidate_routes(frame: np.ndarray, condition: np.ndarray | None = None, *, layout: np.ndarray | None = None,
                     contrast: float = CONTRAST, spread: float = SPREAD, min_len: int = MIN_LEN,
                     max_routes: int = MAX_ROUTES) -> Candidates:  # fmt: skip
    """The candidate routes of one frame (uint8 H x W x 3); the layout (start, goal) from ``condition`` (the
    conditioning frame) or ``layout`` (block classes)."""
    if layout is None:
        layout = read_blocks(condition if condition is not None else frame)[0]
    sharp = sharp_blocks(frame, layout, contrast, spread)
    starts, goals = np.argwhere(layout == START), np.argwhere(layout == GOAL)
    start = tuple(int(v) for v in starts[0]) if len(starts) == 1 else None
    goal = [tuple(int(v) for v in goals[0])] if len(goals) == 1 else []
    return routes(sharp, start, goal, min_len=min_len, max_routes=max_routes)


def routes(sharp: set, start: tuple | None, goals: list[tuple], *, min_len: int = MIN_LEN,
           max_routes: int = MAX_ROUTES) -> Candidates:  # fmt: skip
    """The candidate routes through a set of sharp trail blocks (module docstring): maximal simple paths from
    ``start`` (stopping at any of ``goals``: complete routes), then one candidate per detached piece. The block
    grid and what makes a block sharp are the caller's (the maze task here, the suite's route tasks in
    :mod:`interp.tasks.answers`)."""
    ends_at = set(goals)
    found: list[frozenset] = []
    complete: list[bool] = []
    capped = False
    attached: set = set()
    if start is not None:
        # maximal simple paths from the start through sharp blocks, stopping at a goal
        stack, pops = [(start, (start,))], 0
        while stack:
            cell, path = stack.pop()
            pops += 1
            if pops > 200 * max_routes:  # a blob: too many partial paths to be routes
                capped = True
                break
            if cell in ends_at:
                ends = True
                nxt = []
            else:
                nxt = [n for n in _nbs(cell) if (n in sharp or n in ends_at) and n not in path]
                ends = not nxt
            if ends and len(path) > 1:
                body = frozenset(path[1:]) - ends_at
                if len(body) >= min_len and body not in found:
                    found.append(body)
                    complete.append(cell in ends_at)
                    if len(found) >= max_routes:
                        capped = True
                        break
            for n in nxt:
                stack.append((n, path + (n,)))
        attached = reachable(sharp | {start}, start) - {start}
    rest = sharp - attached
    while rest:
        piece = reachable(rest, next(iter(rest)))
        rest -= piece
        if len(piece) >= min_len and not capped:
            found.append(frozenset(piece))
            complete.append(False)
    # a maximal path's prefix is not a separate candidate: drop routes contained in a longer one
    keep = [i for i, r in enumerate(found) if not any(j != i and r < found[j] for j in range(len(found)))]
    return Candidates([found[i] for i in keep], [complete[i] for i in keep], capped, sharp)


def solution_blocks(layout: np.ndarray) -> frozenset | None:
    """The blocks between start and goal on the shortest open path of ``layout`` (the unique one in a perfect maze)."""
    starts, goals = np.argwhere(layout == START), np.argwhere(layout == GOAL)
    if len(starts) != 1 or len(goals) != 1:
        return None
    start, goal = tuple(int(v) for v in starts[0]), tuple(int(v) for v in goals[0])
    passable = {tuple(int(v) for v in b) for b in np.argwhere(layout != WALL)}
    prev, queue = {start: None}, [start]
    while queue:
        cell = queue.pop(0)
        for n in _nbs(cell):
            if n in passable and n not in prev:
                prev[n] = cell
                queue.append(n)
    if goal not in prev:
        return None
    out, cell = [], prev[goal]
    while cell is not None and cell != start:
        out.append(cell)
        cell = prev[cell]
    return frozenset(out)


def sharp_answer(frame: np.ndarray, condition: np.ndarray) -> str:
    """What one x0 frame answers, counting only sharp complete routes: ``"right"`` (exactly one complete route,
    the solution), ``"wrong"`` (a sharp complete route that is not the solution), or ``"none"`` (no sharp
    complete route: blur, a partial trail, or nothing)."""
    layout = read_blocks(condition)[0]
    sol = solution_blocks(layout)
    full = candidate_routes(frame, layout=layout).complete_routes()
    if not full or sol is None:
        return "none"
    if any(r != sol for r in full):
        return "wrong"
    return "right"


__all__ = ["CONTRAST", "SPREAD", "MIN_LEN", "MAX_ROUTES", "Candidates", "candidate_routes", "routes", "sharp_answer",
           "sharp_blocks", "solution_blocks", "trail_strength"]  # fmt: skip

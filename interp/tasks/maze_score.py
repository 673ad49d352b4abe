"""Pixel-only scoring of maze videos.

The scorer never sees the maze object: it reads block classes from pixels (nearest palette colour of each block's
ring, the agent from its centre), the layout from the conditioning frame and the trail from the generated last frame.

Success: the trail of the last frame, with the start and the goal, is one simple path from start to goal that
crosses no wall. In a perfect maze that path is the unique solution, so success means exactly solved: no missing,
no extra cells.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass

import numpy as np
import torch
from einops import rearrange
from jaxtyping import UInt8

from interp.tasks.maze import AGENT_PX, AGENT_RGB, BLOCK_PX, GOAL, OPEN, PALETTE, START, TRAIL, WALL


@dataclass
class MazeScore:
    success: bool
    path_recall: float  # share of the solution's blocks (between start and goal) drawn as trail
    extra_cells: int  # trail blocks off the solution
    goal_reached: bool  # the trail connects the start to the goal
    wall_crossings: int  # trail blocks drawn on walls
    first_frame_fidelity: float  # share of blocks of the generated first frame equal to the conditioning frame
    readable: bool  # the conditioning frame shows exactly one start and one goal

    def as_dict(self) -> dict:
        return asdict(self)


def read_blocks(frame: UInt8[np.ndarray, "h w 3"]) -> tuple[np.ndarray, np.ndarray]:
    """Block classes (nearest palette colour of each block's ring) and agent presence of one frame."""
    frame = np.asarray(frame)
    h, w, _ = frame.shape
    if h % BLOCK_PX or w % BLOCK_PX:
        raise ValueError(f"frame of {h}x{w} pixels is not a grid of {BLOCK_PX}-pixel blocks")
    blocks = rearrange(frame.astype(np.float32), "(h p) (w q) c -> h w (p q) c", p=BLOCK_PX, q=BLOCK_PX)
    inner = np.zeros((BLOCK_PX, BLOCK_PX), dtype=bool)
    lo = (BLOCK_PX - AGENT_PX) // 2
    inner[lo : lo + AGENT_PX, lo : lo + AGENT_PX] = True
    inner = inner.ravel()
    ring = blocks[:, :, ~inner].mean(axis=2)
    centre = blocks[:, :, inner].mean(axis=2)
    dist = ((ring[:, :, None, :] - PALETTE[None, None].astype(np.float32)) ** 2).sum(-1)
    classes = dist.argmin(-1).astype(np.uint8)
    ring_col = PALETTE[classes].astype(np.float32)
    agent = ((centre - AGENT_RGB) ** 2).sum(-1) < ((centre - ring_col) ** 2).sum(-1)
    return classes, agent


def _simple_path(members: set, start, goal) -> bool:
    """True when ``members`` (blocks, start and goal included) form one simple path from start to goal."""

    def nbs(b):
        r, c = b
        return [n for n in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)) if n in members]

    if start == goal:
        return False
    for b in members:
        deg = len(nbs(b))
        if b in (start, goal):
            if deg != 1:
                return False
        elif deg != 2:
            return False
    return len(reachable(members, start)) == len(members)


def reachable(members: set, src) -> set:
    """The cells of ``members`` 4-connected to ``src`` (breadth-first)."""
    seen, queue = {src}, deque([src])
    while queue:
        r, c = queue.popleft()
        for n in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if n in members and n not in seen:
                seen.add(n)
                queue.append(n)
    return seen


def score_video(video: UInt8[np.ndarray, "f h w 3"], condition: UInt8[np.ndarray, "h w 3"] | None = None) -> MazeScore:
    """Score one generated video; ``condition`` is the given first frame (default: the video's own first frame)."""
    video = np.asarray(video.numpy() if isinstance(video, torch.Tensor) else video)
    cond = video[0] if condition is None else np.asarray(condition)
    layout, _ = read_blocks(cond)
    first, _ = read_blocks(video[0])
    last, last_agent = read_blocks(video[-1])
    fidelity = float((first == layout).mean())
    starts, goals = np.argwhere(layout == START), np.argwhere(layout == GOAL)
    if len(starts) != 1 or len(goals) != 1:
        return MazeScore(False, 0.0, int((last == TRAIL).sum()), False, 0, fidelity, False)
    start, goal = tuple(starts[0]), tuple(goals[0])
    walls = layout == WALL
    trail = {tuple(b) for b in np.argwhere(last == TRAIL)}
    crossings = sum(1 for b in trail if walls[b])

    # the solution, read from the conditioning frame's layout
    passable = {tuple(b) for b in np.argwhere(~walls)}
    prev, queue = {start: None}, deque([start])
    while queue:
        r, c = queue.popleft()
        for n in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if n in passable and n not in prev:
                prev[n] = (r, c)
                queue.append(n)
    solution = []
    cell = goal if goal in prev else None
    while cell is not None:
        solution.append(cell)
        cell = prev[cell]
    inner = set(solution) - {start, goal}
    recall = len(trail & inner) / len(inner) if inner else 1.0
    extra = len(trail - inner)
    members = trail | {start, goal}
    goal_reached = goal in reachable(members, start)
    success = crossings == 0 and _simple_path(members, start, goal)
    return MazeScore(success, recall, extra, goal_reached, crossings, fidelity, True)


def score_batch(videos, conditions=None) -> list[MazeScore]:
    videos = np.asarray(videos.numpy() if isinstance(videos, torch.Tensor) else videos)
    if conditions is None:
        return [score_video(v) for v in videos]
    conditions = np.asarray(conditions.numpy() if isinstance(conditions, torch.Tensor) else conditions)
    return [score_video(v, c) for v, c in zip(videos, conditions)]


def solve_rate(scores: list[MazeScore]) -> tuple[float, float, float]:
    """Mean success with its 95% Wilson confidence interval."""
    n = len(scores)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    p = sum(s.success for s in scores) / n
    z = 1.959964
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return p, max(0.0, centre - half), min(1.0, centre + half)


__all__ = ["MazeScore", "read_blocks", "score_video", "score_batch", "solve_rate", "OPEN"]

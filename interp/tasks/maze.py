"""Maze solving as image-to-video.

A perfect maze of n x n cells is drawn on a grid of (2n+1) x (2n+1) *blocks* (cells, the wall or gap between two
cells, and the corner posts). Every block is ``BLOCK_PX`` pixels square, so a DiT with a 1 x BLOCK_PX x BLOCK_PX
patch sees exactly one token per block. The video has ``frames`` frames: frame 0 shows the maze with the start
(green), the goal (red) and the agent (a small yellow square) at the start; frame k shows the agent after walking
k/(frames-1) of the unique solution, leaving a blue trail; the last frame shows the whole path with the agent on
the goal.

Everything here is seeded and pure: the same (size, seed, index) always gives the same maze.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from einops import rearrange, repeat
from jaxtyping import Bool, Int, UInt8

BLOCK_PX = 4
AGENT_PX = 2  # side of the agent's square, centred in its block
SIZES = tuple(range(3, 9))

# block classes
WALL, OPEN, START, GOAL, TRAIL = 0, 1, 2, 3, 4
CLASS_NAMES = ("wall", "open", "start", "goal", "trail")
PALETTE = np.array(
    [
        [20, 20, 20],  # wall
        [235, 235, 235],  # open
        [40, 180, 60],  # start
        [220, 50, 50],  # goal
        [50, 90, 220],  # trail
    ],
    dtype=np.uint8,
)
AGENT_RGB = np.array([250, 200, 30], dtype=np.uint8)
# what each colour of a rendered frame means (the filmstrips' legend)
LEGEND: tuple[tuple[str, tuple[int, int, int]], ...] = (
    *((name, tuple(int(v) for v in rgb)) for name, rgb in zip(CLASS_NAMES, PALETTE)),
    ("agent", tuple(int(v) for v in AGENT_RGB)),
)

# seed namespaces: training and held-out evaluation streams never share a seed
TRAIN_STREAM = 0x7A1
EVAL_STREAM = 0xE7A


@dataclass(frozen=True)
class Maze:
    """A perfect maze with a start and a goal, in cell coordinates."""

    size: int
    # open passages: right[r, c] is True when cell (r, c) connects to (r, c+1); down likewise to (r+1, c)
    right: np.ndarray
    down: np.ndarray
    start: tuple[int, int]
    goal: tuple[int, int]
    solution: tuple[tuple[int, int], ...] = field(default=())

    @property
    def side(self) -> int:
        """Blocks per side of the rendered grid."""
        return 2 * self.size + 1

    def to_dict(self) -> dict:
        return {
            "size": self.size,
            "right": self.right.astype(int).tolist(),
            "down": self.down.astype(int).tolist(),
            "start": list(self.start),
            "goal": list(self.goal),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Maze:
        right = np.asarray(d["right"], dtype=bool)
        down = np.asarray(d["down"], dtype=bool)
        start, goal = tuple(d["start"]), tuple(d["goal"])
        return cls(d["size"], right, down, start, goal, _solve(d["size"], right, down, start, goal))

    def key(self) -> bytes:
        """A canonical byte string identifying the task (layout, start, goal)."""
        return (
            bytes([self.size, *self.start, *self.goal])
            + np.packbits(np.concatenate([self.right.ravel(), self.down.ravel()])).tobytes()
        )


def _neighbours(size: int, r: int, c: int):
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        rr, cc = r + dr, c + dc
        if 0 <= rr < size and 0 <= cc < size:
            yield rr, cc


def _connected(right: np.ndarray, down: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> bool:
    (r0, c0), (r1, c1) = sorted([a, b])
    if r0 == r1:
        return bool(right[r0, c0])
    return bool(down[r0, c0])


def _distances(size, right, down, src) -> dict:
    dist, prev, frontier = {src: 0}, {src: None}, [src]
    while frontier:
        nxt = []
        for cell in frontier:
            for nb in _neighbours(size, *cell):
                if nb not in dist and _connected(right, down, cell, nb):
                    dist[nb], prev[nb] = dist[cell] + 1, cell
                    nxt.append(nb)
        frontier = nxt
    return {"dist": dist, "prev": prev}


def _solve(size, right, down, start, goal) -> tuple[tuple[int, int], ...]:
    prev = _distances(size, right, down, start)["prev"]
    path, cell = [], goal
    while cell is not None:
        path.append(cell)
        cell = prev[cell]
    return tuple(reversed(path))


def generate(size: int, rng: np.random.Generator) -> Maze:
    """A uniformly random perfect maze (Wilson's algorithm) with start and goal far apart.

    The start is a random cell; the goal is drawn from the cells whose path distance from the start is at least
    70% of the farthest cell's.
    """
    if size not in SIZES:
        raise ValueError(f"maze size must be one of {SIZES}, got {size}")
    right = np.zeros((size, size), dtype=bool)
    down = np.zeros((size, size), dtype=bool)
    cells = [(r, c) for r in range(size) for c in range(size)]
    in_tree = np.zeros((size, size), dtype=bool)
    first = cells[rng.integers(len(cells))]
    in_tree[first] = True
    order = rng.permutation(len(cells))
    for idx in order:
        cell = cells[idx]
        if in_tree[cell]:
            continue
        # loop-erased random walk from cell until it hits the tree
        walk = {cell: None}
        cur = cell
        while not in_tree[cur]:
            nbs = list(_neighbours(size, *cur))
            nxt = nbs[rng.integers(len(nbs))]
            walk[cur] = nxt
            cur = nxt
        cur = cell
        while not in_tree[cur]:
            nxt = walk[cur]
            (r0, c0), (r1, c1) = sorted([cur, nxt])
            if r0 == r1:
                right[r0, c0] = True
            else:
                down[r0, c0] = True
            in_tree[cur] = True
            cur = nxt
    start = cells[rng.integers(len(cells))]
    dist = _distances(size, right, down, start)["dist"]
    far = max(dist.values())
    candidates = sorted(cell for cell, d in dist.items() if d >= max(1, int(np.ceil(0.7 * far))))
    goal = candidates[rng.integers(len(candidates))]
    return Maze(size, right, down, start, goal, _solve(size, right, down, start, goal))


def maze_rng(stream: int, size: int, seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([stream, size, seed, index]))


def eval_mazes(size: int, n: int, seed: int = 0) -> list[Maze]:
    """The held-out evaluation mazes: ``n`` mazes of ``size`` from the evaluation seed stream."""
    return [generate(size, maze_rng(EVAL_STREAM, size, seed, i)) for i in range(n)]


@lru_cache(maxsize=None)
def eval_keys(n: int = 500, seed: int = 0) -> frozenset[bytes]:
    """Keys of the shipped held-out sets (every size), which training never draws."""
    return frozenset(m.key() for size in SIZES for m in eval_mazes(size, n, seed))


# ---------------------------------------------------------------------------------------------------------------
# blocks


def block_path(maze: Maze) -> list[tuple[int, int]]:
    """The solution as a sequence of blocks: cells and the gaps between consecutive cells."""
    out = []
    for i, (r, c) in enumerate(maze.solution):
        if i:
            pr, pc = maze.solution[i - 1]
            out.append((r + pr + 1, c + pc + 1))
        out.append((2 * r + 1, 2 * c + 1))
    return out


def layout_blocks(maze: Maze) -> Int[np.ndarray, "side side"]:
    """Block classes of the bare maze: walls, open cells and gaps, start and goal."""
    s = maze.side
    grid = np.full((s, s), WALL, dtype=np.uint8)
    grid[1::2, 1::2] = OPEN
    grid[1::2, 2:-1:2][maze.right[:, :-1]] = OPEN
    grid[2:-1:2, 1::2][maze.down[:-1, :]] = OPEN
    grid[2 * maze.start[0] + 1, 2 * maze.start[1] + 1] = START
    grid[2 * maze.goal[0] + 1, 2 * maze.goal[1] + 1] = GOAL
    return grid


def frame_blocks(
    maze: Maze, frames: int
) -> tuple[Int[np.ndarray, "frames side side"], Bool[np.ndarray, "frames side side"]]:
    """Per frame, the block classes and where the agent is."""
    base = layout_blocks(maze)
    path = block_path(maze)
    classes = np.repeat(base[None], frames, axis=0)
    agent = np.zeros_like(classes, dtype=bool)
    for k in range(frames):
        walked = int(round(k / max(frames - 1, 1) * (len(path) - 1))) + 1
        for br, bc in path[1:walked]:
            if base[br, bc] == OPEN:
                classes[k, br, bc] = TRAIL
        agent[k][path[walked - 1]] = True
    return classes, agent


def render(
    classes: Int[torch.Tensor, "*batch frames side side"], agent: Bool[torch.Tensor, "*batch frames side side"]
) -> UInt8[torch.Tensor, "*batch frames height width 3"]:
    """Pixels of block-class grids: each block a BLOCK_PX square, the agent a centred AGENT_PX square."""
    classes = torch.as_tensor(classes)
    agent = torch.as_tensor(agent, device=classes.device)
    palette = torch.as_tensor(PALETTE, device=classes.device)
    rgb = palette[classes.long()]
    rgb = torch.where(agent[..., None], torch.as_tensor(AGENT_RGB, device=classes.device), rgb)
    inner = torch.zeros(BLOCK_PX, BLOCK_PX, dtype=torch.bool, device=classes.device)
    lo = (BLOCK_PX - AGENT_PX) // 2
    inner[lo : lo + AGENT_PX, lo : lo + AGENT_PX] = True
    ring = palette[classes.long()]
    big_agent = repeat(rgb, "... h w c -> ... (h p) (w q) c", p=BLOCK_PX, q=BLOCK_PX)
    big_ring = repeat(ring, "... h w c -> ... (h p) (w q) c", p=BLOCK_PX, q=BLOCK_PX)
    side = classes.shape[-1]
    mask = inner.repeat(side, side)[..., None]
    return torch.where(mask, big_agent, big_ring)


def render_video(maze: Maze, frames: int) -> UInt8[np.ndarray, "frames height width 3"]:
    classes, agent = frame_blocks(maze, frames)
    return render(torch.from_numpy(classes), torch.from_numpy(agent)).numpy()


# ---------------------------------------------------------------------------------------------------------------
# model space


def to_model_space(video: UInt8[torch.Tensor, "*b f h w 3"]) -> torch.Tensor:
    """uint8 (..., F, H, W, 3) -> float (..., 3, F, H, W) in [-1, 1]."""
    x = video.float() / 127.5 - 1.0
    return rearrange(x, "... f h w c -> ... c f h w")


def from_model_space(x: torch.Tensor) -> UInt8[torch.Tensor, "*b f h w 3"]:
    """float (..., 3, F, H, W) in [-1, 1] -> uint8 (..., F, H, W, 3)."""
    x = rearrange(x.float(), "... c f h w -> ... f h w c")
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def condition_from_first_frame(first: torch.Tensor, frames: int) -> torch.Tensor:
    """Wan image-to-video conditioning: cat([mask, video]) with the first frame known and the rest zeros.

    ``first``: (B, 3, H, W) in model space. Returns (B, 4, F, H, W).
    """
    b, c, h, w = first.shape
    video = first.new_zeros(b, c, frames, h, w)
    video[:, :, 0] = first
    mask = first.new_zeros(b, 1, frames, h, w)
    mask[:, :, 0] = 1.0
    return torch.cat([mask, video], dim=1)


def eval_set_digest(size: int, n: int = 500, seed: int = 0) -> str:
    """sha256 over the keys of a held-out set: pins the shipped eval sets (interp/data/eval-sets/maze.json)."""
    h = hashlib.sha256()
    for m in eval_mazes(size, n, seed):
        h.update(m.key())
    return h.hexdigest()

"""Shortest path in mazes with loops, on the suite canvas.

A maze of n x n cells (levels n = 3, 4, 5) is drawn in blocks [0:2n+1, 0:2n+1] of the 12 x 12 block grid: cells
at odd/odd block coordinates, the wall or gap between two cells between them, posts at even/even; everything
outside the maze is wall. The generator draws a uniform perfect maze (Wilson's algorithm), then opens ``n - 1``
extra interior walls (loops), and picks a start and a goal so that **there are at least two distinct shortest
paths** from start to goal (in a grid every start-goal route has the same parity, so the next-longest route is
+2 cells = +4 blocks; we insist on ties at the shortest length, so the training targets are genuinely multimodal).
The goal is at >= 60% of the farthest BFS distance from the start.

The video: frame 0 is the maze with the green start and the red goal; frame k shows the first
``round(k / 8 * L)`` blocks of one shortest path after the start (``L`` = path length in blocks, excluding the
start, including the goal, which keeps its colour), drawn in the trail colour. The rendered path is chosen
uniformly among the shortest paths with the instance's rng and stored in the instance (``"path"``); the scorer
accepts any shortest path.

The module also holds the block-grid helpers that :mod:`interp.tasks.goalmaze` shares.
"""

from __future__ import annotations

import json
from collections import deque

import numpy as np

from interp.tasks import suite
from interp.tasks.suite import FRAMES, GRID, register

# ---------------------------------------------------------------------------------------------------------------
# cell graph


class _Uniform:
    """Batched uniform draws from a Generator (scalar ``rng.integers`` calls are ~1 us each)."""

    def __init__(self, rng: np.random.Generator, batch: int = 512):
        self.rng, self.batch = rng, batch
        self.buf = rng.random(batch).tolist()
        self.i = 0

    def below(self, k: int) -> int:
        if self.i >= len(self.buf):
            self.buf = self.rng.random(self.batch).tolist()
            self.i = 0
        u = self.buf[self.i]
        self.i += 1
        return min(int(u * k), k - 1)


def grid_neighbours(n: int) -> list[list[int]]:
    """Grid neighbours of every cell index r * n + c."""
    out = []
    for r in range(n):
        for c in range(n):
            nb = []
            if r > 0:
                nb.append((r - 1) * n + c)
            if r < n - 1:
                nb.append((r + 1) * n + c)
            if c > 0:
                nb.append(r * n + c - 1)
            if c < n - 1:
                nb.append(r * n + c + 1)
            out.append(nb)
    return out


_NB = {n: grid_neighbours(n) for n in range(2, 7)}


def wilson(n: int, u: _Uniform) -> list[set[int]]:
    """A uniform random spanning tree of the n x n grid (Wilson's algorithm): adjacency sets of the passages."""
    nbs = _NB[n]
    m = n * n
    adj: list[set[int]] = [set() for _ in range(m)]
    in_tree = [False] * m
    in_tree[u.below(m)] = True
    order = list(range(m))
    for i in range(m - 1, 0, -1):  # Fisher-Yates
        j = u.below(i + 1)
        order[i], order[j] = order[j], order[i]
    nxt = [0] * m
    for cell in order:
        if in_tree[cell]:
            continue
        cur = cell
        while not in_tree[cur]:
            nb = nbs[cur]
            nxt[cur] = nb[u.below(len(nb))]
            cur = nxt[cur]
        cur = cell
        while not in_tree[cur]:
            a, b = cur, nxt[cur]
            adj[a].add(b)
            adj[b].add(a)
            in_tree[cur] = True
            cur = b
    return adj


def bfs_counts(adj: list[set[int]], src: int) -> tuple[list[int], list[int]]:
    """BFS distances from ``src`` and the number of shortest paths to every cell."""
    m = len(adj)
    dist = [-1] * m
    cnt = [0] * m
    dist[src], cnt[src] = 0, 1
    q = deque([src])
    while q:
        a = q.popleft()
        for b in adj[a]:
            if dist[b] < 0:
                dist[b] = dist[a] + 1
                cnt[b] = cnt[a]
                q.append(b)
            elif dist[b] == dist[a] + 1:
                cnt[b] += cnt[a]
    return dist, cnt


def sample_shortest(adj, dist, cnt, goal: int, u: _Uniform) -> list[int]:
    """A uniformly random shortest path (cells, start first) to ``goal``, given BFS ``dist``/``cnt`` from the start."""
    path = [goal]
    cur = goal
    while dist[cur] > 0:
        preds = sorted(p for p in adj[cur] if dist[p] == dist[cur] - 1)
        total = sum(cnt[p] for p in preds)
        x = u.below(total)
        for p in preds:
            x -= cnt[p]
            if x < 0:
                cur = p
                break
        path.append(cur)
    return path[::-1]


# ---------------------------------------------------------------------------------------------------------------
# blocks


def cell_block(n: int, i: int) -> tuple[int, int]:
    return 2 * (i // n) + 1, 2 * (i % n) + 1


def blocks_of_cells(n: int, cells: list[int]) -> list[list[int]]:
    """A cell path as the block path: cells and the gaps between consecutive cells."""
    out = []
    prev = None
    for i in cells:
        r, c = cell_block(n, i)
        if prev is not None:
            out.append([(r + prev[0]) // 2, (c + prev[1]) // 2])
        out.append([r, c])
        prev = (r, c)
    return out


def grid_rows(n: int, adj: list[set[int]]) -> list[str]:
    """The maze's (2n+1) x (2n+1) block grid as strings: '#' wall, '.' open."""
    side = 2 * n + 1
    g = [["#"] * side for _ in range(side)]
    for a in range(n * n):
        ra, ca = cell_block(n, a)
        g[ra][ca] = "."
        for b in adj[a]:
            if b > a:
                rb, cb = cell_block(n, b)
                g[(ra + rb) // 2][(ca + cb) // 2] = "."
    return ["".join(row) for row in g]


def open_mask(grid: list[str]) -> np.ndarray:
    """(GRID, GRID) bool: open blocks of the maze (everything outside it is wall)."""
    m = np.zeros((GRID, GRID), dtype=bool)
    side = len(grid)
    m[:side, :side] = np.array([[ch == "." for ch in row] for row in grid], dtype=bool)
    return m


def block_bfs(open_: np.ndarray, src: tuple[int, int]) -> np.ndarray:
    """(GRID, GRID) int: BFS distance in blocks from ``src`` through open blocks (-1 unreachable)."""
    dist = np.full((GRID, GRID), -1, dtype=np.int64)
    dist[src] = 0
    q = deque([tuple(src)])
    while q:
        r, c = q.popleft()
        for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= rr < GRID and 0 <= cc < GRID and open_[rr, cc] and dist[rr, cc] < 0:
                dist[rr, cc] = dist[r, c] + 1
                q.append((rr, cc))
    return dist


def render_classes(base: np.ndarray, path: list[list[int]], trail: int) -> np.ndarray:
    """(FRAMES, GRID, GRID) class indices: ``base`` with the first round(k/8 L) blocks after the start as trail
    (the goal, the path's last block, keeps its class)."""
    frames = np.repeat(base[None], FRAMES, axis=0)
    steps = len(path) - 1
    for k in range(FRAMES):
        shown = int(round(k / (FRAMES - 1) * steps))
        for r, c in path[1 : 1 + shown][: steps - 1]:
            frames[k, r, c] = trail
    return frames


def paint(classes: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """(..., GRID, GRID) class indices into ``names`` -> (..., SIZE, SIZE, 3) uint8 pixels."""
    pal = np.array([suite.COLORS[n] for n in names], dtype=np.uint8)
    rgb = pal[classes]
    return np.repeat(np.repeat(rgb, suite.BLOCK, axis=-3), suite.BLOCK, axis=-2)


classify = suite.classify_blocks  # (GRID, GRID) class indices into ``names`` of one frame's blocks


def _nb4(r, c):
    return ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))


def trail_path(trail: np.ndarray, start, goal) -> list[tuple[int, int]] | None:
    """The blocks of trail + {start, goal} as an ordered simple path start..goal, or None when they are not exactly
    one simple 4-connected path (branches, gaps, loops, stray blocks)."""
    pts = {tuple(map(int, p)) for p in np.argwhere(trail)}
    s, g = tuple(start), tuple(goal)
    pts.discard(s)
    pts.discard(g)
    nodes = pts | {s, g}
    for p in nodes:
        deg = sum(q in nodes for q in _nb4(*p))
        if deg != (1 if p in (s, g) else 2):
            return None
    path, prev, cur = [s], None, s
    while cur != g:
        nxt = [q for q in _nb4(*cur) if q in nodes and q != prev]
        if len(nxt) != 1:
            return None
        prev, cur = cur, nxt[0]
        path.append(cur)
    return path if len(path) == len(nodes) else None


def connected(allowed: np.ndarray, a, b) -> bool:
    """Whether blocks ``a`` and ``b`` are 4-connected through ``allowed`` blocks."""
    return bool(block_bfs(allowed, tuple(a))[tuple(b)] >= 0)


def eval_record(task, n: int, seed: int, description: str, stats) -> dict:
    """A data/eval-sets record: per level the digest of ``suite.heldout(task, level, n, seed)`` and mean ``stats``."""
    sets = []
    for level in task.levels:
        insts = suite.heldout(task, level, n, seed)
        rec = {"level": level, "sha256": suite.digest(task, insts)}
        for k, v in stats(insts).items():
            rec[k] = round(float(v), 4)
        sets.append(rec)
    return {
        "task": task.name,
        "description": description,
        "stream": suite.EVAL_STREAM,
        "seed": seed,
        "count": n,
        "sets": sets,
    }


# ---------------------------------------------------------------------------------------------------------------
# the task

NAMES = ("wall", "open", "start", "red", "trail")
WALL, OPEN, START, GOAL, TRAIL = range(5)


class LoopMaze:
    name = "loopmaze"
    levels = (3, 4, 5)
    prompts = ("draw the shortest path from the green start to the red goal",)
    goal_frac = 0.6
    max_tries = 50

    def generate(self, level, rng: np.random.Generator) -> dict:
        n = int(level)
        suite.level_index(self, n)
        u = _Uniform(rng)
        m = n * n
        for _ in range(self.max_tries):
            adj = wilson(n, u)
            closed = [(a, b) for a in range(m) for b in _NB[n][a] if b > a and b not in adj[a]]
            for _ in range(n - 1):
                a, b = closed.pop(u.below(len(closed)))
                adj[a].add(b)
                adj[b].add(a)
            for _ in range(4):  # a few starts per maze before redrawing it
                start = u.below(m)
                dist, cnt = bfs_counts(adj, start)
                far = max(dist)
                lo = max(1, int(np.ceil(self.goal_frac * far)))
                goals = [i for i in range(m) if dist[i] >= lo and cnt[i] >= 2]
                if goals:
                    goal = goals[u.below(len(goals))]
                    cells = sample_shortest(adj, dist, cnt, goal, u)
                    return {
                        "task": self.name,
                        "level": n,
                        "grid": grid_rows(n, adj),
                        "start": list(cell_block(n, start)),
                        "goal": list(cell_block(n, goal)),
                        "path": blocks_of_cells(n, cells),
                        "n_shortest": cnt[goal],
                    }
        raise RuntimeError(f"loopmaze: no maze with two shortest paths in {self.max_tries} tries (level {n})")

    def prompt(self, instance: dict) -> str:
        return self.prompts[0]

    def key(self, instance: dict) -> bytes:
        return json.dumps([instance["level"], instance["grid"], instance["start"], instance["goal"]]).encode()

    def base_classes(self, instance: dict) -> np.ndarray:
        base = np.where(open_mask(instance["grid"]), OPEN, WALL)
        base[tuple(instance["start"])] = START
        base[tuple(instance["goal"])] = GOAL
        return base

    def render(self, instance: dict) -> np.ndarray:
        return paint(render_classes(self.base_classes(instance), instance["path"], TRAIL), NAMES)

    def score(self, video: np.ndarray, instance: dict) -> dict[str, float]:
        video = np.asarray(video)
        base = self.base_classes(instance)
        side = len(instance["grid"])
        first, last = classify(video[0], NAMES), classify(video[-1], NAMES)
        start, goal = tuple(instance["start"]), tuple(instance["goal"])
        open_ = base != WALL
        trail = last == TRAIL
        layout_ok = bool((last[~open_] == WALL).all() and last[start] == START and last[goal] == GOAL)
        crossing = bool((trail & ~open_).any())
        ds, dg = block_bfs(open_, start), block_bfs(open_, goal)
        shortest_len = int(ds[goal])
        on_shortest = (ds >= 0) & (dg >= 0) & (ds + dg == shortest_len)
        path = trail_path(trail, start, goal)
        valid = path is not None and not crossing
        shortest = valid and len(path) - 1 == shortest_len
        reach = (trail & open_).copy()
        reach[start] = reach[goal] = True
        drawn = instance["path"][1:-1]
        recall = float(np.mean([trail[r, c] for r, c in drawn])) if drawn else 1.0
        return {
            "success": float(shortest and layout_ok),
            "reached_goal": float(connected(reach, start, goal)),
            "valid_path": float(valid),
            "shortest": float(shortest),
            "path_recall": recall,
            # trail blocks beyond a shortest path's (L - 1) and trail blocks on no shortest path (counts, not in [0, 1])
            "extra_blocks": float(max(0, int(trail.sum()) - (shortest_len - 1))),
            "off_shortest_blocks": float((trail & ~on_shortest).sum()),
            "layout_intact": float(layout_ok),
            "layout_fidelity": float((first[:side, :side] == base[:side, :side]).mean()),
        }


TASK = register(LoopMaze())


def eval_set_record(task=TASK, n: int = 200, seed: int = 0) -> dict:
    desc = (
        "Held-out loopmaze sets: instance i of level n is LoopMaze().generate(n, suite.instance_rng(EVAL_STREAM, task, "
        "n, seed, i)) = default_rng(SeedSequence([0x0E7A, task_id('loopmaze'), level_index, seed, i])), for i < count; "
        "each is a Wilson perfect maze with n-1 extra interior walls opened, start uniform, goal uniform among cells at >= 60% "
        "of the farthest BFS distance with >= 2 shortest paths (maze redrawn when none), rendered path uniform among the "
        "shortest. sha256 = suite.digest over the instances (sorted-key JSON). Training rejects every held-out key."
    )

    def stats(insts):
        return {
            "mean_path_blocks": np.mean([len(i["path"]) - 1 for i in insts]),
            "mean_shortest_paths": np.mean([i["n_shortest"] for i in insts]),
        }

    return eval_record(task, n, seed, desc, stats)

"""Prompt-chosen goal: one maze, two goals, the prompt says which.

The canvas is the one of :mod:`interp.tasks.loopmaze` (an n x n-cell maze, levels n = 3, 4, 5, in blocks
[0:2n+1, 0:2n+1]), but the maze is *perfect* (a uniform spanning tree, Wilson's algorithm), so the path to each
goal is unique. There is one green start and two goals, one red and one blue, chosen so that distance cannot
decide between them: both BFS distances (in cells) are >= 40% of the farthest cell's, they differ by at most 25% of
the larger one, and neither goal lies on the other's path (so the trail to one never touches the other).

The instance's ``target`` ("red" or "blue") is named by the prompt ("go to the red goal" / "go to the blue goal");
frame 0 is the same for both targets; frames 1..8 draw the trail (yellow) along the path to the target, frame k
showing the first round(k / 8 * L) blocks after the start. :func:`flip` gives the same maze with the other target;
:func:`heldout_pairs` gives both targets of each held-out maze.
"""

from __future__ import annotations

import json

import numpy as np

from interp.tasks import suite
from interp.tasks.loopmaze import (
    _Uniform,
    bfs_counts,
    block_bfs,
    cell_block,
    classify,
    connected,
    eval_record,
    grid_rows,
    open_mask,
    paint,
    render_classes,
    trail_path,
    wilson,
)
from interp.tasks.suite import register

NAMES = ("wall", "open", "start", "red", "blue", "trail")
WALL, OPEN, START, RED, BLUE, TRAIL = range(6)
GOALS = ("red", "blue")


def _cells_path(n: int, grid: list[str], start, goal) -> list[list[int]]:
    """The unique block path start..goal through the open blocks of a perfect maze (BFS in blocks)."""
    open_ = open_mask(grid)
    dist = block_bfs(open_, tuple(goal))
    path = [list(start)]
    r, c = start
    while dist[r, c] > 0:
        for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= rr < suite.GRID and 0 <= cc < suite.GRID and dist[rr, cc] == dist[r, c] - 1:
                r, c = rr, cc
                break
        path.append([r, c])
    return path


class GoalMaze:
    name = "goalmaze"
    levels = (3, 4, 5)
    prompts = ("go to the red goal", "go to the blue goal")
    min_frac = 0.4  # both goals at >= 40% of the farthest distance
    max_rel_gap = 0.25  # |d_red - d_blue| <= 25% of the larger
    max_tries = 50

    def generate(self, level, rng: np.random.Generator) -> dict:
        n = int(level)
        suite.level_index(self, n)
        u = _Uniform(rng)
        m = n * n
        for _ in range(self.max_tries):
            adj = wilson(n, u)
            for _ in range(4):
                start = u.below(m)
                dist, _ = bfs_counts(adj, start)
                far = max(dist)
                lo = max(1, int(np.ceil(self.min_frac * far)))
                # parent pointers of the BFS tree (= the maze): cell x is on the path to y iff x is an ancestor of y
                parent = [-1] * m
                for i in range(m):
                    if i != start:
                        parent[i] = next(p for p in adj[i] if dist[p] == dist[i] - 1)

                def ancestor(x, y):
                    while y != -1:
                        if y == x:
                            return True
                        y = parent[y]
                    return False

                far_cells = [i for i in range(m) if dist[i] >= lo]
                pairs = [
                    (a, b)
                    for a in far_cells
                    for b in far_cells
                    if a < b
                    and abs(dist[a] - dist[b]) <= self.max_rel_gap * max(dist[a], dist[b])
                    and not ancestor(a, b)
                    and not ancestor(b, a)
                ]
                if pairs:
                    a, b = pairs[u.below(len(pairs))]
                    if u.below(2):
                        a, b = b, a
                    grid = grid_rows(n, adj)
                    inst = {
                        "task": self.name,
                        "level": n,
                        "grid": grid,
                        "start": list(cell_block(n, start)),
                        "goals": {"red": list(cell_block(n, a)), "blue": list(cell_block(n, b))},
                        "target": GOALS[u.below(2)],
                    }
                    inst["path"] = _cells_path(n, grid, inst["start"], inst["goals"][inst["target"]])
                    return inst
        raise RuntimeError(f"goalmaze: no maze with two balanced goals in {self.max_tries} tries (level {n})")

    def flip(self, instance: dict) -> dict:
        """The same maze with the other target: the same first frame, the other prompt (:func:`flip`)."""
        return flip(instance)

    def prompt(self, instance: dict) -> str:
        return f"go to the {instance['target']} goal"

    def key(self, instance: dict) -> bytes:
        # the target is not part of the key: the same maze with the other target is the same held-out maze
        g = instance["goals"]
        return json.dumps([instance["level"], instance["grid"], instance["start"], g["red"], g["blue"]]).encode()

    def base_classes(self, instance: dict) -> np.ndarray:
        base = np.where(open_mask(instance["grid"]), OPEN, WALL)
        base[tuple(instance["start"])] = START
        base[tuple(instance["goals"]["red"])] = RED
        base[tuple(instance["goals"]["blue"])] = BLUE
        return base

    def render(self, instance: dict) -> np.ndarray:
        return paint(render_classes(self.base_classes(instance), instance["path"], TRAIL), NAMES)

    def score(self, video: np.ndarray, instance: dict) -> dict[str, float]:
        video = np.asarray(video)
        base = self.base_classes(instance)
        side = len(instance["grid"])
        first, last = classify(video[0], NAMES), classify(video[-1], NAMES)
        start = tuple(instance["start"])
        target = tuple(instance["goals"][instance["target"]])
        other_name = GOALS[1 - GOALS.index(instance["target"])]
        other = tuple(instance["goals"][other_name])
        open_ = base != WALL
        trail = last == TRAIL
        layout_ok = bool(
            (last[~open_] == WALL).all()
            and last[start] == START
            and last[tuple(instance["goals"]["red"])] == RED
            and last[tuple(instance["goals"]["blue"])] == BLUE
        )
        crossing = bool((trail & ~open_).any())
        path = trail_path(trail, start, target)
        valid = path is not None and not crossing
        r, c = other
        near = [(r, c), (r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)]
        touched_other = any(0 <= a < suite.GRID and 0 <= b < suite.GRID and trail[a, b] for a, b in near)
        reach = (trail & open_).copy()
        reach[start] = reach[target] = True
        reach[other] = False
        drawn = instance["path"][1:-1]
        recall = float(np.mean([trail[a, b] for a, b in drawn])) if drawn else 1.0
        return {
            "success": float(valid and not touched_other and layout_ok),
            "reached_target": float(connected(reach, start, target)),
            "reached_other": float(touched_other),
            "valid_path": float(valid),
            "path_recall": recall,
            "layout_intact": float(layout_ok),
            "layout_fidelity": float((first[:side, :side] == base[:side, :side]).mean()),
        }


TASK = register(GoalMaze())


def flip(instance: dict) -> dict:
    """The same maze with the other target (and its path)."""
    out = dict(instance)
    out["goals"] = {k: list(v) for k, v in instance["goals"].items()}
    out["target"] = GOALS[1 - GOALS.index(instance["target"])]
    out["path"] = _cells_path(instance["level"], instance["grid"], instance["start"], out["goals"][out["target"]])
    return out


def heldout_pairs(level, n_pairs: int, seed: int = 0) -> list[tuple[dict, dict]]:
    """(red-target, blue-target) versions of held-out mazes 0..n_pairs-1 of ``level`` (``suite.heldout`` + :func:`flip`)."""
    out = []
    for inst in suite.heldout(TASK, level, n_pairs, seed):
        other = flip(inst)
        out.append((inst, other) if inst["target"] == "red" else (other, inst))
    return out


def eval_set_record(task=TASK, n: int = 200, seed: int = 0) -> dict:
    desc = (
        "Held-out goalmaze sets: instance i of level n is GoalMaze().generate(n, suite.instance_rng(EVAL_STREAM, task, "
        "n, seed, i)) = default_rng(SeedSequence([0x0E7A, task_id('goalmaze'), level_index, seed, i])), for i < count, "
        "with its drawn target; heldout_pairs adds flip(instance), the other target of the same maze (same key). "
        "sha256 = suite.digest over the instances (sorted-key JSON)."
    )

    def stats(insts):
        def cells(inst, g):
            return (len(_cells_path(inst["level"], inst["grid"], inst["start"], inst["goals"][g])) - 1) / 2

        return {
            "mean_path_blocks": np.mean([len(i["path"]) - 1 for i in insts]),
            "mean_red_cells": np.mean([cells(i, "red") for i in insts]),
            "mean_blue_cells": np.mean([cells(i, "blue") for i in insts]),
            "frac_target_red": np.mean([i["target"] == "red" for i in insts]),
            "mean_shortest_paths": 1.0,
        }

    return eval_record(task, n, seed, desc, stats)

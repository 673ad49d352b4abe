"""Mazes as token sequences for the language model.

``<bos> size<n> g_0 ... g_{S*S-1} <sep> m_0 ... m_{k-1} <eos>`` with S = 2n+1: the grid tokens are the maze's
blocks in row-major order (``wall``, ``open``, ``start``, ``goal``: the same blocks the DiTs see as tokens), the
moves ``U D L R`` walk the unique solution cell by cell. The answer's *step* k is the position whose logits predict
move k: ``prompt_len - 1 + k`` (the ``<sep>`` position for k = 0).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from interp.models import SHIPPED_LMS
from interp.tasks import maze as mz

SPECIALS = ("<pad>", "<bos>", "<sep>", "<eos>")
BLOCKS = ("wall", "open", "start", "goal")
MOVES = ("U", "D", "L", "R")
VOCAB = (*SPECIALS, *BLOCKS, *MOVES, *(f"size{n}" for n in mz.SIZES))
PAD, BOS, SEP, EOS = range(4)
BLOCK0, MOVE0, SIZE0 = 4, 8, 12
GRID_OFFSET = 2  # position of the first grid token
_DELTA = {(-1, 0): 0, (1, 0): 1, (0, -1): 2, (0, 1): 3}
_STEP = {v: k for k, v in _DELTA.items()}
LM_MARKER = "lm.json"  # a model directory holding this file is a language model of this backend


def side(size: int) -> int:
    return 2 * size + 1


def prompt_len(size: int) -> int:
    return GRID_OFFSET + side(size) ** 2 + 1


def max_moves(size: int) -> int:
    return size * size - 1


def max_len(size: int) -> int:
    return prompt_len(size) + max_moves(size) + 1


def grid_positions(size: int) -> np.ndarray:
    """Sequence positions of the (2n+1)^2 grid tokens, row-major: token i of the grid is maze block i."""
    return GRID_OFFSET + np.arange(side(size) ** 2)


def answer_position(size: int, k: int) -> int:
    """The position whose logits predict answer token k (move k, or ``<eos>`` after the last move)."""
    return prompt_len(size) - 1 + k


def prompt(maze: mz.Maze) -> np.ndarray:
    layout = mz.layout_blocks(maze).ravel()  # WALL=0, OPEN=1, START=2, GOAL=3
    return np.concatenate([[BOS, SIZE0 + maze.size - mz.SIZES[0]], BLOCK0 + layout.astype(np.int64), [SEP]])


def moves(maze: mz.Maze) -> list[int]:
    sol = maze.solution
    return [MOVE0 + _DELTA[(r1 - r0, c1 - c0)] for (r0, c0), (r1, c1) in zip(sol[:-1], sol[1:])]


def answer(maze: mz.Maze) -> list[int]:
    return [*moves(maze), EOS]


def sequence(maze: mz.Maze) -> np.ndarray:
    return np.concatenate([prompt(maze), answer(maze)]).astype(np.int64)


def batch(mazes: list[mz.Maze]) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forcing batch of one maze size: (tokens (B, T), loss mask (B, T-1) over the predicted answer)."""
    seqs = [sequence(m) for m in mazes]
    t = max(len(s) for s in seqs)
    toks = torch.full((len(seqs), t), PAD, dtype=torch.long)
    mask = torch.zeros(len(seqs), t - 1, dtype=torch.bool)
    p = prompt_len(mazes[0].size)
    for i, s in enumerate(seqs):
        toks[i, : len(s)] = torch.from_numpy(s)
        mask[i, p - 1 : len(s) - 1] = True
    return toks, mask


def walk(maze: mz.Maze, move_tokens: list[int]) -> dict:
    """Follow decoded moves from the start: exact (the unique solution, then ``<eos>``), goal reached, wall hits."""
    ans = list(move_tokens)
    ended = EOS in ans
    mv = ans[: ans.index(EOS)] if ended else ans
    pos, hits, reached = maze.start, 0, False
    for tok in mv:
        if not MOVE0 <= tok < MOVE0 + 4:
            hits += 1
            break
        dr, dc = _STEP[tok - MOVE0]
        nxt = (pos[0] + dr, pos[1] + dc)
        if not (0 <= nxt[0] < maze.size and 0 <= nxt[1] < maze.size) or not mz._connected(
            maze.right, maze.down, pos, nxt
        ):
            hits += 1
            break
        pos = nxt
        reached = reached or pos == maze.goal
    exact = ended and mv == moves(maze)
    first = bool(ans) and ans[0] == (moves(maze) or [EOS])[0]
    return {"exact": bool(exact), "goal_reached": bool(reached), "wall_hits": hits, "first_move": bool(first)}


def is_lm_path(name_or_path: str | Path) -> bool:
    """True for ``maze-lm`` and for directories written by :func:`interp.lm.model.save_lm`."""
    if str(name_or_path) in SHIPPED_LMS:
        return (SHIPPED_LMS[str(name_or_path)] / LM_MARKER).exists()
    p = Path(name_or_path)
    return p.is_dir() and (p / LM_MARKER).exists()


def describe() -> str:
    return json.dumps({"vocab": VOCAB, "grid_offset": GRID_OFFSET})

"""What a probe predicts: per-token and per-sample labels from the maze task, user arrays, and control tasks.

A :class:`Label` holds one value per token (``level="token"``, shape (batch, tokens)) or per sample
(``level="sample"``, shape (batch,)), a mask of where it is defined, and its kind (binary / multiclass /
regression). Token labels follow the token geometry of the store: token index = row-major over (frames, rows, cols)
of the patch grid; for the maze model one token is one maze block, rows = cols = 2n+1.

Maze token labels (per block and frame):
  ``wall``   the block is a wall;  ``start`` / ``goal``  the start / goal cell;  ``agent``  the agent is there;
  ``path``   the block lies on the unique solution (defined on open blocks only, so a wall detector cannot score);
  ``trail``  the block is drawn as trail in that frame (open blocks only);  ``block``  the 5-way block class.
Maze sample labels: ``size`` (n), ``path_length`` (cells moved), ``first_move`` (up / down / left / right).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from einops import rearrange
from jaxtyping import Bool, Shaped

from interp.tasks import maze as maze_task

Kind = Literal["binary", "multiclass", "regression"]
Level = Literal["token", "sample"]
ControlBy = Literal["position", "token", "sample"]

TOKEN_LABELS = ("wall", "open", "path", "agent", "start", "goal", "trail", "block")
SAMPLE_LABELS = ("size", "path_length", "first_move")
MAZE_LABELS = TOKEN_LABELS + SAMPLE_LABELS
MOVES = ("up", "down", "left", "right")
CONTROL_BY = ("position", "token", "sample")


@dataclass(frozen=True)
class Label:
    """One label over a capture's samples (and tokens).

    ``values`` are class indices 0..len(classes)-1 for binary / multiclass labels and floats for regression;
    ``grid`` is the (frames, rows, cols) token grid of token labels (None when unknown); ``tokens`` the flat index
    in that grid of each column of a token label that holds only some tokens (:func:`keep_tokens`; None: all).
    """

    name: str
    kind: Kind
    level: Level
    values: Shaped[np.ndarray, "batch *tokens"]
    mask: Bool[np.ndarray, "batch *tokens"]
    classes: tuple[str, ...] = ()
    grid: tuple[int, int, int] | None = None
    tokens: np.ndarray | None = None

    @property
    def columns(self) -> np.ndarray:
        """The flat grid index of each token column (0..tokens-1 unless :attr:`tokens` says otherwise)."""
        return np.arange(self.values.shape[1]) if self.tokens is None else self.tokens

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def balance(self, mask: np.ndarray | None = None) -> dict[str, float]:
        """Share of each class among the defined entries (for regression: mean and std)."""
        m = self.mask if mask is None else (self.mask & mask)
        v = self.values[m]
        if self.kind == "regression":
            return {"mean": float(v.mean()) if v.size else float("nan"), "std": float(v.std()) if v.size else 0.0}
        counts = np.bincount(v.astype(int), minlength=self.n_classes)
        return {c: float(n / max(counts.sum(), 1)) for c, n in zip(self.classes, counts)}


def _encode(name: str, values: np.ndarray, mask: np.ndarray, kind: Kind | None, names=None) -> tuple:
    """(kind, class indices or floats, class names) for raw values; the kind inferred when not given."""
    v = values[mask]
    if v.size == 0:
        raise ValueError(f"label {name!r} is defined nowhere")
    if kind is None:
        uniq = np.unique(v)
        integral = values.dtype == bool or np.issubdtype(values.dtype, np.integer) or np.all(np.mod(uniq, 1) == 0)
        kind = "binary" if len(uniq) <= 2 else ("multiclass" if integral and len(uniq) <= 32 else "regression")
    if kind == "regression":
        return kind, np.where(mask, values, 0).astype(np.float32), ()
    uniq = np.unique(v)
    if len(uniq) < 2:
        raise ValueError(f"label {name!r} has a single class ({uniq[0]!r}) here: nothing to probe")
    if kind == "binary" and len(uniq) != 2:
        raise ValueError(f"label {name!r} is binary but takes {len(uniq)} values: {uniq[:8].tolist()}")
    index = np.zeros(values.shape, dtype=np.int64)
    index[mask] = np.searchsorted(uniq, v)
    classes = tuple(
        str(names[int(u)]) if names is not None else str(u.item() if hasattr(u, "item") else u) for u in uniq
    )
    return kind, index, classes


def make_label(
    name: str,
    values: np.ndarray,
    level: Level,
    mask: np.ndarray | None = None,
    kind: Kind | None = None,
    grid: tuple[int, int, int] | None = None,
    class_names: tuple[str, ...] | None = None,
) -> Label:
    """A :class:`Label` from raw values (classes are the sorted distinct values present)."""
    values = np.asarray(values)
    if mask is None:
        mask = ~np.isnan(values) if np.issubdtype(values.dtype, np.floating) else np.ones(values.shape, bool)
    kind, enc, classes = _encode(name, values, mask, kind, class_names)
    return Label(name, kind, level, enc, mask.astype(bool), classes, grid)


# ---------------------------------------------------------------------------------------------------------------
# maze


def maze_frames(tokens: int, mazes: list[maze_task.Maze]) -> int:
    """Frames of the token grid implied by ``tokens`` for these mazes (one size per capture)."""
    sides = {m.side for m in mazes}
    if len(sides) != 1:
        raise ValueError(f"a capture holds mazes of one size; got sides {sorted(sides)}")
    side = sides.pop()
    if tokens % (side * side):
        raise ValueError(f"{tokens} tokens do not tile a {side}x{side} maze grid (expected frames * {side * side})")
    return tokens // (side * side)


def maze_label(name: str, mazes: list[maze_task.Maze], frames: int) -> Label:
    """A maze label (see the module doc) for each maze, aligned with the (frames, 2n+1, 2n+1) token grid."""
    if name not in MAZE_LABELS:
        raise ValueError(f"unknown maze label {name!r}; maze labels: {list(MAZE_LABELS)}")
    if name in SAMPLE_LABELS:
        if name == "size":
            return make_label(name, np.array([m.size for m in mazes]), "sample", kind="multiclass")
        if name == "path_length":
            return make_label(name, np.array([len(m.solution) - 1 for m in mazes], float), "sample", kind="regression")
        moves = []
        for m in mazes:
            (r0, c0), (r1, c1) = m.solution[0], m.solution[1]
            moves.append({(-1, 0): 0, (1, 0): 1, (0, -1): 2, (0, 1): 3}[(r1 - r0, c1 - c0)])
        return make_label(name, np.array(moves), "sample", kind="multiclass", class_names=MOVES)

    side = mazes[0].side
    vals, masks = [], []
    for m in mazes:
        classes, agent = maze_task.frame_blocks(m, frames)
        layout = np.repeat(maze_task.layout_blocks(m)[None], frames, 0)
        open_ = layout != maze_task.WALL
        on_path = np.zeros((side, side), bool)
        for rc in maze_task.block_path(m):
            on_path[rc] = True
        on_path = np.repeat(on_path[None], frames, 0)
        v, mk = {
            "wall": (layout == maze_task.WALL, None),
            "open": (open_, None),
            "path": (on_path, open_),
            "agent": (agent, None),
            "start": (layout == maze_task.START, None),
            "goal": (layout == maze_task.GOAL, None),
            "trail": (classes == maze_task.TRAIL, open_),
            "block": (classes, None),
        }[name]
        vals.append(v)
        masks.append(np.ones_like(v, bool) if mk is None else mk)
    flat = lambda a: rearrange(np.stack(a), "b f r c -> b (f r c)")  # noqa: E731
    names = maze_task.CLASS_NAMES if name == "block" else ("no", "yes")
    kind: Kind = "multiclass" if name == "block" else "binary"
    values = flat(vals).astype(np.int64)
    return make_label(name, values, "token", flat(masks), kind, (frames, side, side), names)


def keep_tokens(label: Label, index: np.ndarray) -> Label:
    """A token label of the full grid cut to the tokens a capture stored (``index``: their flat indices, in stored
    order); a sample label as it is."""
    if label.level != "token":
        return label
    idx = np.asarray(index, np.int64)
    if not label.mask[:, idx].any():
        raise ValueError(f"label {label.name!r} is defined on none of the capture's {len(idx)} stored tokens")
    return Label(label.name, label.kind, label.level, label.values[:, idx], label.mask[:, idx], label.classes,
                 label.grid, idx)  # fmt: skip


def mazes_from_json(items: list[str]) -> list[maze_task.Maze]:
    return [maze_task.Maze.from_dict(json.loads(s)) for s in items]


# ---------------------------------------------------------------------------------------------------------------
# user arrays


def user_label(name: str, array: np.ndarray, batch: int, grid: tuple[int, int, int], kind: Kind | None = None) -> Label:
    """A label from a user array: (batch,) per sample; (batch, tokens) or (batch, frames, rows, cols) per token.

    NaN (float arrays) or -1 (integer arrays) marks entries without a label.
    """
    a = np.asarray(array)
    tokens = int(np.prod(grid))
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ValueError(f"label {name!r} holds {a.dtype} values; labels are numbers: integer classes "
                         "(-1: unlabelled), floats (NaN: unlabelled) or booleans; map strings to class ids "
                         "first")  # fmt: skip
    if a.shape[:1] != (batch,):
        raise ValueError(f"label {name!r}: leading axis {a.shape[:1]} must be the batch ({batch})")
    if a.ndim == 4:
        if a.shape[1:] != tuple(grid):
            raise ValueError(f"label {name!r}: grid {a.shape[1:]} differs from the token grid {tuple(grid)}")
        a = rearrange(a, "b f r c -> b (f r c)")
    if a.ndim == 1:
        level: Level = "sample"
    elif a.ndim == 2 and a.shape[1] == tokens:
        level = "token"
    else:
        raise ValueError(
            f"label {name!r} has shape {array.shape}; valid: ({batch},), ({batch}, {tokens}) or ({batch}, *{grid})"
        )
    if np.issubdtype(a.dtype, np.floating):
        mask = ~np.isnan(a)
    elif np.issubdtype(a.dtype, np.integer):
        mask = a >= 0
    else:
        mask = np.ones(a.shape, bool)
    return make_label(name, a, level, mask, kind, grid if level == "token" else None)


def load_array(spec: str) -> tuple[str, np.ndarray]:
    """``file.npy`` or ``file.npz[:key]`` -> (label name, array); the name is the key or the file stem."""
    path, _, key = spec.partition(":") if spec.count(":") == 1 and not Path(spec).exists() else (spec, "", "")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no label file {p}")
    if p.suffix == ".npy":
        return p.stem, np.load(p, allow_pickle=False)
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            keys = list(z.keys())
            if not key:
                if len(keys) != 1:
                    raise ValueError(f"{p} holds {keys}; name one as {p}:KEY")
                key = keys[0]
            if key not in keys:
                raise KeyError(f"{key!r} not in {p}; keys: {keys}")
            return key, z[key]
    raise ValueError(f"label file {p} must be .npy or .npz")


# ---------------------------------------------------------------------------------------------------------------
# control tasks


def token_types(label: Label, by: ControlBy) -> np.ndarray:
    """Type id of every entry: block position (row, col), token (frame, row, col), or sample."""
    if by not in CONTROL_BY:
        raise ValueError(f"control type {by!r} unknown; valid: {list(CONTROL_BY)}")
    b = label.values.shape[0]
    if label.level == "sample" or by == "sample":
        ids = np.arange(b)
        return ids if label.level == "sample" else np.repeat(ids[:, None], label.values.shape[1], 1)
    tokens = label.values.shape[1]
    tok = label.columns
    if by == "position":
        if label.grid is None:
            raise ValueError(f"label {label.name!r} has no token grid; use control by 'token' or 'sample'")
        _, r, c = label.grid
        tok = tok % (r * c)
    return np.broadcast_to(tok[None], (b, tokens))


def control_values(types: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """Hewitt & Liang's control task over a set of examples: every type gets one random label.

    Types are shuffled and laid end to end, each spanning as many slots as it has examples; a type takes the
    value of the real labels (sorted) at its span's midpoint. So the control keeps the real label's distribution
    over these examples (same majority rate, same chance level) while the type -> label map is random: a probe
    scoring high on it memorises types (positions), not the property. Selectivity = real score - control score.
    """
    rng = np.random.default_rng(seed)
    uniq, inv, counts = np.unique(types, return_inverse=True, return_counts=True)
    order = rng.permutation(len(uniq))
    ends = np.cumsum(counts[order])
    mids = np.minimum(ends - (counts[order] + 1) // 2, len(y) - 1)
    value_of = np.empty(len(uniq), dtype=y.dtype)
    value_of[order] = np.sort(y)[mids]
    return value_of[inv.reshape(-1)]

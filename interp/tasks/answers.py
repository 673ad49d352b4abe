"""What one decoded video of a suite task shows, read only from sharp blocks: the answer, the candidate routes, the
layout kept, and the per-token probe labels (for the paper's analyses on the organism, :mod:`interp.apps.reproduce`).

The maze task's readers (:mod:`interp.tasks.candidates`) count a block only when it is sharp, so the blur of early
denoising steps is no answer. The same rules on the suite canvas (``GRID`` x ``GRID`` blocks of ``BLOCK`` pixels, a
block's colour = the mean of its centre, :func:`interp.tasks.suite.block_means`):

- Route tasks (``loopmaze``, ``goalmaze``): a block is *sharp trail* when its colour lies at least ``CONTRAST`` of
  the way from the open colour to the trail colour and within ``SPREAD`` of that axis (the units of
  :func:`interp.tasks.candidates.trail_strength`). Candidate routes are :func:`interp.tasks.candidates.routes`
  through the sharp trail: maximal simple paths from the start (complete when they reach a goal; goalmaze has two),
  one candidate per detached piece. The answer is *right* when exactly one complete route is drawn and it is a
  correct one (loopmaze: of shortest length through open blocks; goalmaze: the path to the named goal), *wrong*
  when a complete route is not correct, *none* otherwise (blur, a partial trail, or two correct routes at once).
- ``mirror``: a block is *sharp* when its colour is at most ``1 - CONTRAST`` of the way from its nearest palette
  colour to the second nearest (d1 / (d1 + d2) <= 0.4: a 50/50 blend is not sharp). The answer region is the
  k x k mirror image; its answer is *none* unless every block of it is sharp and one is coloured, then *right*
  when every block is the true colour, else *wrong*. Mirror has no routes: Chain-of-Steps does not score it.

The layout kept (working memory): the blocks whose class is the same in every frame of the task's own solution
video (route tasks: trail read as open, so a correct alternative route does not count against it).

Probe labels per token of the latent grid (frames, GRID, GRID), ``-1`` where undefined: ``layout`` (what the first
frame shows: route tasks, the block is a wall; mirror, the block is coloured in frame 0) and ``answer`` (what the
model must produce: route tasks, the block lies on a correct route, open blocks only; mirror, the block is coloured
in the solution's last frame, right of the axis only).
"""

from __future__ import annotations

import numpy as np

from interp.tasks import goalmaze as gm
from interp.tasks import loopmaze as lm
from interp.tasks import mirror as mi
from interp.tasks.candidates import CONTRAST, MIN_LEN, SPREAD, Candidates, routes
from interp.tasks.suite import COLORS, GRID, block_means, classify_blocks, get_task

ROUTE_TASKS = ("loopmaze", "goalmaze")
ANSWER_TASKS = ROUTE_TASKS + ("mirror",)  # tasks with a sharp-answer reader (self-correction)
LABEL_NAMES = {  # what each probe label means per task (the report says it)
    "loopmaze": {"layout": "wall", "answer": "on a shortest path (open blocks)"},
    "goalmaze": {"layout": "wall", "answer": "on the path to the named goal (open blocks)"},
    "mirror": {"layout": "coloured in the first frame", "answer": "coloured in the answer (right of the axis)"},
}
_NAMES = {"loopmaze": lm.NAMES, "goalmaze": gm.NAMES, "mirror": tuple(mi.NAMES)}


def _check(task: str, known: tuple[str, ...], what: str) -> None:
    if task not in known:
        raise ValueError(f"{what} has no reader for task {task!r}; tasks it reads: {list(known)}")


# ---- route tasks -----------------------------------------------------------------------------------------------------
def _route_geometry(task: str, instance: dict):
    """(block classes of the layout, start, the goals routes end at, open mask) of a route task's instance."""
    base = get_task(task).base_classes(instance)
    start = tuple(instance["start"])
    goals = [tuple(instance["goal"])] if task == "loopmaze" else [tuple(instance["goals"][g]) for g in gm.GOALS]
    return base, start, goals, lm.open_mask(instance["grid"])


def sharp_trail(frame: np.ndarray, terminals: list[tuple], contrast: float = CONTRAST, spread: float = SPREAD) -> set:
    """The sharp trail blocks of one suite frame (uint8 H x W x 3), the start and goals excluded."""
    mean = block_means(frame)
    o, t = np.asarray(COLORS["open"], np.float32), np.asarray(COLORS["trail"], np.float32)
    axis = t - o
    scale = float(axis @ axis)
    proj = ((mean - o) @ axis) / scale
    off = np.sqrt((((mean - o) - proj[..., None] * axis) ** 2).sum(-1) / scale)
    mask = (proj >= contrast) & (off <= spread)
    for b in terminals:
        mask[b] = False
    return {tuple(int(v) for v in b) for b in np.argwhere(mask)}


def trail(task: str, frame: np.ndarray, instance: dict) -> set:
    """The sharp trail blocks of one frame of a route task (its start and goals excluded)."""
    _check(task, ROUTE_TASKS, "trail")
    _, start, goals, _ = _route_geometry(task, instance)
    return sharp_trail(frame, [start, *goals])


def candidates(task: str, frame: np.ndarray, instance: dict, *, contrast: float = CONTRAST,
               min_len: int = MIN_LEN) -> Candidates:  # fmt: skip
    """The candidate routes of one frame of a route task (module docstring)."""
    _check(task, ROUTE_TASKS, "candidates")
    _, start, goals, _ = _route_geometry(task, instance)
    return routes(sharp_trail(frame, [start, *goals], contrast), start, goals, min_len=min_len)


def _correct_routes(task: str, instance: dict, body: frozenset) -> bool:
    _, start, goals, open_ = _route_geometry(task, instance)
    if any(not open_[b] for b in body):
        return False  # through a wall
    if task == "loopmaze":
        return len(body) + 1 == int(lm.block_bfs(open_, start)[goals[0]])  # a simple path of shortest length
    return body == frozenset(tuple(b) for b in instance["path"][1:-1])  # the unique path to the named goal


def route_answer(task: str, frame: np.ndarray, instance: dict) -> str:
    """``right`` / ``wrong`` / ``none`` of one frame of a route task (module docstring)."""
    full = candidates(task, frame, instance).complete_routes()
    if not full:
        return "none"
    ok = [_correct_routes(task, instance, r) for r in full]
    if not all(ok):
        return "wrong"
    return "right" if len(full) == 1 else "none"


# ---- mirror ----------------------------------------------------------------------------------------------------------
def _mirror_region(instance: dict) -> tuple[slice, slice]:
    k, a, r0, c0 = instance["level"], instance["axis"], instance["row"], instance["col"]
    m0 = 2 * a - c0 - k + 1
    return slice(r0, r0 + k), slice(m0, m0 + k)


def sharp_colours(frame: np.ndarray, names, contrast: float = CONTRAST) -> tuple[np.ndarray, np.ndarray]:
    """Per block: the index into ``names`` of its nearest colour, and whether it is sharp (d1 / (d1 + d2) <=
    1 - contrast, d1 and d2 the distances to the nearest and second-nearest colours)."""
    mean = block_means(frame)
    pal = np.array([COLORS[n] for n in names], np.float32)
    d = np.sqrt(((mean[..., None, :] - pal) ** 2).sum(-1))
    part = np.sort(d, -1)
    return d.argmin(-1), part[..., 0] / np.maximum(part[..., 0] + part[..., 1], 1e-6) <= 1 - contrast


def mirror_answer(frame: np.ndarray, instance: dict) -> str:
    cls, sharp = sharp_colours(frame, mi.NAMES)
    region = _mirror_region(instance)
    if not sharp[region].all() or (cls[region] == mi.OPEN).all():  # blur, or nothing drawn yet
        return "none"
    want = mi.TASK.classes(instance)[-1]
    return "right" if np.array_equal(cls[region], want[region]) else "wrong"


def answer(task: str, frame: np.ndarray, instance: dict) -> str:
    """What one frame (the video's last, uint8 H x W x 3) answers, counting sharp blocks only."""
    _check(task, ANSWER_TASKS, "answer")
    return mirror_answer(frame, instance) if task == "mirror" else route_answer(task, frame, instance)


# ---- working memory and probe labels ---------------------------------------------------------------------------------
def _classes(task: str, video: np.ndarray) -> np.ndarray:
    """(F, GRID, GRID) nearest-colour classes; route tasks read trail as open."""
    cls = classify_blocks(video, _NAMES[task])
    if task in ROUTE_TASKS:
        trail, open_ = _NAMES[task].index("trail"), _NAMES[task].index("open")
        cls = np.where(cls == trail, open_, cls)
    return cls


def layout(task: str, instance: dict) -> tuple[np.ndarray, np.ndarray]:
    """(block classes of the solution's first frame, the layout mask: blocks of the same class in every frame)."""
    _check(task, ANSWER_TASKS, "layout")
    truth = _classes(task, get_task(task).render(instance))
    return truth[0], (truth == truth[:1]).all(0)


def frame_classes(task: str, video: np.ndarray) -> np.ndarray:
    """Nearest-colour block classes of a decoded frame (H x W x 3) or video, as :func:`layout` reads them."""
    return _classes(task, np.asarray(video))


def layout_fidelity(task: str, video: np.ndarray, instance: dict) -> np.ndarray:
    """(F,) share of the layout's blocks (the same class in every frame of the solution) that a decoded video
    (uint8 F x H x W x 3) keeps, per frame."""
    first, static = layout(task, instance)
    got = _classes(task, np.asarray(video))
    return (got[:, static] == first[static]).mean(-1)


def probe_labels(task: str, instance: dict, frames: int) -> dict[str, np.ndarray]:
    """``layout`` and ``answer`` per token (``frames`` x GRID x GRID, the same in every latent frame), -1 where
    undefined (module docstring)."""
    _check(task, ANSWER_TASKS, "probe_labels")
    if task in ROUTE_TASKS:
        _, start, goals, open_ = _route_geometry(task, instance)
        layout = (~open_).astype(np.int64)
        ans = np.full((GRID, GRID), -1, np.int64)
        if task == "loopmaze":
            ds, dg = lm.block_bfs(open_, start), lm.block_bfs(open_, goals[0])
            on = (ds >= 0) & (dg >= 0) & (ds + dg == ds[goals[0]])
        else:
            on = np.zeros((GRID, GRID), bool)
            for b in instance["path"]:
                on[tuple(b)] = True
        ans[open_] = on[open_]
        for b in [start, *goals]:
            ans[b] = -1
    else:
        cls = mi.TASK.classes(instance)
        layout = (cls[0] != mi.OPEN).astype(np.int64)
        ans = np.full((GRID, GRID), -1, np.int64)
        right = slice(instance["axis"] + 1, GRID)
        ans[:, right] = cls[-1][:, right] != mi.OPEN
    return {k: np.repeat(v[None], frames, 0) for k, v in (("layout", layout), ("answer", ans))}


__all__ = ["ANSWER_TASKS", "LABEL_NAMES", "ROUTE_TASKS", "answer", "candidates", "frame_classes", "layout",
           "layout_fidelity", "probe_labels", "sharp_colours", "sharp_trail", "trail"]  # fmt: skip

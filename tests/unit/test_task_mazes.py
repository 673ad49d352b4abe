"""The loopmaze and goalmaze tasks: generators, renderers, pixel-only scorers, held-out sets."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from interp.tasks import goalmaze as gm
from interp.tasks import loopmaze as lm
from interp.tasks import suite

LM, GM = lm.TASK, gm.TASK
from interp.models import EVAL_SETS  # noqa: E402


def _blur_noise(video, seed=0):
    """3x3 box blur of every frame plus uniform noise in [-20, 20]."""
    x = video.astype(np.float32)
    p = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = x.shape[1:3]
    b = sum(p[:, i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9
    b += np.random.default_rng(seed).uniform(-20, 20, b.shape)
    return np.clip(np.round(b), 0, 255).astype(np.uint8)


def _with_trail(task, inst, blocks, video=None):
    """The instance's video with the last frame replaced by the bare layout plus ``blocks`` as trail."""
    video = task.render(inst) if video is None else video.copy()
    names = lm.NAMES if task is LM else gm.NAMES
    cls = task.base_classes(inst).copy()
    for r, c in blocks:
        if cls[r, c] in (names.index("wall"), names.index("open")):
            cls[r, c] = names.index("trail")
    video[-1] = lm.paint(cls, names)
    return video


def _simple_paths(open_, start, goal, max_len, limit=2000):
    """Simple 4-connected block paths start..goal through ``open_`` of at most ``max_len`` steps."""
    dg = lm.block_bfs(open_, tuple(goal))
    out, path, seen = [], [tuple(start)], {tuple(start)}

    def dfs(cur):
        if len(out) >= limit:
            return
        if cur == tuple(goal):
            out.append(list(path))
            return
        r, c = cur
        for q in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= q[0] < suite.GRID and 0 <= q[1] < suite.GRID and open_[q] and q not in seen:
                if 0 <= dg[q] and len(path) + dg[q] <= max_len:  # steps to q + steps left
                    seen.add(q)
                    path.append(q)
                    dfs(q)
                    path.pop()
                    seen.discard(q)

    dfs(tuple(start))
    return out


def _interior(path):
    return [tuple(b) for b in path[1:-1]]


# ---------------------------------------------------------------------------------------------------------------
# loopmaze


@pytest.mark.parametrize("level", LM.levels)
def test_loopmaze_generator_invariants(level):
    rng = np.random.default_rng(1)
    for _ in range(50):
        inst = LM.generate(level, rng)
        json.dumps(inst)
        open_ = lm.open_mask(inst["grid"])
        side = 2 * level + 1
        assert len(inst["grid"]) == side and not open_[side:].any() and not open_[:, side:].any()
        n_open_edges = int(open_[1:side:2, 2 : side - 1 : 2].sum() + open_[2 : side - 1 : 2, 1:side:2].sum())
        assert n_open_edges == level * level - 1 + level - 1  # spanning tree + n-1 loops
        ds = lm.block_bfs(open_, tuple(inst["start"]))
        cells = ds[1:side:2, 1:side:2]
        assert (cells >= 0).all()
        assert ds[tuple(inst["goal"])] >= 0.6 * cells.max()
        assert inst["n_shortest"] >= 2
        assert len(inst["path"]) - 1 == ds[tuple(inst["goal"])]
        assert inst["path"][0] == inst["start"] and inst["path"][-1] == inst["goal"]


def test_loopmaze_rendering_unfolds_the_path():
    inst = suite.heldout(LM, 4, 1)[0]
    v = LM.render(inst)
    assert v.shape == (suite.FRAMES, suite.SIZE, suite.SIZE, 3) and v.dtype == np.uint8
    L = len(inst["path"]) - 1
    for k in range(suite.FRAMES):
        trail = lm.classify(v[k], lm.NAMES) == lm.TRAIL
        assert trail.sum() == min(round(k / 8 * L), L - 1)
    assert LM.prompt(inst) in LM.prompts


@pytest.mark.parametrize("level", LM.levels)
def test_loopmaze_rendered_solution_scores_one(level):
    for i, inst in enumerate(suite.heldout(LM, level, 50)):
        v = LM.render(inst)
        s = LM.score(v, inst)
        assert s["success"] == 1 and s["path_recall"] == 1 and s["extra_blocks"] == 0 and s["layout_fidelity"] == 1
        assert s["off_shortest_blocks"] == 0
        assert LM.score(_blur_noise(v, i), inst)["success"] == 1


@pytest.mark.parametrize("level", LM.levels)
def test_loopmaze_failures(level):
    n_longer = n_alt = 0
    for inst in suite.heldout(LM, level, 20):
        path = inst["path"]
        interior = _interior(path)
        # one block missing: not a path any more
        s = LM.score(_with_trail(LM, inst, interior[: len(interior) // 2] + interior[len(interior) // 2 + 1 :]), inst)
        assert s["success"] == 0 and s["valid_path"] == 0 and s["reached_goal"] == 0 and s["path_recall"] < 1
        # a wall block painted as trail next to the path: crossing, layout broken
        open_ = lm.open_mask(inst["grid"])
        r, c = interior[0]
        wall = next(q for q in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)) if not open_[q])
        s = LM.score(_with_trail(LM, inst, interior + [wall]), inst)
        assert s["success"] == 0 and s["valid_path"] == 0 and s["layout_intact"] == 0 and s["path_recall"] == 1
        shortest = len(path) - 1
        routes = _simple_paths(open_, inst["start"], inst["goal"], shortest + 8)
        # any other shortest path is accepted
        alts = [p for p in routes if len(p) - 1 == shortest and [list(b) for b in p] != path]
        assert len(alts) == inst["n_shortest"] - 1
        s = LM.score(_with_trail(LM, inst, _interior(alts[0])), inst)
        assert s["success"] == 1 and s["extra_blocks"] == 0 and s["off_shortest_blocks"] == 0 and s["path_recall"] < 1
        n_alt += 1
        # a longer simple route is valid but not shortest
        longer = [p for p in routes if len(p) - 1 > shortest]
        if longer:
            s = LM.score(_with_trail(LM, inst, _interior(longer[0])), inst)
            assert s["success"] == 0 and s["valid_path"] == 1 and s["shortest"] == 0 and s["reached_goal"] == 1
            assert s["extra_blocks"] > 0
            n_longer += 1
    assert n_alt == 20 and n_longer >= 5


def test_loopmaze_route_through_a_wall_fails():
    done = 0
    for inst in suite.heldout(LM, 5, 20):
        open_ = lm.open_mask(inst["grid"])
        side = len(inst["grid"])
        shortest = len(inst["path"]) - 1
        for r in range(1, side - 1):
            for c in range(1, side - 1):
                if open_[r, c] or (r % 2 == 0 and c % 2 == 0):
                    continue
                allowed = open_.copy()
                allowed[r, c] = True
                d = lm.block_bfs(allowed, tuple(inst["start"]))[tuple(inst["goal"])]
                if d < shortest:  # the wall is a shortcut: draw the route through it
                    route = _simple_paths(allowed, inst["start"], inst["goal"], int(d), limit=1)[0]
                    s = LM.score(_with_trail(LM, inst, _interior(route)), inst)
                    assert s["success"] == 0 and s["valid_path"] == 0 and s["shortest"] == 0
                    assert s["layout_intact"] == 0
                    done += 1
                    break
            else:
                continue
            break
    assert done >= 10


def test_loopmaze_layout_fidelity_reads_frame_zero():
    inst = suite.heldout(LM, 3, 1)[0]
    v = LM.render(inst)
    v[0] = lm.paint(np.full((suite.GRID, suite.GRID), lm.OPEN), lm.NAMES)
    s = LM.score(v, inst)
    side = len(inst["grid"])
    assert s["success"] == 1  # success reads the last frame
    assert s["layout_fidelity"] == pytest.approx((LM.base_classes(inst)[:side, :side] == lm.OPEN).mean())


# ---------------------------------------------------------------------------------------------------------------
# goalmaze


@pytest.mark.parametrize("level", GM.levels)
def test_goalmaze_generator_invariants(level):
    rng = np.random.default_rng(2)
    targets = set()
    for _ in range(50):
        inst = GM.generate(level, rng)
        json.dumps(inst)
        targets.add(inst["target"])
        open_ = lm.open_mask(inst["grid"])
        side = 2 * level + 1
        n_open_edges = int(open_[1:side:2, 2 : side - 1 : 2].sum() + open_[2 : side - 1 : 2, 1:side:2].sum())
        assert n_open_edges == level * level - 1  # perfect maze
        ds = lm.block_bfs(open_, tuple(inst["start"]))
        far = ds[1:side:2, 1:side:2].max()
        d = {g: ds[tuple(inst["goals"][g])] for g in gm.GOALS}
        assert min(d.values()) >= 0.4 * far and abs(d["red"] - d["blue"]) <= 0.25 * max(d.values())
        for g in gm.GOALS:
            other = inst["goals"][gm.GOALS[1 - gm.GOALS.index(g)]]
            p = gm._cells_path(level, inst["grid"], inst["start"], inst["goals"][g])
            assert other not in p
        assert inst["path"][-1] == inst["goals"][inst["target"]]
        assert GM.prompt(inst) == f"go to the {inst['target']} goal" and GM.prompt(inst) in GM.prompts
    assert targets == {"red", "blue"}


@pytest.mark.parametrize("level", GM.levels)
def test_goalmaze_rendered_solution_scores_one(level):
    for i, inst in enumerate(suite.heldout(GM, level, 50)):
        v = GM.render(inst)
        s = GM.score(v, inst)
        assert s["success"] == 1 and s["reached_target"] == 1 and s["reached_other"] == 0 and s["path_recall"] == 1
        assert s["layout_fidelity"] == 1
        assert GM.score(_blur_noise(v, i), inst)["success"] == 1


@pytest.mark.parametrize("level", GM.levels)
def test_goalmaze_failures(level):
    for red, blue in gm.heldout_pairs(level, 20):
        for inst, other in ((red, blue), (blue, red)):
            # the wrong goal
            s = GM.score(GM.render(other), inst)
            assert s["success"] == 0 and s["reached_other"] == 1 and s["reached_target"] == 0 and s["valid_path"] == 0
            # one block missing
            interior = _interior(inst["path"])
            s = GM.score(
                _with_trail(GM, inst, interior[: len(interior) // 2] + interior[len(interior) // 2 + 1 :]), inst
            )
            assert s["success"] == 0 and s["valid_path"] == 0 and s["reached_target"] == 0 and s["path_recall"] < 1
            # a wall block next to the path
            open_ = lm.open_mask(inst["grid"])
            r, c = interior[-1]
            wall = next(q for q in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)) if not open_[q])
            s = GM.score(_with_trail(GM, inst, interior + [wall]), inst)
            assert s["success"] == 0 and s["valid_path"] == 0 and s["layout_intact"] == 0


@pytest.mark.parametrize("level", GM.levels)
def test_goalmaze_pairs(level):
    pairs = gm.heldout_pairs(level, 20)
    for (red, blue), inst in zip(pairs, suite.heldout(GM, level, 20)):
        assert red["target"] == "red" and blue["target"] == "blue"
        assert inst in (red, blue)
        assert GM.key(red) == GM.key(blue)
        assert gm.flip(gm.flip(red)) == red
        vr, vb = GM.render(red), GM.render(blue)
        assert (vr[0] == vb[0]).all() and not (vr[-1] == vb[-1]).all()
        assert GM.prompt(red) != GM.prompt(blue)


# ---------------------------------------------------------------------------------------------------------------
# both


@pytest.mark.parametrize("task", [LM, GM], ids=lambda t: t.name)
def test_heldout_sets_are_pinned_and_deterministic(task):
    rec = json.loads((EVAL_SETS / f"{task.name}.json").read_text())
    assert rec["count"] == 200 and rec["stream"] == suite.EVAL_STREAM
    assert [s["level"] for s in rec["sets"]] == list(task.levels)
    for s in rec["sets"]:
        insts = suite.heldout(task, s["level"], rec["count"], rec["seed"])
        assert suite.digest(task, insts) == s["sha256"]
    a, b = suite.heldout(task, 4, 5), suite.heldout(task, 4, 5)
    assert a == b
    assert len({task.key(i) for i in a}) == 5
    train = task.generate(4, suite.instance_rng(suite.TRAIN_STREAM, task, 4, 0, 0))
    assert train != a[0]


@pytest.mark.parametrize("task", [LM, GM], ids=lambda t: t.name)
def test_generate_is_fast(task):
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for _ in range(300):
        task.generate(5, rng)
    assert (time.perf_counter() - t) / 300 < 2e-3


@pytest.mark.parametrize("task", [LM, GM], ids=lambda t: t.name)
def test_registered_and_levels_validated(task):
    assert suite.TASKS[task.name] is task
    with pytest.raises(ValueError):
        task.generate(7, np.random.default_rng(0))


@pytest.mark.parametrize("task", [LM, GM], ids=lambda t: t.name)
def test_write_vbvr(task, tmp_path):
    dirs = suite.write_vbvr(tmp_path, task, 3, 2)
    assert len(dirs) == 2
    import imageio.v3 as iio

    for d in dirs:
        for f in ("first_frame.png", "prompt.txt", "final_frame.png", "ground_truth.mp4", "instance.json"):
            assert (d / f).stat().st_size > 0
        video = iio.imread(d / "ground_truth.mp4")
        assert video.shape == (suite.FRAMES, suite.SIZE, suite.SIZE, 3)
        inst = json.loads((d / "instance.json").read_text())
        assert task.score(video, inst)["success"] == 1  # the scorer survives the mp4 codec too
        assert (iio.imread(d / "first_frame.png") == task.render(inst)[0]).all()

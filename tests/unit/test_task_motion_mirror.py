"""The permanence and mirror tasks: generators, renderers, pixel-only scorers, held-out sets."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from interp.tasks import mirror as mi
from interp.tasks import permanence as pe
from interp.tasks import suite

from interp.models import EVAL_SETS  # noqa: E402

TASKS = (pe.TASK, mi.TASK)
B = suite.BLOCK


def _blur_noise(video, rng):
    """3x3 box blur per frame plus uniform noise +-20."""
    v = np.pad(video.astype(np.float32), ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = video.shape[1:3]
    out = sum(v[:, i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9
    out += rng.uniform(-20, 20, size=out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _paint(video, frame, block, name):
    out = video.copy()
    r, c = block
    out[frame, r * B : (r + 1) * B, c * B : (c + 1) * B] = suite.COLORS[name]
    return out


def _inst(task, level, i=0):
    return suite.heldout(task, level, i + 1)[i]


# ---- both tasks ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_registered_and_protocol(task):
    assert suite.TASKS[task.name] is task
    assert len(task.levels) >= 3 and task.prompts
    inst = _inst(task, task.levels[0])
    assert inst["task"] == task.name and inst["level"] == task.levels[0]
    assert task.prompt(inst) in task.prompts
    assert json.loads(json.dumps(inst)) == inst
    assert isinstance(task.key(inst), bytes)
    v = task.render(inst)
    assert v.dtype == np.uint8 and v.shape == (suite.FRAMES, suite.SIZE, suite.SIZE, 3)
    with pytest.raises(ValueError):
        task.generate("nope", np.random.default_rng(0))


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_render_scores_success_clean_and_blurred(task):
    rng = np.random.default_rng(0)
    for level in task.levels:
        for inst in suite.heldout(task, level, 50):
            v = task.render(inst)
            s = task.score(v, inst)
            assert s["success"] == 1.0 and all(x == 1.0 for x in s.values()), (inst, s)
            s = task.score(_blur_noise(v, rng), inst)
            assert s["success"] == 1.0 and all(x == 1.0 for x in s.values()), (inst, s)


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_digests_match_eval_set_files(task):
    d = json.loads((EVAL_SETS / f"{task.name}.json").read_text())
    assert d["stream"] == suite.EVAL_STREAM and d["task"] == task.name
    assert [s["level"] for s in d["sets"]] == list(task.levels)
    for s in d["sets"]:
        assert suite.digest(task, suite.heldout(task, s["level"], d["count"], d["seed"])) == s["sha256"]


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_deterministic_and_fast(task):
    for level in task.levels:
        a = suite.heldout(task, level, 20)
        assert a == suite.heldout(task, level, 20)
        assert a != suite.heldout(task, level, 20, seed=1)
        r1 = np.random.default_rng(7)
        r2 = np.random.default_rng(7)
        assert [task.generate(level, r1) for _ in range(10)] == [task.generate(level, r2) for _ in range(10)]
        assert len({task.key(i) for i in a}) > 15
        rng = np.random.default_rng(1)
        t = time.perf_counter()
        for _ in range(500):
            task.generate(level, rng)
        # permanence's 3-object level draws objects until their footprints are disjoint (~50 draws an instance)
        assert (time.perf_counter() - t) / 500 < (
            1e-2 if getattr(task, "name", "") == "permanence" and level == 6 else 2e-3
        )


# ---- permanence ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", pe.SINGLE_LEVELS)
def test_permanence_instances_are_valid(level):
    lo, hi = pe.HIDDEN_FRAMES[level]
    for inst in suite.heldout(pe.TASK, level, 200):
        pos, vis = pe.positions(inst), pe.visible(inst)
        (vr, vc), (r, c) = inst["velocity"], inst["start"]
        assert max(abs(vr), abs(vc)) == 1
        tail = [(r - t * vr, c - t * vc) for t in (1, 2)]
        assert all(0 <= a < suite.GRID and 0 <= b < suite.GRID for a, b in pos + tail)
        h0, h1 = inst["hidden"]
        assert lo <= h1 - h0 + 1 <= hi and h0 >= 1 and h1 <= suite.FRAMES - 2
        assert vis == [not (h0 <= k <= h1) for k in range(suite.FRAMES)]
        # frame 0 shows the object and its tail, so the velocity is readable from it
        cls = pe.TASK.classes(inst)[0]
        assert cls[pos[0]] == pe.OBJECT and all(cls[t] == pe.TAIL for t in tail)
        assert (cls == pe.OBJECT).sum() == 1


@pytest.mark.parametrize("level", list(pe.OBJECTS))
def test_permanence_working_memory_levels(level):
    """Levels 5-6: 2 and 3 objects, each a level 1-2 object, footprints disjoint; frame 0 shows each head and tail;
    a video with one object missing after its reappearance fails, and so does one with it reappearing a frame late."""
    for inst in suite.heldout(pe.TASK, level, 100):
        objs = pe.objects(inst)
        assert len(objs) == pe.OBJECTS[level]
        prints = [pe.footprint(o) for o in objs]
        assert not any((a & b).any() for i, a in enumerate(prints) for b in prints[i + 1 :])
        assert all(1 <= o["hidden"][1] - o["hidden"][0] + 1 <= 4 for o in objs)
        assert (pe.TASK.classes(inst)[0] == pe.OBJECT).sum() == len(objs)
    inst = suite.heldout(pe.TASK, level, 1)[0]
    video = pe.TASK.render(inst)
    assert pe.TASK.score(video, inst)["success"] == 1.0
    o = pe.objects(inst)[-1]
    k = o["hidden"][1] + 1  # its reappearance frame
    late = _erase(video, k, pe.positions(o)[k])
    s = pe.TASK.score(late, inst)
    assert s["success"] == 0 and s["reappear_time"] == 0
    assert s["frame_accuracy"] == pytest.approx(1 - 1 / (suite.FRAMES - 1))


def test_permanence_levels_differ_in_hidden_frames():
    means = [
        np.mean([i["hidden"][1] - i["hidden"][0] + 1 for i in suite.heldout(pe.TASK, lv, 100)])
        for lv in pe.SINGLE_LEVELS
    ]
    assert means == sorted(means) and means[0] < 2.1 and means[-1] > 4.9


def _perm_case(level=2, i=0):
    inst = _inst(pe.TASK, level, i)
    return inst, pe.TASK.render(inst)


def _erase(video, frame, block):
    return _paint(video, frame, block, "open")


def test_permanence_wrong_reappearance_position():
    inst, v = _perm_case()
    pos = pe.positions(inst)
    r = inst["hidden"][1] + 1
    occ = pe.occluder_mask(inst)
    bad = v.copy()
    for k in range(
        r, suite.FRAMES
    ):  # from the reappearance on, the object is one block off (never behind the occluder)
        off = next(
            (pos[k][0] + dr, pos[k][1] + dc)
            for dr in (-1, 0, 1)
            for dc in (-1, 0, 1)
            if (dr or dc)
            and 0 <= pos[k][0] + dr < suite.GRID
            and 0 <= pos[k][1] + dc < suite.GRID
            and not occ[pos[k][0] + dr, pos[k][1] + dc]
        )
        bad = _paint(_erase(bad, k, pos[k]), k, off, "red")
    s = pe.TASK.score(bad, inst)
    assert s["success"] == 0 and s["final_position"] == 0 and s["reappear_time"] == 0
    assert s["frame_accuracy"] == pytest.approx((r - 1) / (suite.FRAMES - 1))
    assert s["occluder_fidelity"] == 1


def test_permanence_visible_while_hidden():
    inst, v = _perm_case()
    h0, h1 = inst["hidden"]
    occ = pe.occluder_mask(inst)
    free = next(
        (a, b)
        for a in range(suite.GRID)
        for b in range(suite.GRID)
        if not occ[a, b] and (a, b) not in pe.positions(inst)
    )
    bad = _paint(v, h0, free, "red")  # a red block outside the occluder in a hidden frame
    s = pe.TASK.score(bad, inst)
    assert s["success"] == 0 and s["final_position"] == 1 and s["occluder_fidelity"] == 1
    assert s["reappear_time"] == 0  # red showed before the true reappearance
    assert s["frame_accuracy"] == pytest.approx(7 / 8)


def test_permanence_early_and_missing_reappearance():
    inst, v = _perm_case(level=3)
    pos = pe.positions(inst)
    h0, h1 = inst["hidden"]
    bad = _erase(v, h1 + 1, pos[h1 + 1])  # the object stays hidden one frame too long
    s = pe.TASK.score(bad, inst)
    assert s["success"] == 0 and s["reappear_time"] == 0 and s["final_position"] == float(h1 + 1 != suite.FRAMES - 1)
    assert s["frame_accuracy"] == pytest.approx(7 / 8)
    gone = v.copy()
    for k in range(1, suite.FRAMES):  # the object vanishes for good
        gone = _erase(gone, k, pos[k])
    s = pe.TASK.score(gone, inst)
    assert s["success"] == 0 and s["final_position"] == 0 and s["reappear_time"] == 0
    assert s["frame_accuracy"] == pytest.approx((h1 - h0 + 1) / 8)


def test_permanence_broken_occluder():
    inst, v = _perm_case()
    r0, c0, r1, c1 = inst["occluder"]
    bad = _erase(v, 5, (r0, c0))
    s = pe.TASK.score(bad, inst)
    assert s["success"] == 0 and s["frame_accuracy"] == 1
    n = (r1 - r0) * (c1 - c0) * (suite.FRAMES - 1)
    assert s["occluder_fidelity"] == pytest.approx(1 - 1 / n)
    # the object drawn over the occluder where it should be hidden also breaks it
    h0 = inst["hidden"][0]
    s = pe.TASK.score(_paint(v, h0, pe.positions(inst)[h0], "red"), inst)
    assert s["success"] == 0 and s["occluder_fidelity"] < 1 and s["frame_accuracy"] == 1


def test_permanence_static_video_fails():
    inst, v = _perm_case()
    s = pe.TASK.score(np.repeat(v[:1], suite.FRAMES, axis=0), inst)
    assert s["success"] == 0 and s["final_position"] == 0 and s["occluder_fidelity"] == 1


# ---- mirror --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", mi.LEVELS)
def test_mirror_instances_are_valid(level):
    for inst in suite.heldout(mi.TASK, level, 200):
        k, a, r0, c0 = level, inst["axis"], inst["row"], inst["col"]
        pat = np.array(inst["pattern"])
        assert pat.shape == (k, k) and (pat != "open").any() and not (pat == pat[:, ::-1]).all()
        assert set(pat.ravel()) <= {"open", *mi.PALETTES[level]}
        assert 0 <= c0 and c0 + k <= a and 2 * a - c0 < suite.GRID and 0 <= r0 and r0 + k <= suite.GRID
        g = mi.TASK.classes(inst)
        assert (g[0][:, a + 1 :] == mi.OPEN).all()  # the right side starts empty
        assert (g[:, :, : a + 1] == g[0][:, : a + 1]).all()  # left side and axis never change
        right = g[-1][r0 : r0 + k, 2 * a - c0 - k + 1 : 2 * a - c0 + 1]
        assert (right == g[0][r0 : r0 + k, c0 : c0 + k][:, ::-1]).all()  # the last frame is the mirror
        assert [mi.revealed(k, f) for f in (0, suite.FRAMES - 1)] == [0, k]


def _mirror_case(level=3, i=0):
    inst = _inst(mi.TASK, level, i)
    return inst, mi.TASK.render(inst)


def _mirror_cell(inst, i, j):
    """The right-side block mirroring pattern cell (i, j)."""
    return inst["row"] + i, 2 * inst["axis"] - inst["col"] - j


def test_mirror_one_cell_wrong():
    inst, v = _mirror_case()
    k = inst["level"]
    i, j = next((i, j) for i in range(k) for j in range(k) if inst["pattern"][i][j] != "open")
    other = next(c for c in mi.PALETTES[k] if c != inst["pattern"][i][j])
    bad = _paint(v, -1, _mirror_cell(inst, i, j), other)
    s = mi.TASK.score(bad, inst)
    assert s["success"] == 0 and s["cell_accuracy"] == pytest.approx(1 - 1 / k**2)
    assert s["left_fidelity"] == 1 and s["progress"] == 1 and s["axis_fidelity"] == 1


def test_mirror_copy_instead_of_mirror_fails():
    inst, v = _mirror_case(level=4)
    k, a, r0, c0 = inst["level"], inst["axis"], inst["row"], inst["col"]
    bad = v.copy()
    m0 = 2 * a - c0 - k + 1
    bad[-1, r0 * B : (r0 + k) * B, m0 * B : (m0 + k) * B] = v[0, r0 * B : (r0 + k) * B, c0 * B : (c0 + k) * B]
    s = mi.TASK.score(bad, inst)
    assert s["success"] == 0 and s["cell_accuracy"] < 1 and s["left_fidelity"] == 1


def test_mirror_extra_block_left_change_and_progress():
    # an instance whose outermost pattern column (the last one revealed) is not empty
    inst = next(i for i in suite.heldout(mi.TASK, 3, 50) if any(row[0] != "open" for row in i["pattern"]))
    v = mi.TASK.render(inst)
    k, a, r0, c0 = inst["level"], inst["axis"], inst["row"], inst["col"]
    # a stray block on the right, outside the mirror's area
    stray = ((r0 + k) % suite.GRID, suite.GRID - 1) if 2 * a - c0 < suite.GRID - 1 else ((r0 + k) % suite.GRID, a + 1)
    s = mi.TASK.score(_paint(v, -1, stray, "red"), inst)
    assert s["success"] == 0 and s["cell_accuracy"] == 1 and s["left_fidelity"] == 1
    # a left-pattern cell changed
    s = mi.TASK.score(_paint(v, -1, (r0, c0), "wall"), inst)
    assert s["success"] == 0 and s["cell_accuracy"] == 1 and s["left_fidelity"] == pytest.approx(1 - 1 / k**2)
    # the axis broken
    s = mi.TASK.score(_paint(v, -1, (0, a), "open"), inst)
    assert s["success"] == 0 and s["axis_fidelity"] == pytest.approx(1 - 1 / suite.GRID)
    # frame 4 already showing the full mirror: the end is right, the progress is not
    early = v.copy()
    early[4] = v[-1]
    s = mi.TASK.score(early, inst)
    assert s["success"] == 1 and s["progress"] < 1
    # nothing drawn at all
    s = mi.TASK.score(np.repeat(v[:1], suite.FRAMES, axis=0), inst)
    assert s["success"] == 0 and s["cell_accuracy"] < 1 and s["left_fidelity"] == 1

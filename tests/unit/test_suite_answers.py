"""The suite tasks' readers (interp.tasks.answers) on hand-made frames: blur is no candidate and no answer, two sharp
routes are two, a sharp route to the wrong goal or a wrong mirror is "wrong"; the layout kept and the probe labels;
the organism's reproduce and compare rules on made-up numbers (perception needs a selective probe; the task-agnostic
verdict from rank correlations with intervals)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from interp.apps import compare as C
from interp.report import paper as P
from interp.tasks import answers as A
from interp.tasks import goalmaze as gm
from interp.tasks import loopmaze as lm
from interp.tasks import mirror as mi
from interp.tasks.suite import GRID, get_task, heldout


def _paint(task: str, classes: np.ndarray) -> np.ndarray:
    names = {"loopmaze": lm.NAMES, "goalmaze": gm.NAMES}[task]
    return lm.paint(classes, names)


def _blend(a: np.ndarray, b: np.ndarray, w: float) -> np.ndarray:
    return (w * a.astype(np.float32) + (1 - w) * b).round().astype(np.uint8)


def test_route_answers_blur_one_two_and_wrong_goal():
    task = get_task("goalmaze")
    inst = heldout(task, 4, 1)[0]
    other = gm.flip(inst)
    video = task.render(inst)
    right, first = video[-1], video[0]
    assert A.answer("goalmaze", right, inst) == "right"
    assert A.candidates("goalmaze", right, inst).n == 1
    # blur: the trail half-way between open and trail colours (below CONTRAST = 0.6) is no candidate, no answer
    blur = _blend(right, first, 0.5)
    assert A.candidates("goalmaze", blur, inst).n == 0 and A.answer("goalmaze", blur, inst) == "none"
    # the same trail at 70% of the way is sharp: one candidate, right
    assert A.answer("goalmaze", _blend(right, first, 0.7), inst) == "right"
    # a sharp route to the other goal: a complete wrong answer
    assert A.answer("goalmaze", get_task("goalmaze").render(other)[-1], inst) == "wrong"
    # both routes drawn: two candidates, both complete
    base = task.base_classes(inst)
    for b in inst["path"][1:-1] + other["path"][1:-1]:
        base[tuple(b)] = gm.TRAIL
    two = A.candidates("goalmaze", _paint("goalmaze", base), inst)
    assert two.n == 2 and two.complete == [True, True]
    # half a route: a candidate, not a complete answer
    half = task.base_classes(inst)
    for b in inst["path"][1:4]:
        half[tuple(b)] = gm.TRAIL
    assert A.candidates("goalmaze", _paint("goalmaze", half), inst).n == 1
    assert A.answer("goalmaze", _paint("goalmaze", half), inst) == "none"


def _detour(inst):
    """A simple start-goal path through open blocks longer than the shortest (one path block closed), or None."""
    open_ = lm.open_mask(inst["grid"])
    start, goal = tuple(inst["start"]), tuple(inst["goal"])
    best = lm.block_bfs(open_, start)[goal]
    for b in inst["path"][1:-1]:
        closed = open_.copy()
        closed[tuple(b)] = False
        d = lm.block_bfs(closed, start)
        if d[goal] > best:
            path, cur = [goal], goal
            while cur != start:
                r, c = cur
                cur = next(n for n in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))
                           if 0 <= n[0] < GRID and 0 <= n[1] < GRID and closed[n] and d[n] == d[cur] - 1)  # fmt: skip
                path.append(cur)
            return path
    return None


def test_loopmaze_any_shortest_path_is_right_a_longer_one_wrong():
    task = get_task("loopmaze")
    inst, path = next((i, p) for i in heldout(task, 4, 20) if (p := _detour(i)) is not None)
    assert A.answer("loopmaze", task.render(inst)[-1], inst) == "right"
    base = task.base_classes(inst)
    for b in path[1:-1]:
        base[b] = lm.TRAIL
    assert A.answer("loopmaze", _paint("loopmaze", base), inst) == "wrong"  # complete, sharp, not shortest
    open_ = lm.open_mask(inst["grid"])
    ds, dg = lm.block_bfs(open_, tuple(inst["start"])), lm.block_bfs(open_, tuple(inst["goal"]))
    labels = A.probe_labels("loopmaze", inst, 3)
    ans = labels["answer"][0]
    assert (labels["answer"] == ans).all() and (ans[~open_] == -1).all()
    assert all(ans[tuple(b)] == 1 for b in inst["path"][1:-1])  # the rendered path lies on a shortest path
    on = (ds >= 0) & (dg >= 0) & (ds + dg == ds[tuple(inst["goal"])])
    assert (ans == 1).sum() == on.sum() - 2  # every shortest path's blocks, start and goal excluded


def test_mirror_answers_and_layout_kept():
    task = get_task("mirror")
    inst = heldout(task, 3, 1)[0]
    video = task.render(inst)
    assert A.answer("mirror", video[-1], inst) == "right"
    assert A.answer("mirror", video[0], inst) == "none"  # nothing drawn yet
    assert A.answer("mirror", _blend(video[-1], video[0], 0.5), inst) == "none"  # blur
    cls = task.classes(inst)[-1]
    r0, m0 = inst["row"], 2 * inst["axis"] - inst["col"] - inst["level"] + 1
    wrong = cls.copy()
    wrong[r0, m0] = mi.OPEN if cls[r0, m0] != mi.OPEN else mi.NAMES.index("red")
    frame = np.repeat(np.repeat(mi._PAL[wrong], 8, 0), 8, 1)  # one block of the mirror image changed, sharp
    drawn = (wrong[r0 : r0 + 3, m0 : m0 + 3] != mi.OPEN).any()
    assert A.answer("mirror", frame, inst) == ("wrong" if drawn else "none")
    assert np.allclose(A.layout_fidelity("mirror", video, inst), 1.0)
    broken = video.copy()
    broken[4, :, inst["axis"] * 8 : inst["axis"] * 8 + 8] = 235  # the axis erased in frame 4
    fid = A.layout_fidelity("mirror", broken, inst)
    _, static = A.layout("mirror", inst)
    assert fid[3] == 1.0 and fid[4] == pytest.approx(1 - GRID / static.sum())
    lab = A.probe_labels("mirror", inst, 3)
    assert (lab["answer"][:, :, : inst["axis"] + 1] == -1).all()
    assert (lab["layout"][0] == (task.classes(inst)[0] != mi.OPEN)).all()
    with pytest.raises(ValueError, match="tasks it reads"):
        A.answer("permanence", video[-1], inst)


# ---- rules on made-up numbers ---------------------------------------------------------------------
def _probes(wall_lo, path_lo, sel_lo, n=40):
    k = len(wall_lo)
    return {"t_layout": 0, "t_path": 2, "threshold": 0.9, "steps": k, "probed_steps": list(range(0, 5 * k, 5)), "n": n,
            "acc0_wall": 0.95, "acc0_path": 0.6, "wall_lo": wall_lo, "path_lo": path_lo,
            "path_hi": [min(1.0, x + 0.05) for x in path_lo], "selectivity_wall_lo": sel_lo,
            "control_wall_curve": [0.6] * k, "control_path_curve": [0.5] * k,
            "labels": {"layout": "wall", "answer": "on a shortest path"}}  # fmt: skip


def test_suite_perception_needs_the_layout_probe_to_beat_its_control():
    d = _probes([0.92, 0.95, 0.97], [0.5, 0.7, 0.93], [0.2, 0.3, 0.3])
    assert P.rule_perception_control(d)[0] == P.HOLDS
    assert (
        "control-task accuracy at the best block per probed step (layout / answer): 0: 0.60 / 0.50"
        in (P.rule_perception_control(d)[1])
    )
    assert P.rule_perception_control(d | {"selectivity_wall_lo": [-0.01, 0.3, 0.3]})[0] == P.NOT  # position memorised
    assert P.rule_perception_control(d | {"n": 6})[0] == f"{P.NES} (n=6)"


def test_suite_specs_one_per_maze_claim_with_the_suites_rules():
    suite = {s.key: s for s in P.SPECS if s.analysis.startswith("suite_")}
    for key in ("chain", "swap_answer", "swap_structure", "memory", "selfcorrect", "perception"):
        assert f"suite_{key}" in suite
    assert suite["suite_perception"].rule is P.rule_perception_control
    assert "control task" in suite["suite_perception"].rule_text
    assert "interp.tasks.answers" in suite["suite_selfcorrect"].rule_text
    assert "solves B and not A" in suite["suite_swap_answer"].rule_text


def test_rank_correlation_and_the_task_agnostic_verdict():
    rng = np.random.default_rng(0)
    depth = np.array([0.9, 0.8, 0.7, 0.55, 0.4, 0.3, 0.2, 0.05])  # a shared profile over 8 blocks
    a = (rng.random((8, 60)) < depth[:, None]).astype(float)
    b = (rng.random((8, 60)) < depth[:, None]).astype(float)
    assert C.spearman(a.mean(1), b.mean(1)) == pytest.approx(spearmanr(a.mean(1), b.mean(1)).statistic)
    same = C.profile_corr(a, b)
    assert same.lo > 0 and same.est > 0.5 and C.agnostic_verdict([same]) == "holds"
    flipped = C.profile_corr(a, b[::-1])  # the opposite profile over depth
    assert flipped.hi <= 0 and C.agnostic_verdict([same, flipped]) == "does not hold"
    flat = np.random.default_rng(1)  # no profile over depth, 10 samples each: an interval holding 0
    noise = C.profile_corr((flat.random((8, 10)) < 0.5).astype(float), (flat.random((8, 10)) < 0.5).astype(float))
    assert noise.lo <= 0 < noise.hi and C.agnostic_verdict([noise]) == "not enough samples"
    assert C.agnostic_verdict([C.profile_corr(np.zeros((8, 5)), b)]).startswith("not measured (a flat profile")
    assert C.agnostic_verdict([]).startswith("not measured (fewer than two tasks")
    # a 16-block profile against an 8-block one: compared on the 8-point depth grid
    assert C.spearman(np.repeat(depth, 2), depth) > 0.9
    # the verdict reads the suite model's task pairs only; every pair gets a row
    prof = [C.Profile(m, "wan", 8, 0.5, values={"skip_damage": x.mean(1)}, samples={"skip_damage": x}, inputs=m,
                      source=m.split("/")[0], task=t)
            for m, t, x in (("organism/loopmaze", "loopmaze", a), ("organism/mirror", "mirror", b),
                            ("maze-wan", None, b[::-1]))]  # fmt: skip
    agn = C.agnostic(prof)
    assert agn["verdict"] == "holds" and agn["task_pairs"] == ["organism/loopmaze vs organism/mirror"]
    assert len(agn["pairs"]) == 3 and agn["pairs"][1]["skip_damage"]["hi"] <= 0
    md = "\n".join(C.agnostic_markdown(agn))
    assert "**Is the specialization task-agnostic?** holds" in md and "null: rho = 0" in md


def test_compare_figure_title_names_what_the_profiles_ran_on():
    cfg = C.CompareConfig(models=["maze-wan"], n=32, size=5)
    maze = C.Profile(model="maze-wan", family="wan", n_layers=16, clean=1.0)
    tasks = [
        C.Profile(model=f"organism/{t}", family="wan", n_layers=16, clean=0.7, task=t) for t in ("loopmaze", "mirror")
    ]
    assert C._inputs_title([maze], cfg) == "32 per profile: 5x5 mazes"
    assert C._inputs_title(tasks, cfg) == "32 per profile: loopmaze, mirror"
    assert C._inputs_title([*tasks, maze], cfg) == "32 per profile: 5x5 mazes and loopmaze, mirror"

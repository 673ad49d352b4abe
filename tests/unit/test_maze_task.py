"""The maze task: generator, renderer, pixel-only scorer, held-out sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interp.models import data_path
from interp.tasks import build_inputs, maze_inputs
from interp.tasks import maze as mz
from interp.tasks.maze_score import read_blocks, score_video, solve_rate

FRAMES = 5


def _maze(size=5, i=0):
    return mz.generate(size, mz.maze_rng(mz.TRAIN_STREAM, size, 0, i))


def _paint(video, blocks, rgb=mz.PALETTE[mz.TRAIL]):
    """Paint whole blocks of the last frame."""
    out = video.copy()
    for r, c in blocks:
        out[-1, r * mz.BLOCK_PX : (r + 1) * mz.BLOCK_PX, c * mz.BLOCK_PX : (c + 1) * mz.BLOCK_PX] = rgb
    return out


@pytest.mark.parametrize("size", mz.SIZES)
def test_generator_makes_perfect_mazes_with_far_goal(size):
    for i in range(5):
        m = _maze(size, i)
        assert m.right.sum() + m.down.sum() == size * size - 1  # a spanning tree: n^2 - 1 passages
        dist = mz._distances(size, m.right, m.down, m.start)["dist"]
        assert len(dist) == size * size  # connected
        assert dist[m.goal] >= 0.7 * max(dist.values())
        assert m.solution[0] == m.start and m.solution[-1] == m.goal
        assert len(m.solution) == dist[m.goal] + 1


def test_generator_is_seeded_and_validates_size():
    a, b = _maze(6, 3), _maze(6, 3)
    assert a.key() == b.key() and a.key() != _maze(6, 4).key()
    assert mz.Maze.from_dict(a.to_dict()).key() == a.key()
    with pytest.raises(ValueError, match=r"one of \(3, 4, 5, 6, 7, 8\)"):
        mz.generate(9, np.random.default_rng(0))


def test_render_frames_walk_the_solution():
    m = _maze(5)
    video = mz.render_video(m, FRAMES)
    assert video.shape == (FRAMES, 44, 44, 3) and video.dtype == np.uint8
    path = mz.block_path(m)
    first, agent0 = read_blocks(video[0])
    last, agent_last = read_blocks(video[-1])
    assert (first == mz.TRAIL).sum() == 0
    assert agent0[path[0]] and agent0.sum() == 1
    assert agent_last[path[-1]] and agent_last.sum() == 1
    assert {tuple(b) for b in np.argwhere(last == mz.TRAIL)} == set(path[1:-1])
    trail_counts = [(read_blocks(f)[0] == mz.TRAIL).sum() for f in video]
    assert trail_counts == sorted(trail_counts) and trail_counts[-1] == len(path) - 2
    # the first frame's pixels: wall corner, start block
    assert tuple(video[0, 0, 0]) == tuple(mz.PALETTE[mz.WALL])
    sr, sc = 2 * m.start[0] + 1, 2 * m.start[1] + 1
    assert tuple(video[0, sr * 4, sc * 4]) == tuple(mz.PALETTE[mz.START])
    assert tuple(video[0, sr * 4 + 1, sc * 4 + 1]) == tuple(mz.AGENT_RGB)


def test_model_space_round_trip_and_condition():
    video = torch.from_numpy(mz.render_video(_maze(4), FRAMES))
    x = mz.to_model_space(video)
    assert x.shape == (3, FRAMES, 36, 36) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(mz.from_model_space(x), video)
    cond = mz.condition_from_first_frame(x[None, :, 0], FRAMES)
    assert cond.shape == (1, 4, FRAMES, 36, 36)
    assert torch.equal(cond[0, 0, 0], torch.ones(36, 36)) and cond[0, 0, 1:].abs().sum() == 0
    assert torch.equal(cond[0, 1:, 0], x[:, 0]) and cond[0, 1:, 1:].abs().sum() == 0


def test_scorer_ground_truth_succeeds():
    for size in (3, 5, 8):
        m = _maze(size, 1)
        s = score_video(mz.render_video(m, FRAMES))
        assert s.success and s.path_recall == 1.0 and s.extra_cells == 0 and s.goal_reached
        assert s.wall_crossings == 0 and s.first_frame_fidelity == 1.0 and s.readable


def test_scorer_rejects_path_through_a_wall():
    m = _maze(5, 2)
    video = mz.render_video(m, FRAMES)
    # clear the trail, then draw the straight-line (wall-ignoring) route from start to goal
    layout = mz.layout_blocks(m)
    cleared = video.copy()
    cleared[-1] = video[0]
    (sr, sc), (gr, gc) = [(2 * r + 1, 2 * c + 1) for r, c in (m.start, m.goal)]
    route = [(sr, c) for c in range(min(sc, gc), max(sc, gc) + 1)] + [
        (r, gc) for r in range(min(sr, gr), max(sr, gr) + 1)
    ]
    route = [b for b in dict.fromkeys(route) if b not in ((sr, sc), (gr, gc))]
    assert any(layout[b] == mz.WALL for b in route)
    s = score_video(_paint(cleared, route))
    assert not s.success and s.wall_crossings > 0


def test_scorer_rejects_dead_end_and_missing_cells():
    m = _maze(6, 0)
    video = mz.render_video(m, FRAMES)
    layout = mz.layout_blocks(m)
    path = set(mz.block_path(m))
    # a detour: an open block next to the path but not on it
    side = next(
        (r + dr, c + dc)
        for r, c in sorted(path)
        for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0))
        if layout[r + dr, c + dc] == mz.OPEN and (r + dr, c + dc) not in path
    )
    s = score_video(_paint(video, [side]))
    assert not s.success and s.extra_cells == 1 and s.path_recall == 1.0
    # one block of the path missing: not connected
    inner = mz.block_path(m)[1:-1]
    gap = _paint(video, [inner[len(inner) // 2]], mz.PALETTE[mz.OPEN])
    s = score_video(gap)
    assert not s.success and not s.goal_reached and s.path_recall < 1.0


def test_scorer_rejects_no_motion_and_noise():
    m = _maze(5, 3)
    video = mz.render_video(m, FRAMES)
    still = np.repeat(video[:1], FRAMES, axis=0)
    s = score_video(still)
    assert not s.success and s.path_recall == 0.0
    noise = np.random.default_rng(0).integers(0, 256, video.shape, dtype=np.uint8)
    s = score_video(noise, video[0])
    assert not s.success and s.first_frame_fidelity < 0.5


def test_solve_rate_wilson_interval():
    from interp.tasks.maze_score import MazeScore

    ok = MazeScore(True, 1, 0, True, 0, 1, True)
    bad = MazeScore(False, 0, 0, False, 0, 1, True)
    p, lo, hi = solve_rate([ok] * 8 + [bad] * 2)
    assert p == 0.8 and lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)


def test_training_never_draws_held_out_mazes():
    from interp.train import DataSpec, MazeBatches

    held = mz.eval_keys()
    rng = np.random.default_rng(0)
    unfiltered = [mz.generate(3, rng).key() for _ in range(400)]
    assert sum(k in held for k in unfiltered) > 0  # 3x3 tasks repeat: filtering is needed
    spec = DataSpec(size_weights={3: 1.0}, tokens_per_batch=5 * 49 * 200, workers=0)
    classes, agents = next(iter(MazeBatches(spec)))
    assert classes.shape == (200, FRAMES, 7, 7) and agents.shape == classes.shape
    # rebuild the mazes the batch came from: same stream, same rejection
    rng = np.random.default_rng(np.random.SeedSequence([mz.TRAIN_STREAM, 0, 0, 0, 1]))
    rng.choice([3], p=[1.0])
    drawn = []
    while len(drawn) < 200:
        m = mz.generate(3, rng)
        if m.key() not in held:
            drawn.append(m)
    assert np.array_equal(classes[0].numpy(), mz.frame_blocks(drawn[0], FRAMES)[0])
    assert not any(m.key() in held for m in drawn)


def test_task_inputs():
    meta = {"task": "maze", "frames": FRAMES, "text_dim": 8, "default_size": 4}
    ti = build_inputs(meta, 3, seed=1)
    assert ti.latent_shape == (3, 3, FRAMES, 36, 36) and ti.condition.shape == (3, 4, FRAMES, 36, 36)
    assert ti.encoder_hidden_states.shape == (3, 1, 8) and ti.condition_frames.shape == (3, 36, 36, 3)
    assert [m.key() for m in ti.instances] == [m.key() for m in mz.eval_mazes(4, 3, 1)]
    with pytest.raises(ValueError, match="one size"):
        maze_inputs(meta, [_maze(3), _maze(4)])
    with pytest.raises(ValueError, match="known tasks"):
        build_inputs({"task": "sudoku"}, 1, 0)


def test_shipped_eval_sets_are_pinned():
    """The held-out sets named in data/eval-sets/maze.json are exactly what the generator makes."""
    import json

    spec = json.loads((data_path("eval-sets", "maze.json")).read_text())
    assert spec["stream"] == mz.EVAL_STREAM
    for s in spec["sets"]:
        assert mz.eval_set_digest(s["size"], spec["count"], spec["seed"]) == s["sha256"], s["size"]

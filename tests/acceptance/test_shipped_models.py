"""The shipped models, loaded by their built-in names from the package data, really solve held-out mazes (small
and few, to stay fast on CPU)."""

from __future__ import annotations

import h5py
import pytest

from interp.apps.evaluate import eval_maze, write_samples
from interp.lm import is_lm_path
from interp.lm.model import load_lm
from interp.lm.run import eval_lm
from interp.models import load_model

pytestmark = pytest.mark.slow


def test_shipped_model_solves_small_mazes(tmp_path):
    """Integration: the shipped weights really solve held-out mazes (small and few, to stay fast on CPU)."""
    model = load_model("maze-wan")
    assert model.transformer.config.num_layers >= 12
    res = eval_maze(model, size=3, n=4, steps=10, seed=7)
    assert res.solve_rate[0] == 1.0
    path = write_samples(res, tmp_path / "s.h5")
    with h5py.File(path) as f:
        assert f["scores/success"][()].all() and f.attrs["solve_rate"] == 1.0


def test_shipped_cogvideox_solves_small_mazes():
    """Integration: the shipped CogVideoX weights really solve held-out mazes (small and few, fast on CPU)."""
    model = load_model("maze-cogvideox")
    assert model.family == "cogvideox" and model.transformer.config.num_layers == 16
    res = eval_maze(model, size=3, n=4, steps=10, seed=7)
    assert res.solve_rate[0] == 1.0


def test_shipped_maze_lm_solves_held_out_mazes():
    """Integration: the shipped maze LM answers held-out 3x3 and 4x4 mazes with the exact solution
    (a random model gets none)."""
    pytest.importorskip("transformer_lens")  # the [lm] extra (interp.lm imports it when a model is built)
    assert is_lm_path("maze-lm")
    model = load_lm("maze-lm")
    assert model.n_layers == 12
    rows = eval_lm(model, [3, 4], n=16, seed=0)
    assert rows[0]["exact"] == 1.0 and rows[1]["exact"] >= 0.9  # held-out 4x4: 0.978 over 500 (model card)

"""Modulation sites in YAML experiments: zeroing a block's attention gate over a whole trajectory equals removing its
attention output; a bad position selection on a modulation site is one clear error."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from interp.experiments import Experiment, ExperimentError, run_experiment
from interp.models import load_model


def _final(maze_dir, tmp_path, name, site):
    e = Experiment.validate_data({"model": str(maze_dir), "inputs": {"count": 2}, "metrics": ["mse"],
                                  "interventions": [{"kind": "ablate", "mode": "zero", "site": site}]})  # fmt: skip
    res = run_experiment(e, tmp_path / name, loaded=load_model(str(maze_dir)), wandb="disabled", progress=False)
    with h5py.File(res.results) as f:
        return f["group_0/final"][()], f["metrics/mse"][()]


def test_zero_gate_in_yaml_equals_zero_attention(maze_dir, tmp_path):
    gate, mse_gate = _final(maze_dir, tmp_path, "gate", "blocks.1.hook_mod_gate_msa")
    attn, mse_attn = _final(maze_dir, tmp_path, "attn", "blocks.1.hook_attn_out")
    assert np.array_equal(gate, attn) and np.array_equal(mse_gate, mse_attn)
    assert (mse_gate > 0).all()


def test_modulation_site_rejects_positions(maze_dir):
    with pytest.raises((ExperimentError, ValueError), match="one value for every token"):
        Experiment.validate_data({"model": str(maze_dir), "interventions": [
            {"kind": "ablate", "site": "blocks.1.hook_mod_scale_mlp", "frames": [0]}]})  # fmt: skip

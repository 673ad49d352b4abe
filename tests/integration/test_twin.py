"""`interp twin`: the random-weights twin keeps the config and the inputs, changes every weight, and its capture is a
probe baseline."""

from __future__ import annotations

import json

import h5py
import numpy as np
import torch
from typer.testing import CliRunner

from interp.cli import app
from interp.models import load_model
from probes import run_probes

runner = CliRunner()


def _params(loaded) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in loaded.transformer.state_dict().items()}


def test_twin_keeps_config_and_inputs_and_its_capture_is_a_probe_baseline(maze_dir, tmp_path):
    res = runner.invoke(app, ["twin", str(maze_dir), "--out", str(tmp_path / "twin"), "--seed", "3"])
    assert res.exit_code == 0, res.output
    src, twin = load_model(str(maze_dir)), load_model(str(tmp_path / "twin"))

    def config(m):
        return {k: v for k, v in m.transformer.config.items() if k != "_name_or_path"}

    assert config(twin) == config(src)  # same diffusers config
    assert twin.task == src.task  # interp.json copied: the same task inputs
    a, b = _params(src), _params(twin)
    assert a.keys() == b.keys()
    changed = [k for k in a if a[k].numel() > 1 and a[k].std() > 0 and not torch.equal(a[k], b[k])]
    assert len(changed) >= 0.9 * sum(1 for k in a if a[k].numel() > 1 and a[k].std() > 0)
    assert json.loads((tmp_path / "twin" / "twin.json").read_text())["seed"] == 3
    assert list((tmp_path / "twin" / "transformer").glob("*.safetensors"))
    # the same seed gives the same twin; another seed another one
    runner.invoke(app, ["twin", str(maze_dir), "--out", str(tmp_path / "again"), "--seed", "3"])
    runner.invoke(app, ["twin", str(maze_dir), "--out", str(tmp_path / "other"), "--seed", "4"])
    assert twin.weight_hash == load_model(str(tmp_path / "again")).weight_hash
    assert twin.weight_hash != load_model(str(tmp_path / "other")).weight_hash
    # an existing --out: one line, exit 2
    again = runner.invoke(app, ["twin", str(maze_dir), "--out", str(tmp_path / "twin")])
    assert again.exit_code == 2 and "exists" in again.output

    caps = {}
    for name, model in (("real", maze_dir), ("rand", tmp_path / "twin")):
        out = tmp_path / f"{name}.h5"
        r = runner.invoke(app, ["capture", str(model), "--batch", "4", "--sites", "blocks.*.hook_resid_post",
                                "--out", str(out)])  # fmt: skip
        assert r.exit_code == 0, r.output
        caps[name] = out
    with h5py.File(caps["real"]) as f, h5py.File(caps["rand"]) as g:
        assert np.array_equal(f["task/condition_frames"][:], g["task/condition_frames"][:])  # same inputs
        assert not np.allclose(f["cond/blocks.1.hook_resid_post"][:], g["cond/blocks.1.hook_resid_post"][:])
    probes = run_probes(caps["real"], labels=["wall"], sites=["blocks.1.hook_resid_post"], baseline=caps["rand"],
                        out=tmp_path / "probes", bootstrap=20, progress=False)  # fmt: skip
    m = probes.labels["wall"].metrics
    np.testing.assert_allclose(m["minus_baseline"], m["accuracy"] - m["baseline_accuracy"], atol=1e-6)
    assert not np.allclose(m["accuracy"], m["baseline_accuracy"])  # the twin's activations are another network's


def test_twin_of_a_tiny_builtin_and_a_missing_model(tmp_path):
    res = runner.invoke(app, ["twin", "tiny-wan", "--out", str(tmp_path / "t"), "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert load_model(str(tmp_path / "t")).weight_hash != load_model("tiny-wan").weight_hash
    bad = runner.invoke(app, ["twin", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "nowhere" in bad.output and not (tmp_path / "x").exists()

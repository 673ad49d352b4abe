"""Every capture describes itself: with the model directory gone, ``interp probe`` with maze labels and the viewer's
per-step verdicts still work and give the numbers they give with the model present, and neither reader imports
``interp.models`` or calls the task generators. Older or foreign files get one clear SchemaError."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from interp.apps.capture import CaptureConfig, capture
from interp.cli import app
from interp.models import data_path
from interp.report import viewer as vw
from interp.store import SchemaError, load_cache
from probes.results import load_results

SITES = ["blocks.*.hook_resid_post"]
CFG = dict(steps=3, batch=4, sites=SITES, seed=1)
PROBE = ["--label", "wall", "--label", "path", "--bootstrap", "5", "--control", "none", "--tokens-per-sample", "32"]


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    """The same capture twice: once of the shipped model, once of a copy deleted right after capturing."""
    tmp = tmp_path_factory.mktemp("selfdesc")
    present = capture(CaptureConfig(model="maze-wan", **CFG), tmp / "present.h5")
    model = tmp / "model"
    shutil.copytree(data_path("maze-wan"), model)
    gone = capture(CaptureConfig(model=str(model), **CFG), tmp / "gone.h5")
    shutil.rmtree(model)
    return present, gone


def test_capture_records_itself(captures):
    _, gone = captures
    with load_cache(gone) as c:
        meta = json.loads((data_path("maze-wan") / "interp.json").read_text())
        assert c.task_meta == meta
        assert len(c.instances_json()) == 4 and c.condition_frames.shape == (4, 44, 44, 3)
        assert c.sampler == {"steps": 3, "shift": 5.0, "guidance": 1.0, "guidance_2": None, "seed": 0,
                             "scheduler": "FlowMatchEulerDiscreteScheduler"}  # fmt: skip
        f, h, w = c.grid
        assert c.token_grid.shape == (f * h * w, 3) and c.token_grid[-1].tolist() == [f - 1, h - 1, w - 1]
        assert c.attrs["schema"] == "interp.capture"


def test_probe_and_view_without_the_model(captures, tmp_path):
    present, gone = captures
    res = {}
    for name, path in (("present", present), ("gone", gone)):
        r = CliRunner().invoke(app, ["probe", str(path), *PROBE, "--out", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
        res[name] = load_results(tmp_path / name / "probes.h5")
    for lab in ("wall", "path"):
        np.testing.assert_array_equal(res["gone"]["labels"][lab]["accuracy"], res["present"]["labels"][lab]["accuracy"])
    views = {name: vw.load_view(path, 20 * vw.MB) for name, path in (("present", present), ("gone", gone))}
    assert views["gone"].verdicts is not None and len(views["gone"].verdicts) == 3
    assert views["gone"].verdicts == views["present"].verdicts
    assert views["gone"].final_verdicts == views["present"].final_verdicts


READER = r"""
import sys
import interp.tasks, interp.tasks.maze as mz

def refuse(*a, **k):
    raise AssertionError("a reader called a task generator")

mz.eval_mazes = mz.generate = interp.tasks.build_inputs = interp.tasks.maze_inputs = refuse
from probes import run_probes
from interp.report import viewer as vw
res = run_probes(sys.argv[1], labels=["wall", "path"], control="none", bootstrap=5, tokens_per_sample=32, progress=False)
data = vw.load_view(sys.argv[1], 20 * vw.MB)
assert data.verdicts is not None
print("models imported:", "interp.models" in sys.modules, "trajectory imported:", "interp.trajectory" in sys.modules)
"""


def test_readers_do_not_reach_for_the_model(captures):
    _, gone = captures
    r = subprocess.run([sys.executable, "-c", READER, str(gone)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "models imported: False" in r.stdout, r.stdout


def test_foreign_and_older_files_get_one_clear_error(captures, tmp_path):
    present, _ = captures
    older = tmp_path / "older.h5"
    shutil.copy(present, older)
    with h5py.File(older, "a") as f:
        f.attrs["schema_version"] = 0
    with pytest.raises(SchemaError, match=r"older\.h5: schema interp\.capture/0, expected interp\.capture/1"):
        load_cache(older)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f.attrs["schema"] = "someone.else"
        f.attrs["schema_version"] = 3
    with pytest.raises(SchemaError, match=r"foreign\.h5: schema someone\.else/3, expected interp\.capture/1"):
        load_cache(foreign)
    text = tmp_path / "not.h5"
    text.write_text("not hdf5")
    with pytest.raises(SchemaError, match="not a readable HDF5 file"):
        load_cache(text)
    with pytest.raises(SchemaError, match="expected interp.results/1"):
        vw.load_results(present)

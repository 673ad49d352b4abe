"""The tutorial notebooks (docs/notebooks/*.ipynb) run top to bottom on the CPU, each in a fresh directory, and draw
their figures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "docs" / "notebooks").glob("*.ipynb"))


def test_there_are_tutorial_notebooks():
    assert len(NOTEBOOKS) >= 2, NOTEBOOKS


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(path, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        f"{path.name}: commit it without outputs"
    )
    nbclient.NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} drew no figure"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    if path.name.startswith("01"):
        assert "ActivationCache(run.h5, branch='cond', steps=3, sites=16)" in text
        assert "(3, 4, 605, 224) (3, 4, 5, 11, 11, 224) (16, 3, 4, 605, 224)" in text
    if path.name.startswith("02"):
        assert "3 sweep points x 2 mazes: 1 batch(es), 8 rows, 32 row-forwards" in text
        assert "solve_rate [0.  0.5 1. ]" in text  # skipping block 2 breaks both mazes, block 14 neither

"""Fast start: `interp --help`, `interp inspect`, `interp view` (of a latent-space capture) and YAML validation import
no model code (no torch, diffusers or nnsight; benchmarks/startup.py times them). `interp models` reads
diffusers' classes for its coverage table (which pipelines use which transformer), so it imports them."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from interp.apps.capture import CaptureConfig, capture

PROBE = """
import sys
from interp.cli import main
sys.argv = ["interp", *sys.argv[1:]]
try:
    main()
except SystemExit as e:
    code = e.code
else:
    code = 0
print("IMPORTED", sorted(m for m in ("torch", "diffusers", "nnsight") if m in sys.modules), "EXIT", code)
"""


def _imports(*args: str) -> tuple[list[str], int]:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("IMPORTED"))
    mods, code = line.removeprefix("IMPORTED ").split(" EXIT ")
    return ast.literal_eval(mods), int(code)  # a list literal of module names printed above


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    return capture(CaptureConfig(model="tiny-wan", steps=2), tmp_path_factory.mktemp("cap") / "run.h5")


def test_light_commands_import_no_model_code(run_file, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nmodel: maze-wan\ninterventions:\n  - kind: skip\n    layer: 3\n")
    assert _imports("--help") == ([], 0)
    assert _imports("models")[1] == 0
    assert _imports("inspect", str(run_file)) == ([], 0)
    assert _imports("run", str(bad), "--plan") == ([], 2)  # the file is refused before any model code loads
    assert _imports("view", str(run_file), "--out", str(tmp_path / "view")) == ([], 0)  # numpy reader: no torch
    assert (tmp_path / "view" / "index.html").stat().st_size > 10_000

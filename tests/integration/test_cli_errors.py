"""The console entry point turns user errors into one short message (exit code 2), not a traceback."""

from __future__ import annotations

import subprocess
import sys


def _interp(*args: str, env_debug: bool = False, cwd=None) -> subprocess.CompletedProcess:
    env = None
    if env_debug:
        import os

        env = {**os.environ, "INTERP_DEBUG": "1"}
    return subprocess.run([sys.executable, "-m", "interp", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_misspelled_model_is_one_line_with_a_suggestion(tmp_path):
    r = _interp("capture", "maze-wam", "--out", str(tmp_path / "run.h5"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2, r.stderr
    assert "did you mean 'maze-wan'" in r.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_debug_shows_the_traceback(tmp_path):
    r = _interp("capture", "maze-wam", "--out", str(tmp_path / "run.h5"), env_debug=True)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_version():
    r = _interp("--version")
    assert r.returncode == 0 and r.stdout.startswith("interp ")

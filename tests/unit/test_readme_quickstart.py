"""The README's quick start names commands that exist, and its test command is the one .ci/run runs."""

from __future__ import annotations

import re
from pathlib import Path

from typer.main import get_command

from interp.cli import app

ROOT = Path(__file__).resolve().parents[2]


def _quick_start() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_every_interp_verb_in_the_quick_start_exists():
    verbs = set(get_command(app).commands)
    used = re.findall(r"\binterp ([a-z]+)", _quick_start())
    assert used, "the quick start runs no interp verb"
    assert set(used) <= verbs, set(used) - verbs


def test_the_readme_test_command_is_the_one_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"python -m pytest[^\n&|;]*", _quick_start())
    assert commands, "the quick start has no test command"
    for c in commands:
        assert c.strip() in ci, c


def test_the_quick_start_makes_a_virtual_environment_and_says_how_to_get_cpu_torch():
    qs = _quick_start()
    assert "python3 -m venv" in qs
    text = (ROOT / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "download.pytorch.org/whl/cpu" in text

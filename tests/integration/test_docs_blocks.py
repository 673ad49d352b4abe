"""Every code block of README.md and docs/**/*.md runs as written.

Per markdown file, its blocks run in document order in one fresh directory (a copy of the checkout's
``experiments/``; ``interp`` and ``python`` from this interpreter's environment): ``bash`` / ``sh`` / ``console``
blocks as shell commands (``set -e``; in a ``console`` block the lines after ``$ ``), ``python`` blocks as scripts of
their own. Other blocks (``yaml``, ``text``) are shown, not run, unless marked ``<!-- file: NAME -->``: then they are
written to NAME in that directory for the blocks after them to use. A block that cannot run on a CPU-only machine
without network says so in the markdown, on the line right before it: ``<!-- no-test: the reason -->``; the test
prints those blocks with their reasons.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHELL = {"bash", "sh", "shell", "console"}
RUN = SHELL | {"python"}
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
MARK = re.compile(r"<!--\s*(?P<kind>no-test|file):\s*(?P<arg>.*?)\s*-->\s*$")
# seconds per block; the slowest runnable blocks (a 16-step maze-wan demo) take about a minute on 2 cores
BLOCK_TIMEOUT = 420


@dataclass
class Block:
    path: Path
    line: int
    lang: str
    body: str
    no_test: str | None = None
    file: str | None = None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: Path) -> list[Block]:
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = MARK.search(before)
        b = Block(path, text.count("\n", 0, m.start()) + 1, m["lang"].lower(), textwrap.dedent(m["body"]))
        if mark and mark["kind"] == "no-test":
            b.no_test = mark["arg"]
        elif mark:
            b.file = mark["arg"]
        out.append(b)
    return out


def shell_script(b: Block) -> str:
    if b.lang != "console":
        return b.body
    return "\n".join(ln[2:] for ln in b.body.splitlines() if ln.startswith("$ "))


def _env(tmp: Path) -> dict:
    env = {**os.environ, "WANDB_MODE": "disabled", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(ROOT)
    env["HOME"] = str(tmp / "home")  # nothing a block writes lands in the user's home
    return env


def run_file(path: Path, tmp: Path) -> list[str]:
    """Run the runnable blocks of one markdown file in ``tmp``; return the no-test blocks' descriptions."""
    shutil.copytree(ROOT / "experiments", tmp / "experiments")
    (tmp / "home").mkdir()
    env, skipped = _env(tmp), []
    for i, b in enumerate(blocks(path)):
        if b.no_test is not None:
            skipped.append(f"{b.where} ({b.lang}): {b.no_test}")
            continue
        if b.file is not None:
            (tmp / b.file).write_text(b.body)
            continue
        if b.lang not in RUN:
            continue
        if b.lang == "python":
            script = tmp / f"_block{i}.py"
            script.write_text(b.body)
            cmd = [sys.executable, script.name]
        else:
            cmd = ["bash", "-euo", "pipefail", "-c", shell_script(b)]
        r = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
        assert r.returncode == 0, (
            f"{b.where}: the {b.lang} block exited {r.returncode}\n--- block ---\n{b.body}"
            f"--- stdout (tail) ---\n{r.stdout[-3000:]}\n--- stderr (tail) ---\n{r.stderr[-3000:]}"
        )
    return skipped


# the files whose blocks run models for more than a few seconds
SLOW = {"README.md", "docs/tutorials/first-hour.md", "docs/tutorials/probes.md", "docs/tutorials/experiments.md",
        "docs/guide/store.md", "docs/guide/tracing.md", "docs/guide/models.md", "docs/tutorials/pipelines.md",
        "docs/tutorials/compare.md", "docs/tutorials/paper.md", "docs/guide/scaling.md"}  # fmt: skip


def _params():
    for p in doc_files():
        rel = str(p.relative_to(ROOT))
        if any(b.lang in RUN or b.file for b in blocks(p)):
            yield pytest.param(p, id=rel, marks=[pytest.mark.slow] if rel in SLOW else [])


@pytest.mark.parametrize("path", list(_params()))
def test_code_blocks_run_as_written(path, tmp_path):
    skipped = run_file(path, tmp_path)
    if skipped:
        print(f"\n{len(skipped)} block(s) of {path.name} not run:\n  " + "\n  ".join(skipped))


def test_blocks_are_found_and_every_skip_says_why():
    """The parser sees the blocks (a fence it missed would silently go untested) and each no-test has a reason."""
    every = [b for p in doc_files() for b in blocks(p)]
    for p in doc_files():
        assert p.read_text().count("```") == 2 * len([b for b in every if b.path == p]), f"{p}: unmatched fences"
    runnable = [b for b in every if b.lang in RUN]
    skipped = [b for b in runnable if b.no_test is not None]
    assert all(b.no_test.strip() for b in skipped), [b.where for b in skipped if not b.no_test.strip()]
    assert len(runnable) - len(skipped) >= len(skipped), "most blocks must run"
    print(f"\n{len(runnable)} runnable blocks, {len(skipped)} marked no-test:\n  "
          + "\n  ".join(f"{b.where}: {b.no_test}" for b in skipped))  # fmt: skip


def test_the_parser(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("a\n\n<!-- no-test: needs a GPU -->\n```bash\nfalse\n```\n\n<!-- file: e.yaml -->\n"
                  "```yaml\nk: 1\n```\n- item\n\n  ```console\n  $ echo hi\n  hi\n  ```\n")  # fmt: skip
    bs = blocks(md)
    assert [(b.lang, b.no_test, b.file, b.line) for b in bs] == [
        ("bash", "needs a GPU", None, 4), ("yaml", None, "e.yaml", 9), ("console", None, None, 14)
    ]  # fmt: skip
    assert shell_script(bs[2]) == "echo hi"

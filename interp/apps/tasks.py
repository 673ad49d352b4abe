"""``interp tasks``: the organism's task suite (tasks, levels, prompts) and its held-out samples in the VBVR-Bench
layout; also the one parser of a (task, level) selection that ``interp eval`` and ``interp demo`` share.
"""

from __future__ import annotations

import sys
from pathlib import Path

from interp.budget import Estimate
from interp.tasks import suite


class SelectionError(ValueError):
    """A task or level that does not exist; the message lists the valid values."""


def task_names(allowed: list[str] | None = None) -> list[str]:
    """The suite's tasks (in the model's order when ``allowed`` is its interp.json ``tasks``)."""
    suite._load_all()
    return list(allowed) if allowed else list(suite.TASKS)


def _level_value(task, text: str):
    """``text`` as one of ``task.levels`` (levels are ints or strings), or None."""
    for lv in task.levels:
        if str(lv) == text.strip():
            return lv
    return None


def parse_selection(task: str | None, level: str | None, allowed: list[str] | None = None) -> dict[str, list]:
    """``--task`` / ``--level`` -> {task: [levels]}, checked before anything runs.

    ``task``: a name, a comma list, or ``all`` (None: all) -- of the model's tasks when ``allowed`` is given.
    ``level``: a comma list or ``all`` (None: all). With one task every level must be one of its levels; with
    several, each task gets the given levels it has, and a level that no selected task has is an error.
    """
    names = task_names(allowed)
    suite._load_all()
    if task is None or task.strip().lower() == "all":
        chosen = names
    else:
        chosen = [t.strip() for t in task.split(",") if t.strip()]
        bad = [t for t in chosen if t not in names]
        if bad or not chosen:
            raise SelectionError(f"unknown task {', '.join(map(repr, bad)) or repr(task)}; valid tasks: "
                                 f"{', '.join(names)} (or 'all')")  # fmt: skip
    tasks = {t: suite.get_task(t) for t in dict.fromkeys(chosen)}
    if level is None or level.strip().lower() == "all":
        return {t: list(task_.levels) for t, task_ in tasks.items()}
    wanted = [v.strip() for v in level.split(",") if v.strip()]
    valid = "; ".join(f"{t}: {', '.join(map(str, tk.levels))}" for t, tk in tasks.items())
    if not wanted:
        raise SelectionError(f"no level in {level!r}; levels: {valid} (or 'all')")
    out: dict[str, list] = {}
    for t, tk in tasks.items():
        got = [_level_value(tk, w) for w in wanted]
        if len(tasks) == 1 and None in got:
            bad = [w for w, g in zip(wanted, got) if g is None]
            raise SelectionError(f"task {t!r} has no level {', '.join(bad)}; "
                                 f"its levels: {', '.join(map(str, tk.levels))} (or 'all')")  # fmt: skip
        got = list(dict.fromkeys(g for g in got if g is not None))
        if got:
            out[t] = got
    missing = [w for w in wanted if not any(_level_value(tk, w) is not None for tk in tasks.values())]
    if missing:
        raise SelectionError(f"no selected task has level {', '.join(missing)}; levels: {valid} (or 'all')")
    return out


def describe(task) -> str:
    """The first sentence of the task module's docstring."""
    doc = (sys.modules[type(task).__module__].__doc__ or "").strip()
    return doc.split("\n\n")[0].replace("\n", " ")


def task_rows() -> list[dict]:
    suite._load_all()
    return [{"task": name, "levels": list(t.levels), "prompts": list(t.prompts), "description": describe(t)}
            for name, t in suite.TASKS.items()]  # fmt: skip


def print_tasks() -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("task", "levels", "prompts", "what it asks", title="task suite (the organism's tasks)",
                  show_lines=True)  # fmt: skip
    for r in task_rows():
        table.add_row(r["task"], ", ".join(map(str, r["levels"])), "\n".join(r["prompts"]), r["description"])
    Console(width=160).print(table)
    print(f"every task draws {suite.FRAMES} frames of {suite.SIZE}x{suite.SIZE} pixels, a {suite.GRID}x{suite.GRID} "
          f"grid of {suite.BLOCK}-pixel blocks; held-out instances: "
          "interp tasks export DIR --task T --level L --n N")  # fmt: skip


SAMPLE_BYTES = 2 * suite.SIZE * suite.SIZE * 3 + suite.FRAMES * suite.SIZE * suite.SIZE * 3  # PNGs + video, raw


def export(out: str | Path, task: str | None, level: str | None, n: int, seed: int = 0,
           force: bool = False) -> list[Path]:  # fmt: skip
    """Held-out samples of the selection in the VBVR-Bench layout, ``<out>/<task>_<level>_<i>/``. The bytes to
    write (at most :data:`SAMPLE_BYTES` a sample, uncompressed) are checked against the free disk first."""
    if n < 1:
        raise SelectionError(f"--n must be at least 1, got {n}")
    selection = parse_selection(task, level)
    total = n * sum(len(levels) for levels in selection.values())
    Estimate("tasks export", disk=total * SAMPLE_BYTES, out=Path(out),
             detail=f"{total} samples").check(force)  # fmt: skip
    written = []
    for name, levels in selection.items():
        for lv in levels:
            written += suite.write_vbvr(Path(out), suite.get_task(name), lv, n, seed)
    return written

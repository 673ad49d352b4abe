"""What a run or a capture will cost, known before it starts: rows, forwards, bytes to be written, estimated time.

One owner for the estimate. :func:`interp.experiments.runner.planned_forwards` counts from the engine's batch plan
alone (no forward); :func:`time_first_steps` runs the first two denoising steps of one real batch (nothing written) and
:func:`estimate_seconds` turns them into the time of the whole job: the first step (with its warm-up) once, then
the warm second step's time per row-step for every remaining row-step. ``interp run --plan`` and ``interp capture
--plan`` print a :class:`Cost`; ``interp reproduce`` prints the planned forwards of each analysis.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Cost:
    rows: int  # trajectory rows (batch rows summed over batches; a capture: its samples)
    steps: int  # denoising steps of each row
    forwards: int  # row-forwards: rows x steps x forwards per step (2 with classifier-free guidance)
    bytes: int  # bytes the job writes (arrays only; attributes and HDF5 overhead left out)
    seconds: float | None  # estimated wall time of the forwards (None: not timed)
    timed: str = ""  # what was timed, e.g. "first step 1.2 s, then 0.3 s per step of 4 rows"

    def lines(self) -> list[str]:
        est = "not timed" if self.seconds is None else f"{_duration(self.seconds)} ({self.timed})"
        return [f"rows       {self.rows:,}", f"steps      {self.steps:,} per row",
                f"forwards   {self.forwards:,} (row-forwards)", f"writes     {human_bytes(self.bytes)}",
                f"estimate   {est}"]  # fmt: skip


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def estimate_seconds(first_step_s: float, warm_step_s: float, timed_rows: int, row_steps: int) -> float:
    """Wall time of ``row_steps`` row-steps (rows x steps) from a timed run of ``timed_rows`` rows: its first step
    (``first_step_s``, warm-up included) is paid once, every other row-step costs ``warm_step_s / timed_rows``."""
    per_row_step = warm_step_s / max(timed_rows, 1)
    return first_step_s + max(row_steps - timed_rows, 0) * per_row_step


class _Stop(Exception):
    """Raised from ``on_step`` to end a timing run after its second step."""


def time_first_steps(run: Callable[[Callable], object], steps: int) -> tuple[float, float, object]:
    """(first step's seconds, second step's seconds, first step's record) of ``run(on_step)``, a trajectory that
    calls ``on_step(record)`` after each step; it is stopped after the second (a 1-step run: both are the first)."""
    marks: list[float] = []
    first: list = []

    def on_step(rec) -> None:
        marks.append(time.perf_counter())
        if not first:
            first.append(rec)
        if len(marks) == min(2, steps):
            raise _Stop

    t0 = time.perf_counter()
    try:
        run(on_step)
    except _Stop:
        pass
    if not marks:
        raise RuntimeError("the timing run ended before its first step")
    one = marks[0] - t0
    return one, (marks[1] - marks[0]) if len(marks) > 1 else one, first[0]

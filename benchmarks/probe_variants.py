"""Benchmark: the logistic solver's speed knobs on a real maze-wan capture, one fit per setting, side by side.

For each label, ``probes.run.probe_chunk`` over every site (timed by ``benchmarks.probe_parity.ours``: the copy from
pinned memory and the whole fit, median of ``--repeats``) at each CG tolerance of ``--tols``; then one more fit with
every phase timed between synchronizations (``probe_parity.print_phases``) and each Newton batch (sites x the
problems it carries) with its time; and the accuracies and strengths against the first setting's. ``--profile N``:
the N kernels of most device time in one more fit per label.

    python -m benchmarks.probe_variants --device cuda        # one GPU; ~1 min with the capture
"""

from __future__ import annotations

import functools
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import typer

from benchmarks.probe_parity import (
    capture_maze_wan,
    device_sync,
    label_data,
    ours,
    print_phases,
    print_profile,
)
from probes import linear
from probes import run as run_mod
from probes.run import ProbeConfig


def main(
    device: str = typer.Option("cuda", help="where the fits run (cpu | cuda); the capture is made there too"),
    mazes: int = typer.Option(64, help="mazes of the capture made"),
    labels: str = typer.Option("wall,path", help="comma-separated maze labels"),
    tols: str = typer.Option("2e-2,5e-3,1e-3", help="comma-separated CG tolerances (the first is the default's)"),
    repeats: int = typer.Option(3, help="timing rounds per setting (median)"),
    profile: int = typer.Option(0, help="print the N kernels of most device time in one more fit per label"),
) -> None:
    """Print per label and setting: the fit's time, CG and Newton phases, and the agreement with the first."""
    with tempfile.TemporaryDirectory() as tmp:
        path = capture_maze_wan(Path(tmp) / "maze-wan.h5", mazes, 10, 0, device)
        cfg = ProbeConfig(labels=labels.split(","), control="none", device=device)
        data = label_data(path, cfg.labels, cfg)
    fit0 = run_mod.fit_logistic
    sync = device_sync(device)
    step0 = linear._newton_step
    batches: list[str] = []

    def timed_step(*args):  # one Newton batch, timed between synchronizations
        sync()
        t0 = time.perf_counter()
        step0(*args)
        sync()
        c, w, _ = args[2].shape
        batches.append(f"{c}x{w} {1e3 * (time.perf_counter() - t0):.1f}")

    for lab, ex, x in data:
        first = None
        for tol in (float(t) for t in tols.split(",")):
            with mock.patch.object(run_mod, "fit_logistic", functools.partial(fit0, tol=tol)):
                secs, pick, acc = ours(lab, ex, x, cfg, device, repeats)
                batches.clear()
                with mock.patch.object(linear, "_newton_step", timed_step):
                    spent = print_phases(lab, ex, x, cfg, device)
            first = first or (acc, pick)
            (cg_s, _, cg_it), (nt_s, _, nt_steps) = spent["CG"], spent["Newton finish"]  # summed over the solver groups
            print(f"{lab.name} tol {tol:g}: fit {1e3 * secs:.1f} ms; "
                  f"CG {1e3 * cg_s:.1f} ms ({max(cg_it)} it), Newton {1e3 * nt_s:.1f} ms "
                  f"({max(nt_steps)} steps); vs the first: max |d acc| {100 * np.abs(acc - first[0]).max():.2f} "
                  f"pts, same strength {np.mean(pick == first[1]):.3f}")  # fmt: skip
            print(f"  Newton batches (sites x problems, ms): {', '.join(batches)}")
        if profile:
            print_profile(lab, ex, x, cfg, device, profile)


if __name__ == "__main__":
    typer.run(main)

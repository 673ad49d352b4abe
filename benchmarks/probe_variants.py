"""Benchmark: the logistic solver's speed knobs on a real maze-wan capture, one fit per setting, side by side.

For each label, ``probes.run.probe_chunk`` over every site (timed by ``benchmarks.probe_parity.ours``: the copy from
pinned memory and the whole fit, median of ``--repeats``) at each CG tolerance of ``--tols``; then one more fit with
the CG and Newton phases timed between synchronizations; and the accuracies and strengths against the first
setting's.

    python -m benchmarks.probe_variants --device cuda        # one GPU; ~1 min with the capture
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import typer

from benchmarks.probe_parity import PHASES, capture_maze_wan, host_features, label_data, ours, timed_phases
from probes import run as run_mod
from probes.run import LOGISTIC_LAMBDAS, ProbeConfig, probe_chunk

SOLVER_PHASES = tuple(ph for ph in PHASES if ph[2] in ("CG", "Newton finish"))


def main(
    device: str = typer.Option("cuda", help="where the fits run (cpu | cuda); the capture is made there too"),
    mazes: int = typer.Option(64, help="mazes of the capture made"),
    labels: str = typer.Option("wall,path", help="comma-separated maze labels"),
    tols: str = typer.Option("2e-2,5e-3,1e-3", help="comma-separated CG tolerances (the first is the default's)"),
    repeats: int = typer.Option(3, help="timing rounds per setting (median)"),
) -> None:
    """Print per label and setting: the fit's time, CG and Newton phases, and the agreement with the first."""
    with tempfile.TemporaryDirectory() as tmp:
        path = capture_maze_wan(Path(tmp) / "maze-wan.h5", mazes, 10, 0, device)
        cfg = ProbeConfig(labels=labels.split(","), control="none", device=device)
        data = label_data(path, cfg.labels, cfg)
    fit0 = run_mod.fit_logistic
    for lab, ex, x in data:
        w_one = torch.ones(1, len(ex.index("test")))
        xt = host_features(x, device)
        first = None
        for tol in (float(t) for t in tols.split(",")):
            with mock.patch.object(run_mod, "fit_logistic", functools.partial(fit0, tol=tol)):
                secs, pick, acc = ours(lab, ex, x, cfg, device, repeats)
                with timed_phases(SOLVER_PHASES, device) as spent:
                    probe_chunk(xt.to(device), ex, lab, LOGISTIC_LAMBDAS, cfg, w_one, False)
            first = first or (acc, pick)
            (cg_s, _, cg_it), (nt_s, _, nt_steps) = spent["CG"], spent["Newton finish"]  # summed over the solver groups
            print(f"{lab.name} tol {tol:g}: fit {1e3 * secs:.1f} ms; "
                  f"CG {1e3 * cg_s:.1f} ms ({max(cg_it)} it), Newton {1e3 * nt_s:.1f} ms "
                  f"({max(nt_steps)} steps); vs the first: max |d acc| {100 * np.abs(acc - first[0]).max():.2f} "
                  f"pts, same strength {np.mean(pick == first[1]):.3f}")  # fmt: skip


if __name__ == "__main__":
    typer.run(main)

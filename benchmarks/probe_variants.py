"""Benchmark: the logistic solver's speed knobs on a real maze-wan capture, one fit per setting, side by side.

For each label, ``probes.run.probe_chunk`` over every site (as ``benchmarks.probe_parity`` times it: the copy from
pinned memory and the whole fit, median of ``--repeats``) at each CG tolerance of ``--tols``; then one more fit with
the CG and Newton phases timed between synchronizations; and the accuracies and strengths against the first
setting's.

    python -m benchmarks.probe_variants --device cuda        # one GPU; ~1 min with the capture
"""

from __future__ import annotations

import contextlib
import functools
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import typer

from benchmarks.probe_parity import capture_maze_wan, device_sync, host_features, label_data
from probes import linear
from probes import run as run_mod
from probes.run import LOGISTIC_LAMBDAS, ProbeConfig, probe_chunk


def main(
    device: str = typer.Option("cuda", help="where the fits run (cpu | cuda); the capture is made there too"),
    mazes: int = typer.Option(64, help="mazes of the capture made"),
    labels: str = typer.Option("wall,path", help="comma-separated maze labels"),
    tols: str = typer.Option("2e-2,5e-3,1e-3", help="comma-separated CG tolerances (the first is the default's)"),
    repeats: int = typer.Option(3, help="timing rounds per setting (median)"),
) -> None:
    """Print per label and setting: the fit's time, CG and Newton phases, and the agreement with the first."""
    sync = device_sync(device)
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
            spent: dict[str, tuple[float, int]] = {}

            def timed(fn, key, spent=spent):
                def wrapper(*a, **k):
                    sync()
                    t0 = time.perf_counter()
                    out = fn(*a, **k)
                    sync()
                    ms, most = spent.get(key, (0.0, 0))  # summed over the calls (solver groups), the most returned
                    spent[key] = (ms + 1e3 * (time.perf_counter() - t0), max(most, out))
                    return out

                return wrapper

            with contextlib.ExitStack() as stack:
                stack.enter_context(mock.patch.object(run_mod, "fit_logistic", functools.partial(fit0, tol=tol)))
                times = []
                for _ in range(repeats):
                    sync()
                    t0 = time.perf_counter()
                    mets, _, lam = probe_chunk(xt.to(device, non_blocking=True), ex, lab, LOGISTIC_LAMBDAS, cfg,
                                               w_one, False)  # fmt: skip
                    sync()
                    times.append(time.perf_counter() - t0)
                stack.enter_context(mock.patch.object(linear, "_newton_group", timed(linear._newton_group, "N")))
                stack.enter_context(mock.patch.object(linear, "_fit_logistic_group",
                                                      timed(linear._fit_logistic_group, "CG")))  # fmt: skip
                probe_chunk(xt.to(device), ex, lab, LOGISTIC_LAMBDAS, cfg, w_one, False)
            acc, lamv = mets["accuracy"][:, 0].numpy(), lam.numpy()
            first = first or (acc, lamv)
            print(f"{lab.name} tol {tol:g}: fit {1e3 * np.median(times):.1f} ms; "
                  f"CG {spent['CG'][0]:.1f} ms ({spent['CG'][1]} it), Newton {spent['N'][0]:.1f} ms "
                  f"({spent['N'][1]} steps); vs the first: max |d acc| {100 * np.abs(acc - first[0]).max():.2f} "
                  f"pts, same strength {np.mean(lamv == first[1]):.3f}")  # fmt: skip


if __name__ == "__main__":
    typer.run(main)

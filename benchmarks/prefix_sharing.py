"""Benchmark: prefix sharing (edited rows join their batch at their first edited step) against every row run from
step 0, on one analysis of ``interp reproduce``, in one process.

Both runs are the same ``run_experiment`` call; the second has :func:`interp.experiments.runner.shares_prefix`
off. Prints each run's row-forwards, wall time and rate, the ratio, and how far their results are apart (final
latents' largest difference, metrics equal or not).

    python -m benchmarks.prefix_sharing --analysis noise_step_vs_frame --count 12 --device cuda
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
import torch
import typer

from benchmarks.reproduce_profile import paper_analysis
from interp.experiments import run_experiment
from interp.experiments import runner as R
from interp.models import PAPER_DIR, load_model

app = typer.Typer(add_completion=False)


@app.command()
def main(
    analysis: str = typer.Option("noise_step_vs_frame", help="one paper analysis (interp/data/paper/NAME.yaml)"),
    model: str = typer.Option(None, help="run it on this model instead of the file's"),
    count: int = typer.Option(12, help="mazes (the file's count is replaced)"),
    device: str = typer.Option("cpu"),
    set_: list[str] = typer.Option([], "--set", help="more overrides: dotted.key=value"),
) -> None:
    name, exp, warm = paper_analysis(analysis, model, count, device, set_)
    loaded = load_model(exp.model, device)
    cuda = device.startswith("cuda")

    def run(e, out: Path) -> float:
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        run_experiment(e, out, loaded=loaded, wandb="disabled", progress=False, base_dir=Path(PAPER_DIR))
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run(warm, tmp / "warm")
        shared_n = R.planned_forwards(exp, loaded)["row_forwards"]
        shared = run(exp, tmp / "shared")
        with mock.patch.object(R, "shares_prefix", lambda *a, **k: False):
            full_n = R.planned_forwards(exp, loaded)["row_forwards"]
            full = run(exp, tmp / "full")
        with h5py.File(tmp / "shared" / "results.h5") as a, h5py.File(tmp / "full" / "results.h5") as b:
            finals = [k for k in a if k.startswith("group_")]
            diff = max(float(np.abs(a[f"{g}/final"][:] - b[f"{g}/final"][:]).max()) for g in finals)
            metrics = sorted(a["metrics"])
            same = [m for m in metrics if np.array_equal(a[f"metrics/{m}"][:], b[f"metrics/{m}"][:], equal_nan=True)]
    print(f"{name}: {count} mazes, precision {exp.sampler.precision}, device {device}")
    print(f"{'':<16}{'row-forwards':>14}{'wall s':>10}{'per second':>12}")
    print(f"{'every row':<16}{full_n:>14,}{full:>10.2f}{full_n / full:>12,.0f}")
    print(f"{'rows join':<16}{shared_n:>14,}{shared:>10.2f}{shared_n / shared:>12,.0f}")
    print(f"speed-up {full / shared:.2f}x (row-forwards {full_n / shared_n:.2f}x fewer)")
    print(f"final latents: largest difference {diff:.3g}; metrics equal: {', '.join(same) or 'none'}"
          f"{'; differ: ' + ', '.join(sorted(set(metrics) - set(same))) if set(metrics) - set(same) else ''}")


if __name__ == "__main__":
    app()

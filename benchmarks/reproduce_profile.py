"""Profile: where an analysis of ``interp reproduce`` spends its time (one analysis, a few batches).

Runs one paper analysis through the experiment engine (the same ``run_experiment`` call as ``interp reproduce``)
on fewer mazes, under cProfile, and prints the row-forwards per second and the functions of most cumulative and
most own time (CUDA runs asynchronously: GPU time lands in the frame that waits for it). ``--kernels``: a second
run under torch.profiler prints the GPU's busy time beside the wall time (how far the run is from GPU-bound) and
the kernels of most GPU time.

    python -m benchmarks.reproduce_profile --analysis layer_skip --count 12 --device cuda
    python -m benchmarks.reproduce_profile --analysis noise_step_vs_frame --count 8 --set sampler.precision=bfloat16
"""

from __future__ import annotations

import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path

import torch
import typer
from torch.autograd import DeviceType

from interp.apps.reproduce import experiments
from interp.experiments import run_experiment
from interp.experiments.runner import planned_forwards
from interp.models import PAPER_DIR, load_model

app = typer.Typer(add_completion=False)


@app.command()
def main(
    analysis: str = typer.Option("layer_skip", help="one paper analysis (interp/data/paper/NAME.yaml)"),
    model: str = typer.Option(None, help="run it on this model instead of the file's"),
    count: int = typer.Option(12, help="mazes / inputs (the file's count is replaced)"),
    device: str = typer.Option("cpu"),
    set_: list[str] = typer.Option([], "--set", help="more overrides: dotted.key=value"),
    top: int = typer.Option(30, help="functions printed per table"),
    kernels: bool = typer.Option(False, help="also a torch.profiler run: GPU busy time and the top kernels"),
) -> None:
    name, exp, warm = paper_analysis(analysis, model, count, device, set_)
    loaded = load_model(exp.model, device)
    size = planned_forwards(exp, loaded)
    print(f"{name}: {size['rows']:,} rows x {size['steps']} steps = {size['row_forwards']:,} row-forwards, "
          f"max_batch {exp.max_batch}, precision {exp.sampler.precision}, device {device}")  # fmt: skip
    cuda = device.startswith("cuda")

    def run(e, out: Path) -> None:
        run_experiment(e, out, loaded=loaded, wandb="disabled", progress=False, base_dir=Path(PAPER_DIR))

    with tempfile.TemporaryDirectory() as tmp:
        run(warm, Path(tmp) / "warm")
        prof = cProfile.Profile()
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        prof.enable()
        run(exp, Path(tmp) / "run")
        prof.disable()
        wall = time.perf_counter() - t
    print(f"wall {wall:.2f} s: {size['row_forwards'] / wall:,.0f} row-forwards/s")
    for key in ("cumulative", "tottime"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(top)
        print(f"--- by {key}\n" + "\n".join(buf.getvalue().splitlines()[6:]), flush=True)
    if kernels:
        with tempfile.TemporaryDirectory() as tmp:
            acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
            with torch.profiler.profile(activities=acts) as kp:
                t = time.perf_counter()
                run(exp, Path(tmp) / "kern")
                kwall = time.perf_counter() - t
            ev = kp.key_averages()
            busy = device_busy(kp.events()) if cuda else 0.0
            print(f"torch.profiler run: wall {kwall:.2f} s, GPU busy {busy:.2f} s ({busy / kwall:.0%}: the union of "
                  "the kernels' and copies' intervals)")  # fmt: skip
            print(ev.table(sort_by="self_device_time_total" if cuda else "self_cpu_time_total", row_limit=top))


def paper_analysis(analysis: str, model: str | None, count: int, device: str, overrides: list[str]):
    """(name, experiment, warm-up experiment) of one ``interp reproduce`` analysis on ``count`` inputs (the warm-up:
    2), with ``overrides`` after the count."""
    ((name, exp),) = experiments(device=device, model=model, only=[analysis],
                                 overrides=[f"inputs.count={count}", *overrides]).items()  # fmt: skip
    warm = experiments(device=device, model=model, only=[analysis], overrides=["inputs.count=2", *overrides])[name]
    return name, exp, warm


def device_busy(events) -> float:
    """Seconds the device ran anything: the union of the device events' intervals (each kernel and copy once)."""
    spans = sorted((e.time_range.start, e.time_range.end) for e in events if e.device_type == DeviceType.CUDA)
    total, end = 0.0, float("-inf")
    for a, b in spans:
        if b > end:
            total += b - max(a, end)
            end = b
    return total / 1e6


if __name__ == "__main__":
    app()

"""Profile: where a real capture's time goes, thread by thread (issue 24's "capture at its floor").

Runs ``interp.apps.capture.capture`` on a random-weight config of ``interp bench`` (the same capture as its sampling
measurement) with the store's writer timed from inside (:func:`benchmarks.store_profile.profiled_store`) and the main
thread's store calls timed too, beside the bare sampling, and prints:

* the writer thread: waiting for work, waiting for a step's device-to-host copies, writing chunks, flushing marks;
* the writeback thread: its ``posix_fadvise`` calls;
* the main thread: issuing the copies (pinned host buffers, conversions), waiting on the pending-bytes budget,
  everything else (the traced forwards);
* the wall time against the bare sampling and the writer's own write rate.

    python -m benchmarks.capture_profile --config wan1.3b --device cuda --steps 10 --scratch /tmp
    python -m benchmarks.capture_profile --config wan1.3b --device cuda --repeats 3 --between bare,trajectory,read
    python -m benchmarks.capture_profile --config micro --steps 2          # CPU smoke run
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
import typer

from benchmarks.capture import CONFIGS, BenchOptions, build_model, capture_config, filesystem, plain_sampling
from benchmarks.store_profile import profiled_store, summary
from interp.apps import capture as app_capture
from interp.trajectory import run_trajectory, traced_experts

app = typer.Typer(add_completion=False)


def profiled_capture(cfg, out: Path, loaded) -> tuple[float, dict[str, float]]:
    """Wall seconds of one capture, and its :data:`~benchmarks.store_profile.PROFILE` (every store call timed)."""
    with profiled_store() as prof:
        t0 = time.perf_counter()
        app_capture.capture(cfg, out, loaded=loaded, overwrite=True)
        wall = time.perf_counter() - t0
        return wall, dict(prof)


def between_runs(spec: str, loaded, inputs, sampler, sites, sync) -> dict[str, Callable[[], object]]:
    """What ``--between`` runs after each capture, by name: ``bare`` (the bare sampling), ``trajectory``
    (``run_trajectory``), ``read`` (it, reading the captured sites, kept nowhere), ``sync`` (``os.sync``),
    ``sleep:S`` (S seconds idle): ``interp bench`` runs the first three between its captures."""
    known = {
        "bare": lambda: plain_sampling(loaded, inputs, sampler),
        "trajectory": lambda: run_trajectory(loaded, inputs, sampler, keep=False),
        "read": lambda: run_trajectory(loaded, inputs, sampler, read=sites, keep=False),
        "sync": os.sync,
    }
    runs = {}
    for name in filter(None, (n.strip() for n in spec.split(","))):
        kind, _, arg = name.partition(":")
        if kind == "sleep" and arg.replace(".", "", 1).isdigit():
            runs[name] = lambda s=float(arg): time.sleep(s)
        elif name in known:
            runs[name] = known[name]
        else:
            raise typer.BadParameter(f"--between {name!r}: valid are {', '.join(known)} and sleep:SECONDS")
    return {k: (lambda fn=fn: (fn(), sync())) for k, fn in runs.items()}


@app.command()
def main(
    config: str = typer.Option("wan1.3b", help="an interp bench config"),
    device: str = typer.Option("cpu"),
    steps: int = typer.Option(10),
    dtype: str = typer.Option("float16", help="storage dtypes of the captures, comma-separated (run alternately)"),
    sites: str = typer.Option("blocks.*.hook_resid_post", help="sites captured"),
    scratch: Path = typer.Option(Path("/tmp"), help="where the capture file goes"),
    repeats: int = typer.Option(1, help="profiled captures (each printed)"),
    between: str = typer.Option(
        "",
        help="run after each capture, comma-separated: bare, trajectory, read, sync, "
        "sleep:S (interp bench runs bare,trajectory,read between its captures)",
    ),
) -> None:
    opts = BenchOptions(config=config, device=device, steps=steps, sites=sites)
    loaded = build_model(config, device)
    latent = CONFIGS[config]["latent"]
    cfgs = {dt: capture_config(loaded, opts, latent, dtype=dt).resolved(loaded) for dt in dtype.split(",")}
    cfg = next(iter(cfgs.values()))
    inputs, sampler = app_capture.build_inputs(loaded, cfg), cfg.sampler()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    scratch.mkdir(parents=True, exist_ok=True)
    out = scratch / "capture-profile.h5"
    plain_sampling(loaded, inputs, sampler)  # warm-up
    sync()
    t0 = time.perf_counter()
    plain_sampling(loaded, inputs, sampler)
    sync()
    bare = time.perf_counter() - t0
    print(f"python -m benchmarks.capture_profile --config {config} --device {device} --steps {steps} --dtype {dtype}"
          f"   (scratch {filesystem(scratch)}; {os.cpu_count()} cores)")  # fmt: skip
    print(f"bare sampling: {bare:.2f} s ({1e3 * bare / steps:.0f} ms a step)")
    others = between_runs(between, loaded, inputs, sampler, traced_experts(loaded)["transformer"].resolve(sites), sync)
    for r, (dt, cfg) in enumerate((dt, c) for _ in range(repeats) for dt, c in cfgs.items()):
        wall, p = profiled_capture(cfg, out, loaded)
        size = out.stat().st_size
        t = time.perf_counter()
        out.unlink()
        unlink = time.perf_counter() - t
        print(f"capture {r + 1} ({dt}): {wall:.2f} s = {wall / bare:.2f}x bare; {size / 1e9:.2f} GB at "
              f"{size / wall / 1e9:.2f} GB/s; then its unlink {unlink:.2f} s")  # fmt: skip
        print("\n".join(summary(p, wall, size)))
        for name, fn in others.items():
            t = time.perf_counter()
            fn()
            print(f"  then {name}: {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    app()

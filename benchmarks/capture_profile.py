"""Profile: where a real capture's time goes, thread by thread (issue 24's "capture at its floor").

Runs ``interp.apps.capture.capture`` on a random-weight config of ``interp bench`` (the same capture as its sampling
measurement) with the store's writer timed from inside (:class:`benchmarks.writer.ProfiledWriter`) and the main
thread's store calls timed too, beside the bare sampling, and prints:

* the writer thread: waiting for work, waiting for a step's device-to-host copies, writing chunks, flushing marks;
* the writeback thread: its ``posix_fadvise`` calls;
* the main thread: issuing the copies (pinned host buffers, conversions), waiting on the pending-bytes budget,
  everything else (the traced forwards);
* the wall time against the bare sampling and the writer's own write rate.

    python -m benchmarks.capture_profile --config wan1.3b --device cuda --steps 10 --scratch /tmp
    python -m benchmarks.capture_profile --config micro --steps 2          # CPU smoke run
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import torch
import typer

from benchmarks.capture import CONFIGS, BenchOptions, build_model, capture_config, filesystem, plain_sampling
from benchmarks.writer import PROFILE, ProfiledWriter, timed_fadvise
from interp.store import capture as store_capture

app = typer.Typer(add_completion=False)


def timed(key: str, fn):
    """``fn`` with its wall time added to ``PROFILE[key]``."""

    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            PROFILE[key] += time.perf_counter() - t

    return wrapper


def profiled_capture(cfg, out: Path, loaded) -> float:
    """Wall seconds of one capture with every store call timed into :data:`PROFILE` (cleared first)."""
    from interp.apps import capture as app_capture

    PROFILE.clear()
    host_init, host_numpy = store_capture._HostCopy.__init__, store_capture._HostCopy.numpy
    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(app_capture, "RunWriter", ProfiledWriter))
        stack.enter_context(mock.patch.object(os, "posix_fadvise", timed_fadvise(os.posix_fadvise)))
        stack.enter_context(
            mock.patch.object(ProfiledWriter, "_reserve", timed("main: budget wait", store_capture.RunWriter._reserve))
        )
        stack.enter_context(
            mock.patch.object(ProfiledWriter, "on_step", timed("main: on_step", store_capture.RunWriter.on_step))
        )
        stack.enter_context(
            mock.patch.object(ProfiledWriter, "finish", timed("main: finish", store_capture.RunWriter.finish))
        )
        stack.enter_context(
            mock.patch.object(store_capture._HostCopy, "__init__", timed("main: copies issued", host_init))
        )
        stack.enter_context(mock.patch.object(store_capture._HostCopy, "numpy",
                                              timed("writer: copy wait", host_numpy)))  # fmt: skip
        t0 = time.perf_counter()
        app_capture.capture(cfg, out, loaded=loaded, overwrite=True)
        wall = time.perf_counter() - t0
    return wall


@app.command()
def main(
    config: str = typer.Option("wan1.3b", help="an interp bench config"),
    device: str = typer.Option("cpu"),
    steps: int = typer.Option(10),
    dtype: str = typer.Option("float16", help="storage dtypes of the captures, comma-separated (run alternately)"),
    sites: str = typer.Option("blocks.*.hook_resid_post", help="sites captured"),
    scratch: Path = typer.Option(Path("/tmp"), help="where the capture file goes"),
    repeats: int = typer.Option(1, help="profiled captures (each printed)"),
) -> None:
    from interp.apps.capture import build_inputs

    opts = BenchOptions(config=config, device=device, steps=steps, sites=sites)
    loaded = build_model(config, device)
    latent = CONFIGS[config]["latent"]
    cfgs = {dt: capture_config(loaded, opts, latent, dtype=dt).resolved(loaded) for dt in dtype.split(",")}
    cfg = next(iter(cfgs.values()))
    inputs, sampler = build_inputs(loaded, cfg), cfg.sampler()
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
    for r, (dt, cfg) in enumerate((dt, c) for _ in range(repeats) for dt, c in cfgs.items()):
        wall = profiled_capture(cfg, out, loaded)
        size = out.stat().st_size
        out.unlink()
        p = dict(PROFILE)
        writing = p.get("writer: write_direct_chunk", 0.0) - p.get("writer: copy wait", 0.0)
        main_store, finish = p.get("main: on_step", 0.0), p.get("main: finish", 0.0)
        print(f"capture {r + 1} ({dt}): {wall:.2f} s = {wall / bare:.2f}x bare; {size / 1e9:.2f} GB at "
              f"{size / wall / 1e9:.2f} GB/s")  # fmt: skip
        print(f"  writer thread {p.get('writer: wall', 0.0):.2f} s: queue wait {p.get('writer: queue wait', 0.0):.2f},"
              f" copy wait {p.get('writer: copy wait', 0.0):.2f}, chunk writes {writing:.2f} s "
              f"({size / max(writing, 1e-9) / 1e9:.2f} GB/s while writing), flush marks "
              f"{p.get('writer: flush marks', 0.0):.2f}; its cpu {p.get('writer: cpu', 0.0):.2f} s")  # fmt: skip
        fad = {k: v for k, v in p.items() if k.endswith("fadvise")}
        print("  fadvise: " + (", ".join(f"{k.removesuffix(': fadvise')} {v:.2f} s" for k, v in fad.items()) or "none"))
        print(f"  main thread: on_step {main_store:.2f} s (copies issued {p.get('main: copies issued', 0.0):.2f}, "
              f"budget wait {p.get('main: budget wait', 0.0):.2f}); finish (fsync, rename) "
              f"{finish:.2f} s; the rest (forwards) {wall - main_store - finish:.2f} s")  # fmt: skip


if __name__ == "__main__":
    app()

"""The capture writer against its disk floor, without a model: synthetic step records fed to the real
:class:`~interp.store.RunWriter` at full speed, beside a plain thread writing the same bytes.

Each step holds ``--sites`` float16 sites (1, tokens, 1536) (wan1.3b's ``hook_resid_post``: 96 MiB at 32760 tokens;
here sized so that ``--gb`` is written in ``--steps`` steps) and wan-shaped float32 latents (x, v, x0: about 9% of a
site). Printed side by side, interleaved round by round, medians of ``--repeats`` rounds:

* ``floor``: one plain thread ``os.pwrite`` s the same bytes in chunks of one site, starts the writeback after each
  chunk (``posix_fadvise`` DONTNEED) and fsyncs at the end: ``interp bench``'s ``disk_streamed``, the rate its
  ``pipeline_floor`` takes (also ``buffered``, into the page cache only, and ``fsync``, one fsync at the end);
* ``writer:<mode>``: :class:`~interp.store.RunWriter` from its creation to :meth:`~interp.store.RunWriter.finish`
  (fsync and rename included), with each writeback mode (:class:`interp.store.capture.Writeback`): ``inline`` (the
  writer thread advises after each step), ``thread`` (a thread of its own advises every
  :data:`~interp.store.capture.ADVISE_BYTES` and after each step; ``thread@MB``: every MB MiB, ``thread@0`` after
  every chunk), ``off``.

and, per writer mode, where the writer thread's wall time went: waiting on its queue, in h5py's
``write_direct_chunk`` (the chunk's allocation and its pwrite), in ``posix_fadvise`` (by thread), in the marks'
flush, its CPU time (a write into the page cache is CPU time: the copy), and the writeback thread's time advising.

``--forward-ms``: the main thread spends that long per step in a Python loop holding the GIL (a forward's dispatch,
the pessimistic case) before it queues the step; the floor is then ``pipeline_floor`` of that sampling, and the
forward's slowdown beside the writer (GIL and CPU contention) is printed.

    python -m benchmarks.writer --gb 4 --scratch /tmp
    python -m benchmarks.writer --gb 29 --steps 10 --sites 30 --scratch /tmp --forward-ms 620   # wan1.3b on an H200
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from benchmarks.capture import filesystem, med, pipeline_floor, plain_write, spread
from benchmarks.store_profile import PROFILE, ProfiledWriter, timed_fadvise
from interp.store.capture import WritebackMode
from interp.trajectory import StepRecord

D_MODEL = 1536
LATENT_FRACTION = 8.4 / 96  # wan1.3b: an 8.4 MB float32 latent per 96 MiB site
MODES: tuple[WritebackMode, ...] = ("inline", "thread", "off")


class Forward:
    """A stand-in forward: a Python loop holding the GIL for about ``ms`` when alone (a fixed count of
    iterations, so that contention shows as a longer wall time)."""

    def __init__(self, ms: float):
        self.n = 0
        if ms > 0:
            t = time.perf_counter()
            self.run(1_000_000)
            self.n = int(ms / 1e3 / (time.perf_counter() - t) * 1_000_000)

    @staticmethod
    def run(n: int) -> None:
        x = 0
        for i in range(n):
            x += i

    def __call__(self) -> float:
        t = time.perf_counter()
        self.run(self.n)
        return time.perf_counter() - t


def records(steps: int, sites: int, site_bytes: int, seed: int = 0):
    """``steps`` step records of ``sites`` float16 sites (1, tokens, D_MODEL) each and wan-shaped float32 latents
    (the same arrays every step: the disk sees the same bytes either way)."""
    tokens = max(1, site_bytes // (2 * D_MODEL))
    g = torch.Generator().manual_seed(seed)
    acts = {f"blocks.{i}.hook_resid_post": torch.randn(1, tokens, D_MODEL, generator=g).half() for i in range(sites)}
    lat = torch.randn(1, 16, max(1, int(tokens * 2 * D_MODEL * LATENT_FRACTION / 4 / 16)), generator=g)
    return [StepRecord(s, 1000.0 - s, 1.0 - s / steps, "transformer", lat, lat, lat, lat, {"cond": acts})
            for s in range(steps)], tokens  # fmt: skip


def run_writer(path: Path, recs: list, tokens: int, mode: str, forward: Forward) -> tuple[float, int]:
    """One writer run; ``mode`` a writeback mode, or ``thread@MB`` (the thread advising every MB MiB)."""
    mode, _, mb = mode.partition("@")
    steps = len(recs)
    fwd = 0.0
    t0 = time.perf_counter()
    w = ProfiledWriter(path, config={"bench": "writer"}, model_hash="bench", family="wan",
                       timesteps=torch.linspace(1000, 0, steps), sigmas=torch.linspace(1, 0, steps),
                       branch_steps={"cond": list(range(steps))}, sites=list(recs[0].branches["cond"]),
                       grid=(1, 1, tokens), dtype="float16", overwrite=True, writeback=mode,
                       advise_bytes=int(float(mb) * (1 << 20)) if mb else None)  # fmt: skip
    try:
        for rec in recs:
            fwd += forward()
            w.on_step(rec)
        w.flush()
        t = time.perf_counter()
        w.finish()
        PROFILE["main: finish"] += time.perf_counter() - t
    finally:
        w.close()
    dt = time.perf_counter() - t0
    PROFILE["main: forward"] += fwd
    size = path.stat().st_size
    path.unlink()
    return dt, size


def _mib(s: str) -> bool:
    try:
        return not s or float(s) >= 0
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gb", type=float, default=4.0, help="bytes to write per run, in GB (1e9)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--sites", type=int, default=30, help="sites per step (one chunk each)")
    p.add_argument("--repeats", type=int, default=3, help="rounds (medians are printed)")
    p.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"writeback modes to run, of {', '.join(MODES)}, thread@MB (advising every MB MiB)",
    )
    p.add_argument("--forward-ms", type=float, default=0.0, help="a GIL-holding stand-in forward per step")
    p.add_argument("--scratch", type=Path, default=Path("/tmp"))
    a = p.parse_args(argv)
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    if bad := [m for m in modes if m.partition("@")[0] not in MODES or not _mib(m.partition("@")[2])]:
        p.error(f"unknown writeback mode {bad}; valid: {', '.join(MODES)}")
    torch.set_num_threads(1)
    site_bytes = int(a.gb * 1e9 / (a.steps * a.sites * (1 + 3 * LATENT_FRACTION / a.sites)))
    recs, tokens = records(a.steps, a.sites, site_bytes)
    forward = Forward(a.forward_ms)
    a.scratch.mkdir(parents=True, exist_ok=True)
    path = a.scratch / "bench-writer.h5"
    runs = {f"plain:{k}": k for k in ("buffered", "fsync", "streamed")} | {f"writer:{m}": m for m in modes}
    if forward.n:
        runs["forwards"] = "alone"  # the stand-in sampling without the writer, each round (the floor's bare time)
    times: dict[str, list[float]] = {k: [] for k in runs}
    profiles: dict[str, list[dict]] = {k: [] for k in runs}
    rec = recs[0]
    data_bytes = sum(v.numel() * v.element_size() for v in rec.branches["cond"].values()) * a.steps
    data_bytes += rec.x.numel() * rec.x.element_size() * (3 * a.steps + 1)  # latents (steps + 1), v, x0
    run_writer(path, recs[:1], tokens, "off", Forward(0))  # warm-up (imports, h5py)
    sizes: list[int] = []
    real = os.posix_fadvise if hasattr(os, "posix_fadvise") else None
    if real is not None:
        os.posix_fadvise = timed_fadvise(real)
    try:
        for r in range(a.repeats):
            names = list(runs)
            names = names[r % len(names) :] + names[: r % len(names)]
            for name in names:
                os.sync()  # the last run's writeback does not run into this one
                PROFILE.clear()
                if name.startswith("writer:"):
                    dt, size = run_writer(path, recs, tokens, runs[name], forward)
                    sizes.append(size)
                elif name == "forwards":
                    dt = sum(forward() for _ in range(a.steps))
                else:
                    dt = plain_write(path, data_bytes, site_bytes, runs[name])
                times[name].append(dt)
                profiles[name].append(dict(PROFILE))
    finally:
        if real is not None:
            os.posix_fadvise = real
    print(report(a, times, profiles, data_bytes, max(sizes, default=data_bytes), site_bytes, forward))


def report(a, times: dict, profiles: dict, data_bytes: int, nbytes: int, site_bytes: int, forward: Forward) -> str:
    """The plain thread's rates are of ``data_bytes`` (the records' bytes); the writers' of ``nbytes`` (their file,
    HDF5's metadata included); the floor is of the file's bytes at the plain thread's streamed rate."""
    steps = a.steps
    rate = {k.removeprefix("plain:"): data_bytes / med(v) for k, v in times.items() if k.startswith("plain:")}
    bare = med(times["forwards"]) if "forwards" in times else 0.0
    floor = pipeline_floor(bare, steps, nbytes, rate["streamed"])
    lines = [
        f"python -m benchmarks.writer --gb {a.gb:g} --steps {steps} --sites {a.sites} --repeats {a.repeats}"
        + (f" --forward-ms {a.forward_ms:g}" if a.forward_ms else "")
        + f" --scratch {a.scratch}",
        f"scratch {filesystem(a.scratch)}; {os.cpu_count()} cores; {nbytes / 1e9:.2f} GB per run: {steps} steps x "
        f"{a.sites} float16 sites of {site_bytes / 2**20:.1f} MiB + latents; {a.repeats} rounds, medians (spread)",
        "plain thread: "
        + ", ".join(f"{k} {v / 1e9:.3f} GB/s" for k, v in rate.items())
        + (f"; stand-in forward {bare / steps * 1e3:.0f} ms/step (GIL held), {bare:.2f} s" if bare else ""),
        f"floor (plain thread, streamed{', pipelined after the forwards' if bare else ''}): {floor:.2f} s",
    ]
    for name, ts in times.items():
        if not name.startswith("writer:"):
            continue
        m = med(ts)
        lines.append(f"{name:14s} {m:7.2f} s  {nbytes / m / 1e9:.3f} GB/s  {m / floor:.3f}x floor  "
                     f"(spread {spread(ts):.2f})")  # fmt: skip
        prof = {k: med([p.get(k, 0.0) for p in profiles[name]]) for k in sorted({k for p in profiles[name] for k in p})}
        wall = prof.get("writer: wall", 0.0) or 1.0
        parts = [f"{k.removeprefix('writer: ')} {v:.2f} s ({v / wall:.0%})" for k, v in prof.items()
                 if k.startswith("writer: ") and k not in ("writer: wall", "writer: cpu")]  # fmt: skip
        lines.append(f"    writer thread {wall:.2f} s: " + ", ".join(parts) + f"; its cpu {prof['writer: cpu']:.2f} s")
        lines.append(
            f"    main thread: finish() (the rest of the writeback, fsync, rename) {prof['main: finish']:.2f} s"
        )
        if "writeback: fadvise" in prof:
            lines.append(f"    writeback thread: fadvise {prof['writeback: fadvise']:.2f} s")
        if bare:
            fwd = prof["main: forward"]
            lines.append(f"    forwards {fwd:.2f} s beside the writer ({fwd / bare:.2f}x alone)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""``interp bench``: what capture, tracing and interventions cost beyond the bare forward, side by side in one run.

Five measurements, each against its baseline in the same process, interleaved round by round (the order rotates
every round) and repeated; figures are medians, ratios are medians of the per-round paired ratios:

1. ``sampling``: N denoising steps with every block's ``hook_resid_post`` captured at every step (float16, streamed
   to HDF5 by :class:`~interp.store.RunWriter`'s background writer, through :func:`interp.apps.capture.capture`) vs a
   plain diffusers Euler loop; also :func:`~interp.trajectory.run_trajectory` with no reads and with reads kept
   nowhere, to attribute the cost. Device-to-host copy and disk write bandwidth (from one thread, as the store's
   writer thread writes) are measured beside it, with the capture's bytes, so a capture bound by them shows the
   bound and which link sets it.
2. ``sweep``: single-layer skips over all layers, batched (``max_rows`` per forward: one clean row + skipped rows,
   through :func:`interp.interventions.bind.compile_batch`) vs the same batched forwards bare, and vs one forward
   per sweep point.
3. ``tracing``: one forward: bare vs nnsight with nothing (and vs plain PyTorch forward hooks for reading every
   ``hook_resid_post`` and for one edit); the toolkit's own cost (:meth:`~interp.trace.Traced.run`) on top of the
   raw nnsight trace is reported separately.
4. ``store``: :class:`~interp.store.RunWriter` write rate (its one writer thread) vs raw h5py on the same arrays
   (``ds[i] = a`` and ``write_direct_chunk``) and vs the page cache written from one thread; and the time to read one
   (step, layer) slice, from the page cache and from disk.
5. ``memory``: peak GPU memory (CPU: peak resident memory) of capture vs bare sampling, beside the size of the
   whole captured trajectory.

Configs are random-weight ``WanTransformer3DModel`` s built from their config (no download): ``micro`` (the tests'
3-block model), ``tiny`` (8 blocks, d_model 128; the 2-core CPU figure) and ``wan1.3b`` (Wan2.1-1.3B's shape: 30
blocks, d_model 1536, 12 heads, ffn 8960, text_dim 4096, latent 16 x 21 x 60 x 104, bf16).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import math
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interp.sites import ATTN_HOOKS, ATTN_MODULES, SUBLAYER_HOOKS
from interp.store.codec import check_dtype
from interp.store.dtypes import CODE_BYTES

CONFIGS: dict[str, dict[str, Any]] = {
    "micro": dict(
        model=dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
                   text_dim=16, freq_dim=16, ffn_dim=32, num_layers=3, cross_attn_norm=True, rope_max_seq_len=32),
        latent=(2, 8, 8), text_len=8, dtype="float32",
    ),
    "tiny": dict(
        model=dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=64, in_channels=16, out_channels=16,
                   text_dim=64, freq_dim=64, ffn_dim=512, num_layers=8, cross_attn_norm=True,
                   qk_norm="rms_norm_across_heads", rope_max_seq_len=1024),
        latent=(4, 16, 16), text_len=32, dtype="float32",
    ),
    "wan1.3b": dict(  # Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json, random weights
        model=dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                   out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                   qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024),
        latent=(21, 60, 104), text_len=512, dtype="bfloat16",
    ),
}  # fmt: skip
ITEMS = ("sampling", "sweep", "tracing", "store", "memory")
SITES = "blocks.*.hook_resid_post"


@dataclass
class BenchOptions:
    config: str = "tiny"
    device: str = "cpu"
    steps: int = 4
    latent: tuple[int, int, int] | None = None  # (frames, height, width) of the latent; None: the config's
    batch: int = 1
    sweep_latent: tuple[int, int, int] | None = None  # None: ``latent``
    sweep_rows: int | None = None  # rows per batched forward (1 clean + skips); None: all layers + 1
    repeats: int = 5
    warmup: int = 1
    threads: int | None = None  # CPU torch threads (None: leave torch's setting)
    scratch: str | None = None  # where capture files go (None: the system temp dir)
    store_mb: float = 64.0  # bytes written per run of the store measurement
    only: tuple[str, ...] = ITEMS
    sites: str = SITES  # the sampling measurement's captured sites (globs, comma-separated)
    capture_dtypes: tuple[str, ...] = ("float16",)  # one capture variant per storage dtype, side by side

    def __post_init__(self):
        if self.config not in CONFIGS:
            raise ValueError(f"unknown config {self.config!r}; known: {', '.join(CONFIGS)}")
        bad = [i for i in self.only if i not in ITEMS]
        if bad:
            raise ValueError(f"unknown measurement {bad}; known: {', '.join(ITEMS)}")
        for dt in self.capture_dtypes:
            check_dtype(dt, "--capture-dtype")


# ---- helpers ------------------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    fns: dict[str, Callable[[], Any]],
    repeats: int,
    warmup: int,
    device: torch.device,
    cpu: dict | None = None,
    after: dict[str, Callable[[], Any]] | None = None,
) -> dict[str, list[float]]:
    """Wall seconds of each function per round; each round runs every function once, in an order rotated per round.
    ``cpu``: filled with the process CPU seconds (all threads) of each call, the figure a busy machine disturbs least.
    ``after``: by name, what runs after that function untimed (a capture's file removed)."""
    after = after or {}
    for _ in range(warmup):
        for k, fn in fns.items():
            fn()
            sync(device)
            after.get(k, lambda: None)()
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    if cpu is not None:
        cpu.update({k: [] for k in names})
    for r in range(repeats):
        k0 = r % len(names)
        for k in names[k0:] + names[:k0]:
            sync(device)
            c0, t0 = time.process_time(), time.perf_counter()
            fns[k]()
            sync(device)
            times[k].append(time.perf_counter() - t0)
            if cpu is not None:
                cpu[k].append(time.process_time() - c0)
            after.get(k, lambda: None)()
    return times


def med(xs: list[float]) -> float:
    return float(statistics.median(xs))


def paired(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of time(a) / time(b)."""
    return med([x / y for x, y in zip(times[a], times[b])])


def spread(xs: list[float]) -> float:
    """(max - min) / median: how noisy a figure was."""
    return (max(xs) - min(xs)) / med(xs) if xs else float("nan")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _glibc_return_freed_memory() -> None:
    """Make glibc's malloc serve blocks >= 64 KiB with mmap (given back on free) and trim its heap now, so the
    resident set size follows the live tensors instead of the allocator's high-water mark."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD
        libc.malloc_trim(0)


class PeakMemory:
    """Peak memory above the level at entry: CUDA allocator peak on a GPU; on the CPU the resident set size,
    sampled every ``interval`` seconds (large blocks are mmapped, so it follows the live tensors)."""

    def __init__(self, device: torch.device, interval: float = 0.001):
        self.device, self.interval, self.peak = device, interval, 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            _glibc_return_freed_memory()
            self.base = _rss()
            self._top, self._stop = self.base, threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._top = max(self._top, _rss())
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            sync(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.base
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self._top, _rss()) - self.base


def filesystem(path: str | Path) -> str:
    """Type of the filesystem holding ``path`` (``/proc/mounts``; '?' elsewhere)."""
    path, best, kind = os.path.realpath(path), "", "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if (
                len(parts) > 2
                and (path == parts[1] or path.startswith(parts[1].rstrip("/") + "/"))
                and len(parts[1]) >= len(best)
            ):
                best, kind = parts[1], parts[2]
    return kind


def drop_from_page_cache(path: str | Path) -> None:
    """Write ``path`` back and ask the kernel to drop its pages, so the next read comes from the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# ---- model and inputs ---------------------------------------------------------------------------------------------
def build_model(config: str, device: str | torch.device = "cpu", dtype: str | None = None):
    """A random-weight (seed 0) WanTransformer3DModel of ``config`` built on ``device`` from its config."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
    from diffusers.utils import logging as dlogging

    from interp.adapters import ADAPTERS
    from interp.models import LoadedModel

    spec = CONFIGS[config]
    torch.manual_seed(0)
    with torch.device(device):
        t = WanTransformer3DModel(**spec["model"])
    level = dlogging.get_verbosity()
    dlogging.set_verbosity_error()  # a whole-model cast, as load_model(dtype=...) does; no warning about it
    try:
        t = t.to(getattr(torch, dtype or spec["dtype"])).eval()
    finally:
        dlogging.set_verbosity(level)
    loaded = LoadedModel(f"bench-{config}", ADAPTERS["wan"], {"transformer": t}, FlowMatchEulerDiscreteScheduler(),
                         source=f"random init, seed 0: {config}")  # fmt: skip
    # a random-init model is named by its config: skip hashing (and copying off the GPU) every weight
    loaded.__dict__["weight_hash"] = f"random-seed0-{config}-{t.dtype}"
    return loaded


TOKEN_SITES = ("hook_resid_pre", "hook_resid_post", *SUBLAYER_HOOKS,
               *(f"{m}.{h}" for m in ATTN_MODULES for h in ATTN_HOOKS))  # fmt: skip
"""A block's sites of one d-wide vector per token (what the disk estimate counts)."""


def estimate(opts: BenchOptions):
    """What the run holds and writes (:mod:`interp.budget`), from the config alone (the model counted on the meta
    device): the weights, a batched forward's working set (a sweep's rows, or the batch with guidance), and the
    capture files of the sampling and store measurements (every block's site at every step, float32)."""
    from diffusers import WanTransformer3DModel

    from interp.budget import Estimate, forward_bytes

    spec = CONFIGS[opts.config]
    with torch.device("meta"):
        n = sum(p.numel() for p in WanTransformer3DModel(**spec["model"]).parameters())
    m = spec["model"]
    d, layers = m["num_attention_heads"] * m["attention_head_dim"], m["num_layers"]
    f, h, w = opts.latent or spec["latent"]
    pt, ph, pw = m["patch_size"]
    tokens = (f // pt) * (h // ph) * (w // pw)
    elem = 2 if spec["dtype"] == "bfloat16" else 4
    rows = max(opts.batch * 2, opts.sweep_rows or layers + 1)
    # the sampling measurement writes one capture at a time (each deleted after it is timed): the largest one, the
    # per-token d-wide block sites that --sites matches (all of a block's when it names none of them)
    per_block = [f"blocks.{i}.{h}" for i in range(layers) for h in TOKEN_SITES]
    sites = sum(any(fnmatch.fnmatchcase(s, g) for g in opts.sites.split(",")) for s in per_block) or layers
    elem_out = max(CODE_BYTES[c] for c in opts.capture_dtypes)
    capture = opts.steps * opts.batch * sites * tokens * d * elem_out if "sampling" in opts.only else 0
    if "memory" in opts.only:  # float16 at twice the steps, every block
        capture = max(capture, 2 * opts.steps * opts.batch * layers * tokens * d * 2)
    store = 2 * opts.store_mb * 2**20 if "store" in opts.only else 0
    return Estimate(f"bench {opts.config}", memory=n * elem + forward_bytes(rows, tokens, d, elem),
                    disk=int(capture + store), out=Path(opts.scratch) if opts.scratch else Path(tempfile.gettempdir()),
                    detail=f"{n / 1e6:.0f}M parameters, {tokens} tokens, {rows} rows a forward")  # fmt: skip


def capture_config(
    loaded, opts: BenchOptions, latent: tuple[int, int, int], steps: int | None = None, dtype: str = "float16"
):
    from interp.apps.capture import CaptureConfig

    f, h, w = latent
    return CaptureConfig(model=loaded.name, steps=steps or opts.steps, sites=[opts.sites], batch=opts.batch,
                         dtype=dtype, guidance=1.0, shift=5.0, frames=f, height=h, width=w,
                         text_len=CONFIGS[opts.config]["text_len"], device=opts.device)  # fmt: skip


def plain_sampling(loaded, inputs, sampler) -> torch.Tensor:
    """The baseline: a bare diffusers Euler loop over the transformer (no interp code in the loop)."""
    from interp.trajectory import initial_latents, make_scheduler

    t = loaded.transformer
    p = next(t.parameters())
    sched = make_scheduler(loaded, sampler.shift)
    sched.set_timesteps(sampler.steps, device=p.device)
    x = initial_latents(inputs.latent_shape, sampler.seed).to(p.device)
    enc = inputs.text.encoder_hidden_states.to(p.device, p.dtype)
    with torch.no_grad():
        for ts in sched.timesteps:
            v = t(hidden_states=x.to(p.dtype), timestep=ts.expand(x.shape[0]), encoder_hidden_states=enc,
                  return_dict=False)[0]  # fmt: skip
            x = sched.step(v, ts, x, return_dict=False)[0]
    return x


# ---- 1. sampling with capture vs bare, and the bandwidth that bounds it -------------------------------------------
def copy_bandwidth(nbytes: int, device: torch.device, repeats: int = 5) -> dict[str, float]:
    """Device-to-host bytes/s into pinned memory (non-blocking) and into pageable memory; on the CPU a memcpy."""
    src = torch.randint(0, 255, (nbytes,), dtype=torch.uint8, device=device)
    out: dict[str, float] = {}
    if device.type == "cuda":
        for kind, dst in (("pinned", torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)),
                          ("pageable", torch.empty(nbytes, dtype=torch.uint8))):  # fmt: skip
            ts = []
            for _ in range(repeats + 1):
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                dst.copy_(src, non_blocking=kind == "pinned")
                b.record()
                b.synchronize()
                ts.append(a.elapsed_time(b) / 1e3)
            out[f"d2h_{kind}_GBps"] = nbytes / med(ts[1:]) / 1e9
    else:
        dst = torch.empty(nbytes, dtype=torch.uint8)
        ts = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            dst.copy_(src)
            ts.append(time.perf_counter() - t0)
        out["host_memcpy_GBps"] = nbytes / med(ts[1:]) / 1e9
    return out


def disk_bandwidth(directory: Path, nbytes: int, chunk: int, repeats: int = 3) -> dict[str, float]:
    """Raw write bytes/s of ``nbytes`` into one file in ``chunk``-byte ``os.pwrite`` s from one thread: into the
    page cache (``buffered``), through to the disk with one fsync at the end (``fsync``), and through to the disk
    with the writeback started after every chunk and one fsync at the end (``streamed``, as the store writes a
    capture: :class:`interp.store.capture.Writeback`); the last is the rate a capture's durable bytes can
    reach."""
    chunk = max(1 << 16, min(chunk, nbytes))
    res: dict[str, list[float]] = {"buffered": [], "fsync": [], "streamed": []}
    for _ in range(repeats):
        for kind, ts in res.items():
            ts.append(plain_write(directory / f"bench-disk-{kind}.bin", nbytes, chunk, kind))
    return {f"disk_{k}_GBps": nbytes / med(v) / 1e9 for k, v in res.items()}


def plain_write(path: Path, nbytes: int, chunk: int, kind: str) -> float:
    """Seconds to write ``nbytes`` into ``path`` in ``chunk``-byte ``os.pwrite`` s from this thread, as
    :func:`disk_bandwidth`'s ``kind`` (buffered | fsync | streamed) writes them; the file is removed after."""
    buf = memoryview(np.random.default_rng(0).integers(0, 255, chunk, dtype=np.uint8))
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for off in range(0, nbytes, chunk):
            data = buf[: min(chunk, nbytes - off)]
            while data:
                n = os.pwrite(fd, data, off)
                data, off = data[n:], off + n
            if kind == "streamed" and hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        if kind != "buffered":
            os.fsync(fd)
    finally:
        os.close(fd)
    dt = time.perf_counter() - t0
    path.unlink()
    return dt


BURST_BYTES = 2 << 30  # the short disk measurements write at most this much (the sustained one: a capture's bytes)


def pipeline_floor(bare_s: float, steps: int, nbytes: float, rate: float) -> float:
    """The earliest a capture can end: step s's bytes exist once its forward has run, at (s + 1) T (T = bare_s /
    steps), and one writer moves them at ``rate`` bytes/s: max over s of (s + 1) T + (steps - s) b / rate (b: one
    step's bytes). Writes slower than the forward pay the first step's forward on top of the bytes' time; faster
    ones, the last step's write on top of the bare sampling."""
    t, w = bare_s / steps, nbytes / steps / rate
    return max((s + 1) * t + (steps - s) * w for s in range(steps))


def bench_sampling(loaded, opts: BenchOptions, scratch: Path) -> dict:
    from benchmarks.store_profile import profiled_store  # imports the capture app, as the next line does
    from interp.apps.capture import build_inputs, capture
    from interp.trajectory import run_trajectory, traced_experts

    device = torch.device(opts.device)
    latent = opts.latent or CONFIGS[opts.config]["latent"]
    cfgs = {dt: capture_config(loaded, opts, latent, dtype=dt).resolved(loaded) for dt in opts.capture_dtypes}
    cfg = next(iter(cfgs.values()))
    inputs, sampler = build_inputs(loaded, cfg), cfg.sampler()
    sites = traced_experts(loaded)["transformer"].resolve(opts.sites)
    out_path = scratch / "bench-capture.h5"
    names = {dt: "capture" if i == 0 else f"capture:{dt}" for i, dt in enumerate(opts.capture_dtypes)}
    counters: dict[str, dict] = {name: {"bytes": 0, "profiles": [], "unlink_s": []} for name in names.values()}

    def run_capture(dt: str):
        # the store timed from inside, thread by thread (benchmarks.store_profile), each capture's figures kept
        with profiled_store() as prof:
            t0 = time.perf_counter()
            capture(cfgs[dt], out_path, loaded=loaded, overwrite=True)
            counters[names[dt]]["profiles"].append(dict(prof, wall=time.perf_counter() - t0))
        counters[names[dt]]["bytes"] = out_path.stat().st_size

    def remove_capture(name: str):
        # a capture ends when its file is published: removing it is the bench's cleanup, timed on its own
        t0 = time.perf_counter()
        out_path.unlink()
        counters[name]["unlink_s"].append(time.perf_counter() - t0)

    fns = {
        "bare": lambda: plain_sampling(loaded, inputs, sampler),
        "trajectory": lambda: run_trajectory(loaded, inputs, sampler, keep=False),
        "read": lambda: run_trajectory(loaded, inputs, sampler, read=sites, keep=False),
        **{name: (lambda dt=dt: run_capture(dt)) for dt, name in names.items()},
    }
    counter = counters["capture"]
    cpu: dict | None = {} if device.type == "cpu" else None
    cleanup = {name: partial(remove_capture, name) for name in counters}
    times = interleaved(fns, opts.repeats, opts.warmup, device, cpu, after=cleanup)
    grid = loaded.adapter.token_grid(loaded.transformer, inputs.latent_shape)
    site_bytes = opts.batch * math.prod(grid) * loaded.adapter.d_model(loaded.transformer) * 2
    step_bytes = site_bytes * len(sites)
    bw = copy_bandwidth(site_bytes, device) | disk_bandwidth(scratch, min(counter["bytes"], BURST_BYTES), site_bytes)
    # a disk (a cloud volume above all) can take a short burst faster than it sustains: the durable rate that bounds
    # a capture is measured again with as many bytes as each capture wrote
    sustained = {name: c["bytes"] / plain_write(scratch / "bench-disk-sustained.bin", c["bytes"], site_bytes,
                                                 "streamed") / 1e9
                 for name, c in counters.items() if c["bytes"] > BURST_BYTES}  # fmt: skip
    if "capture" in sustained:
        bw["disk_streamed_sustained_GBps"] = sustained["capture"]
    capture_s, bare_s = med(times["capture"]), med(times["bare"])

    def bound(name: str) -> tuple[str, float]:
        """(the link, bytes/s) bounding capture ``name``: the slower of the copy and the disk as the store writes
        (from one thread, durably), the disk's rate measured over that capture's own bytes where it was."""
        disk = "disk_streamed_sustained_GBps" if name in sustained else "disk_streamed_GBps"
        links = {k: bw[k] for k in ("d2h_pinned_GBps",) if k in bw} | {disk: sustained.get(name, bw[disk])}
        link = min(links, key=links.get)
        return link, links[link] * 1e9

    # the floor under capture: the bare sampling, or its bytes through that link, each step's bytes available only
    # once its forward has run
    link, rate = bound("capture")
    floor = pipeline_floor(bare_s, opts.steps, counter["bytes"], rate)
    # the file is fsynced before it is published (interp.store.atomic), so its bytes must reach the disk: the floor
    # is set by the durable rate; the page cache's rate gives the floor of a capture that need not be durable
    cache_rate = min(bw[k] for k in ("d2h_pinned_GBps", "disk_buffered_GBps") if k in bw) * 1e9
    cache_floor = pipeline_floor(bare_s, opts.steps, counter["bytes"], cache_rate)
    variants = {}
    for dt, name in names.items():
        v_floor = pipeline_floor(bare_s, opts.steps, counters[name]["bytes"], bound(name)[1])
        variants[name] = {"dtype": dt, "file_bytes": counters[name]["bytes"], "median_s": med(times[name]),
                          "ratio": paired(times, name, "bare"), "floor_s": v_floor,
                          "vs_floor": med(times[name]) / v_floor, "unlink_s": counters[name]["unlink_s"],
                          "warmup_rounds": opts.warmup, "profiles": counters[name]["profiles"]}  # fmt: skip
    return {
        "capture_dtype": opts.capture_dtypes[0], "variants": variants,
        "latent": list(inputs.latent_shape), "tokens": math.prod(grid), "steps": opts.steps, "sites": len(sites),
        "site_bytes": site_bytes, "step_bytes": step_bytes, "file_bytes": counter["bytes"],
        "median_s": {k: med(v) for k, v in times.items()}, "spread": {k: spread(v) for k, v in times.items()},
        "ratio": {k: paired(times, k, "bare") for k in ("trajectory", "read", "capture")},
        "cpu_ratio": {k: paired(cpu, k, "bare") for k in ("trajectory", "read", "capture")} if cpu else None,
        "bandwidth": bw,
        "capture_write_GBps": counter["bytes"] / capture_s / 1e9,
        "needed_GBps_for_1.05x": counter["bytes"] / (1.05 * bare_s) / 1e9,
        "bandwidth_floor_s": floor, "capture_vs_floor": capture_s / floor,
        "page_cache_floor_s": cache_floor, "capture_vs_page_cache_floor": capture_s / cache_floor,
        "bytes_only_floor_s": max(bare_s, counter["bytes"] / rate),
        "floor_bound_by": "bare sampling" if counter["bytes"] / rate <= bare_s else link.removesuffix("_GBps"),
        "times": times,
    }  # fmt: skip


# ---- 2. a batched sweep of single-layer skips ---------------------------------------------------------------------
def _repeat_text(text, n: int):
    from interp.adapters import TextConditioning

    rep = lambda v: v.expand(n, *v.shape[1:]).contiguous() if v.ndim and v.shape[0] == 1 else v  # noqa: E731
    return TextConditioning(rep(text.encoder_hidden_states), {k: rep(v) for k, v in text.extras.items()})


def bench_sweep(loaded, opts: BenchOptions) -> dict:
    from interp.apps.capture import build_inputs
    from interp.interventions import Skip
    from interp.interventions.bind import Bound, compile_batch
    from interp.interventions.bind import rows as make_rows
    from interp.trajectory import traced_experts

    device = torch.device(opts.device)
    p = next(loaded.transformer.parameters())
    traced = traced_experts(loaded)["transformer"]
    n_layers = traced.n_blocks
    latent = opts.sweep_latent or opts.latent or CONFIGS[opts.config]["latent"]
    inputs = build_inputs(loaded, capture_config(loaded, opts, latent).model_copy(update={"batch": 1}))
    x1 = torch.randn(inputs.latent_shape, generator=torch.Generator().manual_seed(1)).to(device, p.dtype)
    text1 = inputs.text.to(device, p.dtype)
    t1 = torch.tensor([700.0], device=device)
    per = max(1, (opts.sweep_rows or n_layers + 1) - 1)
    chunks = [list(range(i, min(i + per, n_layers))) for i in range(0, n_layers, per)]
    batches = []
    for chunk in chunks:
        n = len(chunk) + 1  # row 0: the clean run every point is compared with
        shape = (n, *x1.shape[1:])
        bound = [Bound(Skip(layers=layer), make_rows([j + 1])) for j, layer in enumerate(chunk)]
        plan_fn, _ = compile_batch(bound, traced, shape, 1)
        batches.append((x1.expand(shape).contiguous(), t1.expand(n), _repeat_text(text1, n), plan_fn))
    singles = []
    for layer in range(n_layers):
        plan_fn, _ = compile_batch([Bound(Skip(layers=layer), make_rows([0]))], traced, tuple(x1.shape), 1)
        singles.append(plan_fn)
    outs: dict[str, list] = {"batched": [], "single": []}

    def batched():
        outs["batched"] = [traced.run(x, t, txt, plan=fn("cond", 0)).output for x, t, txt, fn in batches]

    def bare_batched():
        for x, t, txt, _ in batches:
            traced(x, t, txt)

    def per_point():
        outs["single"] = [traced.run(x1, t1, text1, plan=fn("cond", 0)).output for fn in singles]

    cpu: dict | None = {} if device.type == "cpu" else None
    times = interleaved({"bare_batched": bare_batched, "sweep_batched": batched, "per_point": per_point},
                        opts.repeats, opts.warmup, device, cpu)  # fmt: skip
    rows = torch.cat([o[1:] for o in outs["batched"]]).float()
    single = torch.cat(outs["single"]).float()
    rel = float((rows - single).norm() / single.norm().clamp_min(1e-30))
    return {
        "layers": n_layers, "points": n_layers, "rows_per_forward": per + 1, "forwards": len(batches),
        "latent": list(x1.shape), "median_s": {k: med(v) for k, v in times.items()},
        "spread": {k: spread(v) for k, v in times.items()},
        "throughput_vs_bare": paired(times, "bare_batched", "sweep_batched"),
        "batching_gain": paired(times, "per_point", "sweep_batched"),
        "cpu_ratio": {"throughput_vs_bare": paired(cpu, "bare_batched", "sweep_batched"),
                      "batching_gain": paired(cpu, "per_point", "sweep_batched")} if cpu else None,
        "points_per_s": {"sweep_batched": n_layers / med(times["sweep_batched"]),
                         "per_point": n_layers / med(times["per_point"])},
        "batched_vs_single_rel_err": rel, "times": times,
    }  # fmt: skip


# ---- 3. tracing overhead ------------------------------------------------------------------------------------------
def bench_tracing(loaded, opts: BenchOptions) -> dict:
    import nnsight

    from interp.apps.capture import build_inputs
    from interp.trace import ForwardPlan
    from interp.trajectory import traced_experts

    device = torch.device(opts.device)
    p = next(loaded.transformer.parameters())
    traced = traced_experts(loaded)["transformer"]
    latent = opts.latent or CONFIGS[opts.config]["latent"]
    inputs = build_inputs(loaded, capture_config(loaded, opts, latent))
    x = torch.randn(inputs.latent_shape, generator=torch.Generator().manual_seed(1)).to(device, p.dtype)
    text = inputs.text.to(device, p.dtype)
    t = torch.full((x.shape[0],), 700.0, device=device)
    sites = traced.resolve(SITES)
    paths = [traced._paths[s] for s in sites]
    modules = [traced.dit.get_submodule(q) for q in paths]
    mid = len(sites) // 2
    edit_site, edit_path = sites[mid], paths[mid]
    kept: dict[str, Any] = {}

    def hooked(edit: bool):
        if edit:
            handles = [modules[mid].register_forward_hook(lambda m, i, o: o * 0.5)]
        else:
            handles = [
                m.register_forward_hook(lambda m, i, o, k=k: kept.__setitem__(k, o)) for k, m in enumerate(modules)
            ]
        try:
            with torch.no_grad():
                return traced.dit(x, t, text)
        finally:
            for h in handles:
                h.remove()

    def nn_empty():
        with torch.no_grad(), traced.model.trace(x, t, text):
            out = nnsight.save(traced.model.output)
        return out

    def nn_read():
        saved: list = []
        with torch.no_grad(), traced.model.trace(x, t, text):
            for q in paths:
                saved.append(nnsight.save(traced._envoy(q).output))
            out = nnsight.save(traced.model.output)
        assert len(saved) == len(paths)
        return out

    def nn_edit():
        with torch.no_grad(), traced.model.trace(x, t, text):
            env = traced._envoy(edit_path)
            env.output = env.output * 0.5
            out = nnsight.save(traced.model.output)
        return out

    half = {edit_site: lambda s, st, v: v * 0.5}
    fns = {
        "bare": lambda: traced(x, t, text),
        "nnsight_empty": nn_empty,
        "toolkit_empty": lambda: traced.run(x, t, text, plan=ForwardPlan()),
        "hooks_read": lambda: hooked(False),
        "nnsight_read": nn_read,
        "toolkit_read": lambda: traced.run(x, t, text, plan=ForwardPlan(read=sites)),
        "hooks_edit": lambda: hooked(True),
        "nnsight_edit": nn_edit,
        "toolkit_edit": lambda: traced.run(x, t, text, plan=ForwardPlan(edit=half)),
    }
    # every path computes the same function: check before timing
    ref, ref_edit = fns["bare"]().float(), fns["hooks_edit"]().float()
    err = {}
    for k, fn in fns.items():
        o = fn()
        o = (o.output if hasattr(o, "output") else o).float()
        r = ref_edit if k.endswith("edit") else ref
        err[k] = float((o - r).norm() / r.norm().clamp_min(1e-30))
    cpu: dict | None = {} if device.type == "cpu" else None
    times = interleaved(fns, opts.repeats * 2, opts.warmup, device, cpu)
    pairs = [
        ("nnsight_empty", "bare"),
        ("toolkit_empty", "bare"),
        ("hooks_read", "bare"),
        ("nnsight_read", "hooks_read"),
        ("toolkit_read", "nnsight_read"),
        ("nnsight_edit", "hooks_edit"),
        ("toolkit_edit", "nnsight_edit"),
    ]
    return {
        "latent": list(x.shape), "median_s": {k: med(v) for k, v in times.items()},
        "spread": {k: spread(v) for k, v in times.items()},
        "ratio": {f"{a}/{b}": paired(times, a, b) for a, b in pairs},
        "cpu_ratio": {f"{a}/{b}": paired(cpu, a, b) for a, b in pairs} if cpu else None,
        "overhead_ms": {  # medians of the per-round differences
            "nnsight_empty": 1e3 * med([a - b for a, b in zip(times["nnsight_empty"], times["bare"])]),
            "toolkit_on_nnsight_read": 1e3 * med([a - b for a, b in zip(times["toolkit_read"], times["nnsight_read"])]),
            "toolkit_on_nnsight_edit": 1e3 * med([a - b for a, b in zip(times["toolkit_edit"], times["nnsight_edit"])]),
        },
        "rel_err_vs_bare": err, "times": times,
    }  # fmt: skip


# ---- 4. the HDF5 store vs raw h5py --------------------------------------------------------------------------------
def bench_store(loaded, opts: BenchOptions, scratch: Path) -> dict:
    import h5py

    from interp.store import RunWriter, load_cache
    from interp.trajectory import StepRecord

    latent = opts.latent or CONFIGS[opts.config]["latent"]
    a, tr = loaded.adapter, loaded.transformer
    lat_shape = (opts.batch, a.latent_channels(tr), *latent)
    grid = a.token_grid(tr, lat_shape)
    site_shape = (opts.batch, math.prod(grid), a.d_model(tr))
    site_bytes = math.prod(site_shape) * 2
    n_sites = len(a.blocks(tr))
    steps = min(50, max(2, math.ceil(opts.store_mb * 2**20 / (site_bytes * n_sites))))  # a capture's step counts
    n_sites = min(n_sites, math.ceil(opts.store_mb * 2**20 / (site_bytes * steps)))
    rng = np.random.default_rng(0)
    site_arrays = [rng.standard_normal(site_shape, dtype=np.float32).astype(np.float16) for _ in range(n_sites)]
    lat = rng.standard_normal(lat_shape, dtype=np.float32)
    names = [f"blocks.{i}.hook_resid_post" for i in range(n_sites)]
    timesteps, sigmas = torch.linspace(1000, 0, steps), torch.linspace(1, 0, steps)
    total = steps * n_sites * site_bytes + (3 * steps + 1) * lat.nbytes

    def raw(path: Path, direct: bool):
        with h5py.File(path, "w") as f:
            ds = {k: f.create_dataset(k, shape=(steps + (k == "latents"), *lat.shape), dtype=lat.dtype,
                                      chunks=(1, *lat.shape)) for k in ("latents", "v", "x0")}  # fmt: skip
            for n, arr in zip(names, site_arrays):
                ds[n] = f.create_dataset(
                    f"cond/{n}", shape=(steps, *arr.shape), dtype=arr.dtype, chunks=(1, *arr.shape)
                )
            put = (lambda d, i, v: d.id.write_direct_chunk((i,) + (0,) * v.ndim, v)) if direct else (
                lambda d, i, v: d.__setitem__(i, v))  # fmt: skip
            for s in range(steps):
                if s == 0:
                    put(ds["latents"], 0, lat)
                for k, i in (("latents", s + 1), ("v", s), ("x0", s)):
                    put(ds[k], i, lat)
                for n, arr in zip(names, site_arrays):
                    put(ds[n], s, arr)

    lat_t = torch.from_numpy(lat)
    site_t = [torch.from_numpy(arr) for arr in site_arrays]

    def store(path: Path):
        w = RunWriter(path, config={"bench": "store"}, model_hash="bench", family="wan", timesteps=timesteps,
                      sigmas=sigmas, branch_steps={"cond": list(range(steps))}, sites=names, grid=grid,
                      dtype="float16", overwrite=True)  # fmt: skip
        try:
            for s in range(steps):
                w.on_step(StepRecord(s, float(timesteps[s]), float(sigmas[s]), "transformer", lat_t, lat_t, lat_t, lat_t,
                                     {"cond": dict(zip(names, site_t))}))  # fmt: skip
            w.finish()
        finally:
            w.close()

    write_fns = {"raw_setitem": lambda p: raw(p, False), "raw_direct_chunk": lambda p: raw(p, True), "store": store}
    paths = {k: scratch / f"bench-store-{k}.h5" for k in write_fns}

    def run(kind):
        write_fns[kind](paths[kind])
        paths[kind].unlink()

    cpu: dict = {}
    times = interleaved({k: (lambda k=k: run(k)) for k in paths}, opts.repeats, opts.warmup, torch.device("cpu"), cpu)
    disk = disk_bandwidth(scratch, total, site_bytes, max(3, opts.repeats))
    # reads: one (step, layer) slice, from the page cache and from the disk
    store(paths["store"])
    s_mid, site = steps // 2, names[n_sites // 2]
    reads: dict[str, list[float]] = {"cache_hot": [], "cache_cold": [], "h5py_hot": []}
    for _ in range(max(3, opts.repeats)):
        for kind in reads:
            if kind == "cache_cold":
                drop_from_page_cache(paths["store"])
            t0 = time.perf_counter()
            if kind.startswith("cache"):
                with load_cache(paths["store"]) as c:
                    v = c.select([s_mid])[site]
            else:
                with h5py.File(paths["store"], "r") as f:
                    v = f[f"cond/{site}"][s_mid]
            reads[kind].append(time.perf_counter() - t0)
            assert np.array_equal(np.asarray(v).reshape(site_shape), site_arrays[n_sites // 2])
    paths["store"].unlink()
    return {
        "steps": steps, "sites": n_sites, "site_shape": list(site_shape), "bytes": total,
        "median_s": {k: med(v) for k, v in times.items()}, "spread": {k: spread(v) for k, v in times.items()},
        "write_GBps": {k: total / med(v) / 1e9 for k, v in times.items()},
        "store_vs_raw_setitem": paired(times, "raw_setitem", "store"),
        "store_vs_raw_direct_chunk": paired(times, "raw_direct_chunk", "store"),
        "cpu_ratio": {"store_vs_raw_setitem": paired(cpu, "raw_setitem", "store"),
                      "store_vs_raw_direct_chunk": paired(cpu, "raw_direct_chunk", "store")},
        "disk": disk, "store_vs_disk": total / med(times["store"]) / 1e9 / disk["disk_buffered_GBps"],
        "read_slice_ms": {k: 1e3 * med(v) for k, v in reads.items()}, "times": times,
    }  # fmt: skip


# ---- 5. peak memory -----------------------------------------------------------------------------------------------
def bench_memory(loaded, opts: BenchOptions, scratch: Path) -> dict:
    """Peak memory of bare sampling and of capture at ``steps`` and at twice as many steps: a capture that holds
    the trajectory grows by the added steps' bytes, a streaming one does not grow."""
    from interp.apps.capture import build_inputs, capture
    from interp.trajectory import run_trajectory

    device = torch.device(opts.device)
    latent = opts.latent or CONFIGS[opts.config]["latent"]
    cfg = capture_config(loaded, opts, latent).resolved(loaded)
    cfg2 = capture_config(loaded, opts, latent, steps=2 * opts.steps).resolved(loaded)
    inputs, sampler = build_inputs(loaded, cfg), cfg.sampler()
    out_path = scratch / "bench-memory.h5"
    peaks: dict[str, int] = {}
    sizes: dict[str, int] = {}
    # CPU: twice each, the second (warm) run counts; the CUDA allocator's peak is exact on the first
    for kind in ("bare", "trajectory", "capture", "capture_2x"):
        for _ in range(1 if device.type == "cuda" else 2):
            with PeakMemory(device) as pm:
                if kind == "bare":
                    plain_sampling(loaded, inputs, sampler)
                elif kind == "trajectory":
                    run_trajectory(loaded, inputs, sampler, keep=False)
                else:
                    capture(cfg if kind == "capture" else cfg2, out_path, loaded=loaded, overwrite=True)
            peaks[kind] = pm.peak
            if kind.startswith("capture"):
                sizes[kind] = out_path.stat().st_size
                out_path.unlink()
    extra, extra2 = peaks["capture"] - peaks["bare"], peaks["capture_2x"] - peaks["bare"]
    added = sizes["capture_2x"] - sizes["capture"]
    return {"what": "cuda max_memory_allocated above start" if device.type == "cuda" else "peak RSS above start (sampled)",
            "steps": opts.steps, "peak_bytes": peaks, "capture_extra_bytes": extra, "capture_2x_extra_bytes": extra2,
            "trajectory_bytes": sizes["capture"], "trajectory_2x_bytes": sizes["capture_2x"],
            "growth_per_added_byte": (extra2 - extra) / added,
            "streams": (extra2 - extra) < 0.5 * added}  # fmt: skip


# ---- all ----------------------------------------------------------------------------------------------------------
def environment(opts: BenchOptions, scratch: Path) -> dict:
    import diffusers
    import h5py
    import nnsight

    dev = torch.device(opts.device)
    return {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine()),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "diffusers": diffusers.__version__, "nnsight": nnsight.__version__, "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version, "scratch": str(scratch), "scratch_fs": filesystem(scratch),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }  # fmt: skip


def run_bench(
    opts: BenchOptions, log: Callable[[str], None] = print, on_item: Callable[[str, dict], None] | None = None
) -> dict:
    """Run the selected measurements; returns everything (also the per-round times) as plain data.
    ``on_item(name, result)`` is called after each measurement (print or save what is done so far)."""
    if opts.threads:
        torch.set_num_threads(opts.threads)
    scratch = Path(opts.scratch) if opts.scratch else Path(tempfile.gettempdir())
    scratch = Path(tempfile.mkdtemp(prefix="interp-bench-", dir=scratch))
    try:
        t0 = time.perf_counter()
        loaded = build_model(opts.config, opts.device)
        result: dict[str, Any] = {"options": asdict(opts), "env": environment(opts, scratch),
                                  "build_s": time.perf_counter() - t0}  # fmt: skip
        log(f"built {opts.config} on {result['env']['device']} in {result['build_s']:.1f} s")
        steps = {
            "sampling": lambda: bench_sampling(loaded, opts, scratch),
            "sweep": lambda: bench_sweep(loaded, opts),
            "tracing": lambda: bench_tracing(loaded, opts),
            "store": lambda: bench_store(loaded, opts, scratch),
            "memory": lambda: bench_memory(loaded, opts, scratch),
        }
        for name in ITEMS:
            if name in opts.only:
                t1 = time.perf_counter()
                result[name] = steps[name]()
                log(f"{name}: {time.perf_counter() - t1:.1f} s")
                if on_item is not None:
                    on_item(name, result)
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _goal(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(result: dict) -> str:
    """The figures as text: one block per measurement, ratios with their goals."""
    from benchmarks.store_profile import round_line  # imports the capture app, which only the sampling needs

    env, o = result["env"], result["options"]
    lines = [f"interp bench --config {o['config']} --device {o['device']}: {env['device']}, torch {env['torch']} "
             f"({env['torch_threads']} threads of {env['cpu_count']} cores), nnsight {env['nnsight']}, "
             f"h5py {env['h5py']} (HDF5 {env['hdf5']}), scratch {env['scratch_fs']}; {o['repeats']} rounds, medians"]  # fmt: skip
    ms = lambda s: f"{1e3 * s:.1f} ms"  # noqa: E731

    def c(r: dict, key: str) -> str:  # the same ratio in process CPU time, where measured (CPU runs)
        return f" [CPU time {r['cpu_ratio'][key]:.3f}x]" if r.get("cpu_ratio") else ""

    if "sampling" in result:
        r = result["sampling"]
        m, bw = r["median_s"], r["bandwidth"]
        lines += [
            f"1. sampling {r['steps']} steps, latent {r['latent']} ({r['tokens']} tokens), {r['sites']} sites x "
            f"{r['site_bytes'] / 2**20:.2f} MiB per step:",
            f"   bare diffusers loop {ms(m['bare'])}; run_trajectory {ms(m['trajectory'])} "
            f"({r['ratio']['trajectory']:.3f}x{c(r, 'trajectory')}); + reads kept nowhere {ms(m['read'])} "
            f"({r['ratio']['read']:.3f}x{c(r, 'read')})",
            f"   capture to HDF5 ({r.get('capture_dtype', 'float16')}) {ms(m['capture'])}: {r['ratio']['capture']:.3f}x bare{c(r, 'capture')} "
            f"[goal <= 1.05x: {_goal(r['ratio']['capture'] <= 1.05)}]; {r['file_bytes'] / 2**20:.1f} MiB written at "
            f"{r['capture_write_GBps']:.2f} GB/s (1.05x needs {r['needed_GBps_for_1.05x']:.2f} GB/s)",
            "   bandwidth: " + ", ".join(f"{k.removesuffix('_GBps')} {v:.2f} GB/s" for k, v in bw.items())
            + f"; floor {ms(r['bandwidth_floor_s'])} (bound by {r['floor_bound_by']}, one writer thread, each step's "
            f"bytes written after its forward, durable as the store's fsync makes them; the bytes alone "
            f"{ms(r['bytes_only_floor_s'])}), capture at {r['capture_vs_floor']:.3f}x the floor"
            + (f" ({r['capture_vs_page_cache_floor']:.3f}x the page cache's floor {ms(r['page_cache_floor_s'])})"
               if "page_cache_floor_s" in r else ""),
        ]  # fmt: skip
        for name, v in r.get("variants", {}).items():
            if name != "capture":
                lines.append(f"   capture to HDF5 ({v['dtype']}) {ms(v['median_s'])}: {v['ratio']:.3f}x bare; "
                             f"{v['file_bytes'] / 2**20:.1f} MiB written; its floor {ms(v['floor_s'])}, "
                             f"capture at {v['vs_floor']:.3f}x it")  # fmt: skip
            w = v.get("warmup_rounds", 0)
            lines += [f"   {name} round {i + 1 - w}{' (warm-up)' if i < w else ''}: "
                      + round_line(p, v["file_bytes"])
                      + (f"; then its unlink {v['unlink_s'][i]:.2f} s" if i < len(v.get("unlink_s", [])) else "")
                      for i, p in enumerate(v.get("profiles", []))]  # fmt: skip
    if "sweep" in result:
        r = result["sweep"]
        m = r["median_s"]
        lines += [
            f"2. sweep: skip one of {r['layers']} layers, {r['forwards']} forward(s) of <= {r['rows_per_forward']} rows "
            f"(1 clean + skips), latent {r['latent'][1:]}:",
            f"   batched sweep {ms(m['sweep_batched'])} vs the same bare batched forwards {ms(m['bare_batched'])}: "
            f"throughput {r['throughput_vs_bare']:.3f}x bare{c(r, 'throughput_vs_bare')} "
            f"[goal >= 0.8x: {_goal(r['throughput_vs_bare'] >= 0.8)}]",
            f"   one forward per point {ms(m['per_point'])}: batching gain {r['batching_gain']:.2f}x{c(r, 'batching_gain')} "
            f"({r['points_per_s']['sweep_batched']:.1f} vs {r['points_per_s']['per_point']:.1f} points/s); "
            f"batched vs single rows rel. err {r['batched_vs_single_rel_err']:.1e}",
        ]  # fmt: skip
    if "tracing" in result:
        r = result["tracing"]
        m, q = r["median_s"], r["ratio"]
        lines += [
            f"3. tracing one forward, latent {r['latent']}: bare {ms(m['bare'])}",
            f"   nothing: nnsight {q['nnsight_empty/bare']:.3f}x bare{c(r, 'nnsight_empty/bare')}; toolkit Traced.run "
            f"{q['toolkit_empty/bare']:.3f}x bare{c(r, 'toolkit_empty/bare')}",
            f"   read every resid_post: hooks {q['hooks_read/bare']:.3f}x bare{c(r, 'hooks_read/bare')}; nnsight "
            f"{q['nnsight_read/hooks_read']:.3f}x hooks{c(r, 'nnsight_read/hooks_read')}; toolkit "
            f"{q['toolkit_read/nnsight_read']:.3f}x nnsight{c(r, 'toolkit_read/nnsight_read')} "
            f"({r['overhead_ms']['toolkit_on_nnsight_read']:+.2f} ms)",
            f"   edit one site: nnsight {q['nnsight_edit/hooks_edit']:.3f}x hooks{c(r, 'nnsight_edit/hooks_edit')}; toolkit "
            f"{q['toolkit_edit/nnsight_edit']:.3f}x nnsight{c(r, 'toolkit_edit/nnsight_edit')} "
            f"({r['overhead_ms']['toolkit_on_nnsight_edit']:+.2f} ms); max rel. err vs bare {max(r['rel_err_vs_bare'].values()):.1e}",
        ]  # fmt: skip
    if "store" in result:
        r = result["store"]
        g, rd = r["write_GBps"], r["read_slice_ms"]
        lines += [
            f"4. store: {r['steps']} steps x {r['sites']} sites of {r['site_shape']} float16 + latents, "
            f"{r['bytes'] / 2**20:.1f} MiB per run:",
            f"   RunWriter (one writer thread) {g['store']:.2f} GB/s; raw h5py ds[i]=a "
            f"{g['raw_setitem']:.2f} GB/s, write_direct_chunk {g['raw_direct_chunk']:.2f} GB/s: store "
            f"{r['store_vs_raw_setitem']:.2f}x{c(r, 'store_vs_raw_setitem')} / "
            f"{r['store_vs_raw_direct_chunk']:.2f}x{c(r, 'store_vs_raw_direct_chunk')} raw "
            f"[goal >= 0.7x: {_goal(min(r['store_vs_raw_setitem'], r['store_vs_raw_direct_chunk']) >= 0.7)}]",
            "   disk, same bytes and chunk size: " + ", ".join(
                f"{k.removeprefix('disk_').removesuffix('_GBps')} {v:.2f} GB/s" for k, v in r["disk"].items())
            + f"; store at {r['store_vs_disk']:.2f}x the page cache written from one thread",
            f"   read one (step, layer) slice: load_cache {rd['cache_hot']:.2f} ms (page cache), {rd['cache_cold']:.2f} ms "
            f"(from disk); raw h5py {rd['h5py_hot']:.2f} ms",
        ]  # fmt: skip
    if "memory" in result:
        r = result["memory"]
        mib = lambda b: f"{b / 2**20:.1f} MiB"  # noqa: E731
        pk = r["peak_bytes"]
        lines += [
            f"5. memory ({r['what']}): bare sampling {mib(pk['bare'])}, run_trajectory {mib(pk['trajectory'])}, capture "
            f"{mib(pk['capture'])} ({r['steps']} steps), {mib(pk['capture_2x'])} ({2 * r['steps']} steps)",
            f"   capture - bare: {mib(r['capture_extra_bytes'])} holding a {mib(r['trajectory_bytes'])} trajectory, "
            f"{mib(r['capture_2x_extra_bytes'])} holding {mib(r['trajectory_2x_bytes'])}: "
            f"{r['growth_per_added_byte']:.3f} bytes per added trajectory byte [goal: not the whole trajectory "
            f"(< 0.5): {_goal(r['streams'])}]",
        ]
    return "\n".join(lines)


def save(result: dict, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str))
    return path


__all__ = ["BenchOptions", "CONFIGS", "ITEMS", "build_model", "run_bench", "report", "save", "PeakMemory"]

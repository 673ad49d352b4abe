"""Storage dtypes on a real capture: what 16-bit and 8-bit storage lose, per site, and what it costs the probes.

One maze-wan trajectory (the shipped embedded model, CPU) is captured through the real store writer into one file
per storage dtype at once (float32, float16, bfloat16, float8_e4m3:token, float8_e4m3:channel; the same values,
each encoded by ``interp.store.codec`` as ``interp capture --dtype`` does). Printed side by side, per site: the
relative error ``||x^ - x|| / ||x||`` over the whole site (and the worst token's), the bytes on disk against
float32, and ``run_probes`` accuracy (labels ``wall`` and ``path``, the same split and settings on every file) on the
stored values against float32's.

    python -m benchmarks.storage                      # 16 mazes 5x5, 10 steps, every 3rd stored, 12 blocks
    python -m benchmarks.storage --n 32 --steps 20 --stride 5
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import typer

from interp.apps.capture import CaptureConfig, Kept, capture_inputs, describe_capture
from interp.models import load_model
from interp.store import RunWriter, load_cache
from interp.store.codec import STORAGE_DTYPES
from interp.trajectory import TrajectoryInputs, run_trajectory, schedule, traced_experts
from probes import run_probes

LABELS = ("wall", "path")


def capture_all(loaded, cfg: CaptureConfig, out: Path) -> tuple[dict[str, Path], float]:
    """One trajectory, one file per storage dtype (every writer gets each step record)."""
    cfg = cfg.resolved(loaded)
    sampler = cfg.sampler()
    sites = next(iter(traced_experts(loaded).values())).resolve(cfg.sites)
    mi = capture_inputs(loaded, cfg)
    inputs = TrajectoryInputs(mi.text, mi.latent_shape, condition=mi.condition)
    timesteps, sigmas, branches = schedule(loaded, sampler)
    grid = loaded.adapter.token_grid(loaded.transformer, inputs.latent_shape)
    keep = Kept(cfg, grid)
    paths, writers = {}, []
    for dt in STORAGE_DTYPES:
        c = cfg.model_copy(update={"dtype": dt})
        paths[dt] = out / f"{dt.replace(':', '_')}.h5"
        writers.append(RunWriter(paths[dt], config=c, model_hash=loaded.weight_hash, family=loaded.family,
                                 timesteps=timesteps, sigmas=sigmas, branch_steps=keep.branches(branches), sites=sites,
                                 grid=grid, dtype=dt, tokens=keep.tokens, token_box=keep.box,
                                 description=describe_capture(loaded, mi, sampler)))  # fmt: skip
    t0 = time.perf_counter()
    run_trajectory(loaded, inputs, sampler, read=sites, keep=False,
                   on_step=lambda rec: [w.on_step(rec) for w in writers])  # fmt: skip
    for w in writers:
        w.finish()
        w.close()
    return paths, time.perf_counter() - t0


def site_bytes(path: Path, site: str) -> int:
    """Bytes of one site on disk (codes and scales, every branch)."""
    with h5py.File(path) as f:
        return sum(f[k].id.get_storage_size() for k in (f"cond/{site}", f"cond/{site}.scale") if k in f)


def errors(ref, other, site: str) -> tuple[float, float]:
    """(||x^ - x|| / ||x|| over the site, the largest per-token relative error)."""
    x, y = ref[site].double(), other[site].double()
    per_token = (y - x).norm(dim=-1) / x.norm(dim=-1).clamp_min(1e-30)
    return float((y - x).norm() / x.norm()), float(per_token.max())


def main(
    n: int = typer.Option(16, help="mazes (samples)"),
    size: int = typer.Option(5, help="maze size"),
    steps: int = typer.Option(10, help="denoising steps"),
    stride: int = typer.Option(3, help="store every STRIDE-th step"),
    threads: int = typer.Option(2, help="torch threads"),
    bootstrap: int = typer.Option(20, help="probe bootstrap resamples"),
    keep_files: Path = typer.Option(None, help="write the captures here (default: a temporary folder)"),
) -> None:
    torch.set_num_threads(threads)
    loaded = load_model("maze-wan", "cpu")
    cfg = CaptureConfig(model="maze-wan", steps=steps, batch=n, sites=["blocks.*.hook_resid_post"],
                        step_stride=stride)  # fmt: skip
    loaded.task = {**loaded.task, "default_size": size}
    with tempfile.TemporaryDirectory() as tmp:
        out = keep_files or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        paths, secs = capture_all(loaded, cfg, out)
        ref = load_cache(paths["float32"])
        caches = {dt: load_cache(p) for dt, p in paths.items()}
        sites = ref.keys()
        shape = tuple(ref[sites[0]].shape)
        print(f"maze-wan on cpu ({threads} threads): {n} mazes {size}x{size}, {steps} steps (stored "
              f"{ref.steps.tolist()}), {len(sites)} sites of (steps, batch, tokens, d_model) {shape}; one trajectory "
              f"into {len(paths)} files in {secs:.1f} s")  # fmt: skip
        others = [dt for dt in STORAGE_DTYPES if dt != "float32"]
        short = {dt: dt.replace("float8_e4m3", "e4m3") for dt in STORAGE_DTYPES}
        print("\nrelative error ||x^-x||/||x|| of the whole site (worst token in brackets); bytes vs float32")
        print(f"{'site':28s}" + "".join(f"{short[dt]:>24s}" for dt in others))
        total = {dt: 0 for dt in STORAGE_DTYPES}
        for site in sites:
            row = f"{site:28s}"
            b32 = site_bytes(paths["float32"], site)
            total["float32"] += b32
            for dt in others:
                rel, worst = errors(ref, caches[dt], site)
                b = site_bytes(paths[dt], site)
                total[dt] += b
                row += f"{rel:>10.2e} [{worst:.1e}] {b / b32:4.3f}"
            print(row)
        print(
            f"{'all sites: bytes':28s}"
            + "".join(f"{total[dt] / 1e6:>15.1f} MB {total[dt] / total['float32']:5.3f}" for dt in others)  # fmt: skip
            + f"   (float32 {total['float32'] / 1e6:.1f} MB)"
        )
        for c in caches.values():
            c.close()
        ref.close()
        kw = dict(labels=list(LABELS), control="none", bootstrap=bootstrap, progress=False)
        t1 = time.perf_counter()
        res = {dt: run_probes(p, **kw) for dt, p in paths.items()}
        print(
            f"\nprobes ({', '.join(LABELS)}; control none, bootstrap {bootstrap}) on the {len(paths)} files: "
            f"{time.perf_counter() - t1:.1f} s"
        )
        for label in LABELS:
            acc = {dt: r.labels[label].metrics["accuracy"][0] for dt, r in res.items()}  # (steps, sites)
            print(f"\nprobe accuracy, label {label!r} (test split; mean over the stored steps), float32 and each dtype")
            print(f"{'site':28s}" + "".join(f"{short[dt]:>14s}" for dt in STORAGE_DTYPES))
            for j, site in enumerate(res["float32"].sites):
                print(f"{site:28s}" + "".join(f"{acc[dt][:, j].mean():>14.4f}" for dt in STORAGE_DTYPES))
            diffs = "".join(f"{np.abs(acc[dt] - acc['float32']).max() * 100:>14.2f}" for dt in STORAGE_DTYPES)
            print(f"{'max |acc - float32| (points)':28s}" + diffs)
            lam = {dt: r.labels[label].metrics["lambda"] for dt, r in res.items()}
            same = "".join(f"{(lam[dt] == lam['float32']).mean():>14.2f}" for dt in STORAGE_DTYPES)
            print(f"{'same strength as float32':28s}" + same)


if __name__ == "__main__":
    typer.run(main)

"""Scaling an experiment out: its batch plan sharded over ranks launched by torchrun or Ray, the shards merged.

- Under ``torchrun`` (``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` set), :func:`run_distributed` joins the process group
  (gloo on CPU, nccl on GPU; each rank on ``cuda:LOCAL_RANK`` when the experiment's device is CUDA), runs the rank's
  batches into its shard, waits at a barrier, and rank 0 merges the shards into ``DIR/results.h5`` (then summary,
  figures, W&B). ``interp run EXP.yaml`` does this by itself when started by torchrun.
- :func:`launch_torchrun` starts ``torchrun --standalone --nproc-per-node N -m interp run ...`` (one host).
- :func:`run_ray` runs one Ray task per rank (one GPU or one CPU each) on a Ray cluster (``address``; a local one
  by default); the driver merges. Failed tasks are retried and resume from their shard.

The sharding and merging are :mod:`interp.experiments.shard`; results equal a single-process run's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
from rich.console import Console

from interp.experiments import Experiment
from interp.experiments.runner import RunResult, _summary
from interp.experiments.verb import draw_figures, log_wandb, run_experiment
from interp.experiments.shard import merge_shards
from interp.store.results import read_attrs
from interp.models import LoadedModel, load_model

# ranks that finish early wait at the barrier for the slowest one: hours in a large sweep
BARRIER_TIMEOUT = timedelta(seconds=float(os.environ.get("INTERP_BARRIER_TIMEOUT_S", 7 * 24 * 3600)))


def dist_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when started by torchrun (or any launcher setting RANK and WORLD_SIZE)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))


def rank_device(device: str, local_rank: int) -> torch.device:
    """The experiment's device for one rank: a CUDA device becomes ``cuda:LOCAL_RANK`` (one GPU per rank)."""
    d = torch.device(device)
    if d.type == "cuda" and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return d


def finalize(out: str | Path, *, wandb: str = "disabled", console: Console | None = None, t0: float | None = None,
             keep_shards: bool = False) -> RunResult:  # fmt: skip
    """Merge ``out``'s shards into ``out/results.h5``, then write summary.json and figures (and log to W&B) as a
    single-process run does. Needs no model (the experiment and weight hash are read from the shards)."""
    console = console or Console(stderr=True)
    t0 = time.perf_counter() if t0 is None else t0
    out = Path(out)
    results = merge_shards(out, keep=keep_shards)
    attrs = read_attrs(results)
    exp = Experiment.validate_data(attrs["experiment"], str(results))
    key, model_hash = str(attrs["key"]), str(attrs["model_hash"])
    figures = draw_figures(results, out)
    summary = _summary(exp, results, key, SimpleNamespace(weight_hash=model_hash), time.perf_counter() - t0, False)
    log_wandb(exp, summary, figures, out, wandb)
    console.print(f"merged shards into {results}; wrote {out / 'summary.json'} and {len(figures)} figures")
    return RunResult(out, results, summary, False, figures)


def run_distributed(exp: Experiment, out: str | Path, *, wandb: str = "offline", base_dir: str | Path | None = None,
                    progress: bool = True, loaded: LoadedModel | None = None,
                    console: Console | None = None, force: bool = False) -> RunResult:  # fmt: skip
    """One torchrun rank: its shard of ``exp``, a barrier, rank 0 merges, a barrier. Every rank returns the merged
    result's paths (rank 0 also its summary). ``loaded``: this rank's model (default: ``exp.model`` on the rank's
    device, :func:`rank_device`)."""
    env = dist_env()
    if env is None:
        raise RuntimeError("run_distributed runs under torchrun (RANK and WORLD_SIZE are not set)")
    rank, world, local = env
    console = console or Console(stderr=True)
    t0 = time.perf_counter()
    # a model given (e.g. placed over several GPUs by a device map) sets the rank's device: its first parameter's
    device = next(loaded.transformer.parameters()).device if loaded is not None else rank_device(exp.device, local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=BARRIER_TIMEOUT)

    def barrier() -> None:
        dist.barrier(device_ids=[device.index]) if device.type == "cuda" else dist.barrier()

    try:
        if loaded is None and exp.inputs.uses_pipeline:  # prompts need the whole pipeline, on this rank's device
            from interp.experiments.runner import load_pipeline_of

            loaded = load_pipeline_of(exp, device)
        loaded = loaded or load_model(exp.model, device)
        res = run_experiment(exp, out, loaded=loaded, wandb="disabled", progress=progress and rank == 0,
                             base_dir=base_dir, console=console, shard=(rank, world), force=force)  # fmt: skip
        if res.cache_hit:  # results.h5 was complete before any rank started: every rank sees it
            return res
        barrier()
        if rank == 0:
            res = finalize(out, wandb=wandb, console=console, t0=t0)
        barrier()
        return res if rank == 0 else RunResult(Path(out), Path(out) / "results.h5", {}, False, [])
    finally:
        if started:
            dist.destroy_process_group()


def torchrun_command(run_args: list[str], nproc: int) -> list[str]:
    """``torchrun --standalone --nproc-per-node N -m interp run <run_args>`` with this Python."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "interp",
            "run", *run_args]  # fmt: skip


def default_nproc(device: str) -> int:
    """Visible GPUs for a CUDA experiment, else 2 CPU ranks."""
    return max(torch.cuda.device_count(), 1) if torch.device(device).type == "cuda" else 2


def launch_torchrun(run_args: list[str], nproc: int, env: dict | None = None) -> int:
    """Run ``interp run <run_args>`` on ``nproc`` ranks of this host through torchrun; returns its exit code."""
    return subprocess.call(torchrun_command(run_args, nproc), env=env)


# ---- Ray ----------------------------------------------------------------------------------------------------------
def _ray_rank(exp_json: str, out: str, rank: int, world: int, base_dir: str | None, force: bool = False) -> dict:
    """One Ray task: rank ``rank``'s shard (on the GPU Ray assigned, if the experiment runs on CUDA)."""
    exp = Experiment.validate_data(json.loads(exp_json))
    res = run_experiment(exp, out, loaded=load_model(exp.model, rank_device(exp.device, 0)), wandb="disabled",
                         progress=False, base_dir=base_dir, shard=(rank, world), force=force)  # fmt: skip
    return {"cache_hit": res.cache_hit, "summary": res.summary, "figures": [str(p) for p in res.figures]}


def run_ray(exp: Experiment, out: str | Path, *, nproc: int | None = None, address: str | None = None,
            wandb: str = "offline", base_dir: str | Path | None = None, max_retries: int = 2,
            console: Console | None = None, force: bool = False) -> RunResult:  # fmt: skip
    """Shard ``exp`` over ``nproc`` Ray tasks (default: the cluster's GPUs for a CUDA experiment, else its CPUs), then
    merge here. ``address``: an existing cluster (``ray start --head`` / ``auto``); None starts a local one. ``out``
    must be on a filesystem every node sees."""
    import ray  # optional dependency: the [ray] extra

    console = console or Console(stderr=True)
    t0 = time.perf_counter()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        gpu = torch.device(exp.device).type == "cuda"
        resources = ray.cluster_resources()
        world = nproc or max(int(resources.get("GPU" if gpu else "CPU", 1)), 1)
        task = ray.remote(num_gpus=1 if gpu else 0, num_cpus=0 if gpu else 1, max_retries=max_retries)(_ray_rank)
        kind = "GPU" if gpu else "CPU"
        console.print(f"ray: {world} ranks; the cluster has {resources.get(kind, 0):g} {kind}s")
        base = None if base_dir is None else str(Path(base_dir).resolve())
        ranks = ray.get([task.remote(exp.canonical(), str(out), r, world, base, force) for r in range(world)])
        if all(r["cache_hit"] for r in ranks):
            return RunResult(out, out / "results.h5", ranks[0]["summary"], True, [Path(p) for p in ranks[0]["figures"]])
        return finalize(out, wandb=wandb, console=console, t0=t0)
    finally:
        if started:
            ray.shutdown()

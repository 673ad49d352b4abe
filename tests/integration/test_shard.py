"""Scale-out: the batch plan sharded over ranks (torchrun with gloo, Ray), shards merged into the single-process file,
a dead rank's batches finished by a rerun; model placement by device map keeps tracing exact."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import h5py
import pytest
import torch
import yaml
from typer.testing import CliRunner

from interp.apps.launch import torchrun_command
from interp.cli import app
from interp.experiments import Experiment, plan, run_experiment
from interp.experiments.shard import ShardError, diff_results, merge_shards, rank_batches, shard_path, shard_status
from interp.models import load_model

runner = CliRunner()


@pytest.fixture(scope="module")
def exp_file(maze_dir, tmp_path_factory) -> Path:
    """3 mazes x 3 sweep points, 3 rows a batch: 6 batches (a baseline row in two batches of each maze)."""
    data = {"name": "shard-test", "model": str(maze_dir), "inputs": {"count": 3}, "max_batch": 3,
            "capture": {"x0": True, "sites": ["blocks.1.hook_resid_post"]},
            "interventions": [{"kind": "skip", "layers": 0}], "sweep": {"interventions.0.layers": [0, 1, 2]},
            "metrics": ["solve_rate", "path_recall", "mse", "x0_distance"]}  # fmt: skip
    f = tmp_path_factory.mktemp("exp") / "exp.yaml"
    f.write_text(yaml.safe_dump(data))
    return f


@pytest.fixture(scope="module")
def single(exp_file, tmp_path_factory) -> Path:
    """The single-process run's results.h5."""
    out = tmp_path_factory.mktemp("single")
    return run_experiment(Experiment.load(exp_file), out, wandb="disabled", progress=False).results


class Counter:
    def __init__(self, loaded):
        self.n = 0
        loaded.transformer.register_forward_hook(lambda *a: setattr(self, "n", self.n + 1))


def _rank(rank: int, world: int, port: int, exp_file: Path, out: Path) -> None:
    """One rank as torchrun starts it (its environment), running what ``torchrun -m interp run`` runs."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    from interp.apps.launch import run_distributed

    run_distributed(Experiment.load(exp_file), out, wandb="disabled", progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _same_summary(a: Path, b: Path) -> bool:
    x, y = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    return {**x, "wall_s": 0} == {**y, "wall_s": 0}


def test_two_gloo_ranks_equal_a_single_process_run(exp_file, single, tmp_path):
    """2 ranks (torch.multiprocessing, forked: no re-import) in one gloo process group: each runs its batches into
    its shard, rank 0 merges after a barrier."""
    out = tmp_path / "dist"
    torch.multiprocessing.start_processes(_rank, args=(2, _free_port(), exp_file, out), nprocs=2, start_method="fork")
    assert diff_results(single, out / "results.h5") == []
    assert not (out / "shards").exists() and _same_summary(single.parent, out)  # merged, then removed
    assert (out / "figures" / "mse_vs_layers.png").exists()


def test_torchrun_entry_points(exp_file, single, tmp_path, monkeypatch):
    """``interp run`` under torchrun's environment runs its rank's shard and merges (here a world of 1, in process);
    ``interp run --launcher torchrun`` starts ``torchrun --standalone --nproc-per-node N -m interp run ...``."""
    for k, v in dict(RANK=0, WORLD_SIZE=1, LOCAL_RANK=0, MASTER_ADDR="127.0.0.1", MASTER_PORT=_free_port()).items():
        monkeypatch.setenv(k, str(v))
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the launcher's default mode (offline) is what is checked below
    res = runner.invoke(app, ["run", str(exp_file), "--out", str(tmp_path / "w1"), "--wandb", "disabled"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert diff_results(single, tmp_path / "w1" / "results.h5") == []
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda c, env=None: calls.append(c) or 0)
    res = runner.invoke(app, ["run", str(exp_file), "--launcher", "torchrun", "--nproc", "3", "--out", "o",
                              "--set", "inputs.count=2"])  # fmt: skip
    assert res.exit_code == 0, res.output
    want = torchrun_command([str(exp_file), "--out", "o", "--wandb", "offline", "--set", "inputs.count=2"], 3)
    assert calls == [want]
    assert calls[0][1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=3", "-m"]


@pytest.mark.slow
def test_real_torchrun_two_ranks(exp_file, single, tmp_path):
    out = tmp_path / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "MPLBACKEND": "Agg"}
    cmd = torchrun_command([str(exp_file), "--out", str(out), "--wandb", "disabled"], 2)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert diff_results(single, out / "results.h5") == [] and _same_summary(single.parent, out)


def test_a_dead_rank_loses_only_its_unfinished_batches(exp_file, single, maze_dir, tmp_path):
    e = Experiment.load(exp_file)
    n = len(plan(e, 3).batches)
    assert n == 6 and sorted(rank_batches(n, 0, 2) + rank_batches(n, 1, 2)) == list(range(n))
    assert rank_batches(n, 1, 2) == [1, 3, 5]
    loaded = load_model(str(maze_dir))
    out = tmp_path / "cut"
    run_experiment(e, out, loaded=loaded, wandb="disabled", progress=False, shard=(0, 2))

    def die(i):
        if i == 1:  # rank 1 is killed after its first batch (1) is on disk
            raise KeyboardInterrupt("simulated rank death")

    with pytest.raises(KeyboardInterrupt):
        run_experiment(e, out, loaded=loaded, wandb="disabled", progress=False, shard=(1, 2), on_batch=die)
    assert shard_status(out)["missing"] == [3, 5]
    with pytest.raises(ShardError, match=r"2 of 6 batches are not finished in any shard \(batches 3,5; ranks \[1\]"):
        merge_shards(out)
    bad = runner.invoke(app, ["run", "--merge", str(out)])
    assert bad.exit_code == 2 and "ranks [1] of 2" in bad.output

    count = Counter(loaded)  # the rerun: rank 0 is done, rank 1 runs batches 3 and 5 only (2 steps each)
    run_experiment(e, out, loaded=loaded, wandb="disabled", progress=False, shard=(0, 2))
    assert count.n == 0
    run_experiment(e, out, loaded=loaded, wandb="disabled", progress=False, shard=(1, 2))
    assert count.n == 2 * 2
    with h5py.File(shard_path(out, 1, 2)) as f:
        assert f["batch_done"][:].tolist() == [0, 1, 0, 1, 0, 1] and f.attrs["shard_world"] == 2
    ok = runner.invoke(app, ["run", "--merge", str(out), "--wandb", "disabled"])
    assert ok.exit_code == 0, ok.output + repr(ok.exception)
    assert diff_results(single, out / "results.h5") == []
    again = run_experiment(e, out, loaded=loaded, wandb="disabled", progress=False, shard=(1, 2))
    assert again.cache_hit and count.n == 4


@pytest.mark.slow
def test_ray_launcher_on_a_local_cluster(exp_file, single, tmp_path):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[ray]')")
    from interp.apps.launch import run_ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}})  # fmt: skip
    try:
        res = run_ray(Experiment.load(exp_file), tmp_path / "ray", nproc=2, wandb="disabled")
    finally:
        ray.shutdown()
    assert not res.cache_hit and diff_results(single, res.results) == []


def test_device_map_placement_keeps_tracing_exact(maze_dir):
    """A device map (here: every block on the CPU, with accelerate's hooks as a multi-GPU map installs them) leaves
    the sites and the outputs of a traced forward unchanged."""
    pytest.importorskip("accelerate")
    from accelerate import dispatch_model

    from interp.trace import ForwardPlan, Traced

    ref = load_model(str(maze_dir))
    placed = load_model(str(maze_dir), device_map="cpu")
    t = placed.transformer
    blocks = [path for path, _ in placed.adapter.blocks(t)]  # a map as "balanced" makes: one device per block
    dmap = {**{n: "cpu" for n, _ in t.named_children() if n != "blocks"}, **{p: "cpu" for p in blocks},
            **{n: "cpu" for n, _ in t.named_parameters(recurse=False)}}  # fmt: skip
    dispatch_model(t, device_map=dmap, main_device="cpu", force_hooks=True)  # accelerate's hooks on every block
    assert all(hasattr(block, "_hf_hook") for _, block in placed.adapter.blocks(t))
    assert placed.weight_hash == ref.weight_hash
    a, t0, g = ref.adapter, ref.transformer, torch.Generator().manual_seed(0)
    text = a.random_text(t0, 2, g)
    x = torch.randn(2, a.latent_channels(t0), *a.default_latent_size(t0), generator=g)
    cond = torch.randn(2, a.condition_channels(t0), *x.shape[2:], generator=g)
    ts = torch.tensor([500.0, 500.0])
    fp = ForwardPlan(read=["blocks.*.hook_resid_post", "blocks.1.hook_attn_out"],
                     edit={"blocks.0.hook_mlp_out": lambda site, step, v: 0.5 * v})  # fmt: skip
    traced = Traced(t)  # nnsight's forward on each block re-applies accelerate's hook around the hooked forward
    block = placed.adapter.blocks(t)[0][1]
    hits, aligned = [], []
    block.hook_resid_post.register_forward_hook(lambda *args: hits.append(1))
    pre = block._hf_hook.pre_forward
    block._hf_hook.pre_forward = lambda *args, **kw: aligned.append(1) or pre(*args, **kw)
    assert torch.equal(traced(x, ts, text, cond), Traced(t0)(x, ts, text, cond)) and hits == aligned == [1]
    want = Traced(t0).run(x, ts, text, cond, plan=fp)
    got = traced.run(x, ts, text, cond, plan=fp)
    assert hits == aligned == [1, 1]  # inside a trace too: inputs aligned to the block's device, hook points run
    assert torch.equal(want.output, got.output)
    assert want.acts.keys() == got.acts.keys() and all(torch.equal(want.acts[k], got.acts[k]) for k in want.acts)

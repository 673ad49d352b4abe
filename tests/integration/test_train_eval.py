"""Training (tiny config, CPU), checkpoints, evaluation to samples.h5, and the shipped maze model itself."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from interp.apps.evaluate import eval_maze, parse_sizes, sample_noise
from interp.cli import app
from interp.models import load_model
from interp.tasks import maze as mz
from interp.train import TrainConfig, pack_shards, train, unpack_shards

TINY = [
    "model.num_layers=2", "model.attention_head_dim=8", "model.num_attention_heads=2", "model.ffn_dim=32",
    "model.text_dim=8", "model.freq_dim=16", "data.tokens_per_batch=1500", "data.workers=0",
    "data.size_weights={3: 1.0}", "eval.n=2", "eval.steps=2", "eval.size=3", "eval.every=100", "log_every=1",
    "save_every=2", "wandb=disabled",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    cfg = TrainConfig.from_yaml("experiments/train/maze-wan.yaml", TINY + [f"out={out}", "max_steps=3"])
    state = train(cfg, progress=False)
    return cfg, out / "ckpt", state


def test_train_checkpoints_and_resumes(trained, tmp_path):
    cfg, ckpt, state = trained
    assert state["step"] == 3 and state["samples"] == 3 * (1500 // (5 * 49))
    assert state["history"][-1]["step"] == 3 and 0.0 <= state["history"][-1]["eval/solve_3"] <= 1.0
    meta = json.loads((ckpt / "interp.json").read_text())
    assert meta["task"] == "maze" and meta["frames"] == 5 and meta["text_dim"] == 8
    from diffusers import WanTransformer3DModel

    t = WanTransformer3DModel.from_pretrained(ckpt, subfolder="transformer")
    assert t.config.num_layers == 2 and t.config.in_channels == 7
    # resume: the step counter continues and the weights start from the checkpoint
    cfg2 = cfg.model_copy(update={"resume_from": str(ckpt), "max_steps": 5, "out": str(tmp_path / "r")})
    assert train(cfg2, progress=False)["step"] == 5
    # transfer shards rebuild the same weights
    shards = pack_shards(ckpt, tmp_path / "pk", max_bytes=20_000)
    assert len(shards) > 1
    rebuilt = unpack_shards(tmp_path / "pk", tmp_path / "rebuilt")
    a, b = load_model(str(ckpt)), load_model(str(rebuilt))
    assert a.weight_hash == b.weight_hash and a.task == b.task


def test_config_errors_name_the_field():
    with pytest.raises(Exception, match="size_weights"):
        TrainConfig.from_yaml("experiments/train/maze-wan.yaml", ["data.size_weights={9: 1.0}"])
    with pytest.raises(Exception, match="lrr"):
        TrainConfig.from_yaml("experiments/train/maze-wan.yaml", ["optim.lrr=1"])


def test_eval_is_independent_of_batching(trained):
    _, ckpt, _ = trained
    model = load_model(str(ckpt))
    one = eval_maze(model, size=3, n=3, steps=2, batch=1)
    all_ = eval_maze(model, size=3, n=3, steps=2, batch=3)
    assert np.array_equal(one.videos, all_.videos)
    assert not np.array_equal(one.videos[0], one.videos[1])  # different mazes and noise
    assert torch.equal(sample_noise((2, 3), 0, 1), sample_noise((2, 3), 0, 1))


def test_eval_cli_writes_samples(trained, tmp_path):
    _, ckpt, _ = trained
    res = CliRunner().invoke(app, ["eval", str(ckpt), "--task", "maze", "--size", "3", "--n", "2", "--steps", "2",
                                   "--seed", "4", "--out", str(tmp_path)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "solve rate" in res.output
    with h5py.File(tmp_path / "samples.h5") as f:
        assert f["video"].shape == (2, 5, 28, 28, 3) and f["video"].dtype == np.uint8
        assert f["condition"].shape == (2, 28, 28, 3)
        specs = [mz.Maze.from_dict(json.loads(s)) for s in f["mazes"].asstr()[()]]
        assert [m.key() for m in specs] == [m.key() for m in mz.eval_mazes(3, 2, 4)]
        assert set(f["scores"]) >= {"success", "path_recall", "extra_cells", "wall_crossings", "first_frame_fidelity"}
        assert f.attrs["complete"] and f.attrs["n"] == 2
        # the conditioning frame is the maze's first frame
        assert np.array_equal(f["condition"][0], mz.render_video(specs[0], 5)[0])
    bad = CliRunner().invoke(app, ["eval", str(ckpt), "--size", "9"])
    assert bad.exit_code != 0 and "3, 4, 5, 6, 7, 8" in bad.output


def test_parse_sizes():
    assert parse_sizes("3-5,8") == [3, 4, 5, 8]
    with pytest.raises(ValueError):
        parse_sizes("2")


def test_demo_bar_moves_every_denoising_step_and_ends_on_what_to_open(trained, tmp_path, monkeypatch, capsys):
    """The demo's progress bar ticks once per denoising step (not per maze); the filmstrips have a legend; the
    last line names the file to open; the summary holds what the x0 prediction of each step solves."""
    import interp.apps.evaluate as ev
    from interp.apps.demo import run_demo

    ticks: list[int] = []

    class Recording(ev.Progress):
        def add_task(self, description, total=None, **kw):
            ticks.append(int(total))
            return super().add_task(description, total=total, **kw)

        def advance(self, task, advance=1):
            ticks.append(-advance)
            super().advance(task, advance)

    monkeypatch.setattr(ev, "Progress", Recording)
    _, ckpt, _ = trained
    summ = run_demo(tmp_path / "demo", model=str(ckpt), n=2, size=3, steps=3)
    assert ticks == [3, -1, -1, -1]  # 2 mazes in one batch: 3 steps, one tick each
    assert len(summ["x0_solved"]) == 3 and all(0 <= k <= 2 for k in summ["x0_solved"])
    assert len(summ["x0_off_path"]) == 3 and all(v >= 0 for v in summ["x0_off_path"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "open" in last and "filmstrip_0.gif" in last
    assert (tmp_path / "demo" / "filmstrip_1.png").is_file() and (tmp_path / "demo" / "filmstrip_1.gif").is_file()


def test_training_refuses_what_exceeds_the_memory_cap_and_writes_nothing(tmp_path, monkeypatch):
    """The trainer's estimate (weights, EMA, AdamW moments, gradients and a batch's working set) is checked before
    anything is written; force=true trains anyway."""
    from interp.budget import BudgetError

    monkeypatch.setenv("INTERP_MAX_MEMORY_GB", "1e-6")
    cfg = TrainConfig.from_yaml("experiments/train/maze-wan.yaml", TINY + [f"out={tmp_path / 'o'}", "max_steps=1"])
    with pytest.raises(BudgetError, match=r"training is too large: memory .* \(INTERP_MAX_MEMORY_GB\)"):
        train(cfg, progress=False)
    assert not (tmp_path / "o").exists()
    forced = TrainConfig.from_yaml("experiments/train/maze-wan.yaml",
                                   TINY + [f"out={tmp_path / 'o'}", "max_steps=1", "force=true"])  # fmt: skip
    assert train(forced, progress=False)["step"] == 1

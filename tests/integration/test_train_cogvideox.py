"""The second DiT family's maze trainer (CogVideoX, tiny config on CPU): trains, checkpoints, loads, evaluates."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from interp.cli import app
from interp.models import load_model
from interp.train import TrainConfig, build_model, train

TINY = [
    "model.num_layers=2", "model.attention_head_dim=8", "model.num_attention_heads=2", "model.text_dim=8",
    "model.time_embed_dim=16", "data.tokens_per_batch=1500", "data.workers=0", "data.size_weights={3: 1.0}",
    "eval.n=2", "eval.steps=2", "eval.size=3", "eval.every=100", "log_every=1", "save_every=2", "wandb=disabled",
]  # fmt: skip


def test_shipped_config_size():
    cfg = TrainConfig.from_yaml("experiments/train/maze-cogvideox.yaml")
    assert cfg.model.family == "cogvideox" and cfg.model.num_layers >= 12
    import torch

    with torch.device("meta"):
        n = sum(p.numel() for p in build_model(cfg.model).parameters())
    assert 2 * n <= 25e6, f"{n} parameters: {2 * n / 1e6:.1f} MB in bf16"
    # the Wan default is unchanged
    assert TrainConfig.from_yaml("experiments/train/maze-wan.yaml").model.family == "wan"


def test_cogvideox_trains_loads_and_evaluates(tmp_path):
    cfg = TrainConfig.from_yaml("experiments/train/maze-cogvideox.yaml", TINY + [f"out={tmp_path}", "max_steps=2"])
    state = train(cfg, progress=False)
    assert state["step"] == 2 and 0.0 <= state["history"][-1]["eval/solve_3"] <= 1.0
    ckpt = tmp_path / "ckpt"
    assert json.loads((ckpt / "interp.json").read_text())["family"] == "cogvideox"
    m = load_model(str(ckpt))
    assert m.family == "cogvideox" and m.transformer.config.in_channels == 7
    res = CliRunner().invoke(app, ["eval", str(ckpt), "--size", "3", "--n", "2", "--steps", "2"])
    assert res.exit_code == 0, res.output
    assert "solve rate" in res.output

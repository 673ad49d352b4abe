"""CLI verbs models / capture / inspect, over built-in, local-directory and task models."""

from __future__ import annotations

import json

import numpy as np
import torch
from typer.testing import CliRunner

from interp.adapters import ADAPTERS
from interp.cli import app
from interp.store import load_cache

runner = CliRunner()


def test_models_lists_families_and_builtins():
    res = runner.invoke(app, ["models"], terminal_width=200)
    assert res.exit_code == 0, res.output
    for name in ("wan", "cogvideox", "ltx", "hunyuan", "tiny-wan", "tiny-hunyuan", "maze-wan"):
        assert name in res.output


def test_capture_and_inspect_builtin(tmp_path):
    out = tmp_path / "run.h5"
    args = ["capture", "tiny-ltx", "--steps", "3", "--sites", "blocks.*.hook_resid_post,hook_out", "--seed", "1",
            "--out", str(out), "--dtype", "float16", "--pool", "frame", "--guidance", "3", "--shift", "2"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    with load_cache(out) as c:
        assert c.branches == ["cond", "uncond"] and c.config["shift"] == 2.0
        assert c["blocks.2.hook_resid_post"].shape == (3, 1, 3, 16)
        assert c["blocks.2.hook_resid_post"].dtype == torch.float32  # readers give float32
        assert c.file["cond/blocks.2.hook_resid_post"].dtype == np.float16  # stored as float16
    res = runner.invoke(app, ["inspect", str(out)], terminal_width=200)
    assert (
        res.exit_code == 0
        and "uncond/blocks.2.hook_resid_post" in res.output
        and "step,batch,frame,d_model" in res.output
    )


def test_capture_local_dir_and_bad_site(tmp_path):
    ADAPTERS["cogvideox"].tiny(0).save_pretrained(tmp_path / "cog")
    out = tmp_path / "c.h5"
    res = runner.invoke(
        app, ["capture", str(tmp_path / "cog"), "--steps", "2", "--out", str(out), "--sites", "blocks.0.*"]
    )
    assert res.exit_code == 0, res.output
    assert load_cache(out).keys()[0] == "blocks.0.hook_resid_pre"
    res = runner.invoke(
        app, ["capture", "tiny-wan", "--steps", "2", "--out", str(tmp_path / "x.h5"), "--sites", "blocks.0.nope"]
    )
    assert res.exit_code != 0 and "valid: hook_embed" in str(res.exception)


def test_capture_task_model_uses_task_inputs(tmp_path):
    """A model dir with interp.json gets interp.tasks.build_inputs (maze: concat condition, its own latent size)."""
    from interp.tasks import build_inputs

    meta = {"task": "maze", "frames": 3, "text_dim": 8, "text_len": 1, "default_size": 3,
            "sampler": {"steps": 2, "shift": 5.0, "guidance": 1.0}}  # fmt: skip
    ti = build_inputs(meta, 1, 0)
    c_lat, c_cond = ti.latent_shape[1], ti.condition.shape[1]
    a = ADAPTERS["wan"]
    cfg = {
        **a.tiny_config(),
        "in_channels": c_lat + c_cond,
        "out_channels": c_lat,
        "text_dim": 8,
        "patch_size": (1, 4, 4),
    }
    a.model_class(**cfg).save_pretrained(tmp_path / "maze" / "transformer")
    (tmp_path / "maze" / "interp.json").write_text(json.dumps(meta))
    out = tmp_path / "m.h5"
    res = runner.invoke(app, ["capture", str(tmp_path / "maze"), "--out", str(out), "--sites", "hook_embed"])
    assert res.exit_code == 0, res.output
    with load_cache(out) as c:
        assert c.config["steps"] == 2 and c.config["shift"] == 5.0  # the task's sampler defaults
        f, h, w = ti.latent_shape[2:]
        assert c.grid == (f, h // 4, w // 4) and c.latents.shape[1:] == ti.latent_shape

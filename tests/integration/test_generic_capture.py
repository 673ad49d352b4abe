"""``interp capture`` on a model with no exact adapter: the generic adapter's block sites, end to end."""

from __future__ import annotations

import diffusers
import pytest
import torch
from helpers.video_dits import TINY
from typer.testing import CliRunner

import interp.adapters as adapters
from interp.cli import app
from interp.store import load_cache

runner = CliRunner()


def _save(name, path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        getattr(diffusers, name)(**TINY[name].config).save_pretrained(path)


@pytest.mark.parametrize("name", ["AllegroTransformer3DModel", "ChronoEditTransformer3DModel"])  # no exact adapters
def test_capture_a_generic_model(tmp_path, monkeypatch, name):
    monkeypatch.setattr(adapters, "_WARNED", set())
    _save(name, tmp_path / "m")
    out = tmp_path / "run.h5"
    args = ["capture", str(tmp_path / "m"), "--steps", "2", "--sites", "blocks.*.hook_resid_post,hook_out",
            "--out", str(out)]  # fmt: skip
    with pytest.warns(UserWarning, match="no exact adapter"):
        res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    cfg = getattr(diffusers, name).load_config(tmp_path / "m")  # the saved config, defaults filled in
    with load_cache(out) as c:
        n_blocks = cfg["num_layers"]
        assert sorted(s for s in c.keys() if s.startswith("blocks.")) == [
            f"blocks.{i}.hook_resid_post" for i in range(n_blocks)
        ]
        steps, batch, tokens, d = c[f"blocks.{n_blocks - 1}.hook_resid_post"].shape
        assert (steps, batch, d) == (2, 1, cfg["num_attention_heads"] * cfg["attention_head_dim"])
        latent = c["hook_out"].shape  # (step, batch, C, F, H, W): tokens are the latent's patches
        p = cfg["patch_size"]
        pt, ph, pw = (1, p, p) if isinstance(p, int) else p
        grid = (latent[-3] // pt, latent[-2] // ph, latent[-1] // pw)
        assert tuple(c.grid) == grid and tokens == grid[0] * grid[1] * grid[2]


def test_capture_a_generic_model_missing_an_input_says_which(tmp_path):
    _save("Kandinsky5Transformer3DModel", tmp_path / "k")
    res = runner.invoke(app, ["capture", str(tmp_path / "k"), "--steps", "1", "--out", str(tmp_path / "k.h5")])
    assert res.exit_code == 2
    assert "Kandinsky5Transformer3DModel.forward also needs pooled_projections, text_rope_pos, visual_rope_pos" in (
        res.output
    )
    assert not (tmp_path / "k.h5").exists()

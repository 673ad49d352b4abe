"""Shared fixtures: tiny random models of every family and matching random inputs."""

from __future__ import annotations

import pytest
import torch

from interp.adapters import ADAPTERS

# tiny models: one thread is as fast, and does not collapse when the 2-core machine is busy
torch.set_num_threads(1)

FAMILIES = list(ADAPTERS)


@pytest.fixture(autouse=True)
def _seeded_torch():
    """Every test starts from torch's global seed 0: a test drawing unseeded values (``torch.randn`` with no
    generator) draws the same ones whichever tests ran before it, so a tolerance is passed or missed every run."""
    torch.manual_seed(0)


def tiny_inputs(family: str, model, batch: int = 2, seed: int = 0):
    """(latents, timestep, text) for one forward of a tiny model."""
    a = ADAPTERS[family]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, a.latent_channels(model), *a.default_latent_size(model), generator=g)
    text = a.random_text(model, batch, g)
    return x, torch.full((batch,), 700.0), text


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


TINY_MAZE_META = {"task": "maze", "frames": 3, "text_dim": 8, "text_len": 1, "default_size": 3,
                  "sampler": {"steps": 2, "shift": 5.0, "guidance": 1.0}}  # fmt: skip


@pytest.fixture(scope="session")
def maze_dir(tmp_path_factory):
    """A tiny random Wan (3 blocks, d_model 16) with maze task metadata: 3x3 mazes, 3 frames, 2 steps."""
    import json

    d = tmp_path_factory.mktemp("models") / "tiny-maze"
    a = ADAPTERS["wan"]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        cfg = {**a.tiny_config(), "in_channels": 7, "out_channels": 3, "text_dim": 8, "patch_size": (1, 4, 4)}
        a.model_class(**cfg).save_pretrained(d / "transformer")
    (d / "interp.json").write_text(json.dumps(TINY_MAZE_META))
    return d


@pytest.fixture(scope="session")
def tiny_organism(tmp_path_factory):
    """The organism's pipeline (its tokenizer, text encoder, scheduler and interp.json: the task suite) with a tiny
    random transformer (4 blocks, d_model 16) and a tiny random VAE of the same compression (4x space, 4x time):
    every suite analysis runs through the whole pipeline in seconds; its videos solve nothing."""
    import json
    import shutil

    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from interp.models import data_path

    src, d = data_path("organism"), tmp_path_factory.mktemp("models") / "tiny-organism"
    for part in ("tokenizer", "text_encoder", "scheduler"):
        shutil.copytree(src / part, d / part)
    for f in ("model_index.json", "interp.json"):
        shutil.copy(src / f, d / f)
    cfg = json.loads((src / "transformer" / "config.json").read_text())
    with torch.random.fork_rng():
        torch.manual_seed(0)
        WanTransformer3DModel(patch_size=tuple(cfg["patch_size"]), num_attention_heads=2, attention_head_dim=8,
                              in_channels=cfg["in_channels"], out_channels=cfg["out_channels"],
                              text_dim=cfg["text_dim"], freq_dim=16, ffn_dim=32, num_layers=4,
                              cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                              ).save_pretrained(d / "transformer")  # fmt: skip
        AutoencoderKLWan(base_dim=4, z_dim=16, dim_mult=[1, 1, 1], num_res_blocks=1,
                         temperal_downsample=[True, True], scale_factor_spatial=4,
                         scale_factor_temporal=4).save_pretrained(d / "vae")  # fmt: skip
    return d

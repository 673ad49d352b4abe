"""Shared fixtures: tiny random models of every family and matching random inputs."""

from __future__ import annotations

import pytest
import torch

from interp.adapters import ADAPTERS

# tiny models: one thread is as fast, and does not collapse when the 2-core machine is busy
torch.set_num_threads(1)

FAMILIES = list(ADAPTERS)


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

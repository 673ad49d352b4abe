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

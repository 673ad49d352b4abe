"""Synthetic captures in the store's layout, with planted linear signals: for tests, the benchmark and demos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from jaxtyping import Float

from interp.store.plain import write_plain


def write_cache(
    path: str | Path,
    acts: dict[str, Float[np.ndarray, "steps batch tokens d"]],
    *,
    mazes: list | None = None,
    timesteps: np.ndarray | None = None,
    branch: str | None = None,
    config: dict | None = None,
) -> Path:
    """Write activations (site -> (steps, batch, tokens, d)) as a capture file in the store contract's layout."""
    n_steps = next(iter(acts.values())).shape[0]
    t = np.linspace(1000, 0, n_steps, endpoint=False) if timesteps is None else timesteps
    t = np.asarray(t, dtype=np.float32)
    instances = None if mazes is None else [json.dumps(m.to_dict()) for m in mazes]
    return write_plain(path, acts, branch=branch, instances=instances, timesteps=t, sigmas=t / 1000,
                       dtype=np.float16, chunked=True, config=config or {"synthetic": True})  # fmt: skip


def anisotropic_noise(
    rng: np.random.Generator, shape: tuple[int, ...], d: int, decay: float = 2.0, outliers: int = 2
) -> Float[np.ndarray, "... d"]:
    """Residual-stream-like noise: a decaying spectrum in a random basis plus a few large-magnitude dimensions."""
    spectrum = np.logspace(0, -decay, d)
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
    x = (rng.standard_normal((*shape, d)) * spectrum) @ basis.T
    x[..., :outliers] *= 20.0
    return x.astype(np.float32)


def plant(
    x: Float[np.ndarray, "... d"], signal: np.ndarray, direction: np.ndarray, strength: float
) -> Float[np.ndarray, "... d"]:
    """Add ``strength * standardized(signal) * direction`` (unit direction) to activations ``x``."""
    s = signal.astype(np.float32)
    s = (s - s.mean()) / max(float(s.std()), 1e-6)
    u = direction / np.linalg.norm(direction)
    return x + strength * s[..., None] * u.astype(np.float32)

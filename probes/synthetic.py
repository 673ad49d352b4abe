"""Synthetic captures in the store's layout, with planted linear signals: for tests, the benchmark and demos."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
from jaxtyping import Float


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
    path = Path(path)
    n_steps = next(iter(acts.values())).shape[0]
    with h5py.File(path, "w") as f:
        f.attrs["config"] = json.dumps(config or {"synthetic": True})
        f.attrs["schema_version"] = 1
        root = f.create_group(branch) if branch else f
        for site, a in acts.items():
            root.create_dataset(site, data=a.astype(np.float16), chunks=(1, *a.shape[1:]))
        t = np.linspace(1000, 0, n_steps, endpoint=False) if timesteps is None else timesteps
        f.create_dataset("timesteps", data=np.asarray(t, dtype=np.float32))
        f.create_dataset("sigmas", data=np.asarray(t, dtype=np.float32) / 1000)
        if mazes is not None:
            f.create_dataset("task/instances", data=[json.dumps(m.to_dict()) for m in mazes])
    return path


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

"""Reading activations for probes: the one place that knows the file layout.

:func:`open_cache` is the only constructor the rest of ``probes`` uses. Captures written by ``interp.store``
(schema ``interp.capture``) are read through its :class:`~interp.store.ActivationCache`; other files in the store
contract's plain layout (one dataset per site, named by the site, shaped (steps, batch, tokens, d_model), at the
root or inside a branch group; ``timesteps``; ``task/instances``) through :class:`interp.store.plain.PlainReader`. Both readers offer the
same small interface: ``sites``, ``n_steps``, ``batch``, ``tokens``, ``d_model(site)``, ``steps``, ``timesteps``,
``grid``, ``config``, ``select(patterns)``, ``read(site, position)``, ``instances_json()``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from jaxtyping import Float

from interp.sites import site_order
from interp.store import CAPTURE, ActivationCache, file_schema
from interp.store.plain import BRANCHES, INSTANCE_PATHS, PlainReader

__all__ = ["BRANCHES", "INSTANCE_PATHS", "CacheReader", "StoreReader", "open_cache", "site_order"]


CacheReader = PlainReader  # the plain-layout reader; its home is interp.store.plain


class StoreReader(CacheReader):
    """The same interface over ``interp.store.ActivationCache`` (per-token sites only; pooled ones are skipped)."""

    def __init__(self, path: str | Path, branch: str | None = None):
        self.path = Path(path)
        self.cache = ActivationCache(self.path, branch)
        self.file = self.cache.file
        self.branch = self.cache.branch_name
        self.sites = [k for k in self.cache.keys() if self.cache.axes(k) == "step,batch,token,d_model"]
        self.sites.sort(key=site_order)
        if not self.sites:
            raise ValueError(
                f"{self.path} (branch {self.branch!r}) stores no per-token site; stored: {self.cache.keys()}"
            )
        self.n_steps = len(self.cache.steps)
        self._shape = {s: tuple(self.cache.select(int(self.cache.steps[0]))[s].shape[1:]) for s in self.sites}
        self.batch, self.tokens = next(iter(self._shape.values()))[:2]
        self.token_index = self.cache.stored_token_index  # a capture that kept some tokens: their grid indices

    def d_model(self, site: str) -> int:
        return int(self._shape[site][-1])

    @property
    def timesteps(self) -> np.ndarray:
        return self.cache.timesteps.double().numpy()

    @property
    def steps(self) -> np.ndarray:
        return np.asarray(self.cache.steps, dtype=int)

    @property
    def grid(self) -> tuple[int, int, int] | None:
        return self.cache.grid

    @property
    def config(self) -> dict:
        return self.cache.config

    def read(self, site: str, step: int) -> Float[np.ndarray, "batch tokens d"]:
        if site not in self.sites:
            raise KeyError(f"site {site!r} not in {self.path.name}; per-token sites: {self.sites}")
        if not 0 <= step < self.n_steps:
            raise IndexError(f"step position {step} outside 0..{self.n_steps - 1}")
        return self.cache.select(int(self.cache.steps[step]))[site][0].float().numpy()

    def close(self) -> None:
        self.cache.close()


def open_cache(path: str | Path, branch: str | None = None) -> CacheReader:
    """Open a capture for reading: ``interp.store`` files through its reader, plain-layout files through the plain reader."""
    if not Path(path).exists():
        raise FileNotFoundError(f"no cache file at {path}")
    is_store = file_schema(path) == CAPTURE.name
    return StoreReader(path, branch) if is_store else CacheReader(path, branch)

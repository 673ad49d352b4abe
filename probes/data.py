"""Reading activations for probes: the one place that knows the file layout.

:func:`open_cache` is the only constructor the rest of ``probes`` uses. Captures written by ``interp.store``
(attribute ``branches``) are read through its :class:`~interp.store.ActivationCache`; other files in the store
contract's plain layout (one dataset per site, named by the site, shaped (steps, batch, tokens, d_model), at the
root or inside a branch group; ``timesteps``; ``task/instances``) through h5py directly. Both readers offer the
same small interface: ``sites``, ``n_steps``, ``batch``, ``tokens``, ``d_model(site)``, ``steps``, ``timesteps``,
``grid``, ``config``, ``select(patterns)``, ``read(site, position)``, ``instances_json()``.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import h5py
import numpy as np
from jaxtyping import Float

BRANCHES = ("cond", "uncond")
INSTANCE_PATHS = ("task/instances", "instances")
_HOOK_ORDER = ("hook_resid_pre", "hook_attn_out", "hook_cross_attn_out", "hook_mlp_out", "hook_resid_post")
_SITE = re.compile(r"^(hook_[A-Za-z0-9_]+|blocks\.\d+\.[A-Za-z0-9_.]+)$")


def site_order(site: str) -> tuple:
    """Sort key putting sites in execution order: ``hook_embed``, then blocks by index and sublayer, ``hook_out``."""
    m = re.match(r"^blocks\.(\d+)\.(.+)$", site)
    if m:
        hook = m.group(2)
        return (1, int(m.group(1)), _HOOK_ORDER.index(hook) if hook in _HOOK_ORDER else len(_HOOK_ORDER), hook)
    return (0 if site != "hook_out" else 2, 0, 0, site)


class CacheReader:
    """Activations of one capture: ``read(site, step)`` gives one (batch, tokens, d_model) slice as float32."""

    def __init__(self, path: str | Path, branch: str | None = None):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no cache file at {self.path}")
        self.file = h5py.File(self.path, "r")
        groups = [b for b in BRANCHES if isinstance(self.file.get(b), h5py.Group)]
        if branch is None:
            if groups and not self._site_names(self.file):
                raise ValueError(f"{self.path} keeps its sites in branch groups {groups}; pass one as branch")
            self.root = self.file
        else:
            if branch not in groups:
                raise ValueError(f"branch {branch!r} not in {self.path}; branches there: {groups or 'none'}")
            self.root = self.file[branch]
        self.branch = branch
        self.sites = sorted(self._site_names(self.root), key=site_order)
        if not self.sites:
            raise ValueError(f"{self.path} holds no site datasets (4-D, named like 'blocks.0.hook_resid_post')")
        shapes = {self.root[s].shape for s in self.sites}
        if len({sh[:3] for sh in shapes}) != 1:
            raise ValueError(f"sites in {self.path} disagree on (steps, batch, tokens): {sorted(shapes)}")
        self.n_steps, self.batch, self.tokens, _ = next(iter(shapes))

    @staticmethod
    def _site_names(group: h5py.Group) -> list[str]:
        return [k for k, v in group.items() if isinstance(v, h5py.Dataset) and v.ndim == 4 and _SITE.match(k)]

    def d_model(self, site: str) -> int:
        return int(self.root[site].shape[-1])

    def _array(self, name: str) -> np.ndarray | None:
        for g in (self.root, self.file):
            if name in g and isinstance(g[name], h5py.Dataset):
                return g[name][()]
        return None

    @property
    def timesteps(self) -> np.ndarray:
        t = self._array("timesteps")
        return np.arange(self.n_steps, dtype=float) if t is None else np.asarray(t, dtype=float).reshape(-1)

    @property
    def steps(self) -> np.ndarray:
        """Indices of the captured denoising steps (``steps`` dataset or attribute; else 0..n_steps-1)."""
        s = self._array("steps")
        if s is None:
            s = self.file.attrs.get("steps")
        return np.arange(self.n_steps) if s is None else np.asarray(s, dtype=int).reshape(-1)

    @property
    def grid(self) -> tuple[int, int, int] | None:
        g = self.file.attrs.get("grid")
        return None if g is None else tuple(int(x) for x in np.asarray(g).reshape(-1))

    @property
    def config(self) -> dict:
        raw = self.file.attrs.get("config")
        if raw is None:
            return {}
        return json.loads(raw if isinstance(raw, str) else bytes(raw).decode())

    def select(self, patterns: list[str] | None) -> list[str]:
        """Sites matching any glob pattern (all sites when ``patterns`` is empty), in execution order."""
        if not patterns:
            return list(self.sites)
        out = [s for s in self.sites if any(fnmatch.fnmatchcase(s, p) for p in patterns)]
        if not out:
            raise ValueError(f"no site matches {patterns}; sites in {self.path.name}: {self.sites}")
        return out

    def read(self, site: str, step: int) -> Float[np.ndarray, "batch tokens d"]:
        """One (batch, tokens, d_model) slice at position ``step`` of the steps axis, as float32."""
        if site not in self.sites:
            raise KeyError(f"site {site!r} not in {self.path.name}; sites: {self.sites}")
        if not 0 <= step < self.n_steps:
            raise IndexError(f"step position {step} outside 0..{self.n_steps - 1}")
        return np.asarray(self.root[site][step], dtype=np.float32)

    def instances_json(self) -> list[str] | None:
        """The task instances' JSON strings, or None when the capture stored none."""
        for name in INSTANCE_PATHS:
            if name in self.file:
                raw = self.file[name][()]
                return [r.decode() if isinstance(r, bytes) else str(r) for r in np.asarray(raw).reshape(-1)]
        return None

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> CacheReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StoreReader(CacheReader):
    """The same interface over ``interp.store.ActivationCache`` (per-token sites only; pooled ones are skipped)."""

    def __init__(self, path: str | Path, branch: str | None = None):
        from interp.store import ActivationCache

        self.path = Path(path)
        self.cache = ActivationCache(self.path, branch)
        self.file = self.cache.file
        self.branch = self.cache.branch_name
        self.sites = [k for k in self.cache.keys() if self.cache.axes(k) == "step,batch,token,d_model"]
        self.sites.sort(key=site_order)
        if not self.sites:
            raise ValueError(f"{self.path} (branch {self.branch!r}) stores no per-token site; stored: {self.cache.keys()}")
        self.n_steps = len(self.cache.steps)
        self._shape = {s: tuple(self.cache.select(int(self.cache.steps[0]))[s].shape[1:]) for s in self.sites}
        self.batch, self.tokens = next(iter(self._shape.values()))[:2]

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
    """Open a capture for reading: ``interp.store`` files through its reader, plain-layout files through h5py."""
    if not Path(path).exists():
        raise FileNotFoundError(f"no cache file at {path}")
    with h5py.File(path, "r") as f:
        is_store = "branches" in f.attrs
    return StoreReader(path, branch) if is_store else CacheReader(path, branch)

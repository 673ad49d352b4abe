"""Reading activations from an interp HDF5 store: the one place that knows the file layout.

Layout (the store contract): one dataset per site, named by the site (``hook_embed``, ``blocks.3.hook_resid_post``),
shaped (steps, batch, tokens, d_model), at the root or inside a branch group (``cond`` / ``uncond``); datasets
``timesteps`` and ``sigmas``; the task instances (JSON of ``Maze.to_dict()``) in ``task/instances`` when the capture
ran a task model. :func:`open_cache` is the only constructor the rest of ``probes`` uses, so switching to the
store's own reader is a change here only.
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


def open_cache(path: str | Path, branch: str | None = None) -> CacheReader:
    """Open a capture for reading (switch here to ``interp.store``'s reader once it exists)."""
    return CacheReader(path, branch)

"""The plain layout: one dataset per site, named by the site, shaped (steps, batch, tokens, d_model), at the root or
inside a branch group; ``timesteps``; ``task/instances``; attrs ``grid`` (f, h, w), ``config`` (JSON). Written by the
maze LM's capture, the model comparison and other tools (a file of another tool may carry no schema attribute at
all); read by :class:`PlainReader`, which ``probes`` uses for every file that is not an ``interp.store`` capture.

Layout (schema ``interp.plain`` 1, optional)::

    /                      attrs: schema, schema_version, complete, grid, config (JSON), and any others given
    /<branch>?/<site>      (steps, batch, tokens, d_model)
    /timesteps, /sigmas    (steps,) when given
    /task/instances        (batch,) JSON strings of the task instances, when given
"""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path

import h5py
import numpy as np
from jaxtyping import Float

from interp.sites import STORED_SITE_RE, site_order
from interp.store.atomic import atomic_h5
from interp.store.schema import CAPTURE, PLAIN, open_h5

BRANCHES = ("cond", "uncond")
INSTANCE_PATHS = ("task/instances", "instances")


def write_plain(path: str | os.PathLike, acts: dict[str, np.ndarray], *, branch: str | None = None,
                instances: list[str] | None = None, grid: tuple[int, int, int] | None = None,
                timesteps: np.ndarray | None = None, sigmas: np.ndarray | None = None, dtype=None,
                chunked: bool = False, **attrs) -> Path:  # fmt: skip
    """Write a plain-layout file atomically: ``acts`` site -> (steps, batch, tokens, d_model) (cast to ``dtype``,
    one chunk per step when ``chunked``), ``instances`` as JSON strings; ``attrs`` (dicts and lists as JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    attrs = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in attrs.items()}
    if grid is not None:
        attrs["grid"] = np.asarray(grid)
    with atomic_h5(path, PLAIN, **attrs) as f:
        root = f.create_group(branch) if branch else f
        for site, a in acts.items():
            a = np.ascontiguousarray(a if dtype is None else np.asarray(a).astype(dtype))
            root.create_dataset(site, data=a, chunks=(1, *a.shape[1:]) if chunked else None)
        if timesteps is not None:
            f.create_dataset("timesteps", data=np.asarray(timesteps))
        if sigmas is not None:
            f.create_dataset("sigmas", data=np.asarray(sigmas))
        if instances is not None:
            f.require_group("task").create_dataset("instances", data=list(instances), dtype=h5py.string_dtype())
    return path


class PlainReader:
    """Activations of one capture: ``read(site, step)`` gives one (batch, tokens, d_model) slice as float32.
    ``token_index``: the flat grid index of each stored token when the capture kept only some (None: all)."""

    token_index: np.ndarray | None = None

    def __init__(self, path: str | Path, branch: str | None = None):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no cache file at {self.path}")
        self.file = open_h5(self.path, (PLAIN, CAPTURE))  # an unfinished file is refused
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
        return [k for k, v in group.items() if isinstance(v, h5py.Dataset) and v.ndim == 4 and STORED_SITE_RE.match(k)]

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

    def __enter__(self) -> PlainReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

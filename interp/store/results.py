"""``results.h5``: every sweep point's metrics and captures, written per batch with completion marks.

Layout (schema 1)::

    /                          attrs: schema, schema_version, interp_version, key, model_hash, experiment (JSON),
                                      points (JSON list of coordinates), axes (JSON {path: values}), n_batches,
                                      task_meta (JSON: the model's interp.json, for a task model), sampler
                                      (JSON: the resolved steps, shift, guidance, seed, scheduler), complete
    /batch_done                (n_batches,) uint8, set after a batch's data is written
    /metrics/<name>            (points, samples); x0_distance: (points, samples, steps)
    /clean/metrics/<name>      (samples,) the unintervened runs (maze metrics)
    /group_<g>/                attrs size, samples (global sample numbers of this input group), grid (f, h, w)
        final                  (points, n, C, F, H, W) final latents;  clean_final (n, C, F, H, W)
        final_<stream>         (points, n, ...) / clean_final_<stream> (n, ...): the final latents of the streams
                               denoised beside the video (LTX-2: final_audio_hidden_states, (points, n, tokens, C))
        x0, clean_x0           (points, n, steps, C, F, H, W) / (n, steps, ...) when capture.x0
        <branch>/<site>        (points, n, steps, tokens, d_model) when captured

Root attrs also carry ``schema`` = ``interp.results``. Written as ``results.h5.partial`` and moved into place by
:class:`~interp.store.atomic.AtomicH5` once complete. A sharded run's ranks write
``DIR/shards/rank-R-of-W.h5`` in the same layout (only their batches marked), plus attrs ``shard_rank``,
``shard_world`` and ``/owner/<name>``: per cell of ``<name>``'s leading index axes, the batch that last wrote it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from interp import store  # its capture reader (read_site) loads torch on first use
from interp.store.atomic import AtomicH5, atomic_h5
from interp.store.dtypes import SCALE_SUFFIX
from interp.store.schema import RESULTS, open_h5

SCHEMA_VERSION = RESULTS.version
OWNER = "owner/"  # shard files only: owner/<name> (leading index axes) = the batch that wrote the cell, -1 none
SHARD_ATTRS = ("shard_rank", "shard_world")  # attrs of a shard that the merged file does not carry
MERGE_IN_MEMORY_BYTES = 512 * 2**20  # larger datasets are merged cell by cell


class ResultsWriter:
    """Opens (or resumes) ``DIR/results.h5.partial`` for one cache key."""

    def __init__(self, path: Path, *, key: str, model_hash: str, experiment_json: str, points: list, axes: dict,
                 n_batches: int, shard: tuple[int, int] | None = None, task_meta: dict | None = None,
                 sampler: dict | None = None):  # fmt: skip
        self.path = Path(path)
        self.shard = shard  # (rank, world): a shard file also records which batch wrote each cell (``owner/``)
        self._pending: list[tuple[str, object, tuple]] = []
        attrs = dict(key=key, model_hash=model_hash, experiment=experiment_json, points=json.dumps(points),
                     axes=json.dumps(axes), n_batches=n_batches)  # fmt: skip
        if task_meta is not None:  # the model's interp.json: the file describes its task itself
            attrs["task_meta"] = json.dumps(task_meta, sort_keys=True)
        if sampler is not None:  # the resolved sampler: steps, shift, guidance, seed, scheduler class
            attrs["sampler"] = json.dumps(sampler, sort_keys=True)
        if shard is not None:
            attrs.update(shard_rank=shard[0], shard_world=shard[1])
        self._atomic = AtomicH5(self.path, RESULTS, attrs=attrs, resume=lambda f: f.attrs.get("key") == key, warn=False)
        self.partial, self.resumed, self.file = self._atomic.partial, self._atomic.resumed, self._atomic.file
        if not self.resumed:
            self.file.create_dataset("batch_done", data=np.zeros(n_batches, np.uint8))
            self.file.flush()

    def done(self, batch: int) -> bool:
        return bool(self.file["batch_done"][batch])

    @property
    def n_done(self) -> int:
        return int(self.file["batch_done"][:].sum())

    def write(self, name: str, index: tuple, value: np.ndarray, shape: tuple, fill=np.nan) -> None:
        """``name[index] = value``, creating ``name`` with ``shape`` (and the value's dtype) on first use."""
        value = np.asarray(value)
        if name not in self.file:
            kind = (
                value.dtype
                if value.dtype != np.float64 or name.startswith(("metrics", "clean/metrics"))
                else np.float32
            )
            self.file.create_dataset(
                name, shape=shape, dtype=kind, fillvalue=fill if np.issubdtype(kind, np.floating) else 0
            )
        self.file[name][index] = value
        if self.shard is not None:
            self._pending.append((name, index, shape[: len(index) if isinstance(index, tuple) else 1]))

    def attrs(self, name: str, **attrs) -> None:
        self.file.require_group(name).attrs.update(attrs)

    def attrs_of(self, name: str, **attrs) -> None:
        """Attributes of the dataset ``name`` (written with :meth:`write`), set once."""
        ds = self.file[name]
        for k, v in attrs.items():
            if ds.attrs.get(k) != v:
                ds.attrs[k] = v

    def mark(self, batch: int) -> None:
        """Flush the batch's data, then mark it done (the mark is written last). A shard records ``batch`` as the
        owner of every cell written since the previous mark (:func:`interp.experiments.shard.merge_shards`)."""
        for name, index, lead in self._pending:
            if OWNER + name not in self.file:
                self.file.create_dataset(OWNER + name, shape=lead, dtype=np.int32, fillvalue=-1)
            self.file[OWNER + name][index] = batch
        self._pending.clear()
        self.file.flush()
        self.file["batch_done"][batch] = 1
        self.file.flush()

    def finish(self) -> Path:
        return self._atomic.finish()

    def close(self) -> None:
        self._atomic.close()


def is_complete(path: Path, key: str) -> bool:
    """True when ``path`` is a finished results file of this cache key."""
    if not Path(path).exists():
        return False
    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get("complete")) and f.attrs.get("key") == key and RESULTS.matches(f.attrs)
    except OSError:
        return False


def read_metrics(path: str | os.PathLike, *, allow_partial: bool = False) -> dict:
    """{"points": [...], "axes": {...}, "metrics": {name: array}, "clean": {name: array}} of a results file.

    An unfinished file is refused (how far it got, how to resume); ``allow_partial=True`` reads it, with
    ``batch_done`` added: cells of unfinished batches hold the NaN fill value, never zeros."""
    with open_h5(path, RESULTS, allow_partial=allow_partial) as f:
        out = {
            "points": json.loads(f.attrs["points"]),
            "axes": json.loads(f.attrs["axes"]),
            "experiment": json.loads(f.attrs["experiment"]),
            "key": str(f.attrs["key"]),
            "metrics": {k: f["metrics"][k][:] for k in f.get("metrics", {})},
            "clean": {k: f["clean/metrics"][k][:] for k in f.get("clean/metrics", {})},
        }
        if allow_partial and "batch_done" in f:
            out["batch_done"] = f["batch_done"][:].astype(bool)
    return out


# ---- shards: a sharded run's ranks write this layout with owner/ marks; merged into one file -----------------------
def read_shard_state(path: str | os.PathLike) -> dict | None:
    """{"key", "n_batches", "world", "done": finished batch indices} of a shard file; None when it is unreadable (a
    rank killed mid-write) or not a shard."""
    try:
        with h5py.File(path, "r") as f:
            if not RESULTS.matches(f.attrs):
                return None
            return {"key": str(f.attrs["key"]), "n_batches": int(f.attrs["n_batches"]),
                    "world": int(f.attrs["shard_world"]), "done": np.flatnonzero(f["batch_done"][:]).tolist()}  # fmt: skip
    except (OSError, KeyError):
        return None


def results_key(path: str | os.PathLike, *, allow_partial: bool = False) -> str | None:
    """The cache key of a results file (None when it has none)."""
    with open_h5(path, RESULTS, allow_partial=allow_partial) as f:
        k = f.attrs.get("key")
        return None if k is None else str(k)


def read_attrs(path: str | os.PathLike, *, allow_partial: bool = False) -> dict:
    """The root attributes of a results file (JSON ones decoded: experiment, points, axes)."""
    with open_h5(path, RESULTS, allow_partial=allow_partial) as f:
        a = dict(f.attrs)
    return {k: (json.loads(v) if k in ("experiment", "points", "axes") else v) for k, v in a.items()}


def read_group(path: str | os.PathLike, group: str = "group_0", *, allow_partial: bool = False,
               acts: bool = True) -> dict:  # fmt: skip
    """One input group of a results file: its attrs, its datasets (``final``, ``x0``, ``condition_frames``, ...)
    and, under ``acts``, its captured sites as ``{"<branch>/<site>": array}`` (``acts=False``: only their names,
    each mapped to None; read them one at a time with :func:`read_site_rows`)."""
    with open_h5(path, RESULTS, allow_partial=allow_partial) as f:
        g = f[group]
        out = {"attrs": dict(g.attrs), "acts": {}}
        for k, v in g.items():
            if isinstance(v, h5py.Group):  # captured sites: float32 whatever their storage dtype
                out["acts"].update({f"{k}/{s}": store.read_site(v[s], ()) if acts else None
                                    for s in v if not s.endswith(SCALE_SUFFIX)})  # fmt: skip
            else:
                out[k] = v[()]
    return out


def read_site_rows(path: str | os.PathLike, group: str, name: str, index) -> np.ndarray:
    """float32 values of ``index`` of one captured site ``name`` (``"<branch>/<site>"``) of input group ``group``;
    the dataset is (points, samples, steps, tokens, d)."""
    with open_h5(path, RESULTS) as f:
        return store.read_site(f[group][name], index)


def read_group_arrays(
    path: str | os.PathLike, group: str, names: dict[str, tuple], *, allow_partial: bool = False
) -> dict | None:
    """The datasets ``names`` (name -> index to read, ``()`` for all) of input group ``group`` that it holds; None
    when the file has no such group."""
    with open_h5(path, RESULTS, allow_partial=allow_partial) as f:
        if group not in f:
            return None
        g = f[group]
        return {k: g[k][index] for k, index in names.items() if k in g}


def merge_results(shards: list[Path], target: Path, n_batches: int) -> Path:
    """Merge shard files into ``target`` (written atomically): each cell from the latest finished batch that wrote
    it (:func:`interp.experiments.shard.merge_shards` checks that every batch finished somewhere)."""
    files = [h5py.File(p, "r") for p in shards]
    done = [f["batch_done"][:].astype(bool) for f in files]
    keep = {
        k: v
        for k, v in files[0].attrs.items()
        if k not in SHARD_ATTRS and k not in ("complete", "schema", "schema_version")
    }
    try:
        with atomic_h5(target, RESULTS, **keep) as dst:
            dst.create_dataset("batch_done", data=np.ones(n_batches, np.uint8))
            names: dict[str, None] = {}
            groups: dict[str, dict] = {}
            for f in files:
                f.visititems(lambda n, o: _collect(n, o, names, groups))
            for name, attrs in groups.items():
                dst.require_group(name).attrs.update(attrs)
            for name in names:
                _merge_dataset(name, files, done, dst)
    finally:
        for f in files:
            f.close()
    return target


def _collect(name: str, obj, names: dict, groups: dict) -> None:
    if name == "owner" or name.startswith(OWNER) or name == "batch_done":
        return
    if isinstance(obj, h5py.Dataset):
        names[name] = None
    elif len(obj.attrs):
        groups.setdefault(name, {}).update(obj.attrs)


def _merge_dataset(name: str, files: list[h5py.File], done: list[np.ndarray], dst: h5py.File) -> None:
    """``dst[name]``: each cell from the shard whose finished batch wrote it last (no owner: a shard's own batches
    never wrote it, e.g. a killed batch's half-written cells)."""
    best, src = None, None
    for s, f in enumerate(files):
        if name not in f or OWNER + name not in f:
            continue
        own = f[OWNER + name][:]
        valid = (own >= 0) & done[s][np.clip(own, 0, None)]
        if best is None:
            best, src = np.full(own.shape, -1, np.int64), np.full(own.shape, -1, np.int64)
        better = valid & (own > best)
        best[better], src[better] = own[better], s
    if best is None or not (src >= 0).any():
        return  # written by no finished batch: a single-process run would not have it either
    ref = files[int(src[src >= 0][0])][name]
    ds = dst.create_dataset(name, shape=ref.shape, dtype=ref.dtype, fillvalue=ref.fillvalue)
    ds.attrs.update(ref.attrs)
    if ref.size * ref.dtype.itemsize <= MERGE_IN_MEMORY_BYTES:
        data = np.full(ref.shape, ref.fillvalue, ref.dtype)
        for s in np.unique(src[src >= 0]):
            mask = src == s
            data[mask] = files[s][name][:][mask]
        ds[...] = data
    else:
        for cell in np.argwhere(src >= 0):
            cell = tuple(int(i) for i in cell)
            ds[cell] = files[int(src[cell])][name][cell]


def diff_results(a: str | os.PathLike, b: str | os.PathLike, ignore_attrs: tuple[str, ...] = ()) -> list[str]:
    """Differences between two results files: datasets (names, shapes, dtypes, values with NaN == NaN, attributes)
    and group attributes. Empty when they are identical."""
    diffs: list[str] = []

    def items(f: h5py.File) -> dict:
        out = {"/": f}
        f.visititems(lambda n, o: out.__setitem__(n, o))
        return out

    def attrs(o) -> dict:
        return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in o.attrs.items() if k not in ignore_attrs}

    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        ia, ib = items(fa), items(fb)
        for n in sorted(set(ia) ^ set(ib)):
            diffs.append(f"{n}: only in {a if n in ia else b}")
        for n in sorted(set(ia) & set(ib)):
            x, y = ia[n], ib[n]
            if attrs(x) != attrs(y):
                diffs.append(f"{n}: attributes differ: {json.dumps(attrs(x), default=str)[:200]} vs "
                             f"{json.dumps(attrs(y), default=str)[:200]}")  # fmt: skip
            if isinstance(x, h5py.Dataset) != isinstance(y, h5py.Dataset):
                diffs.append(f"{n}: a dataset in one file only")
            elif isinstance(x, h5py.Dataset):
                if x.shape != y.shape or x.dtype != y.dtype:
                    diffs.append(f"{n}: {x.shape} {x.dtype} vs {y.shape} {y.dtype}")
                elif not np.array_equal(x[()], y[()], equal_nan=x.dtype.kind in "fc"):
                    diffs.append(f"{n}: values differ")
    return diffs

"""``results.h5``: every sweep point's metrics and captures, written per batch with completion marks.

Layout (schema 1)::

    /                          attrs: schema_version, interp_version, key, model_hash, experiment (JSON), points
                                      (JSON list of coordinates), axes (JSON {path: values}), n_batches, complete
    /batch_done                (n_batches,) uint8, set after a batch's data is written
    /metrics/<name>            (points, samples); x0_distance: (points, samples, steps)
    /clean/metrics/<name>      (samples,) the unintervened runs (maze metrics)
    /group_<g>/                attrs size, samples (global sample numbers of this input group)
        final                  (points, n, C, F, H, W) final latents;  clean_final (n, C, F, H, W)
        x0, clean_x0           (points, n, steps, C, F, H, W) / (n, steps, ...) when capture.x0
        <branch>/<site>        (points, n, steps, tokens, d_model) when captured

Written as ``results.h5.partial`` and moved into place by ``os.replace`` once complete. A sharded run's ranks write
``DIR/shards/rank-R-of-W.h5`` in the same layout (only their batches marked), plus attrs ``shard_rank``,
``shard_world`` and ``/owner/<name>``: per cell of ``<name>``'s leading index axes, the batch that last wrote it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

import interp

SCHEMA_VERSION = 1
OWNER = "owner/"  # shard files only: owner/<name> (leading index axes) = the batch that wrote the cell, -1 none


class ResultsWriter:
    """Opens (or resumes) ``DIR/results.h5.partial`` for one cache key."""

    def __init__(self, path: Path, *, key: str, model_hash: str, experiment_json: str, points: list, axes: dict,
                 n_batches: int, shard: tuple[int, int] | None = None):  # fmt: skip
        self.path = Path(path)
        self.shard = shard  # (rank, world): a shard file also records which batch wrote each cell (``owner/``)
        self._pending: list[tuple[str, object, tuple]] = []
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.resumed = False
        if self.partial.exists():
            try:
                f = h5py.File(self.partial, "a")
                if f.attrs.get("key") == key:
                    self.file, self.resumed = f, True
                else:
                    f.close()
                    self.partial.unlink()
            except OSError:  # a crash mid-write can leave an unreadable file: start over
                self.partial.unlink()
        if not self.resumed:
            self.file = h5py.File(self.partial, "w")
            self.file.attrs.update(
                schema_version=SCHEMA_VERSION, interp_version=interp.__version__, key=key, model_hash=model_hash,
                experiment=experiment_json, points=json.dumps(points), axes=json.dumps(axes), n_batches=n_batches,
                complete=False,
            )  # fmt: skip
            if shard is not None:
                self.file.attrs.update(shard_rank=shard[0], shard_world=shard[1])
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
            kind = value.dtype if value.dtype != np.float64 or name.startswith(("metrics", "clean/metrics")) else np.float32
            self.file.create_dataset(name, shape=shape, dtype=kind, fillvalue=fill if np.issubdtype(kind, np.floating) else 0)
        self.file[name][index] = value
        if self.shard is not None:
            self._pending.append((name, index, shape[: len(index) if isinstance(index, tuple) else 1]))

    def attrs(self, name: str, **attrs) -> None:
        self.file.require_group(name).attrs.update(attrs)

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
        self.file.attrs["complete"] = True
        self.file.flush()
        self.file.close()
        os.replace(self.partial, self.path)
        return self.path

    def close(self) -> None:
        if self.file:
            self.file.close()


def is_complete(path: Path, key: str) -> bool:
    """True when ``path`` is a finished results file of this cache key."""
    if not Path(path).exists():
        return False
    try:
        with h5py.File(path, "r") as f:
            return bool(f.attrs.get("complete")) and f.attrs.get("key") == key
    except OSError:
        return False


def read_metrics(path: str | os.PathLike) -> dict:
    """{"points": [...], "axes": {...}, "metrics": {name: array}, "clean": {name: array}} of a results file."""
    with h5py.File(path, "r") as f:
        out = {
            "points": json.loads(f.attrs["points"]),
            "axes": json.loads(f.attrs["axes"]),
            "experiment": json.loads(f.attrs["experiment"]),
            "key": str(f.attrs["key"]),
            "metrics": {k: f["metrics"][k][:] for k in f.get("metrics", {})},
            "clean": {k: f["clean/metrics"][k][:] for k in f.get("clean/metrics", {})},
        }
    return out

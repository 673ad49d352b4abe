"""``samples.h5`` of ``interp eval``: sampled videos, their conditions, the task instances and per-sample scores.

Layout (schema ``interp.samples`` 1)::

    /                  attrs: schema, schema_version, interp_version, complete, the run's summary (size, n, steps,
                              shift, solve_rate, ci95, ...; lists and dicts as JSON) and the caller's attributes
    /video             (n, F, H, W, 3) uint8, one chunk per sample
    /condition         (n, H, W, 3) uint8: the given first frames
    /mazes             (n,) JSON strings of the task instances
    /scores/<field>    (n,) per-sample scores
    /x0, /sigmas       (n, steps, ...) per-step x0 predictions and the sigmas, when kept
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from interp.store.atomic import atomic_h5
from interp.store.schema import SAMPLES, open_h5


def write_samples_file(path: str | os.PathLike, *, videos: np.ndarray, conditions: np.ndarray, instances: list[str],
                       scores: dict[str, np.ndarray], attrs: dict, x0: np.ndarray | None = None,
                       sigmas: list | None = None) -> Path:  # fmt: skip
    """Write ``samples.h5`` atomically (``instances``: JSON strings; ``scores``: field -> per-sample values)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_h5(path, SAMPLES) as f:
        f.create_dataset("video", data=videos, chunks=(1, *videos.shape[1:]))
        f.create_dataset("condition", data=conditions)
        f.create_dataset("mazes", data=list(instances), dtype=h5py.string_dtype())
        g = f.create_group("scores")
        for key, v in scores.items():
            g.create_dataset(key, data=np.asarray(v))
        if x0 is not None:
            f.create_dataset("x0", data=x0, chunks=(1, 1, *x0.shape[2:]))
            f.create_dataset("sigmas", data=np.array(sigmas))
        for k, v in attrs.items():
            f.attrs[k] = json.dumps(v) if isinstance(v, (list, dict)) else v
    return path


def read_samples(path: str | os.PathLike) -> dict:
    """A ``samples.h5`` as plain data: attrs, video, condition, instances (JSON strings), scores, x0 / sigmas."""
    with open_h5(path, SAMPLES) as f:
        out = {"attrs": dict(f.attrs), "video": f["video"][()], "condition": f["condition"][()],
               "instances": [m.decode() if isinstance(m, bytes) else str(m) for m in f["mazes"][()]],
               "scores": {k: f["scores"][k][()] for k in f["scores"]}}  # fmt: skip
        for k in ("x0", "sigmas"):
            if k in f:
                out[k] = f[k][()]
    return out

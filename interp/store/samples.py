"""``samples.h5`` of ``interp eval``: sampled videos, their conditions, the task instances and per-sample scores.

Layout (schema ``interp.samples`` 1)::

    /                  attrs: schema, schema_version, interp_version, complete, the run's summary (size, n, steps,
                              shift, solve_rate, ci95, ...; lists and dicts as JSON) and the caller's attributes
    /video             (n, F, H, W, 3) uint8, one chunk per sample
    /condition         (n, H, W, 3) uint8: the given first frames
    /mazes             (n,) JSON strings of the task instances
    /scores/<field>    (n,) per-sample scores
    /x0, /sigmas       (n, steps, ...) per-step x0 predictions and the sigmas, when kept

``samples.h5`` of a task-suite model (``interp eval organism``, ``interp demo --model organism``; schema
``interp.suite_samples`` 1), one row per sample, samples of several tasks and levels in one file::

    /                  attrs: schema, schema_version, interp_version, complete, ``sampler`` (JSON: steps,
                              guidance, shift, seed convention, ...), the caller's attributes (lists, dicts as JSON)
    /video             (n, F, H, W, 3) uint8, one chunk per sample
    /condition         (n, H, W, 3) uint8: the given first frames (the task's rendered frame 0)
    /task, /prompt     (n,) strings: the task's name and the instruction the model read
    /level             (n,) JSON strings of the level (levels are ints or strings)
    /instances         (n,) JSON strings of the task instances (the tasks' own ground truth)
    /scores/<field>    (n,) float: the task scorer's fields, NaN where a sample's task has no such field
    /x0, /x0_steps     (n, k, F, H, W, 3) uint8 decoded x0 predictions of k chosen steps, and the steps, when kept
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from interp.store.atomic import atomic_h5
from interp.store.schema import SAMPLES, Schema, open_h5

SUITE_SAMPLES = Schema("interp.suite_samples", 1)


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


def write_suite_samples(path: str | os.PathLike, *, videos: np.ndarray, conditions: np.ndarray, tasks: list[str],
                        levels: list, instances: list[dict], prompts: list[str], scores: list[dict],
                        sampler: dict, attrs: dict | None = None, x0: np.ndarray | None = None,
                        x0_steps: list[int] | None = None) -> Path:  # fmt: skip
    """Write a task-suite ``samples.h5`` atomically (layout in the module docstring); ``scores``: one dict per
    sample (the task scorer's output)."""
    n = len(videos)
    if not all(len(v) == n for v in (conditions, tasks, levels, instances, prompts, scores)):
        raise ValueError("write_suite_samples: videos, conditions, tasks, levels, instances, prompts and scores "
                         "need one entry per sample")  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = h5py.string_dtype()
    with atomic_h5(path, SUITE_SAMPLES) as f:
        videos = np.asarray(videos, dtype=np.uint8)
        # gzip: the suite's videos are flat blocks of a few colours (a 4 MB batch of 16 stores in ~0.3 MB)
        f.create_dataset("video", data=videos, chunks=(1, *videos.shape[1:]) if n else None, compression="gzip")
        f.create_dataset("condition", data=np.asarray(conditions, dtype=np.uint8))
        f.create_dataset("task", data=list(tasks), dtype=text)
        f.create_dataset("level", data=[json.dumps(lv) for lv in levels], dtype=text)
        f.create_dataset("prompt", data=list(prompts), dtype=text)
        f.create_dataset("instances", data=[json.dumps(i, sort_keys=True) for i in instances], dtype=text)
        g = f.create_group("scores")
        for key in sorted({k for sc in scores for k in sc}):
            g.create_dataset(key, data=np.array([float(sc.get(key, np.nan)) for sc in scores], dtype=np.float64))
        if x0 is not None:
            x0 = np.asarray(x0, dtype=np.uint8)
            f.create_dataset("x0", data=x0, chunks=(1, 1, *x0.shape[2:]), compression="gzip")
            f.create_dataset("x0_steps", data=np.asarray(x0_steps if x0_steps is not None else range(x0.shape[1])))
        f.attrs["sampler"] = json.dumps(sampler)
        f.attrs["n"] = n
        for k, v in (attrs or {}).items():
            f.attrs[k] = json.dumps(v) if isinstance(v, (list, dict, tuple)) or v is None else v
    return path


def read_suite_samples(path: str | os.PathLike) -> dict:
    """A task-suite ``samples.h5`` as plain data: attrs (``sampler`` parsed), video, condition, task, level,
    prompt, instances (dicts), scores, and x0 / x0_steps when kept."""

    def strings(ds) -> list[str]:
        return [v.decode() if isinstance(v, bytes) else str(v) for v in ds[()]]

    with open_h5(path, SUITE_SAMPLES) as f:
        attrs = dict(f.attrs)
        attrs["sampler"] = json.loads(attrs["sampler"])
        out = {"attrs": attrs, "video": f["video"][()], "condition": f["condition"][()], "task": strings(f["task"]),
               "level": [json.loads(v) for v in strings(f["level"])], "prompt": strings(f["prompt"]),
               "instances": [json.loads(v) for v in strings(f["instances"])],
               "scores": {k: f["scores"][k][()] for k in f["scores"]}}  # fmt: skip
        for k in ("x0", "x0_steps"):
            if k in f:
                out[k] = f[k][()]
    return out

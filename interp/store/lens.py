"""``lens.h5`` of ``interp lens``: the x0 lens' scores over (step, block), per sample, plain and tuned.

Layout (schema ``interp.lens`` 1)::

    attrs: schema, schema_version, complete, config (JSON: the lens run), model, family, scorer, sampler (JSON),
           steps (JSON: the steps scored), timesteps (JSON), blocks (int), samples (int)
    /plain/<score>        (steps, blocks, B) float64: a score of the video read after block i at step s
    /tuned/<score>        the same through the tuned lens (when fitted)
    /plain/x0_rmse        (steps, blocks, B): root-mean-square difference of the lens' x0 to the model's own x0
    /exact                (steps,) uint8: 1 where the last block's lens equals the model's x0 exactly (torch.equal)
    /model/<score>        (steps, B): the score of the model's own x0 at each step
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from interp.store.atomic import atomic_h5
from interp.store.schema import LENS, open_h5

_JSON = ("config", "sampler", "steps", "timesteps")
VARIANTS = ("plain", "tuned")


def write_lens(path: str | os.PathLike, *, scores: dict[str, dict[str, np.ndarray]], exact: np.ndarray,
               model_scores: dict[str, np.ndarray], **attrs) -> Path:  # fmt: skip
    """Write ``lens.h5`` atomically: ``scores`` variant (``plain`` / ``tuned``) -> score name -> (steps, blocks, B);
    ``attrs`` as the layout names them (dicts and lists as JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bad = sorted(set(scores) - set(VARIANTS))
    if bad:
        raise ValueError(f"lens variants {bad}; valid: {list(VARIANTS)}")
    attrs = {k: (json.dumps(v) if k in _JSON or isinstance(v, (dict, list)) else v) for k, v in attrs.items()}
    with atomic_h5(path, LENS, **attrs) as f:
        for variant, named in scores.items():
            g = f.create_group(variant)
            for name, arr in named.items():
                g.create_dataset(name, data=np.asarray(arr, np.float64)).attrs["axes"] = "step,block,batch"
        f.create_dataset("exact", data=np.asarray(exact, np.uint8))
        g = f.create_group("model")
        for name, arr in model_scores.items():
            g.create_dataset(name, data=np.asarray(arr, np.float64)).attrs["axes"] = "step,batch"
    return path


def read_lens(path: str | os.PathLike) -> dict:
    """``{"attrs": {...}, "plain": {score: (steps, blocks, B)}, "tuned": {...} or absent, "model": {score: (steps,
    B)}, "exact": (steps,) bool}``."""
    with open_h5(path, LENS) as f:
        out: dict = {"attrs": {k: (json.loads(v) if k in _JSON else v.item() if hasattr(v, "item") else v)
                               for k, v in f.attrs.items()}}  # fmt: skip
        for variant in (*VARIANTS, "model"):
            if variant in f:
                out[variant] = {name: ds[()] for name, ds in f[variant].items()}
        out["exact"] = f["exact"][()].astype(bool)
    return out

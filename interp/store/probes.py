"""``probes.h5`` of ``interp probe``: per label, each metric over (steps, sites) with its 95% CI.

Layout (schema ``interp.probes`` 1)::

    attrs: schema, schema_version, config (JSON), cache, baseline, sites (JSON), steps (JSON), timesteps (JSON),
           complete
    /<label>/                 attrs: kind, level, classes (JSON), balance (JSON: part -> class -> share),
                                     n_examples (JSON: part -> count), main ('accuracy' or 'r2')
        <metric>              (3, steps, sites): point estimate, 95% CI low, 95% CI high
        lambda                (steps, sites): the regularization strength picked on the validation samples
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from interp.store.atomic import atomic_h5
from interp.store.schema import PROBES, open_h5

_JSON_ROOT = ("sites", "steps", "timesteps", "config")
_JSON_LABEL = ("classes", "balance", "n_examples")


def write_probes_file(path: str | os.PathLike, *, config_json: str, cache: str, baseline: str | None, sites: list,
                      steps: list, timesteps: list, labels: dict[str, tuple[dict, dict]]) -> Path:  # fmt: skip
    """Write ``probes.h5`` atomically; ``labels``: name -> (group attrs, {metric: array})."""
    path = Path(path)
    with atomic_h5(path, PROBES, config=config_json, cache=cache, baseline=baseline or "", sites=json.dumps(sites),
                   steps=json.dumps(steps), timesteps=json.dumps(timesteps)) as f:  # fmt: skip
        for name, (attrs, metrics) in labels.items():
            g = f.create_group(name)
            g.attrs.update({k: (json.dumps(v) if k in _JSON_LABEL else v) for k, v in attrs.items()})
            for k, v in metrics.items():
                g.create_dataset(k, data=np.asarray(v, dtype=np.float32))
    return path


def read_probes_file(path: str | os.PathLike) -> dict:
    """``probes.h5`` as plain data: {attrs..., labels: {name: {attrs..., metric: array}}}."""
    with open_h5(path, PROBES) as f:
        if not f.attrs.get("complete", False):
            raise ValueError(f"{path} is incomplete (no 'complete' attribute)")
        out = {k: (json.loads(v) if k in _JSON_ROOT else v) for k, v in f.attrs.items()}
        out["labels"] = {}
        for name, g in f.items():
            d = {k: g[k][()] for k in g}
            d.update({k: (json.loads(v) if k in _JSON_LABEL else v) for k, v in g.attrs.items()})
            out["labels"][name] = d
    return out

"""Saving probe results: metrics in HDF5, probe weights as safetensors steering directions.

``probes.h5`` (written to a temporary name, then moved into place)::

    attrs: schema_version, config (JSON), cache, baseline, sites (JSON), steps (JSON), timesteps (JSON)
    /<label>/                 attrs: kind, level, classes (JSON), balance (JSON: part -> class -> share),
                                     n_examples (JSON: part -> count), main ('accuracy' or 'r2')
        <metric>              (3, steps, sites): point estimate, 95% CI low, 95% CI high. Metrics: accuracy, auroc
                              or r2; control_* (control task), selectivity (= metric - control), baseline_*,
                              minus_baseline (= metric - baseline), majority (share of the test set's majority class)
        lambda                (steps, sites): the regularization strength picked on the validation samples

``weights/<label>.safetensors``: for every probed site and step, keys ``<site>/step_<step>/<field>``:

    direction  (k, d_model)  unit vector(s) in the raw activation space (k = 1 for binary / ridge, else classes)
    bias       (k,)          so that the probe's logit (or prediction) is ``scale * (x @ direction) + bias``
    scale      (k,)          norm of the raw-space weight
    proj_mean  (k,)          mean of ``x @ direction`` over the training examples
    proj_std   (k,)          its std: a natural unit for a ``steer`` strength (add ``alpha * proj_std * direction``)

with metadata ``format = interp.probes/1``, ``label``, ``kind``, ``level``, ``classes`` (JSON), ``cache``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import torch
from rich.table import Table
from safetensors.torch import load_file, save_file

SCHEMA_VERSION = 1
WEIGHT_FORMAT = "interp.probes/1"
WEIGHT_FIELDS = ("direction", "bias", "scale", "proj_mean", "proj_std")


def save_results(results, out: str | Path) -> Path:
    """Write ``out/probes.h5`` atomically and ``out/weights/<label>.safetensors``; returns the HDF5 path."""
    out = Path(out)
    (out / "weights").mkdir(parents=True, exist_ok=True)
    path = out / "probes.h5"
    tmp = path.with_suffix(".h5.tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["config"] = results.config.model_dump_json()
        f.attrs["cache"] = results.cache
        f.attrs["baseline"] = results.baseline or ""
        f.attrs["sites"] = json.dumps(results.sites)
        f.attrs["steps"] = json.dumps(results.steps)
        f.attrs["timesteps"] = json.dumps(results.timesteps)
        for name, r in results.labels.items():
            g = f.create_group(name)
            lab = r.label
            g.attrs.update(
                kind=lab.kind,
                level=lab.level,
                classes=json.dumps(list(lab.classes)),
                balance=json.dumps(r.balance),
                n_examples=json.dumps(r.n_examples),
                main=r.main,
            )
            for k, v in r.metrics.items():
                g.create_dataset(k, data=np.asarray(v, dtype=np.float32))
        f.attrs["complete"] = True
    os.replace(tmp, path)
    for name, r in results.labels.items():
        save_directions(r, results, out / "weights" / f"{name.replace('/', '_')}.safetensors")
    return path


def save_directions(r, results, path: Path) -> None:
    tensors = {}
    for i, step in enumerate(results.steps):
        for j, site in enumerate(results.sites):
            for k in WEIGHT_FIELDS:
                tensors[f"{site}/step_{step}/{k}"] = r.weights[k][i, j].contiguous().float()
    meta = {
        "format": WEIGHT_FORMAT,
        "label": r.label.name,
        "kind": r.label.kind,
        "level": r.label.level,
        "classes": json.dumps(list(r.label.classes)),
        "cache": results.cache,
    }
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)


def load_direction(path: str | Path, site: str, step: int) -> dict[str, torch.Tensor]:
    """The probe at (site, step) of a weights file: ``{direction, bias, scale, proj_mean, proj_std}``."""
    tensors = load_file(str(path))
    prefix = f"{site}/step_{step}/"
    out = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not out:
        have = sorted({k.rsplit("/", 1)[0] for k in tensors})
        raise KeyError(f"no probe for site {site!r} at step {step} in {path}; probes there: {have[:12]}...")
    return out


def load_results(path: str | Path) -> dict:
    """``probes.h5`` as plain data: {attrs..., labels: {name: {attrs..., metric: array}}}."""
    with h5py.File(path, "r") as f:
        if not f.attrs.get("complete", False):
            raise ValueError(f"{path} is incomplete (no 'complete' attribute)")
        out = {k: (json.loads(v) if k in ("sites", "steps", "timesteps", "config") else v) for k, v in f.attrs.items()}
        out["labels"] = {}
        for name, g in f.items():
            d = {k: g[k][()] for k in g}
            d.update({k: (json.loads(v) if k in ("classes", "balance", "n_examples") else v) for k, v in g.attrs.items()})
            out["labels"][name] = d
    return out


def summary_table(results):
    """A rich table: per label, its kind, class balance, best (step, site) and the score there with CI."""
    t = Table("label", "kind", "test balance", "best step", "best site", "score [95% CI]", "selectivity",
              "- baseline", title=f"probes on {Path(results.cache).name}")  # fmt: skip
    for name, r in results.labels.items():
        step, site, _ = results.best(name)
        i, j = results.steps.index(step), results.sites.index(site)
        m = r.metrics[r.main][:, i, j]
        bal = ", ".join(f"{k} {v:.2f}" for k, v in r.balance["test"].items())
        extra = [f"{r.metrics[k][0, i, j]:+.3f}" if k in r.metrics else "-" for k in ("selectivity", "minus_baseline")]
        t.add_row(name, r.label.kind, bal, str(step), site, f"{r.main} {m[0]:.3f} [{m[1]:.3f}, {m[2]:.3f}]", *extra)
    return t

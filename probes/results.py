"""Saving probe results: metrics in HDF5, probe weights as safetensors steering directions.

``probes.h5`` (:mod:`interp.store.probes`, written atomically)::

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
from pathlib import Path

import torch
from rich.table import Table
from safetensors.torch import load_file, save_file

from interp.store.atomic import atomic_path
from interp.store.probes import read_probes_file, write_probes_file
from interp.store.schema import PROBES

SCHEMA_VERSION = PROBES.version
WEIGHT_FORMAT = "interp.probes/1"
WEIGHT_FIELDS = ("direction", "bias", "scale", "proj_mean", "proj_std")


def save_results(results, out: str | Path) -> Path:
    """Write ``out/probes.h5`` atomically and ``out/weights/<label>.safetensors``; returns the HDF5 path."""
    out = Path(out)
    (out / "weights").mkdir(parents=True, exist_ok=True)
    labels = {}
    for name, r in results.labels.items():
        lab = r.label
        attrs = dict(kind=lab.kind, level=lab.level, classes=list(lab.classes), balance=r.balance,
                     n_examples=r.n_examples, main=r.main)  # fmt: skip
        labels[name] = (attrs, r.metrics)
    path = write_probes_file(out / "probes.h5", config_json=results.config.model_dump_json(), cache=results.cache,
                             baseline=results.baseline, sites=results.sites, steps=results.steps,
                             timesteps=results.timesteps, labels=labels)  # fmt: skip
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
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


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
    return read_probes_file(path)


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

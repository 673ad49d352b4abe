"""Requests that cannot fit are refused before they start, with the numbers; the estimates are close to what is
written."""

from __future__ import annotations

import math

import pytest

from interp.apps.capture import CaptureConfig, capture, capture_inputs, estimate
from interp.budget import BudgetError, Estimate
from interp.inputs import model_inputs
from interp.models import load_model
from interp.store import partial_path


def test_each_limit_is_named_with_its_numbers(monkeypatch, tmp_path):
    monkeypatch.setenv("INTERP_MAX_MEMORY_GB", "1")
    monkeypatch.setenv("INTERP_MAX_DISK_GB", "2")
    monkeypatch.setenv("INTERP_MAX_FORWARDS", "1000")
    est = Estimate("job", memory=int(3e9), disk=int(5e9), forwards=1001, out=tmp_path)
    with pytest.raises(BudgetError) as e:
        est.check()
    msg = str(e.value)
    assert "memory 3.0 GB > 1.0 GB (INTERP_MAX_MEMORY_GB)" in msg
    assert "writes 5.0 GB > 2.0 GB (INTERP_MAX_DISK_GB)" in msg
    assert "1,001 row-forwards > 1,000 (INTERP_MAX_FORWARDS)" in msg and "--force" in msg
    assert est.check(force=True) is est
    Estimate("job", memory=int(0.9e9), disk=int(1.9e9), forwards=1000, out=tmp_path).check()


def test_the_free_disk_is_a_limit(tmp_path):
    with pytest.raises(BudgetError, match=r"\(free disk under"):
        Estimate("job", disk=10**18, out=tmp_path / "not" / "yet").check()


def test_capture_estimate_is_close_to_the_file_it_writes(tmp_path):
    loaded = load_model("tiny-wan")
    cfg = CaptureConfig(model="tiny-wan", steps=6, batch=2, sites=["blocks.*.hook_resid_post", "hook_embed"])
    path = capture(cfg, tmp_path / "run.h5", loaded=loaded)
    shape = capture_inputs(loaded, cfg.resolved(loaded)).latent_shape
    sites = [f"blocks.{i}.hook_resid_post" for i in range(3)] + ["hook_embed"]
    est = estimate(loaded, cfg.resolved(loaded), shape, sites, path)
    size = path.stat().st_size
    assert 0.5 * size < est.disk < 2.0 * size, (est.disk, size)
    assert est.forwards == 12


def test_a_refused_capture_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_MAX_FORWARDS", "5")
    out = tmp_path / "sub" / "run.h5"
    with pytest.raises(BudgetError, match="6 row-forwards > 5"):
        capture(CaptureConfig(model="tiny-wan", steps=6), out)
    assert not out.exists() and not partial_path(out).exists()
    assert capture(CaptureConfig(model="tiny-wan", steps=6), out, force=True).exists()


def test_experiment_estimate_from_its_plan_and_force(tmp_path, monkeypatch):
    from interp.experiments import Experiment, run_experiment
    from interp.experiments.plan import estimate as plan_estimate, plan

    exp = Experiment.model_validate({
        "name": "b", "model": "tiny-wan", "inputs": {"task": "random", "count": 2}, "sampler": {"steps": 3},
        "capture": {"sites": ["blocks.*.hook_resid_post"]}, "interventions": [{"kind": "skip", "layers": 0}],
        "sweep": {"interventions.0.layers": [0, 1, 2]}, "metrics": ["mse"], "max_batch": 4})  # fmt: skip
    monkeypatch.setenv("INTERP_MAX_FORWARDS", "20")
    with pytest.raises(BudgetError, match=r"3 points x 2 samples, 8 rows"):
        run_experiment(exp, tmp_path / "a", wandb="disabled", progress=False)
    assert not (tmp_path / "a").exists()
    res = run_experiment(exp, tmp_path / "a", wandb="disabled", progress=False, force=True)
    loaded = load_model("tiny-wan")
    pl = plan(exp)
    shape = model_inputs(loaded, 2, 0, task=False).latent_shape
    tokens = math.prod(loaded.adapter.token_grid(loaded.transformer, shape))
    est = plan_estimate(exp, pl, steps=3, cfg=False, latent_shape=shape, tokens=tokens,
                        d_model=loaded.adapter.d_model(loaded.transformer), n_sites=3, weights=0)  # fmt: skip
    assert est.forwards == sum(len(b.rows) for b in pl.batches) * 3 == 24
    size = res.results.stat().st_size
    assert 0.3 * size < est.disk < 3 * size, (est.disk, size)


def test_tasks_export_refuses_more_bytes_than_the_disk_cap_and_writes_nothing(tmp_path, monkeypatch):
    from interp.apps.tasks import SAMPLE_BYTES, export

    monkeypatch.setenv("INTERP_MAX_DISK_GB", str(3 * SAMPLE_BYTES / 1e9))  # room for 3 samples, not 4
    with pytest.raises(BudgetError, match=r"tasks export is too large: writes .* \(INTERP_MAX_DISK_GB\) \(4 samples\)"):
        export(tmp_path / "x", "mirror", "2", 4)
    assert not (tmp_path / "x").exists()
    assert len(export(tmp_path / "x", "mirror", "2", 3)) == 3

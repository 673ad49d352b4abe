"""Requests that cannot fit are refused before they start, with the numbers; the estimate is close to what is written."""

from __future__ import annotations

import pytest

from interp.apps.capture import CaptureConfig, capture, capture_inputs, estimate
from interp.budget import BudgetError, Estimate
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
    est = estimate(loaded, cfg.resolved(loaded), shape, 4, path)
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

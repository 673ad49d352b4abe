"""interp bench: a quick smoke run of every measurement on the micro config (no timing assertions), the verb, the
wan1.3b config's shape, and the store under a pending-bytes budget."""

from __future__ import annotations

import json
import time

import pytest
import torch
from typer.testing import CliRunner

from benchmarks.capture import CONFIGS, ITEMS, BenchOptions, report, run_bench, save
from interp.cli import app


@pytest.fixture(scope="module")
def result():
    return run_bench(BenchOptions(config="micro", steps=2, repeats=1, warmup=0, store_mb=0.05), log=lambda m: None)


def test_every_measurement_runs_and_reports(result, tmp_path):
    assert set(ITEMS) <= set(result)
    s = result["sampling"]
    assert s["sites"] == 3 and s["file_bytes"] > s["step_bytes"] * 2
    assert set(s["ratio"]) == {"trajectory", "read", "capture"} and s["cpu_ratio"] is not None
    assert "host_memcpy_GBps" in s["bandwidth"] and s["bandwidth"]["disk_fsync_GBps"] > 0
    w = result["sweep"]
    assert w["points"] == 3 and w["forwards"] == 1 and w["batched_vs_single_rel_err"] < 1e-5
    t = result["tracing"]
    # every traced path computes the bare (or hooked-edit) function exactly
    assert all(e == 0.0 for e in t["rel_err_vs_bare"].values()), t["rel_err_vs_bare"]
    st = result["store"]
    assert set(st["write_GBps"]) == {"raw_setitem", "raw_direct_chunk", "store"}
    assert st["read_slice_ms"]["cache_cold"] > 0 and st["disk"]["disk_buffered_GBps"] > 0 and st["store_vs_disk"] > 0
    assert s["floor_bound_by"] in {"bare sampling", *(k.removesuffix("_GBps") for k in s["bandwidth"])}
    m = result["memory"]
    assert set(m["peak_bytes"]) == {"bare", "trajectory", "capture", "capture_2x"}
    assert m["trajectory_2x_bytes"] > m["trajectory_bytes"] > 0
    text = report(result)
    for n in "12345":
        assert f"\n{n}. " in text
    back = json.loads(save(result, tmp_path / "b.json").read_text())
    assert back["options"]["config"] == "micro"


def test_verb(tmp_path):
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(app, ["bench", "--config", "micro", "--steps", "2", "--repeats", "1", "--warmup", "0",
                                   "--only", "store,tracing", "--store-mb", "0.05", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "4. store" in res.output and "3. tracing" in res.output and "1. sampling" not in res.output
    assert set(json.loads(out.read_text())) >= {"store", "tracing", "env", "options"}
    bad = CliRunner().invoke(app, ["bench", "--only", "nope"])
    assert bad.exit_code != 0 and "unknown measurement" in bad.output


def test_wan13b_config_is_wan21_13b_sized():
    from diffusers import WanTransformer3DModel

    spec = CONFIGS["wan1.3b"]
    with torch.device("meta"):
        t = WanTransformer3DModel(**spec["model"])
    n = sum(p.numel() for p in t.parameters())
    assert 1.3e9 < n < 1.5e9, n
    assert len(t.blocks) == 30 and t.config.num_attention_heads * t.config.attention_head_dim == 1536
    assert spec["latent"] == (21, 60, 104) and spec["dtype"] == "bfloat16"


def test_store_under_a_tiny_pending_budget_matches(tmp_path):
    """The writer waits for the disk when the pending bytes exceed the budget; the file is the same."""
    import h5py
    import numpy as np

    from interp.apps.capture import CaptureConfig, capture
    from interp.models import load_model
    from interp.store import RunWriter

    loaded = load_model("tiny-wan")
    cfg = CaptureConfig(model="tiny-wan", steps=3, sites=["blocks.*.hook_resid_post"], dtype="float16")
    a = capture(cfg, tmp_path / "a.h5", loaded=loaded)
    orig = RunWriter.__init__.__kwdefaults__["max_pending_bytes"]
    RunWriter.__init__.__kwdefaults__["max_pending_bytes"] = 1
    try:
        b = capture(cfg, tmp_path / "b.h5", loaded=loaded)
    finally:
        RunWriter.__init__.__kwdefaults__["max_pending_bytes"] = orig
    with h5py.File(a) as fa, h5py.File(b) as fb:
        for k in ("latents", "x0", "cond/blocks.2.hook_resid_post"):
            assert np.array_equal(fa[k][()], fb[k][()]), k


@pytest.mark.parametrize(
    ("bare", "steps", "nbytes", "rate", "floor"),
    [
        (3.0, 3, 6.0, 1.0, 7.0),  # writes slower than the forward: the first step's forward, then all bytes (1 + 6)
        (30.0, 3, 3.0, 1.0, 31.0),  # writes faster: the bare sampling, then the last step's write (30 + 1)
        (2.0, 1, 1.0, 1.0, 3.0),  # one step: its forward, then its write
    ],
)
def test_pipeline_floor(bare, steps, nbytes, rate, floor):
    from benchmarks.capture import pipeline_floor

    assert pipeline_floor(bare, steps, nbytes, rate) == pytest.approx(floor)


def test_bench_refuses_a_config_over_the_memory_cap_before_building_it(tmp_path, monkeypatch):
    """wan1.3b on a 1 GB cap: refused with the numbers before any model is built (its weights alone are 2.8 GB);
    the estimate's weights are the config's parameter count in its dtype."""
    from interp.budget import GB

    monkeypatch.setenv("INTERP_MAX_MEMORY_GB", "1")
    res = CliRunner().invoke(app, ["bench", "--config", "wan1.3b", "--only", "tracing", "--out", str(tmp_path / "b")])
    assert res.exit_code != 0 and "bench wan1.3b is too large: memory" in str(res.exception or res.output)
    assert not (tmp_path / "b").exists()
    from benchmarks.capture import BenchOptions, estimate

    est = estimate(BenchOptions(config="wan1.3b", only=("tracing",)))
    assert 2.6 * GB < est.memory and est.disk == 0


def test_bench_disk_estimate_counts_the_matched_sites_and_the_widest_storage_dtype():
    """The sampling measurement writes one capture at a time: its disk is the largest variant's, over the sites that
    --sites matches (6 of wan1.3b's 30 blocks for ``blocks.*[05]``), at that variant's bytes per element."""
    from benchmarks.capture import BenchOptions, estimate

    one = 50 * 32760 * 1536  # elements of one block's stream over 50 steps
    est = lambda **kw: estimate(BenchOptions(config="wan1.3b", steps=50, only=("sampling",), **kw)).disk  # noqa: E731
    assert est(sites="blocks.*[05].hook_resid_post", capture_dtypes=("float16", "float8_e4m3:token")) == 6 * one * 2
    assert est(sites="blocks.*[05].hook_resid_post", capture_dtypes=("float8_e4m3:token",)) == 6 * one
    assert est(sites="blocks.*.hook_resid_post", capture_dtypes=("float32",)) == 30 * one * 4


def test_the_floor_uses_the_disk_rate_sustained_over_the_capture_bytes(monkeypatch):
    """A capture larger than the short disk measurements' BURST_BYTES is bounded by the streamed rate measured with
    its own bytes: the sustained write is made once per variant with that variant's file size, and the floors use it."""
    from benchmarks import capture as bc

    writes = []
    real = bc.plain_write

    def spy(path, nbytes, chunk, kind):
        writes.append((path.name, nbytes, kind))
        return real(path, nbytes, chunk, kind)

    monkeypatch.setattr(bc, "plain_write", spy)
    monkeypatch.setattr(bc, "BURST_BYTES", 1 << 10)
    res = bc.run_bench(BenchOptions(config="micro", steps=2, repeats=1, warmup=0, only=("sampling",),
                                    capture_dtypes=("float16", "float8_e4m3:token")), log=lambda m: None)["sampling"]  # fmt: skip
    sus = [(b, kind) for name, b, kind in writes if name == "bench-disk-sustained.bin"]
    assert sorted(sus) == sorted((v["file_bytes"], "streamed") for v in res["variants"].values())
    bw = res["bandwidth"]
    assert bw["disk_streamed_sustained_GBps"] > 0
    rate = min(bw["disk_streamed_sustained_GBps"], bw.get("d2h_pinned_GBps", float("inf"))) * 1e9
    bare = res["median_s"]["bare"]
    assert res["bandwidth_floor_s"] == pytest.approx(bc.pipeline_floor(bare, 2, res["file_bytes"], rate))


def test_a_capture_is_timed_to_its_published_file_and_profiled_each_round(monkeypatch):
    """The capture's time ends when its file is published: removing the file (the bench's cleanup) is timed on its
    own, and every round's store profile (benchmarks.store_profile) is kept, the warm-up's marked."""
    from pathlib import Path

    from benchmarks import capture as bc

    real_unlink = Path.unlink

    def slow_unlink(self, *a, **k):
        if self.name == "bench-capture.h5":
            time.sleep(0.5)
        return real_unlink(self, *a, **k)

    monkeypatch.setattr(Path, "unlink", slow_unlink)
    full = bc.run_bench(BenchOptions(config="micro", steps=2, repeats=2, warmup=1, only=("sampling",)),
                        log=lambda m: None)  # fmt: skip
    res = full["sampling"]
    v = res["variants"]["capture"]
    assert len(v["unlink_s"]) == len(v["profiles"]) == 3 and v["warmup_rounds"] == 1
    assert min(v["unlink_s"]) >= 0.5 and max(res["times"]["capture"]) < 0.5
    for p, t in zip(v["profiles"][1:], res["times"]["capture"], strict=False):
        assert p["writer: wall"] > 0 and p["main: finish"] > 0 and p["wall"] <= t
    text = report(full)
    assert "capture round 0 (warm-up):" in text and "then its unlink 0.5" in text

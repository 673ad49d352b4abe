"""Captures that keep what the question needs: token subsets and step strides store exactly the slice of the full
float32 capture of the same seeds, in any storage dtype; the plan counts the bytes written; probes read them."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from interp.apps.capture import CaptureConfig, capture, plan_capture
from interp.cli import app
from interp.models import load_model
from interp.store import load_cache
from probes import run_probes
from probes.data import open_cache
from probes.examples import select_examples
from probes.run import load_mazes, resolve_labels

CFG = CaptureConfig(model="tiny-wan", steps=4, sites=["blocks.*.hook_resid_post", "hook_out"], guidance=2.5, batch=2,
                    seed=1, noise_seed=2)  # fmt: skip
SITE = "blocks.1.hook_resid_post"


def _cfg(base: CaptureConfig, **kw) -> CaptureConfig:
    return CaptureConfig.model_validate({**base.model_dump(), **kw})


@pytest.fixture(scope="module")
def loaded():
    return load_model("tiny-wan")


@pytest.fixture(scope="module")
def full(loaded, tmp_path_factory):
    return capture(CFG, tmp_path_factory.mktemp("full") / "full.h5", loaded=loaded)


def test_a_token_box_and_a_stride_store_exactly_that_slice(full, loaded, tmp_path):
    cfg = _cfg(CFG, tokens={"frames": [0, 2], "rows": [1, 3], "cols": [0, 3]}, step_stride=2)
    path = capture(cfg, tmp_path / "box.h5", loaded=loaded)
    with load_cache(full) as ref, load_cache(path) as sub:
        f, h, w = ref.grid
        idx = [fr * h * w + r * w + c for fr in (0, 2) for r in (1, 2) for c in (0, 1, 2)]
        assert sub.stored_token_index.tolist() == idx and sub.steps.tolist() == [0, 2]
        for b in ("cond", "uncond"):
            want, got = ref.branch(b).select([0, 2]), sub.branch(b)
            assert torch.equal(got[SITE], want[SITE][:, :, idx]), b
            assert torch.equal(got["hook_out"], want["hook_out"])  # not per token: whole
        assert torch.equal(sub.to_grid(SITE), ref.select([0, 2]).to_grid(SITE)[:, :, [0, 2], 1:3, 0:3])
        assert torch.equal(load_cache(path).final, ref.final)  # the trajectory ran every step
        assert sub.file["latents"].shape == ref.file["latents"].shape


def test_a_token_list_and_a_steps_list_with_8_bit_storage(full, loaded, tmp_path):
    cfg = _cfg(CFG, tokens=[17, 0, 5], store_steps=[3, 1], dtype={"blocks.1.*": "float8_e4m3:token", "*": "bfloat16"})
    path = capture(cfg, tmp_path / "list.h5", loaded=loaded)
    with load_cache(full) as ref, load_cache(path) as sub:
        x, want = sub[SITE], ref.select([1, 3])[SITE][:, :, [17, 0, 5]]
        assert x.dtype == torch.float32 and sub.steps.tolist() == [1, 3]
        assert ((x - want).norm(dim=-1) / want.norm(dim=-1)).max() < 0.07
        b0 = sub["blocks.0.hook_resid_post"]
        assert torch.equal(b0, ref.select([1, 3])["blocks.0.hook_resid_post"][:, :, [17, 0, 5]].bfloat16().float())
        grid = sub.to_grid(SITE)  # the whole grid, NaN where nothing is stored
        assert grid.shape[2:5] == tuple(ref.grid) and int((~grid[0, 0, ..., 0].isnan()).sum()) == 3
        assert torch.equal(grid.flatten(2, 4)[:, :, [17, 0, 5]], x)


def _written(path) -> int:
    sizes: list[int] = []
    with h5py.File(path) as f:
        for k in ("latents", "v", "x0"):
            sizes.append(f[k].size * f[k].dtype.itemsize)
        for b in ("cond", "uncond"):
            f[b].visititems(lambda n, o: sizes.append(o.id.get_storage_size()) if n != "steps" else None)
    return sum(sizes)


def test_plan_counts_the_bytes_written_for_dtypes_subsets_and_stride(loaded, tmp_path):
    cfg = _cfg(CFG, tokens={"rows": [0, 2]}, step_stride=3, dtype={"blocks.0.*": "float8_e4m3:channel",
               "blocks.1.*": "bfloat16", "hook_out": "float16", "*": "float8_e4m3:token"})  # fmt: skip
    cost = plan_capture(cfg, loaded=loaded)
    path = capture(cfg, tmp_path / "p.h5", loaded=loaded)
    assert cost.bytes == _written(path)
    dense = plan_capture(CFG, loaded=loaded).bytes
    assert cost.bytes < dense / 2  # fewer bytes, counted exactly


def test_dry_run_is_plan_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    args = ["capture", "tiny-wan", "--steps", "2", "--dtype", "float8_e4m3:token", "--set", "step_stride=2"]
    dry, plan = runner.invoke(app, [*args, "--dry-run"]), runner.invoke(app, [*args, "--plan"])
    assert dry.exit_code == 0, dry.output
    assert "nothing written" in dry.output and "writes" in dry.output
    assert dry.output.split("writes")[1].split()[0] == plan.output.split("writes")[1].split()[0]
    assert not list(tmp_path.rglob("*"))


def test_probes_read_a_capture_that_kept_a_box_of_tokens(maze_dir, tmp_path):
    base = CaptureConfig(model=str(maze_dir), batch=6, sites=["blocks.*.hook_resid_post"])
    full = capture(base, tmp_path / "full.h5")
    sub = capture(_cfg(base, tokens={"frames": [0, 2], "rows": [1, 6], "cols": [2, 7]},
                       dtype="float8_e4m3:token"), tmp_path / "sub.h5")  # fmt: skip
    rf, rs = open_cache(full), open_cache(sub)
    try:
        idx = rs.token_index
        assert rs.tokens == len(idx) == 2 * 5 * 5 and rf.token_index is None
        (lf,), (ls,) = (
            resolve_labels(rf, ["wall"], None, load_mazes(rf)),
            resolve_labels(rs, ["wall"], None, load_mazes(rs)),
        )
        assert np.array_equal(ls.values, lf.values[:, idx]) and np.array_equal(ls.columns, idx)
        ex = select_examples(ls, "position", 0, "uniform", [2])  # frames count by grid index, not stored order
        assert len(ex.token) == 6 * 25 and (ls.columns[ex.token] // 49 == 2).all()
        with pytest.raises(ValueError, match="defined on no token of the selected frames"):
            select_examples(ls, "position", 0, "uniform", [1])  # a frame the capture did not keep
    finally:
        rf.close()
        rs.close()
    res = run_probes(sub, labels=["wall"], bootstrap=5, progress=False, frames=[2])
    acc = res.labels["wall"].metrics["accuracy"][0]
    assert acc.shape == (2, 3) and np.isfinite(acc).all()
    assert res.labels["wall"].n_examples["train"] > 0

"""HDF5 store: contents equal the trajectory, layout and attributes, branches never mixed, float16 and pooling,
crash + resume ends identical to an uninterrupted run, reader views."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from einops import reduce

from interp.adapters import ADAPTERS
from interp.apps.capture import CaptureConfig, build_inputs, capture
from interp.models import LoadedModel, load_model
from interp.store import SCHEMA_VERSION, CaptureReader, config_hash, load_cache, open_capture, partial_path
from interp.trajectory import run_trajectory

CFG = CaptureConfig(model="tiny-wan", steps=5, sites=["blocks.*.hook_resid_post", "blocks.1.attn.hook_out", "hook_out"],
                    guidance=2.5, batch=2, seed=1, noise_seed=2)  # fmt: skip


def _datasets(path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        out["@attrs"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
    return out


def _assert_same_file(a, b):
    da, db = _datasets(a), _datasets(b)
    assert da.keys() == db.keys()
    for k in da:
        if k == "@attrs":
            assert da[k] == db[k]
        else:
            assert da[k].dtype == db[k].dtype and np.array_equal(da[k], db[k]), k


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    return capture(CFG, tmp_path_factory.mktemp("full") / "run.h5")


def test_contents_equal_the_trajectory(full):
    loaded = load_model("tiny-wan")
    cfg = CFG.resolved(loaded)
    traj = run_trajectory(
        loaded,
        build_inputs(loaded, cfg),
        cfg.sampler(),
        read=["blocks.*.hook_resid_post", "blocks.1.hook_attn_out", "hook_out"],
    )
    with load_cache(full) as c:
        assert c.complete and c.branches == ["cond", "uncond"]
        assert c.keys() == ["blocks.0.hook_resid_post", "blocks.1.hook_attn_out", "blocks.1.hook_resid_post",
                            "blocks.2.hook_resid_post", "hook_out"]  # fmt: skip
        for branch in ("cond", "uncond"):
            b = c.branch(branch)
            for site in b.keys():
                assert torch.equal(b[site], torch.stack([r.branches[branch][site] for r in traj.records])), (
                    branch,
                    site,
                )
        assert not torch.equal(c["blocks.2.hook_resid_post"], c.branch("uncond")["blocks.2.hook_resid_post"])
        assert torch.equal(c.latents, traj.stack("x")) and torch.equal(c.final, traj.final)
        assert torch.equal(c.v, traj.stack("v")) and torch.equal(c.x0, traj.stack("x0"))
        assert torch.equal(c.timesteps, traj.timesteps) and torch.equal(c.sigmas, traj.sigmas)


def test_layout_and_attributes(full):
    loaded = load_model("tiny-wan")
    with h5py.File(full, "r") as f:
        a = f.attrs
        assert a["schema_version"] == SCHEMA_VERSION and a["complete"] and a["interp_version"] == "0.1.0"
        assert a["model_hash"] == loaded.weight_hash
        assert a["config_hash"] == config_hash(CFG.resolved(loaded))
        ds = f["cond/blocks.0.hook_resid_post"]
        assert (
            ds.shape == (5, 2, 48, 16)
            and ds.chunks == (1, 2, 48, 16)
            and ds.attrs["axes"] == "step,batch,token,d_model"
        )
        assert f["latents"].shape == (6, 2, 4, 3, 8, 8) and f["v"].shape == (5, 2, 4, 3, 8, 8)
        assert f["cond/hook_out"].shape == (5, 2, 4, 3, 8, 8)
        assert f["step_done"][:].all() and list(f["uncond/steps"][:]) == [0, 1, 2, 3, 4]


def test_two_experts_are_separate_groups(tmp_path):
    a = ADAPTERS["wan"]
    m = LoadedModel(
        "two", a, {"transformer": a.tiny(0), "transformer_2": a.tiny(1)}, FlowMatchEulerDiscreteScheduler(), 0.5
    )
    p = capture(CaptureConfig(model="two", steps=4, sites=["blocks.0.hook_resid_post"]), tmp_path / "e.h5", loaded=m)
    with load_cache(p) as c:
        assert c.branches == ["transformer/cond", "transformer_2/cond"]
        hi, lo = c.branch("transformer/cond"), c.branch("transformer_2/cond")
        assert list(hi.steps) == [0, 1] and list(lo.steps) == [2, 3]
        assert hi["blocks.0.hook_resid_post"].shape[0] == 2 and lo["blocks.0.hook_resid_post"].shape[0] == 2
        assert (hi.timesteps >= 500).all() and (lo.timesteps < 500).all()


def test_float16_and_pooling(tmp_path, full):
    ref = load_cache(full)
    site = "blocks.1.hook_resid_post"
    half = load_cache(capture(CFG.model_copy(update={"dtype": "float16"}), tmp_path / "h.h5"))
    assert half[site].dtype == torch.float32 and torch.equal(half[site], ref[site].half().float())  # read as float32
    assert half.file["cond"][site].dtype == np.float16  # stored as float16
    assert half.latents.dtype == torch.float32  # trajectory data stays exact
    held = []  # what each step's record holds: pooled in the forward, never the step's full activations
    mean = load_cache(capture(CFG.model_copy(update={"pool": "mean"}), tmp_path / "m.h5",
                              on_step=lambda rec: held.append(rec.branches["cond"][site].shape)))  # fmt: skip
    assert held and all(shape == (2, 16) for shape in held)
    assert mean.axes(site) == "step,batch,d_model"
    torch.testing.assert_close(mean[site], ref[site].mean(2))
    frame = load_cache(capture(CFG.model_copy(update={"pool": "frame"}), tmp_path / "f.h5"))
    assert frame.axes(site) == "step,batch,frame,d_model" and frame[site].shape == (5, 2, 3, 16)
    torch.testing.assert_close(frame[site], reduce(ref.to_grid(site), "s b f h w d -> s b f d", "mean"))
    assert frame["hook_out"].shape == ref["hook_out"].shape  # the prediction is never pooled
    assert frame.file["cond"][site].attrs["pool"] == "frame" and frame.file["cond/hook_out"].attrs["pool"] == "none"


class Crash(Exception):
    pass


def test_crash_then_resume_is_identical(tmp_path, full):
    out = tmp_path / "run.h5"

    def crash_at_2(rec):
        if rec.step == 2:
            raise Crash

    with pytest.raises(Crash):
        capture(CFG, out, on_step=crash_at_2)
    assert not out.exists() and partial_path(out).exists()
    with h5py.File(partial_path(out), "r") as f:
        assert not f.attrs["complete"] and list(f["step_done"][:]) == [1, 1, 1, 0, 0]
    ran = []
    capture(CFG, out, on_step=lambda r: ran.append(r.step))
    assert ran == [3, 4]  # resumed, not restarted
    assert not partial_path(out).exists()
    _assert_same_file(out, full)
    with pytest.raises(FileExistsError):
        capture(CFG, out)


def test_partial_of_another_config_is_refused(tmp_path):
    out = tmp_path / "run.h5"
    with pytest.raises(Crash):
        capture(CFG, out, on_step=lambda r: (_ for _ in ()).throw(Crash))
    with pytest.raises(ValueError, match="different config"):
        capture(CFG.model_copy(update={"noise_seed": 9}), out)


@pytest.mark.slow
def test_hard_kill_then_resume_is_identical(tmp_path, full):
    """The process dies (os._exit) mid-run, without closing the file; the next run still ends identical."""
    out = tmp_path / "run.h5"
    script = textwrap.dedent(f"""
        import os
        from interp.apps.capture import CaptureConfig, capture
        cfg = CaptureConfig.model_validate_json({CFG.model_dump_json()!r})
        def die(rec):
            if rec.step == 3:
                os._exit(17)
        capture(cfg, {str(out)!r}, on_step=die)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 17, proc.stderr
    assert partial_path(out).exists() and not out.exists()
    capture(CFG, out)
    _assert_same_file(out, full)


def test_reader_views(full):
    c = load_cache(full)
    sub = c.select([1, 3])
    assert list(sub.steps) == [1, 3]
    assert torch.equal(sub["blocks.0.hook_resid_post"], c["blocks.0.hook_resid_post"][[1, 3]])
    assert torch.equal(sub.timesteps, c.timesteps[[1, 3]]) and torch.equal(sub.latents, c.latents[[1, 3]])
    assert list(c.select(slice(2, None)).steps) == [2, 3, 4]
    stacked = c.stack("hook_resid_post")
    assert stacked.shape == (3, 5, 2, 48, 16) and torch.equal(stacked[2], c["blocks.2.hook_resid_post"])
    grid = c.to_grid("blocks.0.hook_resid_post")
    assert grid.shape == (5, 2, 3, 4, 4, 16)
    m = load_model("tiny-wan")
    f, r, col = m.adapter.token_to_fhw(m.transformer, (4, 3, 8, 8), 29)
    assert torch.equal(grid[:, :, f, r, col], c["blocks.0.hook_resid_post"][:, :, 29])
    with pytest.raises(KeyError, match="stored: \\['blocks.0.hook_resid_post'"):
        c["blocks.0.hook_mlp_out"]
    with pytest.raises(KeyError, match="branches: \\['cond', 'uncond'\\]"):
        c.branch("transformer_2/cond")
    with pytest.raises(KeyError, match="not in this branch"):
        c.select([7])


def test_numpy_reader_reads_what_the_torch_reader_reads(full):
    """open_capture (no torch: what `interp view` reads with) gives the same numbers, as numpy arrays."""
    c, r = load_cache(full), open_capture(full)
    site = "blocks.0.hook_resid_post"
    assert isinstance(r[site], np.ndarray) and np.array_equal(r[site], c[site].numpy())
    sub_c, sub_r = c.branch("uncond").select([1, 3]), r.branch("uncond").select([1, 3])
    assert type(sub_r) is CaptureReader and list(sub_r.steps) == [1, 3]
    assert np.array_equal(sub_r[site], sub_c[site].numpy()) and not np.array_equal(sub_r[site], r[site][[1, 3]])
    assert np.array_equal(r.stack(), c.stack().numpy()) and np.array_equal(r.to_grid(site), c.to_grid(site).numpy())
    for name in ("timesteps", "sigmas", "latents", "v", "x0", "final"):
        assert np.array_equal(getattr(r, name), getattr(c, name).numpy()), name
    assert repr(r).startswith("CaptureReader(run.h5, branch='cond', steps=5")


def test_per_head_sites_are_captured_with_their_axes(tmp_path):
    """A capture of hook_z keeps (step, batch, pos, head, d_head), pooled or not, equal to the traced values."""
    cfg = CFG.model_copy(update={"sites": ["blocks.1.attn.hook_z", "blocks.1.attn2.hook_k"], "pool": "mean"})
    with load_cache(capture(cfg, tmp_path / "z.h5")) as c:
        assert c.axes("blocks.1.attn.hook_z") == "step,batch,pos,head,d_head"
        assert c["blocks.1.attn.hook_z"].shape == (5, 2, 48, 2, 8)
        assert c["blocks.1.attn2.hook_k"].shape[2:] == (8, 2, 8)  # cross-attention keys: the text tokens
        assert c["blocks.1.attn.hook_z"].abs().max() > 0

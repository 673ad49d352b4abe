"""The store's parallel chunk writers: files equal the single-thread (h5py) writer's, interrupted runs resume
identically (also across writer counts), a step is marked done only after its bytes land, a failed write never
publishes a file."""

from __future__ import annotations

import threading
import time

import h5py
import numpy as np
import pytest
import torch

from interp import store
from interp.store import RunWriter, load_cache, partial_path
from interp.trajectory import StepRecord

STEPS = 4
BRANCHES = {"cond": [0, 1, 2, 3], "uncond": [0, 1, 2, 3], "transformer_2/cond": [2, 3]}
SITES = {"blocks.0.hook_resid_post": torch.float32, "blocks.1.hook_resid_post": torch.bfloat16,
         "blocks.1.attn.hook_out": torch.float16}  # fmt: skip
LATENT = (2, 4, 3, 4, 4)


def records() -> list[StepRecord]:
    """Random steps: sites of three source dtypes, per-branch values, a latent-shaped ``hook_out`` (a
    non-contiguous view: its bytes are laid out on the way)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(LATENT, generator=g)
    out = []
    for s in range(STEPS):
        x_next = torch.randn(LATENT, generator=g)
        branches = {}
        for b, steps in BRANCHES.items():
            if s in steps:
                acts = {k: torch.randn(2, 12, 8, generator=g).to(dt) for k, dt in SITES.items()}
                acts["hook_out"] = torch.randn(LATENT[::-1], generator=g).permute(4, 3, 2, 1, 0)
                branches[b] = acts
        v, x0 = torch.randn(LATENT, generator=g), torch.randn(LATENT, generator=g).to(torch.bfloat16)
        out.append(StepRecord(s, 1000.0 - s, 1.0 - s / STEPS, "transformer", x, v, x0, x_next, branches))
        x = x_next
    return out


RECORDS = records()


def writer(path, writers: int, dtype: str = "float32", **kw) -> RunWriter:
    return RunWriter(path, config={"test": "writers", "dtype": dtype}, model_hash="h", family="wan",
                     timesteps=torch.linspace(1000, 0, STEPS), sigmas=torch.linspace(1, 0, STEPS), branch_steps=BRANCHES,
                     sites=[*SITES, "hook_out"], grid=(3, 2, 2), dtype=dtype, writers=writers, **kw)  # fmt: skip


def write(path, writers: int, dtype: str = "float32", steps=range(STEPS)):
    w = writer(path, writers, dtype)
    try:
        for s in steps:
            w.on_step(RECORDS[s])
        return w.finish()
    finally:
        w.close()


def contents(path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, (o.dtype, o[()])) if isinstance(o, h5py.Dataset) else None)
        out["@attrs"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
    return out


def assert_same(a, b):
    ca, cb = contents(a), contents(b)
    assert ca.keys() == cb.keys()
    assert ca.pop("@attrs") == cb.pop("@attrs")
    for k, (dt, arr) in ca.items():
        assert dt == cb[k][0] and np.array_equal(arr, cb[k][1]), k


@pytest.fixture(scope="module", params=["float32", "float16"])
def single(request, tmp_path_factory):
    """The single-thread writer's file (every chunk through h5py), per stored dtype."""
    return request.param, write(tmp_path_factory.mktemp("single") / "run.h5", 0, request.param)


@pytest.mark.parametrize("writers", [1, 3])
def test_parallel_equals_single_thread(single, writers, tmp_path, monkeypatch):
    dtype, ref = single
    raw = []
    monkeypatch.setattr(store, "_pwrite_all", lambda fd, arr, off, f=store._pwrite_all: raw.append(off) or f(fd, arr, off))
    out = write(tmp_path / "run.h5", writers, dtype)
    n_chunks = (STEPS + 1) + 2 * STEPS + sum(len(s) for s in BRANCHES.values()) * (len(SITES) + 1)
    assert len(raw) == len(set(raw)) == n_chunks  # every chunk went out as raw bytes, each to its own place
    assert_same(out, ref)
    with load_cache(out) as c, load_cache(ref) as r:
        assert c.complete and c.branches == r.branches
        for b in c.branches:
            for site in c.branch(b):
                assert torch.equal(c.branch(b)[site], r.branch(b)[site]), (b, site)
        assert torch.equal(c.latents, r.latents) and torch.equal(c.final, r.final) and torch.equal(c.x0, r.x0)
    with h5py.File(out) as f:
        assert f["cond/blocks.1.hook_resid_post"].dtype == (np.float16 if dtype == "float16" else np.float32)
        assert f["cond/blocks.0.hook_resid_post"].id.get_create_plist().get_alloc_time() == h5py.h5d.ALLOC_TIME_EARLY


@pytest.mark.parametrize(("first", "second"), [(2, 2), (0, 2), (2, 0)])
def test_interrupted_run_resumes_identically(single, first, second, tmp_path):
    """Two steps, then the writer is closed without finishing; a writer of ``second`` threads resumes at step 2
    (with ``first=0`` the partial file's chunks have no file space yet: those go through h5py)."""
    dtype, ref = single
    out = tmp_path / "run.h5"
    w = writer(out, first, dtype)
    for s in (0, 1):
        w.on_step(RECORDS[s])
    w.close()
    assert not out.exists()
    with h5py.File(partial_path(out)) as f:
        assert not f.attrs["complete"] and list(f["step_done"][:]) == [1, 1, 0, 0]
    w = writer(out, second, dtype)
    try:
        assert w.start_step == 2 and torch.equal(w.start_latents(), RECORDS[2].x)
        for s in (2, 3):
            w.on_step(RECORDS[s])
        w.finish()
    finally:
        w.close()
    assert not partial_path(out).exists()
    assert_same(out, ref)


def _is(arr: np.ndarray, t: torch.Tensor) -> bool:
    return arr.ctypes.data == t.data_ptr()


def test_step_is_marked_only_after_its_bytes(tmp_path, monkeypatch):
    """While one chunk of step 1 is still being written, step 0 is marked done and step 1 is not."""
    gate, held = threading.Event(), RECORDS[1].branches["cond"]["blocks.0.hook_resid_post"]

    def slow(fd, arr, off, f=store._pwrite_all):
        if _is(arr, held):
            gate.wait(10)
        f(fd, arr, off)

    monkeypatch.setattr(store, "_pwrite_all", slow)
    w = writer(tmp_path / "run.h5", 2)
    try:
        w.on_step(RECORDS[0])
        w.on_step(RECORDS[1])
        deadline = time.monotonic() + 10
        while not w._marks[0] and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        assert list(w._marks) == [1, 0, 0, 0]
        gate.set()
        w.flush()
        assert list(w._marks) == [1, 1, 0, 0]
    finally:
        gate.set()
        w.close()


def test_failed_write_never_publishes(tmp_path, monkeypatch):
    """A chunk write of step 2 fails: the error surfaces, nothing is published, steps 0-1 stay resumable."""
    out = tmp_path / "run.h5"
    bad = RECORDS[2].branches["uncond"]["blocks.0.hook_resid_post"]

    def fail(fd, arr, off, f=store._pwrite_all):
        if _is(arr, bad):
            raise OSError(28, "No space left on device")
        f(fd, arr, off)

    monkeypatch.setattr(store, "_pwrite_all", fail)
    w = writer(out, 2)
    with pytest.raises(RuntimeError, match="store writer failed"):
        try:
            for s in range(STEPS):
                w.on_step(RECORDS[s])
            w.finish()
        finally:
            w.close()
    assert not out.exists()
    with h5py.File(partial_path(out)) as f:
        assert not f.attrs["complete"] and list(f["step_done"][:]) == [1, 1, 0, 0]
    monkeypatch.undo()
    w = writer(out, 2)
    try:
        assert w.start_step == 2
        for s in (2, 3):
            w.on_step(RECORDS[s])
        w.finish()
    finally:
        w.close()
    assert_same(out, write(tmp_path / "ref.h5", 0))

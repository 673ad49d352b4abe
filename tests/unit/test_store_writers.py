"""The store's writer thread on its own (no model): every source dtype and a non-contiguous view land as they
were, an interrupted run resumes identically, a step is marked done only after its bytes are written, a failed
write never publishes a file."""

from __future__ import annotations

import os
import threading
import time

import h5py
import numpy as np
import pytest
import torch

from interp.store import RunWriter, load_cache, partial_path
from interp.store.capture import Writeback
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


def writer(path, dtype: str = "float32", **kw) -> RunWriter:
    return RunWriter(path, config={"test": "writers", "dtype": dtype}, model_hash="h", family="wan",
                     timesteps=torch.linspace(1000, 0, STEPS), sigmas=torch.linspace(1, 0, STEPS), branch_steps=BRANCHES,
                     sites=[*SITES, "hook_out"], grid=(3, 2, 2), dtype=dtype, **kw)  # fmt: skip


def write(path, dtype: str = "float32", steps=range(STEPS), **kw):
    w = writer(path, dtype, **kw)
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
    """An uninterrupted run's file, per stored dtype."""
    return request.param, write(tmp_path_factory.mktemp("single") / "run.h5", request.param)


def test_values_land_as_they_were(single):
    """Sites of three source dtypes (bfloat16 widened), a non-contiguous ``hook_out``, latents, v and x0 read back
    equal to the records (as the stored dtype, read back as float32)."""
    dtype, path = single
    with load_cache(path) as c:
        assert c.complete and c.branches == list(BRANCHES)
        for b, steps in BRANCHES.items():
            for site in [*SITES, "hook_out"]:
                want = torch.stack([RECORDS[s].branches[b][site] for s in steps])
                want = want.half().float() if dtype == "float16" else want.float()  # readers give float32
                assert torch.equal(c.branch(b)[site], want), (b, site)
        assert torch.equal(c.latents, torch.stack([r.x for r in RECORDS])) and torch.equal(c.final, RECORDS[-1].x_next)
        assert torch.equal(c.x0, torch.stack([r.x0.float() for r in RECORDS]))
    with h5py.File(path) as f:
        ds = f["cond/blocks.1.hook_resid_post"]
        assert ds.attrs["source_dtype"] == "bfloat16" and ds.attrs["storage_dtype"] == dtype
        assert ds.dtype == (np.float16 if dtype == "float16" else np.float32)
        assert f["x0"].attrs["source_dtype"] == "bfloat16" and f["x0"].dtype == np.float32


def test_interrupted_run_resumes_identically(single, tmp_path):
    """Two steps, then the writer is closed without finishing; a new writer resumes at step 2."""
    dtype, ref = single
    out = tmp_path / "run.h5"
    w = writer(out, dtype)
    for s in (0, 1):
        w.on_step(RECORDS[s])
    w.close()
    assert not out.exists()
    with h5py.File(partial_path(out)) as f:
        assert not f.attrs["complete"] and list(f["step_done"][:]) == [1, 1, 0, 0]
    w = writer(out, dtype)
    try:
        assert w.start_step == 2 and torch.equal(w.start_latents(), RECORDS[2].x)
        for s in (2, 3):
            w.on_step(RECORDS[s])
        w.finish()
    finally:
        w.close()
    assert not partial_path(out).exists()
    assert_same(out, ref)


def test_step_is_marked_only_after_its_bytes(tmp_path, monkeypatch):
    """While one array of step 1 is still being written, step 0 is marked done and step 1 is not."""
    gate = threading.Event()

    def slow(self, item, f=RunWriter._write):
        if item[1:3] == ("cond/blocks.0.hook_resid_post", 1):
            gate.wait(10)
        return f(self, item)

    monkeypatch.setattr(RunWriter, "_write", slow)
    w = writer(tmp_path / "run.h5")
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


def test_failed_write_never_publishes(single, tmp_path, monkeypatch):
    """A write of step 2 fails: the error surfaces, nothing is published, steps 0-1 stay resumable."""
    dtype, ref = single
    out = tmp_path / "run.h5"

    def fail(self, item, f=RunWriter._write):
        if item[1:3] == ("uncond/blocks.0.hook_resid_post", 2):
            raise OSError(28, "No space left on device")
        return f(self, item)

    monkeypatch.setattr(RunWriter, "_write", fail)
    w = writer(out, dtype)
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
    w = writer(out, dtype)
    try:
        assert w.start_step == 2
        for s in (2, 3):
            w.on_step(RECORDS[s])
        w.finish()
    finally:
        w.close()
    assert_same(out, ref)


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="posix_fadvise is Linux/POSIX only")
@pytest.mark.parametrize("mode", ["thread", "inline", "off"])
def test_writeback_is_started_by_its_mode_so_the_final_fsync_finds_it_written(tmp_path, monkeypatch, mode):
    """``thread``: the writeback thread advises (at least once, at most once per chunk and once more); ``inline``:
    the writer thread, once per step; ``off``: nobody. Each advice is DONTNEED on the partial file."""
    calls = []
    real = os.posix_fadvise

    def spy(fd, offset, length, advice):
        path = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else ""
        calls.append((threading.current_thread().name, path, advice))
        return real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    path = write(tmp_path / "w.h5", "float16", writeback=mode)
    chunks = sum(len(acts) for r in RECORDS for acts in r.branches.values()) + 3 * STEPS + 1
    threads = {t for t, _, _ in calls}
    if mode == "thread":
        assert 1 <= len(calls) <= chunks + 1 and threads == {"interp-store-writeback"}
    elif mode == "inline":
        assert len(calls) == STEPS and threads == {"interp-store-writer"}
    else:
        assert calls == []
    assert all(a == os.POSIX_FADV_DONTNEED and (not p or p.endswith("w.h5.partial")) for _, p, a in calls)
    with load_cache(path) as c:  # the values are all there (dropping clean pages loses nothing)
        assert c.complete and c.steps_done == (STEPS, STEPS)


def test_writeback_modes_write_the_same_bytes(tmp_path):
    """The file is byte for byte the same whoever starts its writeback (it changes no byte)."""
    files = {m: write(tmp_path / f"{m}.h5", "float16", writeback=m).read_bytes() for m in ("thread", "inline", "off")}
    assert files["thread"] == files["inline"] == files["off"]


def test_unknown_writeback_mode_names_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="'thread', 'inline' and 'off'"):
        writer(tmp_path / "w.h5", writeback="async")


@pytest.mark.parametrize("advise_bytes, wakes", [(1000, 6), (500, 9), (0, 15), (10_000, 3)])
def test_writeback_thread_wakes_once_per_advise_bytes_and_at_each_step_end(tmp_path, monkeypatch, advise_bytes, wakes):
    """Each wake of the writeback thread takes the GIL from the forward: it is woken once ``advise_bytes`` have been
    written since the last wake, and at the end of a step with bytes not yet advised (3 steps of 5 chunks of 400 B;
    0: after every chunk), and every byte is advised before it closes."""
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 6000)
    calls = []
    monkeypatch.setattr(Writeback, "_wake", lambda self, f=Writeback._wake: (calls.append(self._unadvised), f(self)))
    w = Writeback(path, "thread", advise_bytes=advise_bytes)
    for _ in range(3):
        for _ in range(5):
            w.wrote(400)
        w.step_written()
    w.close()
    assert len(calls) == wakes and sum(calls) == 6000 and w._unadvised == 0


def test_run_writer_passes_advise_bytes_to_its_writeback(tmp_path, monkeypatch):
    """``RunWriter(advise_bytes=...)`` sets how often its writeback thread is woken: the wakes drop when it rises."""
    wakes, calls, real = {}, [], Writeback._wake
    monkeypatch.setattr(Writeback, "_wake", lambda self: (calls.append(1), real(self)))
    for advise in (0, 1 << 30):
        calls.clear()
        write(tmp_path / f"a{advise}.h5", writeback="thread", advise_bytes=advise)
        wakes[advise] = len(calls)
    assert 0 < wakes[1 << 30] == STEPS < wakes[0]  # at each step's end only, else after every chunk as well

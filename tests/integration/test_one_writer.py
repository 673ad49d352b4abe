"""Issue 25, points 1-2: one writer per output (a flock on ``OUT.lock``, tested with real concurrent processes) and
readers that refuse an unfinished file (how far it got, how to resume; ``allow_partial`` reads the finished steps)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from interp.apps.capture import CaptureConfig, capture
from interp.cli import app
from interp.store import RESULTS, SAMPLES, AtomicH5, atomic_h5, atomic_path, load_cache, partial_path
from interp.store.lock import IncompleteFileError, OutputBusy, OutputLock, lock_path
from interp.store.probes import read_probes_file
from interp.store.results import ResultsWriter, read_metrics
from interp.store.samples import read_samples
from interp.store.schema import PROBES

SITES = ["blocks.*.hook_resid_post", "hook_out"]
CFG = CaptureConfig(model="tiny-wan", steps=10, sites=SITES, batch=2, seed=0)
REPO = Path(__file__).resolve().parents[2]


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


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _slow_capture(cfg: CaptureConfig, out: Path, flag: Path, *, sleep: float = 0.25, die_at: int | None = None):
    """A capture in another process, ``sleep`` s per step; it touches ``flag`` once step 1 is queued (and is
    SIGKILLed by the test, or kills itself with SIGKILL at ``die_at``)."""
    script = textwrap.dedent(f"""
        import os, signal, time
        from pathlib import Path
        from interp.apps.capture import CaptureConfig, capture
        cfg = CaptureConfig.model_validate_json({cfg.model_dump_json()!r})
        def slow(rec):
            if rec.step == 1:
                Path({str(flag)!r}).touch()
            if rec.step == {die_at!r}:
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep({sleep!r})
        print(capture(cfg, {str(out)!r}, on_step=slow), flush=True)
    """)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())  # fmt: skip


def _wait(flag: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while not flag.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the first run ended early: {proc.communicate()}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("the first run never reached step 1")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    """Uninterrupted captures of seeds 0 and 1."""
    tmp = tmp_path_factory.mktemp("refs")
    return {s: capture(CFG.model_copy(update={"seed": s}), tmp / f"seed{s}.h5") for s in (0, 1)}


# ---- the lock itself ---------------------------------------------------------------------------------------------
def _hold_lock(path: Path, ready: Path) -> subprocess.Popen:
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from interp.store.lock import OutputLock
        lock = OutputLock({str(path)!r}).acquire()
        Path({str(ready)!r}).touch()
        time.sleep(120)
    """)
    return subprocess.Popen([sys.executable, "-c", script], env=_env())


def test_lock_names_its_owner_and_a_dead_owners_lock_is_taken_over(tmp_path):
    out, ready = tmp_path / "x.h5", tmp_path / "ready"
    proc = _hold_lock(out, ready)
    try:
        _wait(ready, proc)
        with pytest.raises(OutputBusy, match=f"pid {proc.pid} on ") as e:
            AtomicH5(out, SAMPLES)
        assert e.value.owner["pid"] == proc.pid and e.value.exit_code == 2
        with pytest.raises(OutputBusy), atomic_path(tmp_path / "x.h5"):
            pass
        assert not partial_path(out).exists() and not out.exists()  # nothing was written
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert lock_path(out).exists()  # stale: its owner died holding it
    lock = OutputLock(out).acquire()
    assert lock.stale["pid"] == proc.pid  # taken over
    lock.release()
    assert not lock_path(out).exists()
    with atomic_h5(out, SAMPLES) as f:  # released after a write: no lock file is left behind
        f.attrs["n"] = 0
    assert out.exists() and not lock_path(out).exists() and not partial_path(out).exists()


def test_a_partial_held_open_by_another_process_is_never_deleted(tmp_path):
    """The old failure: HDF5's lock error on a live ``.partial`` read as "unreadable", and the partial deleted."""
    out, ready = tmp_path / "r.h5", tmp_path / "ready"
    script = textwrap.dedent(f"""
        import time, h5py
        from pathlib import Path
        f = h5py.File({str(partial_path(out))!r}, "w")
        f.attrs["key"] = "k"
        f.flush()
        Path({str(ready)!r}).touch()
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=_env())
    try:
        _wait(ready, proc)
        with pytest.raises(OutputBusy, match="held open"):
            AtomicH5(out, RESULTS, resume=lambda f: True)
        assert partial_path(out).exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def test_completed_file_is_fsynced_before_its_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", Path(b).name)), real_replace(a, b))[1])
    with atomic_h5(tmp_path / "s.h5", SAMPLES) as f:
        f.attrs["n"] = 0
    i = events.index(("replace", "s.h5"))
    assert "fsync" in events[:i] and "fsync" in events[i + 1 :]  # the file, then its directory
    events.clear()
    with atomic_path(tmp_path / "w.bin") as p:
        p.write_bytes(b"abc")
    assert events.index("fsync") < events.index(("replace", "w.bin"))


# ---- real concurrent captures on the tiny model ------------------------------------------------------------------
@pytest.mark.slow
def test_two_identical_captures_at_once(tmp_path, refs):
    out, flag = tmp_path / "run.h5", tmp_path / "started"
    first = _slow_capture(CFG, out, flag)
    _wait(flag, first)
    with pytest.raises(OutputBusy, match=f"pid {first.pid}"):
        capture(CFG, out)
    r = CliRunner().invoke(app, ["capture", "tiny-wan", "--steps", "10", "--out", str(out)])
    assert r.exit_code == 2 and f"being written by another run (pid {first.pid}" in r.output, r.output
    assert "Traceback" not in r.output
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert stdout.strip() == str(out)
    assert not partial_path(out).exists() and not lock_path(out).exists()
    _assert_same_file(out, refs[0])  # the first run's result is its own, complete and correct


@pytest.mark.slow
def test_different_seeds_at_once_are_never_mixed(tmp_path, refs):
    out, flag = tmp_path / "run.h5", tmp_path / "started"
    first = _slow_capture(CFG, out, flag)
    _wait(flag, first)
    with pytest.raises(OutputBusy):
        capture(CFG.model_copy(update={"seed": 1}), out)
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    _assert_same_file(out, refs[0])  # seed 0's data only
    with pytest.raises(FileExistsError):  # and the seed-1 rerun does not replace it
        capture(CFG.model_copy(update={"seed": 1}), out)
    _assert_same_file(out, refs[0])


def test_kill_9_mid_run_then_rerun_resumes_identical(tmp_path, refs):
    out, flag = tmp_path / "run.h5", tmp_path / "started"
    first = _slow_capture(CFG, out, flag, sleep=0.3, die_at=6)  # the marks reach the disk once a second
    first.communicate(timeout=300)
    assert first.returncode == -signal.SIGKILL
    assert partial_path(out).exists() and not out.exists() and lock_path(out).exists()  # a stale lock
    with h5py.File(partial_path(out), "r") as f:
        done = f["step_done"][:]
    assert 0 < done.sum() < 10
    ran = []
    capture(CFG, out, on_step=lambda r: ran.append(r.step))
    assert ran and ran[0] == int(np.argmin(done)) and ran[0] > 0  # resumed, not restarted
    assert not lock_path(out).exists() and not partial_path(out).exists()
    _assert_same_file(out, refs[0])


# ---- readers refuse what is not complete -------------------------------------------------------------------------
class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def four_of_ten(tmp_path_factory):
    out = tmp_path_factory.mktemp("partial") / "run.h5"

    def crash(rec):
        if rec.step == 3:
            raise Crash

    with pytest.raises(Crash):
        capture(CFG, out, on_step=crash)
    with h5py.File(partial_path(out), "r") as f:
        assert f["step_done"][:].tolist() == [1] * 4 + [0] * 6
    return out


def _flat(text: str) -> str:
    return " ".join(text.replace("│", " ").replace("╭", " ").replace("╰", " ").split())


def test_load_cache_refuses_a_partial_capture(four_of_ten, refs):
    for path in (four_of_ten, partial_path(four_of_ten)):
        with pytest.raises(IncompleteFileError, match="4 of 10 steps written.*interp capture.*resume"):
            load_cache(path)
    with load_cache(four_of_ten, allow_partial=True) as c:
        assert not c.complete and c.steps_done == (4, 10)
        assert list(c.steps) == [0, 1, 2, 3]
        with load_cache(refs[0]) as ref:
            for site in c.keys():
                assert c[site].shape[0] == 4 and torch.equal(c[site], ref[site][:4]), site
            assert torch.equal(c.branch("cond").latents, ref.latents[:4]) and torch.equal(c.x0, ref.x0[:4])
            assert list(c.select(slice(2, None)).steps) == [2, 3]
        with pytest.raises(KeyError):
            c.select([7])
        with pytest.raises(ValueError, match="final latent"):
            c.final


def test_an_incomplete_file_under_its_final_name_is_refused(tmp_path, four_of_ten):
    odd = tmp_path / "odd.h5"  # e.g. renamed by hand, or written by an older interp
    odd.write_bytes(partial_path(four_of_ten).read_bytes())
    with pytest.raises(IncompleteFileError, match=r"is not complete \(4 of 10 steps written\)"):
        load_cache(odd)
    assert len(load_cache(odd, allow_partial=True).steps) == 4


def test_probe_and_inspect_refuse_a_partial_capture(four_of_ten, tmp_path):
    runner = CliRunner()
    part = partial_path(four_of_ten)
    r = runner.invoke(app, ["inspect", str(part)])
    assert r.exit_code == 2 and "4 of 10 steps written" in _flat(r.output), r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["probe", str(part), "--label", "wall", "--out", str(tmp_path / "p")])
    assert r.exit_code == 2 and "4 of 10 steps written" in _flat(r.output), r.output
    assert not (tmp_path / "p" / "probes.h5").exists()


def test_results_samples_and_probes_readers_refuse_unfinished_files(tmp_path):
    path = tmp_path / "results.h5"
    w = ResultsWriter(path, key="k", model_hash="m", experiment_json="{}", points=[{}], axes={}, n_batches=3)
    w.write("metrics/score", (0, slice(0, 2)), np.array([0.5, 0.25]), shape=(1, 6))
    w.mark(0)
    w.close()
    with pytest.raises(IncompleteFileError, match="1 of 3 batches written.*interp run"):
        read_metrics(path)
    got = read_metrics(path, allow_partial=True)
    assert got["batch_done"].tolist() == [True, False, False]
    assert got["metrics"]["score"][0, :2].tolist() == [0.5, 0.25] and np.isnan(got["metrics"]["score"][0, 2:]).all()
    for schema, reader in ((SAMPLES, read_samples), (PROBES, read_probes_file)):
        p = tmp_path / f"{schema.name}.h5"
        AtomicH5(p, schema).close()  # killed before it finished
        with pytest.raises(IncompleteFileError, match="not complete"):
            reader(p)

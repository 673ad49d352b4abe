"""A disk that fills during a write leaves no file a reader accepts, and the error names the file and the sizes."""

from __future__ import annotations

import errno

import pytest

from interp.apps.capture import CaptureConfig, capture
from interp.store import DiskFullError, IncompleteFileError, RunWriter, load_cache, partial_path, write_atomic


def _full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_capture_that_fills_the_disk_mid_run(tmp_path, monkeypatch):
    out = tmp_path / "run.h5"
    real, calls = RunWriter.on_step, []

    def on_step(self, rec, arrays=()):
        calls.append(rec.step)
        if rec.step == 2:  # steps 0 and 1 are on disk
            _full()
        return real(self, rec, arrays)

    monkeypatch.setattr(RunWriter, "on_step", on_step)
    with pytest.raises(DiskFullError) as e:
        capture(CaptureConfig(model="tiny-wan", steps=5), out)
    msg = str(e.value)
    assert str(out) in msg and "no space left on device" in msg
    assert "bytes written" in msg and "bytes free on its disk" in msg and "the output needs about" in msg
    assert not out.exists() and partial_path(out).exists()
    with pytest.raises(IncompleteFileError):
        load_cache(partial_path(out))
    monkeypatch.setattr(RunWriter, "on_step", real)  # space freed: the rerun resumes and finishes
    assert load_cache(capture(CaptureConfig(model="tiny-wan", steps=5), out)).attrs["complete"]


def test_atomic_file_write_that_fills_the_disk(tmp_path):
    path = tmp_path / "fig.png"

    def half_then_full(tmp):
        tmp.write_bytes(b"x" * 1000)
        _full()

    with pytest.raises(DiskFullError, match=r"fig.png: no space left on device \(1,000 bytes written"):
        write_atomic(path, half_then_full)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither the file, its partial nor its lock
    write_atomic(path, b"old")
    with pytest.raises(DiskFullError):
        write_atomic(path, half_then_full)
    assert path.read_bytes() == b"old"  # the previous whole file stays

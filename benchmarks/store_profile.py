"""The store's capture timed from inside, thread by thread: one set of timed hooks for every benchmark that asks
where a capture's time went (``interp bench``'s sampling, ``benchmarks.capture_profile``, ``benchmarks.writer``).

* :class:`ProfiledWriter`: the real :class:`~interp.store.RunWriter`, its thread's calls timed (queue waits, chunk
  writes, the marks' flush, its wall and CPU time);
* :func:`timed_fadvise`: ``os.posix_fadvise`` timed by the calling thread (the writeback thread's advices);
* :func:`profiled_store`: while inside, ``interp.apps.capture.capture`` writes through :class:`ProfiledWriter`, and
  the main thread's store calls are timed too (issuing the device-to-host copies, waiting on the pending-bytes
  budget, ``on_step``, ``finish``).

Every figure lands in :data:`PROFILE` (seconds by key), cleared on entering :func:`profiled_store`.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from unittest import mock

from interp.apps import capture as app_capture
from interp.store import RunWriter
from interp.store import capture as store_capture

PROFILE: dict[str, float] = defaultdict(float)  # seconds by key, of the run being measured


class ProfiledWriter(RunWriter):
    """The real writer, timing its thread's calls into :data:`PROFILE` (queue waits, chunk writes, marks' flush)."""

    def _work(self) -> None:
        q, get = self._queue, self._queue.get

        def timed_get(*a, **k):
            t = time.perf_counter()
            try:
                return get(*a, **k)
            finally:
                PROFILE["writer: queue wait"] += time.perf_counter() - t

        q.get = timed_get
        c0, t0 = time.thread_time(), time.perf_counter()
        try:
            super()._work()
        finally:
            PROFILE["writer: cpu"] += time.thread_time() - c0
            PROFILE["writer: wall"] += time.perf_counter() - t0

    def _write(self, item: tuple) -> int:
        t = time.perf_counter()
        try:
            return super()._write(item)
        finally:
            PROFILE["writer: write_direct_chunk"] += time.perf_counter() - t

    def _flush_marks(self) -> None:
        t = time.perf_counter()
        try:
            super()._flush_marks()
        finally:
            PROFILE["writer: flush marks"] += time.perf_counter() - t


def timed(key: str, fn):
    """``fn`` with its wall time added to ``PROFILE[key]``."""

    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            PROFILE[key] += time.perf_counter() - t

    return wrapper


def timed_fadvise(real):
    """``real`` (``os.posix_fadvise``) timed into ``PROFILE["<thread>: fadvise"]``."""

    def fadvise(fd, offset, length, advice):
        t = time.perf_counter()
        try:
            return real(fd, offset, length, advice)
        finally:
            name = threading.current_thread().name.removeprefix("interp-store-")
            PROFILE[f"{name}: fadvise"] += time.perf_counter() - t

    return fadvise


@contextmanager
def profiled_store() -> Iterator[dict[str, float]]:
    """Captures made inside write through :class:`ProfiledWriter` with the main thread's store calls timed too;
    yields :data:`PROFILE` (cleared first)."""
    PROFILE.clear()
    host = store_capture._HostCopy
    with ExitStack() as stack:
        patch = stack.enter_context
        patch(mock.patch.object(app_capture, "RunWriter", ProfiledWriter))
        if hasattr(os, "posix_fadvise"):
            patch(mock.patch.object(os, "posix_fadvise", timed_fadvise(os.posix_fadvise)))
        for name, key in (("_reserve", "main: budget wait"), ("on_step", "main: on_step"), ("finish", "main: finish")):
            patch(mock.patch.object(ProfiledWriter, name, timed(key, getattr(RunWriter, name))))
        patch(mock.patch.object(host, "__init__", timed("main: copies issued", host.__init__)))
        patch(mock.patch.object(host, "numpy", timed("writer: copy wait", host.numpy)))
        yield PROFILE


def chunk_writes(p: dict[str, float]) -> float:
    """Seconds the writer spent writing chunks in :data:`PROFILE` ``p`` (its chunk calls less their copy waits)."""
    return p.get("writer: write_direct_chunk", 0.0) - p.get("writer: copy wait", 0.0)


def round_line(p: dict[str, float], nbytes: int) -> str:
    """One capture's profile ``p`` (with its ``wall``) in the line ``interp bench`` prints for each round."""
    g = lambda k: p.get(k, 0.0)  # noqa: E731
    writing = chunk_writes(p)
    return (f"{g('wall'):.2f} s; writer: queue wait {g('writer: queue wait'):.2f}, copy wait "
            f"{g('writer: copy wait'):.2f}, chunk writes {writing:.2f} ({nbytes / max(writing, 1e-9) / 1e9:.2f} GB/s), "
            f"flush marks {g('writer: flush marks'):.2f}; main: copies issued {g('main: copies issued'):.2f}, "
            f"budget wait {g('main: budget wait'):.2f}, finish {g('main: finish'):.2f}")  # fmt: skip


def summary(p: dict[str, float], wall: float, nbytes: int) -> list[str]:
    """The lines :mod:`benchmarks.capture_profile` prints for one capture's :data:`PROFILE` ``p``."""
    writing = chunk_writes(p)
    main_store, finish = p.get("main: on_step", 0.0), p.get("main: finish", 0.0)
    fad = {k: v for k, v in p.items() if k.endswith("fadvise")}
    return [
        f"  writer thread {p.get('writer: wall', 0.0):.2f} s: queue wait {p.get('writer: queue wait', 0.0):.2f}, "
        f"copy wait {p.get('writer: copy wait', 0.0):.2f}, chunk writes {writing:.2f} s "
        f"({nbytes / max(writing, 1e-9) / 1e9:.2f} GB/s while writing), flush marks "
        f"{p.get('writer: flush marks', 0.0):.2f}; its cpu {p.get('writer: cpu', 0.0):.2f} s",
        "  fadvise: " + (", ".join(f"{k.removesuffix(': fadvise')} {v:.2f} s" for k, v in fad.items()) or "none"),
        f"  main thread: on_step {main_store:.2f} s (copies issued {p.get('main: copies issued', 0.0):.2f}, "
        f"budget wait {p.get('main: budget wait', 0.0):.2f}); finish (fsync, rename) {finish:.2f} s; the rest "
        f"(forwards) {wall - main_store - finish:.2f} s",
    ]  # fmt: skip

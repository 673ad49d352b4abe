"""The one atomic-write pattern every writer uses: lock ``FILE`` (:mod:`interp.store.lock`: one writer per output),
write ``FILE.partial``, set the completion flag last, fsync it, then ``os.replace`` it to ``FILE``; a file under its
final name is always whole, and two runs never write the same output.

:class:`AtomicH5` is the HDF5 form (resumable: a writer may reopen a matching ``.partial``), :func:`atomic_h5` its
one-shot context manager, :func:`atomic_path` the same for any other file (safetensors), and
:func:`staging_dir` / :func:`publish_dir` for a directory (the trainers' checkpoints).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py

import interp
from interp.store.lock import OutputBusy, OutputLock, is_locked, partial_path, read_owner
from interp.store.schema import Schema

COMPLETE = "complete"
LIBVER = ("v108", "latest")  # the HDF5 1.8 format: its dense attribute storage holds attributes over 64 kB
__all__ = ["AtomicH5", "DiskFullError", "OutputBusy", "OutputLock", "atomic_h5", "atomic_path", "fsync_path",
           "partial_path", "publish_dir", "staging_dir", "write_atomic"]  # fmt: skip


def fsync_path(path: str | os.PathLike, *, directory: bool = True) -> None:
    """Flush ``path``'s data (and, with ``directory``, its directory entry's parent) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if directory:
        _fsync_dir(Path(path).parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory
        pass
    finally:
        os.close(fd)


def _publish(tmp: Path, path: Path) -> None:
    """fsync the finished ``tmp``, move it to ``path``, fsync the directory (the rename is on disk too)."""
    fsync_path(tmp, directory=False)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _held_open(path: Path, e: OSError) -> bool:
    """Whether opening ``path`` failed because another process holds it (HDF5's own file lock)."""
    text = str(e).lower()
    if "lock" in text or getattr(e, "errno", None) in (errno.EAGAIN, errno.EWOULDBLOCK):
        return True
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class AtomicH5:
    """An HDF5 file written as ``PATH.partial`` (root attrs: the schema, ``interp_version``, ``complete`` = False
    and ``attrs``) and published to ``PATH`` by :meth:`finish` (``complete`` = True written last, then the rename).

    Before anything is opened, the output's lock is taken (:class:`~interp.store.lock.OutputLock`): while another
    live run writes ``PATH`` this raises :class:`~interp.store.lock.OutputBusy` naming it; the lock is released by
    :meth:`finish`, :meth:`close` and :meth:`discard`. ``overwrite=False``: refuse (FileExistsError) when ``PATH``
    exists once the lock is held (another run finished it meanwhile).

    ``resume(file) -> bool``: when a ``.partial`` exists and opens, whether to continue it (False: start over; it
    may raise to refuse). An unreadable partial (a crash mid-write) is deleted, with a warning when ``warn``; a
    partial that another process holds open is never deleted (:class:`~interp.store.lock.OutputBusy`).
    """

    def __init__(self, path: str | os.PathLike, schema: Schema, *, attrs: dict | None = None,
                 resume: Callable[[h5py.File], bool] | None = None, warn: bool = True,
                 overwrite: bool = True):  # fmt: skip
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.resumed = False
        self.file: h5py.File | None = None
        self.lock = OutputLock(self.path).acquire()
        try:
            self._open(schema, attrs, resume, warn, overwrite)
        except BaseException:
            self.lock.release()
            raise

    def _open(self, schema: Schema, attrs: dict | None, resume, warn: bool, overwrite: bool) -> None:
        if not overwrite and self.path.exists():
            raise FileExistsError(f"{self.path} exists (a complete file, finished by another run meanwhile); "
                                  "pass overwrite to replace it")  # fmt: skip
        if resume is not None and self.partial.exists():
            try:
                f = h5py.File(self.partial, "a", libver=LIBVER)
            except OSError as e:
                if _held_open(self.partial, e):
                    raise OutputBusy(self.path, read_owner(self.path) if is_locked(self.path) else None,
                                     f": {self.partial.name} is held open by it") from None  # fmt: skip
                if warn:
                    warnings.warn(f"{self.partial} is unreadable ({e}); starting over", stacklevel=4)
                self.partial.unlink()
            else:
                try:
                    keep = resume(f) and schema.matches(f.attrs)
                except BaseException:
                    f.close()
                    raise
                if keep:
                    self.file, self.resumed = f, True
                else:
                    f.close()
                    self.partial.unlink()
        if self.file is None:
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            self.file = h5py.File(self.partial, "w", libver=LIBVER)
            self.file.attrs.update(**schema.stamp(), interp_version=interp.__version__)
            self.file.attrs.update(attrs or {})
            self.file.attrs[COMPLETE] = False

    def finish(self) -> Path:
        """Set ``complete`` last, close, fsync, move the file to its final name, and release the lock."""
        try:
            self.file.attrs[COMPLETE] = True
            self.file.flush()
            self.file.close()
            _publish(self.partial, self.path)
        finally:
            self.lock.release()
        return self.path

    def close(self) -> None:
        """Close without publishing (the partial stays, resumable) and release the lock."""
        try:
            if self.file:
                self.file.close()
        finally:
            self.lock.release()

    def discard(self) -> None:
        try:
            if self.file:
                self.file.close()
            self.partial.unlink(missing_ok=True)
        finally:
            self.lock.release()


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike, schema: Schema, **attrs) -> Iterator[h5py.File]:
    """Write a whole HDF5 file in one go: ``with atomic_h5(path, SCHEMA) as f: ...``; published when the block ends
    without an error, discarded otherwise (the output is locked meanwhile)."""
    w = AtomicH5(path, schema, attrs=attrs)
    try:
        yield w.file
    except BaseException:
        w.discard()
        raise
    w.finish()


class DiskFullError(OSError):
    """The disk filled while ``path`` was written: the message names the file, what was written, what is free and
    (when known) what the whole output needs. Nothing a reader accepts is left under ``path``."""

    def __init__(self, path: str | os.PathLike, written: int | None = None, needed: int | None = None):
        self.path = Path(path)
        free = shutil.disk_usage(_existing(self.path.parent)).free
        parts = [f"{written:,} bytes written" if written is not None else None, f"{free:,} bytes free on its disk",
                 f"the output needs about {needed:,} bytes" if needed else None]  # fmt: skip
        msg = (f"{self.path}: no space left on device ({'; '.join(p for p in parts if p)}); free some space (or "
               "write elsewhere) and run again")  # fmt: skip
        super().__init__(errno.ENOSPC, msg, str(self.path))
        self.args = (msg,)

    def __str__(self) -> str:
        return self.args[0]


def _existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and (e.errno == errno.ENOSPC or "no space left" in str(e).lower())


@contextlib.contextmanager
def disk_full_names(path: str | os.PathLike, needed: int | None = None) -> Iterator[None]:
    """Around the writes of output ``path``: a full disk (ENOSPC) becomes :class:`DiskFullError` naming ``path``, its
    partial file's size and ``needed`` (the estimate); the partial stays, refused by readers and resumable."""
    try:
        yield
    except OSError as e:
        if not is_disk_full(e) or isinstance(e, DiskFullError):
            raise
        tmp = partial_path(path)
        raise DiskFullError(path, tmp.stat().st_size if tmp.exists() else None, needed) from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A partial path to write any file to; fsynced and moved to ``path`` when the block ends without an error (the
    output is locked meanwhile: :class:`~interp.store.lock.OutputBusy` while another run writes it). A full disk
    (ENOSPC) removes the partial file and raises :class:`DiskFullError`."""
    path = Path(path)
    tmp = partial_path(path)
    with OutputLock(path):
        try:
            yield tmp
            _publish(tmp, path)
        except BaseException as e:
            written = tmp.stat().st_size if tmp.exists() else None
            tmp.unlink(missing_ok=True)
            if is_disk_full(e) and not isinstance(e, DiskFullError):
                raise DiskFullError(path, written) from None
            raise


def write_atomic(path: str | os.PathLike, content: str | bytes | Callable[[Path], object]) -> Path:
    """Write a whole file atomically (:func:`atomic_path`): text, bytes, or ``content(tmp_path)`` writing it (a
    figure: ``lambda p: fig.savefig(p, format="png")``); a reader sees the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if isinstance(content, str):
            tmp.write_text(content, encoding="utf-8")
        elif isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            content(tmp)
    return path


def staging_dir(out: Path) -> Path:
    """An empty ``out.tmp`` beside ``out`` to write a checkpoint into before :func:`publish_dir`."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def publish_dir(tmp: Path, out: Path) -> Path:
    """Move a fully written ``tmp`` to ``out``, replacing it, so ``out`` is always a whole checkpoint (every file of
    ``tmp`` is fsynced before the rename, the parent directory after it)."""
    tmp, out = Path(tmp), Path(out)
    for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
        fsync_path(f, directory=False)
    for d in sorted((p for p in tmp.rglob("*") if p.is_dir()), reverse=True):
        _fsync_dir(d)
    _fsync_dir(tmp)
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    _fsync_dir(out.parent)
    shutil.rmtree(old, ignore_errors=True)
    return out

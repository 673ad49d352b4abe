"""The one atomic-write pattern every writer uses: write ``FILE.partial``, set the completion flag last, then
``os.replace`` it to ``FILE``; a file under its final name is always whole.

:class:`AtomicH5` is the HDF5 form (resumable: a writer may reopen a matching ``.partial``), :func:`atomic_h5` its
one-shot context manager, :func:`atomic_path` the same for any other file (safetensors), and
:func:`staging_dir` / :func:`publish_dir` for a directory (the trainers' checkpoints).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py

import interp
from interp.store.schema import Schema

COMPLETE = "complete"


def partial_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".partial")


class AtomicH5:
    """An HDF5 file written as ``PATH.partial`` (root attrs: the schema, ``interp_version``, ``complete`` = False
    and ``attrs``) and published to ``PATH`` by :meth:`finish` (``complete`` = True written last, then the rename).

    ``resume(file) -> bool``: when a ``.partial`` exists and opens, whether to continue it (False: start over; it
    may raise to refuse). An unreadable partial (a crash mid-write) is deleted, with a warning when ``warn``.
    """

    def __init__(self, path: str | os.PathLike, schema: Schema, *, attrs: dict | None = None,
                 resume: Callable[[h5py.File], bool] | None = None, warn: bool = True):  # fmt: skip
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.resumed = False
        self.file: h5py.File | None = None
        if resume is not None and self.partial.exists():
            try:
                f = h5py.File(self.partial, "a")
            except OSError as e:
                if warn:
                    warnings.warn(f"{self.partial} is unreadable ({e}); starting over", stacklevel=3)
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
            self.file = h5py.File(self.partial, "w")
            self.file.attrs.update(**schema.stamp(), interp_version=interp.__version__)
            self.file.attrs.update(attrs or {})
            self.file.attrs[COMPLETE] = False

    def finish(self) -> Path:
        """Set ``complete`` last, close, and move the file to its final name."""
        self.file.attrs[COMPLETE] = True
        self.file.flush()
        self.file.close()
        os.replace(self.partial, self.path)
        return self.path

    def close(self) -> None:
        """Close without publishing (the partial stays, resumable)."""
        if self.file:
            self.file.close()

    def discard(self) -> None:
        self.close()
        self.partial.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike, schema: Schema, **attrs) -> Iterator[h5py.File]:
    """Write a whole HDF5 file in one go: ``with atomic_h5(path, SCHEMA) as f: ...``; published when the block ends
    without an error, discarded otherwise."""
    w = AtomicH5(path, schema, attrs=attrs)
    try:
        yield w.file
    except BaseException:
        w.discard()
        raise
    w.finish()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A partial path to write any file to; moved to ``path`` when the block ends without an error."""
    path = Path(path)
    tmp = partial_path(path)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def staging_dir(out: Path) -> Path:
    """An empty ``out.tmp`` beside ``out`` to write a checkpoint into before :func:`publish_dir`."""
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def publish_dir(tmp: Path, out: Path) -> Path:
    """Move a fully written ``tmp`` to ``out``, replacing it, so ``out`` is always a whole checkpoint."""
    tmp, out = Path(tmp), Path(out)
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out

"""Every file ``interp.store`` writes carries ``schema`` (its layout's name) and ``schema_version``; a reader names
the layout it expects and gets one :class:`SchemaError` for anything else (an older version, another layout, a file
that is not HDF5), never a traceback from h5py's internals.

Files written before the ``schema`` attribute existed carry only ``schema_version`` = 1; they are recognized by the
attributes their layout always had (:attr:`Schema.legacy`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py

from interp.store.lock import PARTIAL, IncompleteFileError, describe_owner, is_locked, partial_path, read_owner

SCHEMA_ATTR = "schema"
VERSION_ATTR = "schema_version"


class SchemaError(ValueError):
    """A file that is not of the layout (or layout version) the reader expects."""

    def __init__(self, path: str | os.PathLike, found: str, expected: str, hint: str = ""):
        self.path, self.found, self.expected = Path(path), found, expected
        super().__init__(f"{path}: schema {found}, expected {expected}" + (f" ({hint})" if hint else ""))


@dataclass(frozen=True)
class Schema:
    """A file layout: its name, its version, and the root attributes that mark a file of version 1 written before
    the ``schema`` attribute existed (``optional``: files of this layout may carry no schema at all, e.g. the plain
    layout other tools write)."""

    name: str
    version: int
    legacy: tuple[str, ...] = ()
    optional: bool = False

    def __str__(self) -> str:
        return f"{self.name}/{self.version}"

    def stamp(self) -> dict:
        return {SCHEMA_ATTR: self.name, VERSION_ATTR: self.version}

    def found(self, attrs) -> str:
        name, version = attrs.get(SCHEMA_ATTR), attrs.get(VERSION_ATTR)
        if name is None and version is None:
            return "none"
        return f"{name if name is not None else 'unnamed'}/{version if version is not None else '?'}"

    def matches(self, attrs) -> bool:
        name, version = attrs.get(SCHEMA_ATTR), attrs.get(VERSION_ATTR)
        if name is None:
            if self.optional and version in (None, 1) and self.version == 1:
                return True
            return (
                version is not None
                and int(version) == 1
                and self.version == 1
                and all(k in attrs for k in self.legacy)
                and bool(self.legacy)
            )
        return str(name) == self.name and version is not None and int(version) == self.version

    def check(self, attrs, path: str | os.PathLike) -> None:
        """Raise :class:`SchemaError` unless ``attrs`` (a file's root attributes) are of this layout."""
        if not self.matches(attrs):
            name = attrs.get(SCHEMA_ATTR)
            hint = ("written by an older interp: regenerate it" if name == self.name else
                    "not a file of this kind" if name is not None else "")  # fmt: skip
            raise SchemaError(path, self.found(attrs), str(self), hint)


CAPTURE = Schema("interp.capture", 1, legacy=("branches", "sites", "grid"))
RESULTS = Schema("interp.results", 1, legacy=("points", "axes", "experiment"))
SAMPLES = Schema("interp.samples", 1, legacy=("n", "complete"))
PROBES = Schema("interp.probes", 1, legacy=("cache", "sites", "steps"))
LENS = Schema("interp.lens", 1)
PLAIN = Schema("interp.plain", 1, optional=True)


RESUME_HINT = {
    "interp.capture": "rerun the same `interp capture` command to resume it",
    "interp.results": "rerun the same `interp run` to resume it (finished batches are kept)",
}


def progress(f: h5py.File) -> str:
    """How far an unfinished file got: its step or batch marks (``4 of 10 steps written``)."""
    for name, unit in (("step_done", "steps"), ("batch_done", "batches")):
        if name in f and isinstance(f[name], h5py.Dataset):
            marks = f[name][()]
            return f"{int(marks.sum())} of {len(marks)} {unit} written"
    return "written in one go, not finished"


def is_complete_file(f: h5py.File) -> bool:
    """False only when the file says so (``complete`` = False); files of other tools may carry no flag."""
    return COMPLETE_ATTR not in f.attrs or bool(f.attrs[COMPLETE_ATTR])


COMPLETE_ATTR = "complete"


def _incomplete(path: Path, partial: Path, f: h5py.File | None) -> IncompleteFileError:
    if f is None:  # held open by its writer
        owner = describe_owner(read_owner(partial)) if is_locked(partial) else "another process"
        return IncompleteFileError(path, f"{path} is not complete: {partial.name} is being written by {owner}; "
                                         "wait for that run to finish")  # fmt: skip
    name = f.attrs.get(SCHEMA_ATTR)
    hint = RESUME_HINT.get(str(name), "rerun the command that writes it")
    where = f"only {partial.name} exists, " if partial != path else ""
    return IncompleteFileError(path, f"{path} is not complete ({where}{progress(f)}): {hint}, or read the finished "
                                     "part with allow_partial=True")  # fmt: skip


def open_h5(path: str | os.PathLike, schema: Schema | tuple[Schema, ...], mode: str = "r", *,
            allow_partial: bool = False) -> h5py.File:  # fmt: skip
    """Open ``path`` for reading and check its schema (one of ``schema``): a missing file is FileNotFoundError, a
    file that is not HDF5 or of another layout a :class:`SchemaError`.

    An unfinished file (a ``.partial``, one marked ``complete`` = False, or an output of which only the
    ``.partial`` exists) is refused with :class:`~interp.store.lock.IncompleteFileError` saying how far it got and
    how to resume; ``allow_partial=True`` opens it (readers then read its finished part only)."""
    path = Path(path)
    schemas = schema if isinstance(schema, tuple) else (schema,)
    partial = path
    if not path.exists():
        if not partial_path(path).exists():
            raise FileNotFoundError(f"no file at {path}")
        partial = partial_path(path)
    elif not path.name.endswith(PARTIAL):
        partial = None
    try:
        f = h5py.File(partial or path, mode)
    except OSError as e:
        if partial is not None and "lock" in str(e).lower():
            raise _incomplete(path, partial, None) from None
        raise SchemaError(path, "none", " or ".join(map(str, schemas)), f"not a readable HDF5 file: {e}") from None
    if not any(s.matches(f.attrs) for s in schemas):
        found = schemas[0].found(f.attrs)
        f.close()
        raise SchemaError(path, found, " or ".join(map(str, schemas)))
    if not allow_partial and (partial is not None or not is_complete_file(f)):
        err = _incomplete(path, partial or path, f)
        f.close()
        raise err
    return f


def file_schema(path: str | os.PathLike) -> str | None:
    """The ``schema`` name of an HDF5 file (legacy files: the layout their attributes mark), None when unreadable or
    unknown; for dispatching on a file's kind."""
    try:
        with h5py.File(path, "r") as f:
            for s in (CAPTURE, RESULTS, SAMPLES, PROBES, LENS):
                if s.matches(f.attrs):
                    return s.name
            return PLAIN.name if PLAIN.matches(f.attrs) else None
    except OSError:
        return None


def is_group(obj) -> bool:
    return isinstance(obj, h5py.Group)


def is_dataset(obj) -> bool:
    return isinstance(obj, h5py.Dataset)

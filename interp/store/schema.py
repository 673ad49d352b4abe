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
            return version is not None and int(version) == 1 and self.version == 1 and all(k in attrs for k in self.legacy) and bool(self.legacy)
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
PLAIN = Schema("interp.plain", 1, optional=True)


def open_h5(path: str | os.PathLike, schema: Schema | tuple[Schema, ...], mode: str = "r") -> h5py.File:
    """Open ``path`` for reading and check its schema (one of ``schema``): a missing file is FileNotFoundError, a
    file that is not HDF5 or of another layout a :class:`SchemaError`."""
    path = Path(path)
    schemas = schema if isinstance(schema, tuple) else (schema,)
    if not path.exists():
        raise FileNotFoundError(f"no file at {path}")
    try:
        f = h5py.File(path, mode)
    except OSError as e:
        raise SchemaError(path, "none", " or ".join(map(str, schemas)), f"not a readable HDF5 file: {e}") from None
    if not any(s.matches(f.attrs) for s in schemas):
        found = schemas[0].found(f.attrs)
        f.close()
        raise SchemaError(path, found, " or ".join(map(str, schemas)))
    return f


def file_schema(path: str | os.PathLike) -> str | None:
    """The ``schema`` name of an HDF5 file (legacy files: the layout their attributes mark), None when unreadable or
    unknown; for dispatching on a file's kind."""
    try:
        with h5py.File(path, "r") as f:
            for s in (CAPTURE, RESULTS, SAMPLES, PROBES):
                if s.matches(f.attrs):
                    return s.name
            return PLAIN.name if PLAIN.matches(f.attrs) else None
    except OSError:
        return None


def is_group(obj) -> bool:
    return isinstance(obj, h5py.Group)


def is_dataset(obj) -> bool:
    return isinstance(obj, h5py.Dataset)

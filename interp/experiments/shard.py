"""Sharding a batch plan over ranks, and merging the ranks' shard files into one ``results.h5``.

The batch plan (:mod:`interp.experiments.plan`) is a pure function of the experiment, so every rank computes the same
plan and runs its own batches: batch ``i`` belongs to rank ``i % world`` (round-robin, so every rank gets a share of
every input group). Whole batches are the unit of work: a batch computes the same numbers in any process, so the
merged file equals a single-process run's.

Each rank writes ``DIR/shards/rank-RRRRR-of-WWWWW.h5`` through the usual :class:`ResultsWriter` (per-batch completion
marks, resume), which in a shard also records, per written cell, the batch that wrote it (``owner/<name>``).
:func:`merge_shards` replays the writes in batch order: each cell takes the value of the latest finished batch that
wrote it, as in a single process that runs the batches one after another. A rank that dies leaves its finished
batches marked in its shard; running the same command again (same number of ranks) runs only the rest.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np

from interp.experiments.results import OWNER

SHARD_DIR = "shards"
SHARD_ATTRS = ("shard_rank", "shard_world")  # attrs of a shard that the merged file does not carry
MERGE_IN_MEMORY_BYTES = 512 * 2**20  # larger datasets are merged cell by cell


class ShardError(RuntimeError):
    """Shards that cannot be merged (none there, or some batch finished in none of them)."""


def owner_rank(batch: int, world: int) -> int:
    """The rank that runs batch ``batch`` of a plan sharded over ``world`` ranks."""
    return batch % world


def rank_batches(n_batches: int, rank: int, world: int) -> list[int]:
    """The batch indices rank ``rank`` of ``world`` runs, in plan order."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside 0..{world - 1}")
    return [b for b in range(n_batches) if owner_rank(b, world) == rank]


def shard_path(out: str | os.PathLike, rank: int, world: int) -> Path:
    return Path(out) / SHARD_DIR / f"rank-{rank:05d}-of-{world:05d}.h5"


def _shard_files(out: Path) -> list[Path]:
    """Shard files of ``out`` (finished ``.h5`` and unfinished ``.h5.partial``)."""
    d = Path(out) / SHARD_DIR
    return sorted([*d.glob("rank-*.h5"), *d.glob("rank-*.h5.partial")]) if d.is_dir() else []


def shard_status(out: str | os.PathLike, key: str | None = None) -> dict:
    """{"key", "n_batches", "done": sorted batch indices finished in some shard, "missing": the others (with the rank
    of their last sharded run), "shards": readable shard files} for the shards of ``out`` (of cache key ``key``; by
    default the key of the first readable shard)."""
    shards, done, n, world = [], set(), None, None
    for path in _shard_files(Path(out)):
        try:
            with h5py.File(path, "r") as f:
                if key is None:
                    key = str(f.attrs["key"])
                if f.attrs.get("key") != key:
                    continue
                n = int(f.attrs["n_batches"])
                world = int(f.attrs["shard_world"])
                done.update(np.flatnonzero(f["batch_done"][:]).tolist())
                shards.append(path)
        except (OSError, KeyError):  # unreadable (a rank killed mid-write) or not a shard: its batches rerun
            continue
    missing = [] if n is None else [b for b in range(n) if b not in done]
    return {"key": key, "n_batches": n, "done": sorted(done), "missing": missing, "world": world, "shards": shards}


def merge_shards(out: str | os.PathLike, *, key: str | None = None, keep: bool = False) -> Path:
    """Merge the shards of ``out`` into ``out/results.h5`` (written atomically); returns its path.

    Raises :class:`ShardError` naming the unfinished batches (and their ranks) when some batch is finished in no shard.
    The shards are deleted afterwards unless ``keep``.
    """
    out = Path(out)
    st = shard_status(out, key)
    if not st["shards"]:
        raise ShardError(f"{out / SHARD_DIR}: no shard files to merge")
    if st["missing"]:
        ranks = sorted({owner_rank(b, st["world"]) for b in st["missing"]})
        raise ShardError(f"{out}: {len(st['missing'])} of {st['n_batches']} batches are not finished in any shard "
                           f"(batches {_ranges(st['missing'])}; ranks {ranks} of {st['world']}); run the same command "
                           f"again to finish them, then merge")  # fmt: skip
    target = out / "results.h5"
    if target.exists():
        with h5py.File(target, "r") as f:
            if f.attrs.get("key") != st["key"]:
                raise ShardError(f"{target} holds a different experiment (or model) than the shards; move it away")
    files = [h5py.File(p, "r") for p in st["shards"]]
    done = [f["batch_done"][:].astype(bool) for f in files]
    partial = target.with_name(target.name + ".partial")
    try:
        with h5py.File(partial, "w") as dst:
            for k, v in files[0].attrs.items():
                if k not in SHARD_ATTRS:
                    dst.attrs[k] = v
            dst.attrs["complete"] = False
            dst.create_dataset("batch_done", data=np.ones(st["n_batches"], np.uint8))
            names: dict[str, None] = {}
            groups: dict[str, dict] = {}
            for f in files:
                f.visititems(lambda n, o: _collect(n, o, names, groups))
            for name, attrs in groups.items():
                dst.require_group(name).attrs.update(attrs)
            for name in names:
                _merge_dataset(name, files, done, dst)
            dst.attrs["complete"] = True
    finally:
        for f in files:
            f.close()
    os.replace(partial, target)
    if not keep:
        shutil.rmtree(out / SHARD_DIR)
    return target


def _collect(name: str, obj, names: dict, groups: dict) -> None:
    if name == "owner" or name.startswith(OWNER) or name == "batch_done":
        return
    if isinstance(obj, h5py.Dataset):
        names[name] = None
    elif len(obj.attrs):
        groups.setdefault(name, {}).update(obj.attrs)


def _merge_dataset(name: str, files: list[h5py.File], done: list[np.ndarray], dst: h5py.File) -> None:
    """``dst[name]``: each cell from the shard whose finished batch wrote it last (no owner: a shard's own batches
    never wrote it, e.g. a killed batch's half-written cells)."""
    best, src = None, None
    for s, f in enumerate(files):
        if name not in f or OWNER + name not in f:
            continue
        own = f[OWNER + name][:]
        valid = (own >= 0) & done[s][np.clip(own, 0, None)]
        if best is None:
            best, src = np.full(own.shape, -1, np.int64), np.full(own.shape, -1, np.int64)
        better = valid & (own > best)
        best[better], src[better] = own[better], s
    if best is None or not (src >= 0).any():
        return  # written by no finished batch: a single-process run would not have it either
    ref = files[int(src[src >= 0][0])][name]
    ds = dst.create_dataset(name, shape=ref.shape, dtype=ref.dtype, fillvalue=ref.fillvalue)
    ds.attrs.update(ref.attrs)
    if ref.size * ref.dtype.itemsize <= MERGE_IN_MEMORY_BYTES:
        data = np.full(ref.shape, ref.fillvalue, ref.dtype)
        for s in np.unique(src[src >= 0]):
            mask = src == s
            data[mask] = files[s][name][:][mask]
        ds[...] = data
    else:
        for cell in np.argwhere(src >= 0):
            cell = tuple(int(i) for i in cell)
            ds[cell] = files[int(src[cell])][name][cell]


def _ranges(xs: list[int]) -> str:
    out, start = [], None
    for i, x in enumerate(xs):
        start = x if start is None else start
        if i + 1 == len(xs) or xs[i + 1] != x + 1:
            out.append(str(start) if start == x else f"{start}-{x}")
            start = None
    return ",".join(out[:20]) + (", ..." if len(out) > 20 else "")


def diff_results(a: str | os.PathLike, b: str | os.PathLike, ignore_attrs: tuple[str, ...] = ()) -> list[str]:
    """Differences between two results files: datasets (names, shapes, dtypes, values with NaN == NaN, attributes)
    and group attributes. Empty when they are identical."""
    diffs: list[str] = []

    def items(f: h5py.File) -> dict:
        out = {"/": f}
        f.visititems(lambda n, o: out.__setitem__(n, o))
        return out

    def attrs(o) -> dict:
        return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in o.attrs.items() if k not in ignore_attrs}

    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        ia, ib = items(fa), items(fb)
        for n in sorted(set(ia) ^ set(ib)):
            diffs.append(f"{n}: only in {a if n in ia else b}")
        for n in sorted(set(ia) & set(ib)):
            x, y = ia[n], ib[n]
            if attrs(x) != attrs(y):
                diffs.append(f"{n}: attributes differ: {json.dumps(attrs(x), default=str)[:200]} vs "
                             f"{json.dumps(attrs(y), default=str)[:200]}")  # fmt: skip
            if isinstance(x, h5py.Dataset) != isinstance(y, h5py.Dataset):
                diffs.append(f"{n}: a dataset in one file only")
            elif isinstance(x, h5py.Dataset):
                if x.shape != y.shape or x.dtype != y.dtype:
                    diffs.append(f"{n}: {x.shape} {x.dtype} vs {y.shape} {y.dtype}")
                elif not np.array_equal(x[()], y[()], equal_nan=x.dtype.kind in "fc"):
                    diffs.append(f"{n}: values differ")
    return diffs

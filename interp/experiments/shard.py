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

import os
import shutil
from pathlib import Path

from interp.store.results import diff_results, merge_results, read_shard_state, results_key

SHARD_DIR = "shards"
__all__ = ["ShardError", "diff_results", "merge_shards", "owner_rank", "rank_batches", "shard_path", "shard_status"]


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
        state = read_shard_state(path)
        if state is None:  # unreadable (a rank killed mid-write) or not a shard: its batches rerun
            continue
        if key is None:
            key = state["key"]
        if state["key"] != key:
            continue
        n, world = state["n_batches"], state["world"]
        done.update(state["done"])
        shards.append(path)
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
    if target.exists() and results_key(target) != st["key"]:
        raise ShardError(f"{target} holds a different experiment (or model) than the shards; move it away")
    merge_results(st["shards"], target, st["n_batches"])
    if not keep:
        shutil.rmtree(out / SHARD_DIR)
    return target


def _ranges(xs: list[int]) -> str:
    out, start = [], None
    for i, x in enumerate(xs):
        start = x if start is None else start
        if i + 1 == len(xs) or xs[i + 1] != x + 1:
            out.append(str(start) if start == x else f"{start}-{x}")
            start = None
    return ",".join(out[:20]) + (", ..." if len(out) > 20 else "")

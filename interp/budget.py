"""What a verb will cost, checked before it starts: peak memory, bytes written and row-forwards, estimated from the
resolved plan, against the free memory (``MemAvailable``), the free disk under the output, and caps.

Caps (environment): ``INTERP_MAX_MEMORY_GB``, ``INTERP_MAX_DISK_GB`` (default: what is free),
``INTERP_MAX_FORWARDS`` (row-forwards per command, default :data:`MAX_FORWARDS`) and ``INTERP_MAX_POINTS`` (sweep
points per experiment, default :data:`MAX_POINTS`). An estimate over a limit raises :class:`BudgetError` naming
each number and its limit; ``--force`` (``force=True``) runs anyway.

The estimates are deliberately simple and on the generous side: memory is the weights plus a forward's working set
(:data:`WORKING_COPIES` copies of the hidden states of every row of a batch) plus what the verb holds; bytes are the
arrays it stores; a row-forward is one batch row through the transformer at one step (x2 with guidance).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

MAX_FORWARDS = 2_000_000  # the paper's whole reproduction is 428 k
MAX_POINTS = 100_000  # sweep points of one experiment (each is validated before the run)
WORKING_COPIES = 16  # hidden-state copies alive in one block's forward (residual, q/k/v, attention, 4x MLP)
GB = 1e9


class BudgetError(ValueError):
    """A request that would exceed the free memory, the free disk or a cap: the message gives the numbers (the
    console entry point prints it in one line, exit code 2)."""


def _env_cap(name: str, scale: float = 1.0) -> float | None:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return None
    try:
        return float(raw) * scale
    except ValueError:
        raise BudgetError(f"{name}={raw!r}: expected a number") from None


def max_points() -> int:
    return int(_env_cap("INTERP_MAX_POINTS") or MAX_POINTS)


def free_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable``; None where unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def free_disk(path: str | os.PathLike) -> int | None:
    """Free bytes on the file system that will hold ``path`` (its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def fmt_bytes(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


@dataclass
class Estimate:
    """What one command will cost. ``out``: where it writes (for the free disk); ``detail``: how it was counted."""

    what: str
    memory: int = 0
    disk: int = 0
    forwards: int = 0
    out: Path | None = None
    detail: str = ""
    extra: dict = field(default_factory=dict)

    def problems(self) -> list[str]:
        """Each limit this estimate exceeds, with the numbers."""
        out = []
        mem, mem_cap = free_memory(), _env_cap("INTERP_MAX_MEMORY_GB", GB)
        for limit, name in ((mem_cap, "INTERP_MAX_MEMORY_GB"), (mem, "free memory")):
            if limit is not None and self.memory > limit:
                out.append(f"memory {fmt_bytes(self.memory)} > {fmt_bytes(limit)} ({name})")
                break
        if self.disk:
            disk = free_disk(self.out) if self.out is not None else None
            for limit, name in ((_env_cap("INTERP_MAX_DISK_GB", GB), "INTERP_MAX_DISK_GB"), (disk, "free disk")):
                if limit is not None and self.disk > limit:
                    where = f" under {self.out}" if name == "free disk" else ""
                    out.append(f"writes {fmt_bytes(self.disk)} > {fmt_bytes(limit)} ({name}{where})")
                    break
        cap = _env_cap("INTERP_MAX_FORWARDS") or MAX_FORWARDS
        if self.forwards > cap:
            out.append(f"{self.forwards:,} row-forwards > {int(cap):,} (INTERP_MAX_FORWARDS)")
        return out

    def check(self, force: bool = False) -> Estimate:
        """Raise :class:`BudgetError` when a limit is exceeded (``force``: never)."""
        if not force and (bad := self.problems()):
            how = f" ({self.detail})" if self.detail else ""
            raise BudgetError(f"{self.what} is too large: {'; '.join(bad)}{how}; make it smaller, raise the cap, "
                              "or pass --force to try anyway")  # fmt: skip
        return self


def model_bytes(modules) -> int:
    """Bytes of the parameters and buffers of ``modules``."""
    total = 0
    for m in modules:
        total += sum(t.numel() * t.element_size() for t in (*m.parameters(), *m.buffers()))
    return total


def forward_bytes(rows: int, tokens: int, d_model: int, elem: int = 4) -> int:
    """The working set of one forward of ``rows`` rows of ``tokens`` tokens of width ``d_model``."""
    return WORKING_COPIES * rows * tokens * d_model * elem


def check_count(what: str, n: int, cap: int, env: str, force: bool = False) -> None:
    """Refuse a count (sweep points, samples) over its cap before anything is built from it."""
    if n > cap and not force:
        raise BudgetError(f"{what}: {n:,} > {cap:,} ({env}); make it smaller, raise the cap, or pass --force")

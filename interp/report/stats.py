"""Intervals for the verdict rules: percentile bootstrap over samples (seeded), paired differences, Wilson.

Every function takes per-sample values (one entry per maze / run) and returns an :class:`Interval` (the point
estimate on the data as given, and a 95% interval). The bootstrap resamples *samples* (rows), so a statistic of
several per-sample arrays (a paired difference, a curve's minimum) keeps the pairing: pass them stacked as columns
of one array and a function of the resampled rows.

>>> iv = paired_diff([1, 1, 0, 1], [0, 1, 0, 0])
>>> iv.excludes(0.0), str(iv)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

N_BOOT = 2000
SEED = 0
LEVEL = 0.95
Z95 = 1.959964


@dataclass(frozen=True)
class Interval:
    est: float
    lo: float
    hi: float
    n: int
    method: str = "bootstrap"

    def excludes(self, null: float) -> bool:
        """True when the whole interval lies strictly on one side of ``null``."""
        return bool(self.lo > null or self.hi < null)

    def above(self, null: float) -> bool:
        return bool(self.lo > null)

    def below(self, null: float) -> bool:
        return bool(self.hi < null)

    def contains(self, x: float) -> bool:
        return bool(self.lo <= x <= self.hi)

    def text(self, nd: int = 2, signed: bool = False) -> str:
        f = f"{{:+.{nd}f}}" if signed else f"{{:.{nd}f}}"
        if np.isnan(self.est):
            return "n/a"
        return f"{f.format(self.est)} [{f.format(self.lo)}, {f.format(self.hi)}]"

    __str__ = text


NAN = Interval(float("nan"), float("nan"), float("nan"), 0)


def bootstrap(x, stat: Callable[[np.ndarray], float] = lambda a: float(np.mean(a)), *, n_boot: int = N_BOOT,
              seed: int = SEED, level: float = LEVEL) -> Interval:  # fmt: skip
    """Percentile bootstrap of ``stat`` over the rows of ``x`` (samples on axis 0), seeded."""
    x = np.asarray(x, float)
    n = len(x)
    if n == 0:
        return NAN
    est = float(stat(x))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    reps = np.array([stat(x[i]) for i in idx], float)
    reps = reps[~np.isnan(reps)]
    if len(reps) == 0:
        return Interval(est, float("nan"), float("nan"), n)
    a = (1 - level) / 2
    lo, hi = np.quantile(reps, [a, 1 - a])
    return Interval(est, float(lo), float(hi), n)


def mean(x, **kw) -> Interval:
    """Bootstrap interval of the mean of per-sample values."""
    return bootstrap(np.asarray(x, float), **kw)


def paired_diff(a, b, **kw) -> Interval:
    """Bootstrap interval of mean(a - b) over samples, a and b measured on the same samples."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples of different shapes {a.shape} and {b.shape}")
    return bootstrap(a - b, **kw)


def wilson(k: int, n: int, z: float = Z95) -> Interval:
    """Wilson score interval of the proportion k / n."""
    if n == 0:
        return NAN
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), n, "wilson")


def proportion(x) -> Interval:
    """Wilson interval of the share of true entries of per-sample booleans."""
    x = np.asarray(x, bool)
    return wilson(int(x.sum()), len(x))


__all__ = ["Interval", "bootstrap", "mean", "paired_diff", "wilson", "proportion", "N_BOOT", "SEED"]

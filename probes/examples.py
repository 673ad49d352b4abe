"""Which (sample, token) pairs a probe trains and tests on, and the split by sample.

Samples go to train / val / test whole: tokens of one sample are never split across parts. Token labels keep at
most ``tokens_per_sample`` tokens per sample, drawn per class (``balance="class"``: an equal share for every class
present, the rest filled at random) or uniformly (``balance="uniform"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from jaxtyping import Int, Shaped

from probes.labels import ControlBy, Label, control_values, token_types

Balance = Literal["class", "uniform"]
PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class Examples:
    """Examples of one label: ``token == -1`` means the sample's pooled (mean) activation."""

    sample: Int[np.ndarray, " n"]
    token: Int[np.ndarray, " n"]
    y: Shaped[np.ndarray, " n"]
    y_control: Shaped[np.ndarray, " n"] | None
    part: Int[np.ndarray, " n"]  # 0 train, 1 val, 2 test; examples are sorted by part

    def index(self, part: str) -> np.ndarray:
        return np.flatnonzero(self.part == PARTS.index(part))

    def slice(self, part: str) -> slice:
        """The part as a slice: examples are ordered train, val, test."""
        idx = self.index(part)
        return slice(int(idx[0]), int(idx[-1]) + 1) if idx.size else slice(0, 0)


def split_samples(samples: np.ndarray, fractions: tuple[float, float, float], seed: int) -> dict[int, int]:
    """Sample id -> part (0 train, 1 val, 2 test), at random; every part gets at least one sample."""
    if len(samples) < 3:
        raise ValueError(f"need at least 3 labelled samples to split into train/val/test, got {len(samples)}")
    f = np.asarray(fractions, float)
    if f.shape != (3,) or (f <= 0).any():
        raise ValueError(f"split must be three positive fractions (train, val, test), got {fractions}")
    f = f / f.sum()
    perm = np.random.default_rng(seed).permutation(samples)
    n = len(perm)
    n_val = max(1, int(round(f[1] * n)))
    n_test = max(1, int(round(f[2] * n)))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{n} samples leave none for training with split {fractions}")
    parts = np.repeat([0, 1, 2], [n_train, n_val, n_test])
    return dict(zip(perm.tolist(), parts.tolist()))


def select_examples(
    label: Label,
    control: ControlBy | None = "position",
    tokens_per_sample: int = 64,
    balance: Balance = "class",
    frames: list[int] | None = None,
    split: tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
) -> Examples:
    """The examples of ``label``, their control-task labels (types: ``control``; None for no control), split."""
    if balance not in ("class", "uniform"):
        raise ValueError(f"balance {balance!r} unknown; valid: ['class', 'uniform']")
    rng = np.random.default_rng(seed + 1)
    if label.level == "sample":
        samples = np.flatnonzero(label.mask)
        tokens = np.full(len(samples), -1)
        sample_of = samples
    else:
        mask = label.mask.copy()
        if frames is not None:
            f, r, c = label.grid or (1, 1, mask.shape[1])
            bad = [x for x in frames if not 0 <= x < f]
            if bad:
                raise ValueError(f"frames {bad} outside the token grid's 0..{f - 1}")
            keep = np.zeros(f, bool)
            keep[frames] = True
            mask &= keep[label.columns // (r * c)][None]
        pick_s, pick_t = [], []
        for b in range(mask.shape[0]):
            idx = np.flatnonzero(mask[b])
            if idx.size == 0:
                continue
            if tokens_per_sample and idx.size > tokens_per_sample:
                idx = _choose(idx, label.values[b, idx], tokens_per_sample, balance, label.kind, rng)
            pick_s.append(np.full(idx.size, b))
            pick_t.append(idx)
        if not pick_s:
            raise ValueError(f"label {label.name!r} is defined on no token of the selected frames {frames}")
        sample_of, tokens = np.concatenate(pick_s), np.concatenate(pick_t)
    parts = split_samples(np.unique(sample_of), split, seed)
    part = np.array([parts[s] for s in sample_of.tolist()], dtype=np.int64)

    order = np.argsort(part, kind="stable")  # train, then val, then test: each part is one slice
    sample_of, tokens, part = sample_of[order], tokens[order], part[order]
    y = label.values[sample_of] if label.level == "sample" else label.values[sample_of, tokens]
    y_control = None
    if control is not None:
        types = token_types(label, control)
        types = types[sample_of] if label.level == "sample" else types[sample_of, tokens]
        y_control = control_values(types, y, seed)
    return Examples(sample_of, tokens, y, y_control, part)


def _choose(idx, values, budget, balance, kind, rng) -> np.ndarray:
    if balance == "uniform" or kind == "regression":
        return np.sort(rng.choice(idx, budget, replace=False))
    classes = np.unique(values)
    share = budget // len(classes)
    chosen = [rng.choice(idx[values == c], min(share, int((values == c).sum())), replace=False) for c in classes]
    chosen = np.concatenate(chosen)
    rest = np.setdiff1d(idx, chosen)
    fill = rng.choice(rest, budget - chosen.size, replace=False) if budget > chosen.size else rest[:0]
    return np.sort(np.concatenate([chosen, fill]))

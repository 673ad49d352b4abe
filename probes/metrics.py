"""Probe metrics for many sites at once, with cluster-bootstrap confidence intervals over samples.

Every function takes predictions with a leading ``sites`` axis and example weights with a leading ``boot`` axis
(weight 1 everywhere is the point estimate; multinomial counts of resampled *samples*, spread to their tokens, are
one bootstrap replicate). Tokens of one sample are never treated as independent.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor


def bootstrap_weights(
    sample_of: Int[Tensor, " n"], n_boot: int, generator: torch.Generator
) -> Float[Tensor, "boot_plus_1 n"]:
    """Row 0: all ones (the point estimate); rows 1..n_boot: resampled-sample counts per example."""
    uniq, inv = torch.unique(sample_of, return_inverse=True)
    m = len(uniq)
    idx = torch.randint(m, (n_boot, m), generator=generator)
    counts = torch.zeros(n_boot, m).scatter_add_(1, idx, torch.ones(n_boot, m))
    return torch.cat([torch.ones(1, len(sample_of)), counts[:, inv]], 0)


def accuracy(
    scores: Float[Tensor, "sites n k"], y: Int[Tensor, " n"], w: Float[Tensor, "boot n"]
) -> Float[Tensor, "sites boot"]:
    pred = (scores[..., 0] > 0).long() if scores.shape[-1] == 1 else scores.argmax(-1)
    hit = (pred == y).to(w.dtype)
    return hit @ w.T / w.sum(1)


def _binary_auroc(s: Float[Tensor, "sites n"], y: Tensor, w: Float[Tensor, "boot n"]) -> Float[Tensor, "sites boot"]:
    """Weighted AUROC = P(score_pos > score_neg), ties counted half."""
    order = s.argsort(-1)
    ss = torch.gather(s, 1, order).contiguous()
    ys = y[order].to(w.dtype)  # (sites, n)
    ws = w[:, order].permute(1, 0, 2)  # (sites, boot, n)
    neg = ws * (1 - ys)[:, None]
    pos = ws * ys[:, None]
    cneg = torch.cat([torch.zeros_like(neg[..., :1]), torch.cumsum(neg, -1)], -1)
    lo = torch.searchsorted(ss, ss, right=False)[:, None].expand_as(neg)
    hi = torch.searchsorted(ss, ss, right=True)[:, None].expand_as(neg)
    strictly_below = torch.gather(cneg, -1, lo)
    tied = torch.gather(cneg, -1, hi) - strictly_below
    num = (pos * (strictly_below + 0.5 * tied)).sum(-1)
    den = pos.sum(-1) * neg.sum(-1)
    return num / den.clamp_min(1e-12)


def auroc(
    scores: Float[Tensor, "sites n k"], y: Int[Tensor, " n"], w: Float[Tensor, "boot n"]
) -> Float[Tensor, "sites boot"]:
    """Binary AUROC, or the macro one-vs-rest mean over classes present for multiclass (on softmax scores).

    NaN when the test set holds a single class; a bootstrap row missing a class gives NaN for that row.
    """
    nan = torch.full((scores.shape[0], w.shape[0]), float("nan"), device=scores.device)
    if scores.shape[-1] == 1:
        return _binary_auroc(scores[..., 0], y, w) if 0 < int(y.sum()) < len(y) else nan
    probs = scores.softmax(-1)
    present = [c for c in range(scores.shape[-1]) if 0 < int((y == c).sum()) < len(y)]
    if not present:
        return nan
    return torch.stack([_binary_auroc(probs[..., c], (y == c).long(), w) for c in present]).mean(0)


def r2(
    pred: Float[Tensor, "sites n 1"], y: Float[Tensor, " n"], w: Float[Tensor, "boot n"]
) -> Float[Tensor, "sites boot"]:
    """Coefficient of determination, weighted per bootstrap row."""
    wsum = w.sum(1)
    mean = (w @ y) / wsum
    ss_tot = (w * (y[None] - mean[:, None]) ** 2).sum(1)
    ss_res = ((pred[..., 0] - y) ** 2) @ w.T
    return 1 - ss_res / ss_tot.clamp_min(1e-12)


def summarize(values: Float[Tensor, "sites boot"], level: float = 0.95) -> tuple[Tensor, Tensor, Tensor]:
    """(point estimate, lower, upper) from row 0 and the bootstrap rows' percentiles."""
    point = values[:, 0]
    if values.shape[1] == 1:
        return point, point.clone(), point.clone()
    boot = values[:, 1:]
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=values.dtype)
    lo, hi = torch.quantile(boot, q, dim=1)
    return point, lo, hi

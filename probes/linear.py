"""Batched linear probes: many sites and many problems solved at once in torch.

Every tensor carries a leading ``sites`` axis (one (step, site) activation slice each, all over the same examples)
and a ``problems`` axis (a label -- real or control -- crossed with a regularization strength). Features are
standardized per site before fitting; weights live in that standardized space (:func:`to_raw` maps them back).

Objectives (``N`` examples, ``lam`` the regularization strength, the bias never penalized):

* logistic: ``mean_n CE(x_n W + b, y_n) + lam/2 * |W|^2`` -- binary uses one sigmoid logit, multiclass a softmax.
  This is scikit-learn's ``LogisticRegression(C=1/(lam*N))``.
* ridge: ``mean_n (y_n - x_n w - b)^2 + lam * |w|^2``, solved exactly for every ``lam`` from one eigendecomposition.

The logistic solver is preconditioned nonlinear conjugate gradient with an exact (1-D Newton) line search; the
preconditioner is ``(XᵀX/(4N) + lam I)^-1`` from one eigendecomposition per site, shared by all problems. Each
iteration costs two batched matmuls over the examples for every site and problem together.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from jaxtyping import Float, Int
from torch import Tensor

BINARY_CURVATURE = 0.25  # bound on the logistic loss's second derivative, scales the preconditioner


def fast_matmul_dtype(device: torch.device | str = "cpu") -> torch.dtype:
    """bfloat16 where it is fast (CUDA; CPUs with AVX512-BF16 or AMX), else float32."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.bfloat16
    if dev.type == "cpu":
        cpu = torch.cpu
        if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)() or getattr(
            cpu, "_is_amx_tile_supported", lambda: False
        )():
            return torch.bfloat16
    return torch.float32


@dataclass
class Standardizer:
    """Per-site feature mean and std (from the training examples)."""

    mean: Float[Tensor, "sites d"]
    std: Float[Tensor, "sites d"]

    @classmethod
    def fit(cls, x: Float[Tensor, "sites n d"], eps: float = 1e-6, block: int = 1024) -> Standardizer:
        """Mean and (n-1) std over axis 1, from float32 sums of cache-sized row blocks accumulated in float64."""
        n = x.shape[1]
        shift = x[:, : min(n, 256)].float().mean(1)  # a rough mean first keeps the one-pass variance accurate
        s1 = torch.zeros(x.shape[0], x.shape[2], dtype=torch.float64, device=x.device)
        s2 = torch.zeros_like(s1)
        for i in range(0, n, block):
            c = x[:, i : i + block].float() - shift[:, None]
            s1 += c.sum(1)
            s2 += c.square().sum(1)
        m = s1 / n
        var = (s2 / n - m.square()) * n / max(n - 1, 1)
        return cls((shift + m).float(), var.clamp_min(0).sqrt().float().clamp_min(eps))

    def __call__(
        self, x: Float[Tensor, "sites n d"], dtype: torch.dtype | None = None, block: int = 1024
    ) -> Float[Tensor, "sites n d"]:
        """Standardized copy of ``x`` in ``dtype`` (default float32), written block by block."""
        out = torch.empty(x.shape, dtype=dtype or torch.float32, device=x.device)
        mean, std = self.mean[:, None], self.std[:, None]
        for i in range(0, x.shape[1], block):
            out[:, i : i + block] = (x[:, i : i + block].float() - mean) / std
        return out


@dataclass
class LinearFit:
    """Weights of a batch of probes in standardized feature space: ``logits = x_std @ weight + bias``."""

    weight: Float[Tensor, "sites problems d k"]
    bias: Float[Tensor, "sites problems k"]
    iterations: int = 0

    def logits(self, x: Float[Tensor, "sites n d"]) -> Float[Tensor, "sites problems n k"]:
        p, k = self.weight.shape[1], self.weight.shape[3]
        w = rearrange(self.weight, "s p d k -> s d (p k)").to(x.dtype)
        z = torch.bmm(x, w).float()
        return rearrange(z, "s n (p k) -> s p n k", p=p, k=k) + self.bias[:, :, None, :]


def to_raw(
    weight: Float[Tensor, "*lead d k"], bias: Float[Tensor, "*lead k"], std: Standardizer | None
) -> tuple[Tensor, Tensor]:
    """Weights on raw activations: ``x @ w_raw + b_raw == ((x - mean)/std) @ w + b``. Inputs lead with sites."""
    if std is None:
        return weight, bias
    shape = [std.std.shape[0]] + [1] * (weight.dim() - 3) + [std.std.shape[1], 1]
    w_raw = weight / std.std.reshape(shape)
    b_raw = bias - torch.einsum("s...dk,sd->s...k", w_raw, std.mean)
    return w_raw, b_raw


# ---------------------------------------------------------------------------------------------------------------
# ridge


def fit_ridge(
    x: Float[Tensor, "sites n d"], y: Float[Tensor, "problems n"], lam: Float[Tensor, " problems"]
) -> LinearFit:
    """Exact ridge for every (site, problem): one eigendecomposition of XᵀX per site serves every ``lam``."""
    s, n, d = x.shape
    xm = x.mean(1, keepdim=True)
    ym = y.mean(1)
    xc = x - xm
    cov = torch.bmm(xc.transpose(1, 2), xc) / n
    evals, evecs = torch.linalg.eigh(cov.double())
    xty = torch.einsum("snd,pn->sdp", xc.double(), (y - ym[:, None]).double()) / n
    proj = torch.einsum("sde,sdp->sep", evecs, xty)
    proj = proj / (evals[:, :, None] + lam.double()[None, None, :])
    w = torch.einsum("sde,sep->spd", evecs, proj).to(x.dtype)
    b = ym[None, :] - torch.einsum("spd,sd->sp", w, xm[:, 0])
    return LinearFit(w[..., None], b[..., None], 1)


# ---------------------------------------------------------------------------------------------------------------
# logistic
# Internally logits are laid out (sites, problems, k, n) and weights (sites, problems, k, d), so both products per
# iteration are plain batched GEMMs over the examples: ``W @ Xᵀ`` and ``R @ X``.


def _residual(z: Tensor, y: Tensor, onehot: Tensor | None) -> Tensor:
    """dloss/dlogit per example (not yet divided by n)."""
    if onehot is None:
        return (torch.sigmoid(z[:, :, 0]) - y)[:, :, None]
    return torch.softmax(z, 2) - onehot


def _line_search(
    z: Tensor, dz: Tensor, y: Tensor, onehot: Tensor | None, wd: Tensor, dd: Tensor, lam: Tensor, steps: int = 3
) -> Tensor:
    """Step size along ``dz`` by 1-D Newton on the (convex) objective; ``wd = <W, D>``, ``dd = |D|^2``."""
    t = torch.ones_like(wd)
    n = z.shape[-1]
    vdot = torch.linalg.vecdot
    if onehot is None:  # binary: preallocated buffers, no temporaries the size of the logits per Newton step
        z0, d0 = z[:, :, 0], dz[:, :, 0]
        d2 = d0.square()
        ydz = vdot(y, d0)
        p, q = torch.empty_like(z0), torch.empty_like(z0)
    else:
        d2 = dz.square()
        ydz = (onehot * dz).sum((2, 3))
    for _ in range(steps):
        if onehot is None:
            torch.sigmoid(torch.addcmul(z0, t[..., None], d0, out=p), out=p)
            torch.mul(p, d2, out=q)
            g1 = vdot(p, d0) - ydz
            g2 = q.sum(-1) - vdot(q, p)
        else:
            pm = torch.softmax(torch.addcmul(z, t[..., None, None], dz), 2)
            pdz = (pm * dz).sum(2)
            g1 = pdz.sum(-1) - ydz
            g2 = (pm * d2).sum((2, 3)) - pdz.square().sum(-1)
        g1 = g1 / n + lam * (wd + t * dd)
        g2 = g2 / n + lam * dd
        t = (t - g1 / g2.clamp_min(1e-12)).clamp(0.0, 1e4)
    return t


def fit_logistic(
    x: Float[Tensor, "sites n d"],
    y: Int[Tensor, "problems n"],
    lam: Float[Tensor, " problems"],
    classes: int,
    max_iter: int = 100,
    tol: float = 1e-3,
    precond_rows: int = 1024,
    matmul_dtype: torch.dtype | None = None,
) -> LinearFit:
    """Regularized logistic regression (binary if ``classes == 2``, else softmax) for every (site, problem).

    ``x`` should be standardized (centered at least): the bias is preconditioned separately from the weights.
    Stops when every problem's Newton-decrement-like ``sqrt(g' P g)`` is below ``tol`` (the objective then lies
    within about ``tol^2 / 2`` of its minimum) or after ``max_iter`` iterations. ``matmul_dtype=torch.bfloat16``
    runs the two products per iteration in bfloat16 (fp32 accumulation; ~2x faster on CPUs with AVX512-BF16 or
    AMX); everything else stays in ``x``'s dtype.
    """
    s, n, d = x.shape
    p = y.shape[0]
    binary = classes == 2
    k = 1 if binary else classes
    dt = torch.float32  # optimizer state; x itself may be bfloat16
    mdt = matmul_dtype or x.dtype
    xm = x.to(mdt).contiguous()
    # fp32 GEMM against a transposed view is ~2x slower on CPU than against a transposed copy; bf16 is not
    xt = xm.transpose(1, 2) if mdt == torch.bfloat16 else xm.transpose(1, 2).contiguous()
    yb = y.to(dt)[None].expand(s, p, n)
    onehot = None
    if not binary:
        onehot = rearrange(torch.nn.functional.one_hot(y.long(), classes).to(dt), "p n k -> 1 p k n").expand(s, p, k, n)
    lam_b = lam.to(dt)[None].expand(s, p)

    # preconditioner from (a subsample of) the examples: (c XᵀX/n + lam I)^-1, eigenbasis shared by problems
    rows = x[:, :: max(1, n // precond_rows)].float()
    cov = torch.bmm(rows.transpose(1, 2), rows) / rows.shape[1]
    evals, evecs = torch.linalg.eigh(cov)
    inv = 1.0 / (BINARY_CURVATURE * evals.clamp_min(0)[:, None, :] + lam_b[..., None])  # (s, p, e)

    def precond(gw: Tensor, gb: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.einsum("spkd,sde->spke", gw, evecs) * inv[:, :, None, :]
        return torch.einsum("spke,sde->spkd", h, evecs), gb / BINARY_CURVATURE

    def forward(w: Tensor, b: Tensor) -> Tensor:
        z = torch.bmm(rearrange(w, "s p k d -> s (p k) d").to(mdt), xt).to(dt)
        return rearrange(z, "s (p k) n -> s p k n", p=p) + b[..., None]

    # start from the log class prior with zero weights
    if binary:
        prior = y.to(dt).mean(1).clamp(1e-4, 1 - 1e-4)
        b = torch.log(prior / (1 - prior))[None, :, None].expand(s, p, 1).clone()
    else:
        counts = torch.nn.functional.one_hot(y.long(), classes).to(dt).mean(1).clamp_min(1e-4)
        b = torch.log(counts)[None].expand(s, p, k).clone()
    w = torch.zeros(s, p, k, d, dtype=dt, device=x.device)
    z = b[..., None].expand(s, p, k, n).clone()
    prev = None
    it = 0
    for it in range(1, max_iter + 1):
        r = _residual(z, yb, onehot)
        gw = torch.bmm(rearrange(r, "s p k n -> s (p k) n").to(mdt), xm).to(dt)
        gw = rearrange(gw, "s (p k) d -> s p k d", p=p) / n
        gw = gw + lam_b[..., None, None] * w
        gb = r.mean(-1)
        hw, hb = precond(gw, gb)
        gh = (gw * hw).sum((-1, -2)) + (gb * hb).sum(-1)
        if gh.max().sqrt() < tol:
            break
        if prev is None:
            dw, db = -hw, -hb
        else:
            pgw, pgb, pgh, pdw, pdb = prev
            num = ((gw - pgw) * hw).sum((-1, -2)) + ((gb - pgb) * hb).sum(-1)
            beta = (num / pgh.clamp_min(1e-30)).clamp_min(0)
            dw = -hw + beta[..., None, None] * pdw
            db = -hb + beta[..., None] * pdb
            restart = (gw * dw).sum((-1, -2)) + (gb * db).sum(-1) >= 0
            dw = torch.where(restart[..., None, None], -hw, dw)
            db = torch.where(restart[..., None], -hb, db)
        dz = forward(dw, db)
        t = _line_search(z, dz, yb, onehot, (w * dw).sum((-1, -2)), (dw * dw).sum((-1, -2)), lam_b)
        w = w + t[..., None, None] * dw
        b = b + t[..., None] * db
        z = torch.addcmul(z, t[..., None, None], dz)
        prev = (gw, gb, gh, dw, db)
    return LinearFit(rearrange(w, "s p k d -> s p d k"), b, it)

"""Batched linear probes: many sites and many problems solved at once in torch.

Every tensor carries a leading ``sites`` axis (one (step, site) activation slice each, all over the same examples)
and a ``problems`` axis (a label -- real or control -- crossed with a regularization strength). Features are
standardized per site before fitting; weights live in that standardized space (:func:`to_raw` maps them back).

Objectives (``N`` examples, ``lam`` the regularization strength, the bias never penalized):

* logistic: ``mean_n CE(x_n W + b, y_n) + lam/2 * |W|^2`` -- binary uses one sigmoid logit, multiclass a softmax.
  This is scikit-learn's ``LogisticRegression(C=1/(lam*N))``.
* ridge: ``mean_n (y_n - x_n w - b)^2 + lam * |w|^2``, solved exactly for every ``lam`` from one eigendecomposition.

The logistic solver is preconditioned nonlinear conjugate gradient (Polak-Ribière+) with a 1-D Newton line search;
the preconditioner is ``(XᵀX/(4N) + lam I)^-1``: on the CPU from one eigendecomposition per site, shared by all its
problems; on CUDA formed explicitly from batched Cholesky factors (:class:`_Preconditioner` says why).
Each iteration costs two products with the examples (one pass over them each). What that cost depends on, measured
on CPU with ``python -m benchmarks.probes`` (n = 9830 training examples, d = 256, 6 problems per site, one thread):

* passes, not problems: one bf16 pass over a site's examples costs ~0.3 ms for 1 row of weights and ~0.35 ms for 6,
  so problems ride along almost free, and a site costs what its slowest problem needs. Sites are therefore solved
  one cache-sized group at a time (the examples stay in the last-level cache across iterations: ~1.5x faster passes
  than streaming 16 sites from memory) and converged (site, problem) pairs are compacted away.
* warm starts along the regularization path (strong to weak, each from the previous solution) were measured and
  not adopted: solved one strength at a time they need ~50 passes per site against ~15 for all strengths at once.
* Newton / IRLS with a Cholesky of ``XᵀWX`` from zero was not adopted as the solver: the 6 Hessians alone cost
  ~47 ms per site per iteration in bf16, more than the whole CG solve; it only finishes CG's solves (below).
* tolerance: ``TOL`` is matched to what the selected probe's accuracy needs (see :func:`fit_logistic`).

CG alone is not enough to pick the strength the way scikit-learn does on real captures: on maze-wan (wall / path,
160 sites) its validation losses at the weak strengths (1e-5, 1e-4: near-separable sites) stay 1e-3 to 1e-1 nats
off the optimum while neighbouring strengths differ by ~2e-4, so it picked another strength at 25-37% of sites.
Every solve therefore ends with Newton steps (gradient and Hessian per (site, problem) pair in float32 on the CPU,
in float64 on CUDA (:func:`newton_dtype`), factored in float64, only unconverged pairs computed) to a decrement of
``NEWTON_TOL``: on the H200 run of ``benchmarks.probe_parity`` (64 mazes) every probe within 0.12 points of a tight
float64 scikit-learn solve and the same strength at every site (``benchmarks/results/probe_parity_h200.txt``).
Off the CPU the CG phase keeps converged pairs iterating instead of compacting them away
(:func:`fixed_shape_cg`), so its iteration has fixed shapes and runs as one CUDA graph, the host reading the
convergence every :data:`CHECK_EVERY` iterations; on one H200 that took CG from 135 to ~40 ms for 160 sites (52
iterations). The Newton finish batches pairs by site (a site's examples are never copied per problem). The price on
CPU: the float32 Hessians (~2.5 ms per pair at n = 1280, d = 224, one thread; ~2-7 per pair) make a site cost tens
of ms instead of CG's 8-13 ms there; a GPU forms them in batched GEMMs. Measured by
``python -m benchmarks.probe_parity`` (benchmarks/results/probe_parity_cpu.txt; at 64 mazes, against scikit-learn
on float64 features: probe_parity_cpu64.txt). The fits run under :func:`full_float32` (no TF32): the Newton finish
needs float32's full mantissa.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from einops import rearrange
from jaxtyping import Float, Int
from torch import Tensor

BINARY_CURVATURE = 0.25  # bound on the logistic loss's second derivative, scales the preconditioner
TOL = 2e-2  # default stopping tolerance of the CG phase on sqrt(g' P g): see fit_logistic
NEWTON_STEPS = 12  # default cap on the Newton steps that finish every solve: see fit_logistic
NEWTON_TOL = 1e-5  # default stopping tolerance on the Newton decrement sqrt(g' H^-1 g): see the module docstring
NEWTON_BYTES = 256 << 20  # CPU working set of one batch of Newton steps (the curvature-weighted copies of the examples)
CACHE_BYTES = 8 << 20  # CPU: sites solved together keep their examples within this (last-level cache)
CHECK_EVERY = 4  # off the CPU: the CG phase reads its convergence (a device-to-host wait) every this many iterations


@contextmanager
def full_float32() -> Iterator[None]:
    """float32 matmuls at full precision inside (no TF32 on CUDA), whatever the process set outside (training turns
    TF32 on): the Newton finish, the validation losses and the test scores need float32's 24 bits, TF32 keeps 11."""
    prev = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(prev)


def fast_matmul_dtype(device: torch.device | str = "cpu") -> torch.dtype:
    """bfloat16 where it is fast (CUDA; CPUs with AVX512-BF16 or AMX), else float32."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.bfloat16
    if dev.type == "cpu":
        cpu = torch.cpu
        if (
            getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
            or getattr(cpu, "_is_amx_tile_supported", lambda: False)()
        ):
            return torch.bfloat16
    return torch.float32


def check_every(device: torch.device) -> int:
    """How often the CG phase reads its convergence: every iteration on the CPU (nothing to overlap), else every
    :data:`CHECK_EVERY`."""
    return 1 if device.type == "cpu" else CHECK_EVERY


def newton_dtype(device: torch.device) -> torch.dtype:
    """The Newton finish's examples, gradients and Hessians: float64 on CUDA (a GPU's float64 GEMMs are fast, and a
    float32 gradient leaves near-chance sites' weights a few test examples off a float64 reference: 0.60 points at
    one maze-wan ``path`` site in float32, ``benchmarks/results/probe_parity_h200_float32_newton.txt``, 0.12 in
    float64, ``probe_parity_h200_float64_newton.txt``), float32 on the CPU (float64 GEMMs there cost twice as much,
    and its float32 solves are within 0.12 points, ``probe_parity_cpu64_newton_tol.txt``)."""
    return torch.float64 if device.type == "cuda" else torch.float32


def site_group(sites: int, n: int, d: int, dtype: torch.dtype, device: torch.device | str) -> int:
    """Sites :func:`fit_logistic` solves together by default: on CPU as many as keep their ``n`` examples within
    ``CACHE_BYTES``, elsewhere all of them. A site's solution depends (in its last bits, and through when its
    converged problems are compacted away) on the other sites of its group."""
    if torch.device(device).type != "cpu":
        return max(1, sites)
    return max(1, CACHE_BYTES // (n * d * dtype.itemsize))


@dataclass
class Standardizer:
    """Per-site feature mean and std (from the training examples)."""

    mean: Float[Tensor, "sites d"]
    std: Float[Tensor, "sites d"]

    @classmethod
    def fit(cls, x: Float[Tensor, "sites n d"], eps: float = 1e-6, block: int = 1024) -> Standardizer:
        """Mean and (n-1) std over axis 1, from float32 sums of cache-sized row blocks accumulated in float64.

        On CPU one site at a time (its rows are contiguous, so the blocks stream through the cache)."""
        n = x.shape[1]
        shift = x[:, : min(n, 256)].float().mean(1)  # a rough mean first keeps the one-pass variance accurate
        s1 = torch.zeros(x.shape[0], x.shape[2], dtype=torch.float64, device=x.device)
        s2 = torch.zeros_like(s1)
        for g in _site_groups(x):
            for i in range(0, n, block):
                c = x[g, i : i + block].float() - shift[g, None]
                s1[g] += c.sum(1)
                s2[g] += c.square_().sum(1)
        m = s1 / n
        var = (s2 / n - m.square()) * n / max(n - 1, 1)
        return cls((shift + m).float(), var.clamp_min(0).sqrt().float().clamp_min(eps))

    def __call__(
        self,
        x: Float[Tensor, "sites n d"],
        dtype: torch.dtype | None = None,
        block: int = 1024,
        out: Tensor | None = None,
    ) -> Float[Tensor, "sites n d"]:
        """Standardized copy of ``x`` in ``dtype`` (default float32; or written into ``out``), block by block (on
        CPU site by site) through one reused float32 buffer."""
        if out is None:
            out = torch.empty(x.shape, dtype=dtype or torch.float32, device=x.device)
        inv = 1.0 / self.std
        buf = None
        for g in _site_groups(x):
            mean, scale = self.mean[g, None], inv[g, None]
            for i in range(0, x.shape[1], block):
                src = x[g, i : i + block]
                if buf is None or buf.shape != src.shape:
                    buf = torch.empty(src.shape, dtype=torch.float32, device=x.device)
                torch.sub(src, mean, out=buf)
                torch.mul(buf, scale, out=out[g, i : i + block])
        return out

    def select(self, sites: slice) -> Standardizer:
        return Standardizer(self.mean[sites], self.std[sites])


def _site_groups(x: Tensor) -> list[slice]:
    """Site slices to stream over: one site at a time on CPU (cache-sized working sets), all at once elsewhere."""
    step = 1 if x.device.type == "cpu" else max(1, x.shape[0])
    return [slice(i, i + step) for i in range(0, x.shape[0], step)]


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


def _bmm(a: Tensor, b: Tensor) -> Tensor:
    """``torch.bmm``; one batch goes through ``torch.mm`` (bf16 bmm of one batch against a transposed view is
    ~15x slower on CPU than the same mm)."""
    return torch.mm(a[0], b[0])[None] if a.shape[0] == 1 else torch.bmm(a, b)


def _residual(z: Tensor, y: Tensor, onehot: Tensor | None) -> Tensor:
    """dloss/dlogit per example (not yet divided by n)."""
    if onehot is None:
        return (torch.sigmoid(z[:, :, 0]) - y)[:, :, None]
    return torch.softmax(z, 2) - onehot


def _line_search(
    z: Tensor, dz: Tensor, y: Tensor, onehot: Tensor | None, wd: Tensor, dd: Tensor, steps: int = 2
) -> Tensor:
    """Step size along ``dz`` by 1-D Newton on the (convex) objective; ``wd = lam <W, D>``, ``dd = lam |D|^2``
    (over the penalized coordinates)."""
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
        g1 = g1 / n + wd + t * dd
        g2 = g2 / n + dd
        t = (t - g1 / g2.clamp_min(1e-12)).clamp(0.0, 1e4)
    return t


def fit_logistic(
    x: Float[Tensor, "sites n d"],
    y: Int[Tensor, "problems n"],
    lam: Float[Tensor, " problems"],
    classes: int,
    max_iter: int = 100,
    tol: float = TOL,
    precond_rows: int | None = None,
    matmul_dtype: torch.dtype | None = None,
    group: int | None = None,
    standardizer: Standardizer | None = None,
    newton_steps: int = NEWTON_STEPS,
    newton_tol: float = NEWTON_TOL,
) -> LinearFit:
    """Regularized logistic regression (binary if ``classes == 2``, else softmax) for every (site, problem).

    ``x`` should be standardized (centered at least): the bias is preconditioned separately from the weights.
    A (site, problem) pair stops when its Newton-decrement-like ``sqrt(g' P g)`` is below ``tol`` or after
    ``max_iter`` iterations; converged pairs are compacted away on the CPU, so each site costs only as many passes
    over its examples as its slowest problem needs (elsewhere they go on iterating at fixed shapes until every pair
    has been below ``tol``: :func:`fixed_shape_cg`). The default ``TOL = 2e-2`` was chosen on the benchmark's 48
    sites (binary and 5-class, bf16): against a float32 solve to 1e-5 it selects the same strength at every site and
    changes the selected probe's test accuracy by < 0.02 points on average (worst site 0.4 / 0.55 points, at
    weak-signal sites; bf16 alone, solved to 1e-3, gives 0.2 / 0.43), while the objective is within ~5e-3 nats of its
    minimum. Pass a smaller ``tol`` (float32 for < ~1e-3) when the weights themselves matter.
    Then up to ``newton_steps`` Newton steps (float32 examples and Hessians) take every pair to a Newton decrement
    below ``newton_tol`` (``newton_steps=0``: CG alone, faster on CPU, the strength picked less reliably; see the
    module docstring).
    Sites are solved ``group`` at a time (CPU default: as many as keep their examples in ``CACHE_BYTES``, so the
    passes of every iteration read the last-level cache instead of memory; GPU default: all at once).
    ``matmul_dtype=torch.bfloat16`` runs the two products per iteration in bfloat16 (fp32 accumulation; ~2x faster
    on CPUs with AVX512-BF16 or AMX); everything else stays in float32. With ``standardizer``, ``x`` is raw and each
    group is standardized into one reused buffer (in the matmul dtype) just before its solve, instead of the caller
    materializing a standardized copy of every site; the weights are still in standardized space.
    """
    with full_float32():
        return _fit_logistic(x, y, lam, classes, max_iter, tol, precond_rows, matmul_dtype, group, standardizer,
                             newton_steps, newton_tol)  # fmt: skip


def _fit_logistic(x, y, lam, classes, max_iter, tol, precond_rows, matmul_dtype, group, standardizer, newton_steps,
                  newton_tol) -> LinearFit:  # fmt: skip
    s, n, d = x.shape
    p = y.shape[0]
    k = 1 if classes == 2 else classes
    mdt = matmul_dtype or x.dtype
    if group is None:
        group = site_group(s, n, d, mdt, x.device)
    weight = torch.zeros(s, p, k, d, dtype=torch.float32, device=x.device)
    bias = torch.zeros(s, p, k, dtype=torch.float32, device=x.device)
    iters = 0
    buf = None if standardizer is None else torch.empty(min(group, s), n, d, dtype=mdt, device=x.device)
    for g0 in range(0, s, group):
        sl = slice(g0, g0 + group)
        xg = x[sl]
        if standardizer is not None:
            xg = standardizer.select(sl)(xg, out=buf[: xg.shape[0]])
        it = _fit_logistic_group(xg, y, lam, classes, max_iter, tol, precond_rows, mdt, weight[sl], bias[sl])
        if newton_steps:
            # Newton runs on float32 examples at least (its gradient must be exact for it to reach the optimum)
            x32 = xg.float() if standardizer is None else standardizer.select(sl)(x[sl])
            it += _newton_group(
                x32.to(newton_dtype(x.device)), y, lam, classes, newton_steps, newton_tol, weight[sl], bias[sl]
            )
        iters = max(iters, it)
    return LinearFit(rearrange(weight, "s p k d -> s p d k"), bias, iters)


@dataclass
class _Preconditioner:
    """``P = (c XᵀX/n + lam I)^-1`` on the weights and ``1/c`` on the bias, per (site, problem), ``c`` =
    ``BINARY_CURVATURE``; applied as ``h = g P`` to gradients ``g`` (sites, problems, k, d + 1).

    Two forms of one matrix. On the CPU one eigendecomposition per site, shared by its problems: ``P = V diag(inv)
    Vᵀ`` (``basis`` = V with the bias appended, ``inv`` per problem). On CUDA that eigendecomposition is the slow
    part of a solve (the batched Jacobi ``eigh`` launches ~145 kernels per site: 0.74 of the 0.89 s of device time
    of 160 sites at d = 224 on an H200, ``benchmarks/results/probe_parity_h200_profile.txt``), so ``P`` is formed
    explicitly from one Cholesky factor per (site, problem) in float64 (batched, a few kernels in all) when the
    matrices fit ``EXPLICIT_BYTES``; where a factorization fails (a covariance not positive definite in float64 at
    the weakest strength) the eigen form is used."""

    basis: Tensor | None = None  # (s, d + 1, d + 1)
    basis_t: Tensor | None = None  # its transpose, contiguous (an fp32 CPU GEMM against a transposed view: ~2x slower)
    inv: Tensor | None = None  # (s, p, 1, d + 1)
    mat: Tensor | None = None  # (s, p, d + 1, d + 1)

    EXPLICIT_BYTES = 1 << 30  # the explicit matrices kept (float32), at most; beyond: the eigen form
    BUILD_BYTES = 2 << 30  # float64 working set while they are formed (matrix, factor, its inverse), sites at a time

    @classmethod
    def fit(cls, rows: Tensor, lam_reg: Tensor, explicit: bool | None = None) -> _Preconditioner:
        """From ``rows`` (s, m, d) float32 examples and ``lam_reg`` (p, d + 1) per-coordinate strengths; ``explicit``:
        the form (None: explicit on CUDA where it fits ``EXPLICIT_BYTES``)."""
        s, m, d = rows.shape
        p = lam_reg.shape[0]
        if explicit is None:
            explicit = rows.device.type == "cuda" and s * p * (d + 1) ** 2 * 4 <= cls.EXPLICIT_BYTES
        if explicit:
            mat = torch.empty(s, p, d + 1, d + 1, dtype=rows.dtype, device=rows.device)
            diag = torch.diag_embed(lam_reg.double())[None]  # (1, p, d + 1, d + 1)
            step = max(1, cls.BUILD_BYTES // (3 * p * (d + 1) ** 2 * 8))
            for i in range(0, s, step):
                r64 = rows[i : i + step].double()
                a = torch.zeros(len(r64), d + 1, d + 1, dtype=torch.float64, device=rows.device)
                a[:, :d, :d] = torch.bmm(r64.transpose(1, 2), r64) / m
                a[:, d, d] = 1.0
                chol, info = torch.linalg.cholesky_ex(BINARY_CURVATURE * a[:, None] + diag)  # (s', p, d + 1, d + 1)
                if bool((info != 0).any()):
                    break  # a factorization failed: the eigen form below, for every site
                eye = torch.eye(d + 1, dtype=torch.float64, device=rows.device).expand_as(chol)
                li = torch.linalg.solve_triangular(chol, eye, upper=False)  # L^-1
                mat[i : i + step] = li.transpose(-1, -2) @ li  # (L Lᵀ)^-1 = L^-ᵀ L^-1
            else:  # every chunk factored
                return cls(mat=mat)
        cov = torch.bmm(rows.transpose(1, 2), rows) / m
        evals, evecs = torch.linalg.eigh(cov)
        basis = torch.zeros(s, d + 1, d + 1, dtype=rows.dtype, device=rows.device)
        basis[:, :d, :d] = evecs
        basis[:, d, d] = 1.0
        curv = torch.cat([evals.clamp_min(0), torch.ones(s, 1, dtype=rows.dtype, device=rows.device)], 1)
        inv = 1.0 / (curv[:, None, None, :] * BINARY_CURVATURE + lam_reg[None, :, None, :])
        return cls(basis=basis, basis_t=basis.transpose(1, 2).contiguous(), inv=inv)

    def __call__(self, g: Tensor) -> Tensor:
        if self.mat is not None:
            return torch.matmul(g, self.mat)
        s, a, k, e = g.shape
        h = _bmm(g.reshape(s, a * k, e), self.basis).reshape(g.shape) * self.inv
        return _bmm(h.reshape(s, a * k, e), self.basis_t).reshape(g.shape)

    def take(self, si: Tensor, pj: Tensor) -> _Preconditioner:
        """The rows of sites ``si`` (live sites) and their problems ``pj`` (s', width)."""
        ix = (si[:, None], pj)
        if self.mat is not None:
            return _Preconditioner(mat=self.mat[ix])
        return _Preconditioner(basis=self.basis[si], basis_t=self.basis_t[si], inv=self.inv[ix])


def _live_first(done: Tensor, width: int) -> Tensor:
    """Per row of ``done`` (rows, problems), the problem indices with the live (not done) ones first, each group in
    order, cut to the first ``width``."""
    return torch.argsort(done.to(torch.int8), dim=1, stable=True)[:, :width]


def fixed_shape_cg(device: torch.device) -> bool:
    """How the CG phase treats converged (site, problem) pairs: on the CPU it compacts them away (its cost is the
    arithmetic, which shrinks with the pairs); elsewhere every pair keeps iterating until all have converged (a
    device's cost is the launches: fixed shapes let the iteration run as one CUDA graph and skip every compaction's
    host round trip, and a converged pair then costs nothing extra while it moves closer to its optimum, so the
    Newton finish starts nearer)."""
    return device.type != "cpu"


def _cg_gradient(v, z, r_dt, yb, onehot, xm, lam_reg, pre, n, d, k):
    """Gradient ``g`` of the packed weights ``v``, its preconditioned ``h`` and ``g' h`` per pair."""
    a = v.shape[1]
    r = _residual(z, yb, onehot)
    g = torch.empty_like(v)
    g[..., :d] = _bmm(r.reshape(-1, a * k, n).to(r_dt), xm).reshape(-1, a, k, d)
    torch.sum(r, -1, out=g[..., d])
    g.mul_(1.0 / n).addcmul_(lam_reg, v)
    h = pre(g)
    return g, h, torch.linalg.vecdot(g, h).sum(-1)


def _cg_move(g, h, prev, v, z, yb, onehot, xt, lam_reg, mdt, d, k):
    """One Polak-Ribière+ step (restarted along ``-h`` when not a descent direction) with its line search. Returns
    the new ``v``, ``z`` and the direction."""
    vdot = torch.linalg.vecdot
    a, n = v.shape[1], z.shape[-1]
    if prev is None:
        dv = -h
    else:
        pg, pgh, pdv = prev
        beta = (vdot(g - pg, h).sum(-1) / pgh.clamp_min(1e-30)).clamp_min_(0)
        dv = torch.addcmul(-h, beta[..., None, None], pdv)
        restart = vdot(g, dv).sum(-1) >= 0
        dv = torch.where(restart[..., None, None], -h, dv)
    dz = _bmm(dv[..., :d].to(mdt).reshape(-1, a * k, d), xt).reshape(-1, a, k, n).to(v.dtype) + dv[..., d, None]
    ldv = lam_reg * dv
    t = _line_search(z, dz, yb, onehot, vdot(ldv, v).sum(-1), vdot(ldv, dv).sum(-1))
    return torch.addcmul(v, t[..., None, None], dv), torch.addcmul(z, t[..., None, None], dz), dv


def _fit_logistic_group(
    x: Tensor, y: Tensor, lam: Tensor, classes: int, max_iter: int, tol: float, precond_rows: int | None,
    mdt: torch.dtype, w_out: Tensor, b_out: Tensor,
) -> int:  # fmt: skip
    """Preconditioned nonlinear CG for the sites of ``x``; writes ``w_out`` (s, p, k, d), ``b_out`` (s, p, k).

    Weights and bias are packed as ``v = [w, b]`` (last axis ``d + 1``), so every vector operation of an iteration
    is one tensor op; only the two products with the examples see ``w`` and ``b`` apart. Converged pairs are
    compacted away or go on iterating at fixed shapes (:func:`fixed_shape_cg`)."""
    s, n, d = x.shape
    p = y.shape[0]
    binary = classes == 2
    k = 1 if binary else classes
    dt = torch.float32  # optimizer state; x itself may be bfloat16
    dev = x.device
    xm = x.to(mdt).contiguous()
    # fp32 GEMM against a transposed view is ~2x slower on CPU than against a transposed copy; bf16 is not
    xt = xm.transpose(1, 2) if mdt == torch.bfloat16 else xm.transpose(1, 2).contiguous()
    yb = y.to(dt)[None].expand(s, p, n)
    onehot = None
    if not binary:
        onehot = rearrange(torch.nn.functional.one_hot(y.long(), classes).to(dt), "p n k -> 1 p k n").expand(s, p, k, n)

    # preconditioner from (a subsample of) the examples: (c XᵀX/n + lam I)^-1 on the weights, 1/c on the bias (x is
    # centered, so the bias is its own eigen-direction)
    rows = x[:, :: max(1, n // (precond_rows or max(1024, 4 * d)))].float()  # ~d rows give a near-singular cov
    reg = torch.ones(d + 1, dtype=dt, device=dev)
    reg[d] = 0.0  # the bias is not penalized
    lam_reg = lam.to(dt)[None, :, None, None] * reg  # (1, p, 1, d + 1)
    pre = _Preconditioner.fit(rows, lam_reg[0, :, 0])
    lam_reg = lam_reg.expand(s, p, 1, d + 1)

    # start from the log class prior with zero weights
    v = torch.zeros(s, p, k, d + 1, dtype=dt, device=dev)
    if binary:
        prior = y.to(dt).mean(1).clamp(1e-4, 1 - 1e-4)
        v[..., 0, d] = torch.log(prior / (1 - prior))
    else:
        v[..., d] = torch.nn.functional.one_hot(y.long(), classes).to(dt).mean(1).clamp_min(1e-4).log()
    z = v[..., d, None].expand(s, p, k, n).clone()
    if fixed_shape_cg(dev):
        it = _cg_fixed(v, z, yb, onehot, xm, xt, lam_reg, pre, mdt, max_iter, tol, n, d, k)
        w_out.copy_(v[..., :d])
        b_out.copy_(v[..., d])
        return it
    # the pairs still iterating: rows are sites of this group, columns problems (as indices into the outputs)
    cur_s = torch.arange(s, device=dev)
    cur_p = torch.arange(p, device=dev)[None].expand(s, p)
    check = check_every(dev)
    prev = None
    it = 0
    for it in range(1, max_iter + 1):
        a = v.shape[1]
        g, h, gh = _cg_gradient(v, z, mdt, yb, onehot, xm, lam_reg, pre, n, d, k)
        done = gh < tol * tol if it % check == 0 or it == max_iter else None
        if done is not None and done.any():
            if done.all():
                break
            # compact: drop sites whose problems all converged, and converged problems down to the most any
            # remaining site still needs (converged pairs kept as padding go on converging)
            live = ~done.all(1)
            width = int((~done).sum(1).max())
            if width < a or not bool(live.all()):
                w_out[cur_s[:, None], cur_p] = v[..., :d]
                b_out[cur_s[:, None], cur_p] = v[..., d]
                si = live.nonzero()[:, 0]
                pj = _live_first(done[si], width)

                ix = (si[:, None], pj)
                v, z, yb, lam_reg, g, h, gh = (t[ix] for t in (v, z, yb, lam_reg, g, h, gh))
                pre = pre.take(si, pj)
                onehot = None if onehot is None else onehot[ix]
                prev = None if prev is None else tuple(t[ix] for t in prev)
                cur_p = cur_p[si[:, None], pj]
                if len(si) < len(cur_s):
                    cur_s, xm, xt = cur_s[si], xm[si], xt[si]
        v, z, dv = _cg_move(g, h, prev, v, z, yb, onehot, xt, lam_reg, mdt, d, k)
        prev = (g, gh, dv)
    w_out[cur_s[:, None], cur_p] = v[..., :d]
    b_out[cur_s[:, None], cur_p] = v[..., d]
    return it


def _cg_fixed(v, z, yb, onehot, xm, xt, lam_reg, pre, mdt, max_iter, tol, n, d, k) -> int:
    """The CG iterations at fixed shapes (``v`` and ``z`` updated in place), every pair iterating until each has
    been below ``tol`` once: on CUDA the iteration is captured once as a CUDA graph and replayed, the host reading
    the convergence only every :func:`check_every` iterations. Returns the iterations taken."""
    tol2 = tol * tol
    # the previous gradient, g'h and direction; an infinite g'h makes the first step plain -h, as every restart
    pg, pdv = torch.zeros_like(v), torch.zeros_like(v)
    pgh = torch.full(v.shape[:2], float("inf"), dtype=v.dtype, device=v.device)
    done = torch.zeros(v.shape[:2], dtype=torch.bool, device=v.device)

    def iteration() -> None:
        g, h, gh = _cg_gradient(v, z, mdt, yb, onehot, xm, lam_reg, pre, n, d, k)
        now = done | (gh < tol2)
        v_new, z_new, dv = _cg_move(g, h, (pg, pgh, pdv), v, z, yb, onehot, xt, lam_reg, mdt, d, k)
        for dst, src in ((v, v_new), (z, z_new), (pg, g), (pgh, gh), (pdv, dv), (done, now)):
            dst.copy_(src)

    run = iteration
    check = check_every(v.device)
    it = 0
    while it < max_iter:
        if it == 1 and v.device.type == "cuda" and max_iter > 2:
            run = _cuda_graph(iteration)  # runs this iteration itself, then captures it for the rest
        else:
            run()
        it += 1
        if (it % check == 0 or it == max_iter) and bool(done.all()):
            break
    return it


def _cuda_graph(fn: Callable[[], None]) -> Callable[[], None]:
    """Calls ``fn`` (which works in place on tensors that outlive it) once on a side stream, a real call that also
    warms up what capturing cannot initialize (cuBLAS's workspace for that stream), then captures it there as a CUDA
    graph: calling the result replays it. ``CUDAGraph.capture_begin`` rather than ``torch.cuda.graph``, whose entry
    empties the device and pinned-host caches (the next allocations would pay for them again)."""
    graph = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
        graph.capture_begin(capture_error_mode="thread_local")
        try:
            fn()
        finally:
            graph.capture_end()
    torch.cuda.current_stream().wait_stream(side)
    return graph.replay


def _objective(z: Tensor, y: Tensor, onehot: Tensor | None, lam_reg: Tensor, v: Tensor) -> Tensor:
    """Training objective per pair in float64 from logits ``z`` (..., k, n), labels ``y`` (..., n) or ``onehot``
    (..., k, n), weights ``v`` (..., k, d + 1) and their strengths ``lam_reg`` (..., 1, d + 1)."""
    zd = z.double()
    if onehot is None:
        ce = torch.nn.functional.softplus(zd[..., 0, :]) - y.double() * zd[..., 0, :]
    else:
        ce = torch.logsumexp(zd, -2) - (onehot.double() * zd).sum(-2)
    return ce.mean(-1) + 0.5 * (lam_reg.double() * v.double().square()).sum((-2, -1))


def cuda_free(device: torch.device) -> int:
    """Bytes a CUDA device can still allocate: the driver's free memory plus what PyTorch's caching allocator holds
    unused (freed tensors' blocks, which the driver counts as taken: after a few large fits they can be most of the
    device)."""
    return torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def newton_budget(device: torch.device) -> int:
    """Working set of one batch of Newton steps: ``NEWTON_BYTES`` on the CPU; on CUDA a quarter of the free device
    memory (:func:`cuda_free`, at least ``NEWTON_BYTES``), so a large GPU takes every site in one batch (fewer
    launches)."""
    if device.type != "cuda":
        return NEWTON_BYTES
    return max(NEWTON_BYTES, cuda_free(device) // 4)


def _newton_group(
    x: Tensor, y: Tensor, lam: Tensor, classes: int, steps: int, tol: float, w_io: Tensor, b_io: Tensor
) -> int:
    """Newton steps from the weights in ``w_io`` (s, p, k, d) / ``b_io`` (s, p, k), updated in place, on float32 or
    float64 standardized ``x`` (s, n, d); returns the most steps any pair took.

    Each (site, problem) pair stops when its Newton decrement ``sqrt(g' H^-1 g)`` is below ``tol``. The gradient is
    in ``x``'s dtype; the Hessian ``X'diag(w)X/n + lam`` (bias unpenalized; multiclass: its per-class diagonal
    blocks, a positive-definite approximation) is formed in ``x``'s dtype too (in float32 on CUDA it was no faster
    and left a ``path`` site 0.60 points off the reference: ``benchmarks/results/probe_parity_h200_hessian32.txt``)
    and factored in float64. A 1-D Newton line search on the convex objective guards every step.

    Only the sites with a pair still iterating are computed, in batches of sites (sorted by how many problems each
    still has) whose problems are gathered live first and padded to the batch's widest, so a site's examples are
    never copied per problem and every product is one batched GEMM per batch."""
    s, n, d = x.shape
    p = y.shape[0]
    e = d + 1
    binary = classes == 2
    k = 1 if binary else classes
    dev, dt = x.device, x.dtype
    v = torch.cat([w_io, b_io[..., None]], -1).to(dt)  # (s, p, k, e)
    active = torch.ones(s, p, dtype=torch.bool, device=dev)
    reg = torch.ones(e, dtype=dt, device=dev)
    reg[d] = 0.0
    xa = torch.cat([x, torch.ones(s, n, 1, dtype=dt, device=dev)], -1)  # (s, n, e): the bias as a constant feature
    xat = xa.transpose(1, 2).contiguous()  # (s, e, n): every product then reads contiguous rows
    yd = y.to(dt)
    lam_d = lam.to(dt)
    onehot_all = None if binary else torch.nn.functional.one_hot(y.long(), classes).to(dt).transpose(1, 2)  # (p,k,n)
    budget = newton_budget(dev)
    # per pair: the curvature-weighted copy of the examples and its neighbours, the Hessians and their factors; per
    # site: its gathered examples and their transpose
    per_pair = 3 * k * e * n * x.element_size() + 3 * k * e * e * 8
    per_site = 2 * e * n * x.element_size()
    every = torch.arange(s, device=dev)

    def batch(si: Tensor, width: int) -> tuple:
        """``_newton_step``'s arguments for sites ``si`` (``every``: all of them, their examples not copied), their
        live problems first, ``width`` of them."""
        pj = _live_first(~active[si], width)
        oh = None if onehot_all is None else onehot_all[pj]
        xs, xst = (xa, xat) if si is every else (xa[si], xat[si])
        return xs, xst, yd[pj], oh, lam_d[pj][..., None, None] * reg, v, active, (si[:, None], pj), tol

    taken = 0
    for step in range(1, steps + 1):
        count = active.sum(1)
        order = torch.argsort(count, descending=True, stable=True)
        counts = count[order].tolist()  # the one read of the device per step
        live = sum(c > 0 for c in counts)
        if not live:
            break
        taken = step
        c0 = 0
        while c0 < live:
            width = counts[c0]
            c = max(1, min(live - c0, budget // (width * per_pair + per_site)))
            _newton_step(*batch(every if c == s else order[c0 : c0 + c], width))
            c0 += c
    w_io.copy_(v[..., :d])
    b_io.copy_(v[..., d])
    return taken


def _newton_step(xs, xst, yp, onehot, lr, v, active, ix, tol: float) -> None:
    """One guarded Newton step for the pairs ``ix`` (site rows, problem columns) of ``v`` (s, p, k, e) and
    ``active`` (s, p), both updated in place: ``xs`` (c, n, e) the batch's examples and ``xst`` (c, e, n) the same
    transposed, ``yp`` (c, w, n) its labels, ``onehot`` (c, w, k, n) or None (binary), ``lr`` (c, w, 1, e) the
    per-coordinate strengths. Padding columns (pairs no longer active) are computed and left as they were."""
    c, w, n = yp.shape
    e = xs.shape[-1]
    k = v.shape[2]
    vi = v[ix]  # (c, w, k, e)
    ok = active[ix]  # False: padding
    z = torch.bmm(vi.reshape(c, w * k, e), xst).reshape(c, w, k, n)
    if onehot is None:
        pr = torch.sigmoid(z)
        r = pr - yp[:, :, None]
    else:
        pr = torch.softmax(z, 2)
        r = pr - onehot
    g = torch.bmm(r.reshape(c, w * k, n), xs).reshape(c, w, k, e) / n + lr * vi
    curv = pr * (1 - pr) / n
    # the transposed examples weighted by each pair's curvature, (c, w, k, e, n): read and written along n; their
    # product with the examples is every pair's Hessian, (c, w, k, e, e), each contiguous (no rearranging copy)
    xwt = xst[:, None, None] * curv[:, :, :, None, :]
    hess = torch.bmm(xwt.reshape(c, w * k * e, n), xs).reshape(c, w, k, e, e).double()
    # cholesky reads one triangle only: no symmetrizing. The float32 products' rounding (~1e-6 of the diagonal)
    # must not outweigh a weak lam: a floor under it
    diag = torch.diagonal(hess, dim1=-2, dim2=-1)
    floor = 1e-6 * diag.mean(-1, keepdim=True)
    diag.add_(torch.maximum(lr.double().expand(-1, -1, k, -1), floor))
    # the (symmetric) transpose is column-major, as the factorization works: its working copy is a plain one
    chol, info = torch.linalg.cholesky_ex(hess.mT)
    # two triangular solves, not cholesky_solve: on CUDA that one waits for the device (the host stops queueing)
    lo = torch.linalg.solve_triangular(chol, g.double()[..., None], upper=False)
    dv = -torch.linalg.solve_triangular(chol.mT, lo, upper=True)[..., 0]
    dv = torch.where((info == 0)[..., None], dv, -g.double()).to(g.dtype)  # not positive definite: the gradient
    dec = (-(g * dv).sum((2, 3))).clamp_min(0).sqrt()  # (c, w)
    go = ok & (dec >= tol) & torch.isfinite(dec)
    dz = torch.bmm(dv.reshape(c, w * k, e), xst).reshape(c, w, k, n)
    ldv = lr * dv
    t = _line_search(z, dz, yp, onehot, (ldv * vi).sum((2, 3)), (ldv * dv).sum((2, 3)))
    t = t.clamp(max=2.0)  # near the optimum the Newton step is ~1; a longer step only follows a stale curvature
    vt = torch.addcmul(vi, t[..., None, None], dv)
    # a step must lower the objective (it can fail where float32 curvature is lost): else the pair stops
    f0 = _objective(z, yp, onehot, lr, vi)
    f1 = _objective(torch.addcmul(z, t[..., None, None], dz), yp, onehot, lr, vt)
    go &= torch.isfinite(t) & (f1 <= f0)
    t = torch.where(go, t, torch.zeros_like(t))
    v[ix] = torch.where(go[..., None, None], vt, vi)
    # Newton converges quadratically: after a near-full step from a decrement d the next is ~d^2, so a pair whose
    # near-full step started below 0.3 sqrt(tol) is done without forming another Hessian to confirm it
    last = (dec < 0.3 * tol**0.5) & ((t - 1).abs() < 0.1)
    active[ix] = go & ~last

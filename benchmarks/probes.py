"""Benchmark: our batched probes against scikit-learn's LogisticRegression fitted site by site.

Both sides get the same synthetic cached activations (residual-stream-like: a decaying spectrum in a random basis,
a few large-magnitude dimensions, a planted label direction whose strength varies by site), the same split by
sample, the same standardization (train-split mean and std), the same regularization grid
(``C = 1 / (lam * n_train)``, the same objective), the same selection rule (validation log loss) and the same test
set. Timed: standardization, every fit, selection, test scoring (data generation is not timed). scikit-learn runs
with its defaults (lbfgs, tol 1e-4, max_iter 100) on ``--sklearn-sites`` of the sites, spread evenly over the
signal strengths (its cost is per site by construction and grows with separability), and its per-site time is
compared with ours over all sites. Ours stops at ``probes.linear.TOL`` (chosen so the selected probes' accuracy
matches a tight float32 solve; see ``fit_logistic``) and runs its products in bf16 where the CPU has BF16.

Fairness of the timing: both sides get one untimed warm-up; the machine may be shared, so rounds interleave (ours on
every site, then scikit-learn on its sites) and medians over ``--repeats`` rounds are reported, as wall time and as
CPU time (ours: process CPU time; scikit-learn: its thread's, a lower bound). The headline figure is one thread
each (torch intra-op threads for ours, BLAS threads for scikit-learn via threadpoolctl); the same comparison is then
printed at ``--also-threads`` each (2 by default; scikit-learn's lbfgs gets slower with 2 BLAS threads here, so that
ratio flatters us and is not the one to quote).

    python -m benchmarks.probes                       # 48 sites (12 layers x 4 steps), 256 samples x 64 tokens, d=256
    python -m benchmarks.probes --classes 5 --also-threads 0

Measured (float32 data, medians of 3 rounds; README "Probes"): on a shared 2-core AMD EPYC VM, one thread each,
ours 19.4 ms/site vs scikit-learn 242.5 ms/site = 12.5x, accuracy within 0.46 points (the >= 50x goal is not met on
one CPU core). With ``--device cuda --threads 16`` on one H100: ours 10.7 ms/site vs scikit-learn 617.3 ms/site on
that machine's CPU at one thread = 57.9x (46.0x at two threads), accuracy within 0.46 points.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
import typer

from probes.examples import split_samples
from probes.linear import LinearFit, Standardizer, fast_matmul_dtype, fit_logistic, to_raw

LAMBDAS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def make_site(seed: int, site: int, y: np.ndarray, d: int, classes: int, strength: float) -> np.ndarray:
    """(n, d) activations of one site: anisotropic noise plus the label planted with ``strength``."""
    rng = np.random.default_rng([seed, site])
    n = len(y)
    spectrum = np.logspace(0, -2, d)
    basis = np.linalg.qr(rng.standard_normal((d, d)))[0]
    x = (rng.standard_normal((n, d)).astype(np.float32) * spectrum.astype(np.float32)) @ basis.T.astype(np.float32)
    x[:, :3] *= 20.0
    means = rng.standard_normal((classes, d)).astype(np.float32)
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    # float32, as the store's activations are read (a float64 ``strength`` would otherwise promote the array)
    return (x + strength * 0.1 * means[y]).astype(np.float32)


def ours(
    xs: list[np.ndarray], y: np.ndarray, parts: np.ndarray, classes: int, chunk: int, mdt: torch.dtype,
    device: str = "cpu",
) -> tuple[float, float, np.ndarray]:  # fmt: skip
    """(wall s, CPU s, test accuracy per site) for the batched solver (examples ordered train, val, test); on a
    GPU the timing includes copying each chunk of activations to it."""
    n_tr, n_va = int((parts == 0).sum()), int((parts == 1).sum())
    tr, va, te = slice(0, n_tr), slice(n_tr, n_tr + n_va), slice(n_tr + n_va, None)
    yt = torch.as_tensor(y, device=device)
    lam = torch.tensor(LAMBDAS, dtype=torch.float32, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    accs, wall, cpu = [], 0.0, 0.0
    for c0 in range(0, len(xs), chunk):
        x = torch.from_numpy(np.stack(xs[c0 : c0 + chunk]))
        sync()
        t0, c0_ = time.perf_counter(), time.process_time()
        x = x.to(device)
        std = Standardizer.fit(x[:, tr])
        # each site is standardized (into the matmul dtype) just before its solve; validation and test logits are
        # then taken on raw float32 activations with the weights mapped back (to_raw)
        fit = fit_logistic(x[:, tr], yt[tr].repeat(len(LAMBDAS), 1), lam, classes, matmul_dtype=mdt, standardizer=std)
        z = LinearFit(*to_raw(fit.weight, fit.bias, std)).logits(x[:, va])  # (s, p, n, k)
        if classes == 2:
            loss = (torch.nn.functional.softplus(z[..., 0]) - yt[va] * z[..., 0]).mean(-1)
        else:
            loss = (
                torch.nn.functional.cross_entropy(
                    z.permute(0, 1, 3, 2).flatten(0, 1), yt[va].repeat(z.shape[0] * z.shape[1], 1), reduction="none"
                )
                .mean(-1)
                .reshape(z.shape[:2])
            )
        best = loss.argmin(1)
        s_idx = torch.arange(x.shape[0])
        w_raw, b_raw = to_raw(fit.weight[s_idx, best], fit.bias[s_idx, best], std)
        zt = LinearFit(w_raw[:, None], b_raw[:, None]).logits(x[:, te])[:, 0]  # raw float32 test activations
        pred = (zt[..., 0] > 0).long() if classes == 2 else zt.argmax(-1)
        accs.append((pred == yt[te]).float().mean(-1).cpu())
        sync()
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0_
    return wall, cpu, torch.cat(accs).numpy()


def sklearn_site(x: np.ndarray, y: np.ndarray, parts: np.ndarray) -> float:
    """Test accuracy of scikit-learn's LogisticRegression for one site, grid-searched on the validation split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.preprocessing import StandardScaler

    tr, va, te = (parts == k for k in range(3))
    scaler = StandardScaler().fit(x[tr])
    xtr, xva, xte = scaler.transform(x[tr]), scaler.transform(x[va]), scaler.transform(x[te])
    best, best_loss = None, np.inf
    for lam in LAMBDAS:
        m = LogisticRegression(C=1.0 / (lam * tr.sum())).fit(xtr, y[tr])
        loss = log_loss(y[va], m.predict_proba(xva), labels=m.classes_)
        if loss < best_loss:
            best, best_loss = m, loss
    return float((best.predict(xte) == y[te]).mean())


def sklearn_sites(xs: list[np.ndarray], y: np.ndarray, parts: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(wall s, CPU s of this thread, test accuracy per site) for scikit-learn, site by site."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter=100 (scikit-learn's default)
        t0, c0 = time.perf_counter(), time.thread_time()
        acc = np.array([sklearn_site(x, y, parts) for x in xs])
        return time.perf_counter() - t0, time.thread_time() - c0, acc


def compare(
    xs: list[np.ndarray], y: np.ndarray, parts: np.ndarray, classes: int, chunk: int, mdt: torch.dtype,
    sk_sites: np.ndarray, threads: int, sklearn_threads: int, repeats: int, device: str = "cpu",
) -> None:  # fmt: skip
    """Interleaved rounds (ours on every site, then scikit-learn on ``sk_sites``); prints medians over rounds."""
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    with threadpool_limits(threads):
        ours(xs[:chunk], y, parts, classes, chunk, mdt, device)  # warm-up (both sides get one)
    with threadpool_limits(sklearn_threads):
        sklearn_sites(xs[:1], y, parts)
    rows = []
    for _ in range(repeats):
        with threadpool_limits(threads):
            w_o, c_o, acc_ours = ours(xs, y, parts, classes, chunk, mdt, device)
        with threadpool_limits(sklearn_threads):
            w_s, c_s, acc_sk = sklearn_sites([xs[s] for s in sk_sites], y, parts)
        rows.append((w_o / len(xs), c_o / len(xs), w_s / len(sk_sites), c_s / len(sk_sites)))
    r = np.array(rows)
    med = np.median(r, 0)
    per_round = r[:, 2] / r[:, 0]
    diff = acc_ours[sk_sites] - acc_sk
    where = f"ours on {device} ({threads} CPU threads)" if device != "cpu" else f"ours {threads}"
    print(f"threads: {where}, scikit-learn {sklearn_threads}; {repeats} interleaved rounds, medians:")
    print(f"  ours:         {1e3 * med[0]:8.1f} ms/site wall, {1e3 * med[1]:8.1f} ms/site CPU ({len(xs)} sites)")
    print(f"  scikit-learn: {1e3 * med[2]:8.1f} ms/site wall, {1e3 * med[3]:8.1f} ms/site CPU ({len(sk_sites)} sites)")
    print(f"  speed ratio:  {med[2] / med[0]:.1f}x wall (rounds {', '.join(f'{v:.1f}' for v in per_round)}), "
          f"{med[3] / med[1]:.1f}x CPU time")  # fmt: skip
    print(f"  accuracy (ours - scikit-learn) over {len(sk_sites)} sites: mean {100 * diff.mean():+.2f} points, "
          f"max |diff| {100 * np.abs(diff).max():.2f} points; accuracies {np.round(acc_sk, 3).tolist()}")  # fmt: skip


def main(
    sites: int = typer.Option(48, help="(step, layer) sites, e.g. 12 layers x 4 steps"),
    sklearn_sites: int = typer.Option(6, help="sites fitted with scikit-learn (its cost is per site)"),
    samples: int = typer.Option(256, help="samples (mazes) in the capture"),
    tokens: int = typer.Option(64, help="token examples per sample"),
    d: int = typer.Option(256, help="d_model (the maze model's)"),
    classes: int = typer.Option(2, help="2 = binary, more = softmax"),
    chunk: int = typer.Option(16, help="sites per batched solve"),
    threads: int = typer.Option(1, help="CPU threads for ours (torch)"),
    sklearn_threads: int = typer.Option(1, help="BLAS threads for scikit-learn (1 is its fastest here)"),
    also_threads: int = typer.Option(2, help="then again with this many threads each (0: skip)"),
    repeats: int = typer.Option(3, help="interleaved timing rounds; medians are reported"),
    precision: str = typer.Option("auto", help="our matmuls: auto (bfloat16 where fast) | float32 | bfloat16"),
    device: str = typer.Option("cpu", help="where ours runs: cpu | cuda (scikit-learn runs on the CPU either way)"),
    seed: int = typer.Option(0),
) -> None:
    """Print per-site times, the speed ratio and the accuracy difference (ours - scikit-learn)."""
    rng = np.random.default_rng(seed)
    n = samples * tokens
    y = rng.integers(0, classes, n)
    strengths = np.linspace(0.0, 2.0, sites)[rng.permutation(sites)]
    xs = [make_site(seed, s, y, d, classes, strengths[s]) for s in range(sites)]
    parts_of = split_samples(np.arange(samples), (0.6, 0.2, 0.2), seed)
    parts = np.array([parts_of[i] for i in np.arange(n) // tokens])
    order = np.argsort(parts, kind="stable")  # train, val, test slices (as probes.examples orders them)
    y, parts = y[order], parts[order]
    xs = [x[order] for x in xs]
    mdt = fast_matmul_dtype(device) if precision == "auto" else getattr(torch, precision)
    print(f"{sites} sites x {n} examples ({samples} samples x {tokens} tokens) x d={d}, {classes} classes, "
          f"{len(LAMBDAS)} regularization strengths; our matmuls in {mdt}")  # fmt: skip
    k = min(sklearn_sites, sites)
    # scikit-learn's cost depends on the signal (near-separable sites run to max_iter): give it sites spread evenly
    # over the signal strengths, so its per-site time represents all sites
    sk_sites = np.argsort(strengths)[np.linspace(0, sites - 1, k).round().astype(int)]
    compare(xs, y, parts, classes, chunk, mdt, sk_sites, threads, sklearn_threads, repeats, device)
    if also_threads and (also_threads, also_threads) != (threads, sklearn_threads):
        compare(xs, y, parts, classes, chunk, mdt, sk_sites, also_threads, also_threads, repeats, device)


if __name__ == "__main__":
    typer.run(main)

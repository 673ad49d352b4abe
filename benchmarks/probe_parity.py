"""Benchmark: ``run_probes`` at its default settings against scikit-learn on a real maze-wan capture.

The capture is the shipped embedded model's (``maze-wan``, CPU, ``--mazes`` held-out 5x5 mazes, ``--steps``
sampler steps, every block's ``hook_resid_post``); ``--capture`` reuses one. For every label (default ``wall`` and
``path``) the examples, the split by sample and the features are built by ``probes.run`` itself (the same
``select_examples`` call and ``features`` as ``run_probes``; the script checks that ``run_probes`` picks the same
strengths and gets the same accuracies). Per (step, layer) site both sides fit the six strengths of
``LOGISTIC_LAMBDAS`` (``C = 1 / (lam * n_train)``) on train-split-standardized features, pick the strength of least
validation log loss, and score the test split:

* ours: ``probes.run.probe_chunk`` (what ``run_probes`` calls per chunk) on every site at once, at the defaults
  (``after``) and with the Newton steps off (``before``: ``newton_steps=0``, the earlier default);
* scikit-learn: ``LogisticRegression`` (lbfgs) at its defaults (tol 1e-4, max_iter 100), one site per task; with
  ``--sklearn-jobs N`` the sites are spread over N worker processes (joblib, one BLAS thread each), the fair peer
  on an N-core machine;
* the reference: scikit-learn solved tightly (``--reference-tol``, ``--reference-max-iter``) on the features in
  float64. scikit-learn at its defaults stops at max_iter on the weak strengths, so it is itself off the optimum;
  "equal" is measured against the reference, and scikit-learn's defaults are printed against it too. The reference
  must be float64: scikit-learn keeps float32 input in float32, and lbfgs there stops 1-2 test examples (0.1-0.25
  points at 832 test examples) off the optimum at the worst sites, where float64 scikit-learn and a float64 Newton
  solve agree with each other (and with ours) to the example.

Printed per label: max |accuracy difference| in points and the fraction of sites with the same strength, for each
pair; and the time per site (ours: median of ``--repeats``, the activations' copy to the device included;
scikit-learn: one pass over every site, wall time, worker start-up excluded), with the speed ratio.

    python -m benchmarks.probe_parity                                   # CPU: 32 mazes x 10 steps (~10 min)
    python -m benchmarks.probe_parity --device cuda --sklearn-jobs 16   # GPU machine: ours on the GPU vs 16 cores
    python -m benchmarks.probe_parity --mazes 64 --save mw64.h5         # keep the capture; later --capture mw64.h5
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import typer

from probes import linear, metrics
from probes import run as run_mod
from probes.data import open_cache
from probes.examples import select_examples
from probes.linear import NEWTON_TOL
from probes.run import LOGISTIC_LAMBDAS, ProbeConfig, features, load_mazes, probe_chunk, resolve_labels, run_probes


def capture_maze_wan(out: Path, mazes: int, steps: int, seed: int, device: str) -> Path:
    """A maze-wan capture of every block's ``hook_resid_post`` (float32)."""
    from interp.apps.capture import CaptureConfig, capture  # the model stack, only when a capture is made

    cfg = CaptureConfig(model="maze-wan", steps=steps, batch=mazes, seed=seed, device=device)
    return capture(cfg, out, overwrite=True)


def label_data(path: Path, labels: list[str], cfg: ProbeConfig) -> list[tuple]:
    """Per label: (label, examples, features (sites, n, d) float32), as ``run_probes`` builds them."""
    reader = open_cache(path, cfg.branch)
    try:
        labs = resolve_labels(reader, labels, None, load_mazes(reader))
        sites = reader.select(cfg.sites)
        pairs = [(p, s) for p in range(reader.n_steps) for s in sites]
        slices = [reader.read(s, p) for p, s in pairs]
        out = []
        for i, lab in enumerate(labs):
            ex = select_examples(lab, None, cfg.tokens_per_sample, cfg.balance, cfg.frames, cfg.split, cfg.seed + i)
            out.append((lab, ex, np.stack([features(x, ex, cfg.frames, lab.grid) for x in slices])))
        return out
    finally:
        reader.close()


def device_sync(device: str) -> Callable[[], None]:
    """What waits for ``device``'s queued work (nothing to wait for on the CPU)."""
    return torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)


def host_features(x: np.ndarray, device: str) -> torch.Tensor:
    """The features in host memory as ``run_probes`` stacks them for ``device`` (``probes.run.stack_to``: pinned
    for CUDA)."""
    return torch.from_numpy(x).pin_memory() if torch.device(device).type == "cuda" else torch.from_numpy(x)


def ours(lab, ex, x: np.ndarray, cfg: ProbeConfig, device: str, repeats: int) -> tuple[float, np.ndarray, np.ndarray]:
    """(median seconds, chosen strength index per site, test accuracy per site) of ``probe_chunk``."""
    te = ex.slice("test")
    w_one = torch.ones(1, te.stop - te.start)  # the point estimate only
    sync = device_sync(device)
    xt = host_features(x, device)  # their copy to the device is timed
    probe_chunk(xt[:2].to(device), ex, lab, LOGISTIC_LAMBDAS, cfg, w_one, False)  # warm-up
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        mets, _, lam = probe_chunk(xt.to(device, non_blocking=True), ex, lab, LOGISTIC_LAMBDAS, cfg, w_one, False)
        sync()
        times.append(time.perf_counter() - t0)
    pick = np.abs(np.log10(lam.numpy())[:, None] - np.log10(LOGISTIC_LAMBDAS)[None]).argmin(1)
    return float(np.median(times)), pick, mets["accuracy"][:, 0].numpy()


def print_profile(lab, ex, x: np.ndarray, cfg: ProbeConfig, device: str, rows: int) -> None:
    """The ``rows`` ops of most self time (device time on CUDA) in one ``probe_chunk`` over every site."""
    from torch.profiler import ProfilerActivity, profile  # only for --profile

    cuda = torch.device(device).type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    w_one = torch.ones(1, len(ex.index("test")))
    with profile(activities=acts) as prof:
        probe_chunk(torch.from_numpy(x).to(device), ex, lab, LOGISTIC_LAMBDAS, cfg, w_one, False)
        if cuda:
            torch.cuda.synchronize()
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=rows))


PHASES = (  # (owner, attribute, name): the solver's phases, each timed between device synchronizations
    (linear.Standardizer, "fit", "standardize (fit)"),
    (linear.Standardizer, "__call__", "standardize (apply)"),
    (linear._Preconditioner, "fit", "preconditioner (inside CG)"),
    (linear, "_fit_logistic_group", "CG"),
    (linear, "_newton_group", "Newton finish"),
    (run_mod, "_val_loss", "validation loss"),
    (run_mod, "to_raw", "to raw space"),
    (run_mod, "_directions", "directions"),
    (metrics, "accuracy", "test accuracy"),
    (metrics, "auroc", "test AUROC"),
)


@contextlib.contextmanager
def timed_phases(phases, device: str) -> Iterator[dict[str, list]]:
    """Inside, every call of each ``(owner, attribute, name)`` of ``phases`` is timed between device
    synchronizations; yields name -> [seconds, calls, the int returns (CG iterations, Newton steps)]."""
    sync = device_sync(device)
    spent: dict[str, list] = {}

    def timed(fn, name):
        def wrapper(*args, **kwargs):
            sync()
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            sync()
            rec = spent.setdefault(name, [0.0, 0, []])
            rec[0] += time.perf_counter() - t0
            rec[1] += 1
            if isinstance(out, int):
                rec[2].append(out)
            return out

        return wrapper

    with contextlib.ExitStack() as stack:
        for owner, attr, name in phases:
            raw = vars(owner)[attr]
            fn = classmethod(timed(raw.__func__, name)) if isinstance(raw, classmethod) else timed(raw, name)
            stack.enter_context(mock.patch.object(owner, attr, fn))
        yield spent


def print_phases(lab, ex, x: np.ndarray, cfg: ProbeConfig, device: str) -> dict[str, list]:
    """One ``probe_chunk`` over every site with each of ``PHASES`` timed between device synchronizations (so the
    host's queueing ahead is lost, and the total is above the timed fits'): seconds, calls and what the solver
    phases return (CG iterations, Newton steps), and the time outside every phase. Returns them by name."""
    sync = device_sync(device)
    w_one = torch.ones(1, len(ex.index("test")))
    xt = host_features(x, device)
    with timed_phases(PHASES, device) as spent:
        sync()
        t0 = time.perf_counter()
        xd = xt.to(device, non_blocking=True)
        sync()
        copy = time.perf_counter() - t0
        probe_chunk(xd, ex, lab, LOGISTIC_LAMBDAS, cfg, w_one, False)
        sync()
        total = time.perf_counter() - t0
    print(f"  phases of one fit ({x.shape[0]} sites, synchronized around each: {1e3 * total:.1f} ms in all)")
    print(f"    {'copy to the device':28s} {1e3 * copy:8.1f} ms")
    for name, (secs, calls, rets) in spent.items():
        extra = f", returned {rets}" if rets else ""
        print(f"    {name:28s} {1e3 * secs:8.1f} ms ({calls} calls{extra})")
    inside = sum(secs for name, (secs, _, _) in spent.items() if "(inside" not in name)
    print(f"    {'outside these':28s} {1e3 * (total - copy - inside):8.1f} ms")
    return spent


def sklearn_site(x: np.ndarray, y: np.ndarray, parts: tuple[slice, slice, slice], tol: float, max_iter: int,
                 float64: bool = False):  # fmt: skip
    """(chosen strength index, test accuracy, most lbfgs iterations) for one site (``float64``: on float64 features;
    else scikit-learn keeps float32 input in float32)."""
    from sklearn.linear_model import LogisticRegression  # optional dependency of the benchmark
    from sklearn.metrics import log_loss
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    tr, va, te = parts
    x = x.astype(np.float64) if float64 else x
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at scikit-learn's default max_iter
        sc = StandardScaler().fit(x[tr])
        xtr, xva, xte = sc.transform(x[tr]), sc.transform(x[va]), sc.transform(x[te])
        best, best_loss, best_acc, iters = -1, np.inf, 0.0, 0
        for j, lam in enumerate(LOGISTIC_LAMBDAS):
            m = LogisticRegression(C=1.0 / (lam * len(xtr)), tol=tol, max_iter=max_iter).fit(xtr, y[tr])
            loss = log_loss(y[va], m.predict_proba(xva), labels=m.classes_)
            iters = max(iters, int(np.max(m.n_iter_)))
            if loss < best_loss:
                best, best_loss, best_acc = j, loss, float((m.predict(xte) == y[te]).mean())
        return best, best_acc, iters


def sklearn_sites(
    x: np.ndarray, ex, tol: float, max_iter: int, jobs: int, float64: bool = False
) -> tuple[float, np.ndarray, np.ndarray, int]:
    """(seconds, chosen index per site, accuracy per site, most iterations) over every site; ``jobs`` processes."""
    parts = tuple(ex.slice(p) for p in ("train", "val", "test"))
    if jobs <= 1:
        sklearn_site(x[0], ex.y, parts, tol, max_iter)  # warm-up (imports)
        t0 = time.perf_counter()
        res = [sklearn_site(xs, ex.y, parts, tol, max_iter, float64) for xs in x]
    else:
        from joblib import Parallel, delayed  # scikit-learn's own parallel backend

        par = Parallel(n_jobs=jobs, backend="loky")
        par(delayed(sklearn_site)(x[i % len(x)], ex.y, parts, tol, max_iter) for i in range(jobs))  # start workers
        t0 = time.perf_counter()
        res = par(delayed(sklearn_site)(xs, ex.y, parts, tol, max_iter, float64) for xs in x)
    secs = time.perf_counter() - t0
    pick, acc, its = (np.array(v) for v in zip(*res))
    return secs, pick, acc, int(its.max())


def agreement(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> str:
    """'max |d| X points, same strength at Y%' between (pick, accuracy) pairs."""
    d = 100 * np.abs(a[1] - b[1])
    return f"max |d| {d.max():5.2f} pts (mean {d.mean():.3f}), same strength {100 * np.mean(a[0] == b[0]):5.1f}%"


def main(
    capture: Path | None = typer.Option(None, help="an existing maze-wan capture (else one is made)"),
    save: Path | None = typer.Option(None, help="keep the capture made at this path (for --capture later)"),
    mazes: int = typer.Option(32, help="mazes (batch) of the capture made"),
    steps: int = typer.Option(10, help="sampler steps of the capture made"),
    seed: int = typer.Option(0, help="capture seed (which mazes)"),
    labels: str = typer.Option("wall,path", help="comma-separated binary/multiclass maze labels"),
    device: str = typer.Option("cpu", help="where ours runs (cpu | cuda); the capture is made there too"),
    threads: int = typer.Option(1, help="torch CPU threads for ours"),
    sklearn_jobs: int = typer.Option(1, help="scikit-learn worker processes, one site each (1: in-process)"),
    repeats: int = typer.Option(3, help="timing rounds for ours (median)"),
    reference_tol: float = typer.Option(1e-9, help="tolerance of the tight scikit-learn reference"),
    reference_max_iter: int = typer.Option(10000, help="max_iter of the tight scikit-learn reference"),
    before: bool = typer.Option(True, help="also time/compare ours with newton_steps=0 (the earlier default)"),
    profile: int = typer.Option(0, help="print the N ops of most self time in one more fit of ours per label"),
    newton_tol: float = typer.Option(NEWTON_TOL, help="ours: the Newton decrement the solves stop at"),
    phases: bool = typer.Option(False, help="print where one more fit of ours spends its time, phase by phase"),
) -> None:
    """Print, per label, ours (defaults) vs scikit-learn (defaults) vs a tight reference: accuracy, strength, time."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = capture
        if path is None:
            t0 = time.perf_counter()
            path = capture_maze_wan(save or Path(tmp) / "maze-wan.h5", mazes, steps, seed, device)
            print(f"captured maze-wan: {mazes} mazes x {steps} steps in {time.perf_counter() - t0:.0f} s")
        cfg = ProbeConfig(labels=labels.split(","), control="none", device=device, newton_tol=newton_tol)
        data = label_data(path, cfg.labels, cfg)
        check = run_probes(path, cfg, bootstrap=1, progress=False)
        if torch.device(device).type == "cuda":  # the check's blocks, cached in its chunk's shapes: start afresh
            torch.cuda.empty_cache()
        where = f"{device}" + (f", {threads} CPU thread(s)" if device == "cpu" else "")
        print(f"capture {Path(path).name}; ours on {where}; scikit-learn {sklearn_jobs} process(es) x 1 thread; "
              f"strengths {list(LOGISTIC_LAMBDAS)}")  # fmt: skip
        for lab, ex, x in data:
            n = {p: len(ex.index(p)) for p in ("train", "val", "test")}
            print(f"\n{lab.name}: {x.shape[0]} sites x d={x.shape[2]}, examples {n}")
            t_after, *after = ours(lab, ex, x, cfg, device, repeats)
            res = check.labels[lab.name]
            acc_off = ~np.isclose(res.metrics["accuracy"][0].ravel(), after[1], atol=1e-6)
            lam_off = ~np.isclose(res.metrics["lambda"].ravel(), np.asarray(LOGISTIC_LAMBDAS)[after[0]], rtol=1e-5)
            same = not (acc_off.any() or lam_off.any())
            print(f"  run_probes gives the same strengths and accuracies as the timed fits: {same}"
                  + ("" if same else f" (accuracy off at {acc_off.sum()} sites, lambda {lam_off.sum()})"))  # fmt: skip
            if profile:
                print_profile(lab, ex, x, cfg, device, profile)
            if phases:
                print_phases(lab, ex, x, cfg, device)
            t_sk, *sk_pick, sk_it = sklearn_sites(x, ex, 1e-4, 100, sklearn_jobs)
            t_ref, *ref, ref_it = sklearn_sites(x, ex, reference_tol, reference_max_iter, sklearn_jobs, True)
            rows = [
                ("ours (defaults)   vs reference", after, ref),
                ("ours (defaults)   vs scikit-learn", after, sk_pick),
                ("scikit-learn      vs reference", sk_pick, ref),
            ]
            if before:
                t_before, *bef = ours(lab, ex, x, cfg.model_copy(update={"newton_steps": 0}), device, repeats)
                rows.insert(1, ("ours (no Newton)  vs reference", bef, ref))
            for name, a, b in rows:
                print(f"  {name}: {agreement(a, b)}")
            s = x.shape[0]
            print(f"  time per site: ours {1e3 * t_after / s:7.2f} ms"
                  + (f" (no Newton {1e3 * t_before / s:.2f} ms)" if before else "")
                  + f", scikit-learn {1e3 * t_sk / s:7.2f} ms (max {sk_it} iterations; "
                  f"reference {1e3 * t_ref / s:.1f} ms, {ref_it} iterations)")  # fmt: skip
            print(f"  speed ratio scikit-learn / ours: {t_sk / t_after:.1f}x"
                  + (f" (no Newton {t_sk / t_before:.1f}x)" if before else ""))  # fmt: skip


if __name__ == "__main__":
    typer.run(main)

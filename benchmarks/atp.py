"""Attribution patching (AtP) against real activation patching on the shipped maze model, on the CPU.

One patch sweep (each block's attention and MLP outputs x a few sampling steps, source: another maze with the same
noise, metric ``mse_to_source``: the squared distance of the final video to the source run's) is run
for real (one trajectory per point and sample, the experiment engine) and estimated by ``method: atp`` (one source
run and one forward + backward per sample), from the same experiment. Prints the rank correlation of the estimated
with the real effects (goal >= 0.8), the share of the 10 largest real effects among AtP's 20 largest, and the cost
ratio (wall time of the real sweep / AtP's); ``--alphas 1,3,6`` also measures the integrated-gradients variant.
``--verify 50%`` (the default; ``none``: skip) also runs AtP with ``atp_verify: 50%``: the half of the points with
the largest estimates are then patched for real (AtP*'s practice, Kramar et al. 2024), their real effects in place
of the estimates; its row reports the correlation over every point (the verified ones real by construction) and
over the unverified ones alone, and the cost of the estimate plus the real runs.

Run: python -m benchmarks.atp [--n 2] [--size 5] [--seed 0] [--steps 4] [--patch-steps 0,1,2] [--alphas 1,3]
[--verify 50%,24] [--out DIR] [--report] (--report: only the comparison, from the results files and wall times a run
left under --out)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

SITES = ["blocks.{layer}.hook_attn_out", "blocks.{layer}.hook_mlp_out"]
"""The default sites: each block's sublayer outputs. (Patching ``hook_resid_post`` replaces the whole stream; the
maze model's text is constant, so the blocks after it compute the source's output whatever the block: the real
effect depends on the step only, and a ranking over blocks is all ties.)"""


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks, ties sharing their mean rank (as Spearman's rho defines them)."""
    r = np.empty(len(x))
    r[np.argsort(x, kind="stable")] = np.arange(len(x))
    _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(inv, weights=r) / counts)[inv]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def experiment(args, method: str, alphas: int = 1, verify: int | str = 0) -> dict:
    data = {
        "name": f"atp-bench-{method}",
        "model": "maze-wan",
        "inputs": {"task": "maze", "sizes": [args.size], "count": args.n, "seed": args.seed},
        "sampler": {"steps": args.steps},
        "interventions": [
            {"kind": "patch", "site": args.sites[0], "layers": [0], "steps": [0], "source": {"input": 1, "seed": None}}
        ],  # fmt: skip
        "sweep": {
            "interventions.0.site": args.sites,
            "interventions.0.steps": [[s] for s in args.patch_steps],
            "interventions.0.layers": [[i] for i in range(16)],
        },  # fmt: skip
        "metrics": ["mse_to_source"],
        "max_batch": args.max_batch,
    }
    if method == "atp":
        data |= {"method": "atp", "atp_alphas": alphas} | ({"atp_verify": verify} if verify else {})
    return data


def verify_values(s: str) -> list[int | str]:
    """``--verify``: atp_verify values, comma-separated (ints or fractions like 50%); ``none``: none."""
    return [] if s == "none" else [v if v.endswith("%") else int(v) for v in s.split(",")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=2, help="mazes (samples)")
    p.add_argument("--size", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="held-out maze seed (which mazes)")
    p.add_argument("--steps", type=int, default=4, help="sampling steps")
    p.add_argument("--patch-steps", type=lambda s: [int(v) for v in s.split(",")], default=[0, 1, 2])
    p.add_argument("--sites", type=lambda s: s.split(","), default=SITES, help="site templates, comma-separated")
    p.add_argument("--alphas", type=lambda s: [int(v) for v in s.split(",")], default=[1])
    p.add_argument("--verify", type=verify_values, default=["50%"],
                   help="atp_verify values (AtP, then its top points run for real), comma-separated; none")  # fmt: skip
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="keep the results files here (default: a temporary folder)")
    p.add_argument("--report", action="store_true", help="only compare the results files already under --out")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from rich.console import Console

    from interp.experiments import Experiment, read_metrics
    from interp.experiments.atp import execute_atp
    from interp.experiments.runner import execute
    from interp.models import load_model

    quiet = Console(stderr=True, quiet=True)
    out = args.out or Path(tempfile.mkdtemp(prefix="atp-bench-"))
    print(f"cpu: {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}")
    if not args.report:
        loaded = load_model("maze-wan", "cpu")
        t0 = time.perf_counter()
        real = execute(Experiment.validate_data(experiment(args, "run")), out / "real", loaded=loaded,
                       progress=False, console=quiet)  # fmt: skip
        timing = out / "real" / "wall_s.json"  # a kept --out reuses the real sweep (a cache hit) and its timing
        if not (real.cache_hit and timing.exists()):
            timing.write_text(json.dumps({"wall_s": time.perf_counter() - t0}))
        runs = [(experiment(args, "atp", alphas), f"atp-{alphas}") for alphas in args.alphas]
        runs += [(experiment(args, "atp", 1, v), verify_dir(v)) for v in args.verify]
        for data, name in runs:  # each run's wall time is kept beside it (a cache hit rewrites summary.json)
            res = execute_atp(Experiment.validate_data(data), out / name, loaded=loaded, progress=False, console=quiet)
            if not res.cache_hit:
                (out / name / "wall_s.json").write_text(json.dumps({"wall_s": res.summary["wall_s"]}))
    report(args, out, read_metrics)


def verify_dir(v: int | str) -> str:
    return f"atp-1-verify-{str(v).replace('%', 'pct')}"


def report(args, out: Path, read_metrics) -> None:
    """The comparison, from the results files and wall times under ``out``."""
    r = read_metrics(out / "real" / "results.h5")
    t_real = json.loads((out / "real" / "wall_s.json").read_text())["wall_s"]
    pts = r["points"]
    n_points = len(pts)
    print(f"maze-wan, {args.n} mazes of {args.size}x{args.size} (seed {args.seed}), {args.steps} steps; sites: "
          f"{', '.join(s.replace('{layer}', '{0-15}') for s in args.sites)} x steps {args.patch_steps} = {n_points} "
          "points; source: the next maze, same noise; metric: mse_to_source of the final video")  # fmt: skip
    print(f"real patching sweep: {t_real:.1f} s ({n_points * args.n} patched trajectories)")
    site = np.array([pt["interventions.0.site"] for pt in pts])
    step = np.array([pt["interventions.0.steps"][0] for pt in pts])
    for alphas in args.alphas:
        a = read_metrics(out / f"atp-{alphas}" / "results.h5")
        t_atp = json.loads((out / f"atp-{alphas}" / "wall_s.json").read_text())["wall_s"]
        assert a["points"] == pts
        clean = a["clean"]["mse_to_source"]  # (samples,)
        real_eff = r["metrics"]["mse_to_source"] - clean[None]  # (points, samples)
        est = a["metrics"]["atp_effect"]
        real_m, est_m = real_eff.mean(1), est.mean(1)
        rho_all = spearman(real_eff.ravel(), est.ravel())
        rho_mean = spearman(real_m, est_m)
        top_real = set(np.argsort(-np.abs(real_m))[:10])
        found = len(top_real & set(np.argsort(-np.abs(est_m))[:20])) / 10
        pearson = float(np.corrcoef(real_eff.ravel(), est.ravel())[0, 1])
        name = "AtP" if alphas == 1 else f"AtP, integrated gradients over {alphas} input points"
        print(f"{name}: {t_atp:.1f} s; cost ratio (real / AtP) {t_real / t_atp:.1f}x")
        print(f"  Spearman rho, every (point, maze): {rho_all:.3f}; of the per-point mean over mazes: {rho_mean:.3f} "
              f"(goal >= 0.8: {'met' if rho_mean >= 0.8 else 'NOT met'}); Pearson r {pearson:.3f}")  # fmt: skip
        print(f"  top 10 real effects found in AtP's top 20: {found:.0%}")
        big = np.argsort(-np.abs(real_m))[:30]
        agree = float((np.sign(real_m) == np.sign(est_m)).mean())
        print(f"  Spearman rho over the 30 largest real effects: {spearman(real_m[big], est_m[big]):.2f}; sign "
              f"agreement {agree:.0%}")  # fmt: skip
        per_site = [f"{s.split('.')[-1]}: {spearman(real_m[site == s], est_m[site == s]):.2f}" for s in args.sites]
        print(f"  Spearman rho per site (over blocks and steps): {', '.join(per_site)}")
        by_step = []
        for s in args.sites:
            for st in args.patch_steps:
                m = (site == s) & (step == st)
                by_step.append(f"{s.split('.')[-1]} step {st}: {spearman(real_m[m], est_m[m]):.2f}")
        print(f"  Spearman rho within one site and step (over the 16 blocks): {', '.join(by_step)}")
        miss = np.argsort(real_m)[:10]
        rows = [f"{site[i].split('.')[-1]} block {pts[i]['interventions.0.layers'][0]} step {step[i]}: "
                f"{real_m[i]:.4f} / {est_m[i]:.4f}" for i in miss]  # fmt: skip
        print(f"  the 10 largest real effects (real / estimate): {'; '.join(rows)}")
        ratio = est_m.sum() / real_m.sum()
        print(f"  sum of estimates / sum of real effects: {ratio:.2f}; clean mse_to_source {clean.mean():.4f}")
    for v in args.verify:
        a = read_metrics(out / verify_dir(v) / "results.h5")
        summary = json.loads((out / verify_dir(v) / "summary.json").read_text())
        assert a["points"] == pts
        k, t = summary["atp_verify"], json.loads((out / verify_dir(v) / "wall_s.json").read_text())["wall_s"]
        clean = a["clean"]["mse_to_source"]
        real_eff = r["metrics"]["mse_to_source"] - clean[None]
        est = a["metrics"]["mse_to_source"] - clean[None]  # real at the verified points, the estimate elsewhere
        ver = a["metrics"]["verified"].all(1)
        real_m, est_m = real_eff.mean(1), est.mean(1)
        rho_mean = spearman(real_m, est_m)
        top_real = set(np.argsort(-np.abs(real_m))[:10])
        found = len(top_real & set(np.argsort(-np.abs(est_m))[:20])) / 10
        gap = float(np.abs(est[ver] - real_eff[ver]).max())  # the sub-run's batches hold other rows: float rounding
        print(f"AtP, then real patching of its top {k} of {n_points} points (atp_verify: {v}): {t:.1f} s (one AtP "
              f"pass + {k * args.n} of the {n_points * args.n} patched trajectories); cost ratio (real / this) "
              f"{t_real / t:.1f}x")  # fmt: skip
        print(f"  Spearman rho, every (point, maze): {spearman(real_eff.ravel(), est.ravel()):.3f}; of the per-point "
              f"mean over mazes: {rho_mean:.3f} (goal >= 0.8: {'met' if rho_mean >= 0.8 else 'NOT met'})")  # fmt: skip
        same = "bit for bit the real sweep's" if gap == 0 else f"the real sweep's to {gap:.1e} (float rounding)"
        print(f"  over every point, the {k} verified ones real runs: {same}")
        print(f"  top 10 real effects found in its top 20: {found:.0%}; found among the verified points: "
              f"{len(top_real & set(np.flatnonzero(ver))) / 10:.0%}")  # fmt: skip
        print(f"  Spearman rho over the {n_points - k} unverified points alone (their plain AtP estimates): "
              f"{spearman(real_m[~ver], est_m[~ver]):.3f}")  # fmt: skip
        per_site = [f"{s.split('.')[-1]}: {spearman(real_m[site == s], est_m[site == s]):.2f}" for s in args.sites]
        print(f"  Spearman rho per site (over blocks and steps): {', '.join(per_site)}")


if __name__ == "__main__":
    main()

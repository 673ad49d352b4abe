"""Why attribution patching ranks maze-wan's patching effects at Spearman ~0.5, not >= 0.8 (CPU).

On the points of ``python -m benchmarks.atp`` (each block's ``hook_attn_out`` / ``hook_mlp_out`` at steps 0-2, patched
from the next maze's run, metric ``mse_to_source``), for the mazes of ``--seed``:

- ``curves``: the real effect of patching a fraction alpha of the way to the source, f(alpha), per point (AtP is the
  slope at 0: its estimate should match f(alpha) / alpha for a small alpha if the gradient is right).
- ``path``: gradients and site values along the *input* path (noise, text and condition interpolated from the
  target's to the source's, as EAP-IG), for the integrated-gradients variants (left / midpoint rules, endpoint
  difference or the path's own value changes, i.e. conductance).
- ``graddrop``: AtP* GradDrop (Kramar et al. 2024): AtP with each block's sublayer outputs' gradient stopped in turn.
- ``report``: every estimator's rank correlation with the real (alpha = 1) effect, from the files the others wrote.

Run: python -m benchmarks.atp_diagnosis {curves,path,graddrop,report} --seed 1 --out DIR [--alphas 0.1,0.5,1] [--k 8]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from benchmarks.atp import SITES, experiment, spearman
from interp.experiments import Experiment
from interp.experiments import metrics as M
from interp.experiments.atp import _collect, _pair, attributions, interpolate
from interp.experiments.runner import group_inputs, sampler_of
from interp.models import load_model
from interp.trace import ForwardPlan
from interp.trajectory import run_trajectory

STEPS = (0, 1, 2)


def setup(seed: int):
    """The benchmark's experiment for the mazes of ``seed``: (loaded, sampler, group inputs, target, source, points)."""
    args = SimpleNamespace(n=2, size=4, steps=4, patch_steps=list(STEPS), sites=SITES, max_batch=16, seed=seed)
    exp = Experiment.validate_data(experiment(args, "atp"))
    loaded = load_model("maze-wan", "cpu")
    gi = group_inputs(exp, loaded, 4)
    tgt, src = _pair(gi, [0, 1], exp.sampler.seed, exp.interventions[0].source, 2)
    sites = [s.format(layer=i) for s in SITES for i in range(16)]
    points = [(s, st) for s in sites for st in STEPS]
    return SimpleNamespace(exp=exp, loaded=loaded, sampler=sampler_of(exp, loaded), gi=gi, tgt=tgt, src=src,
                           sites=sites, points=points, names=np.array([f"{s}|{st}" for s, st in points]))  # fmt: skip


def curves(c, alphas: list[float], out: Path) -> None:
    with torch.no_grad():
        src_final, src_acts = _collect(c.loaded, c.src, c.sampler, c.sites, set(STEPS), grad=False)
    clean, attr = attributions(c.loaded, c.tgt, c.src, c.sampler, c.sites, set(STEPS))
    est = np.array([[float(attr[("cond", s, st)][r].sum()) for r in range(2)] for s, st in c.points])
    k = 8  # points per batch (2 rows each)
    big, _ = _pair(c.gi, [0, 1] * k, c.exp.sampler.seed, c.exp.interventions[0].source, 2)
    res = {}
    for a in alphas:
        vals = np.zeros((len(c.points), 2))
        for b in range(0, len(c.points), k):
            chunk = c.points[b : b + k]

            def plan(branch, step, chunk=chunk, a=a):
                edits = {}
                for j, (s, st) in enumerate(chunk):
                    if st != step:
                        continue
                    prev = edits.get(s)

                    def fn(n, s_, v, rows=slice(2 * j, 2 * j + 2), s=s, st=st, prev=prev):
                        v = (prev(n, s_, v) if prev else v).clone()
                        v[rows] = v[rows] + a * (src_acts[("cond", s, st)] - v[rows])
                        return v

                    edits[s] = fn
                return ForwardPlan(edit=edits)

            final = run_trajectory(c.loaded, big, c.sampler, plan=plan, keep=False).final
            m = M.mse(final, src_final.repeat(k, 1, 1, 1, 1)).reshape(k, 2)
            vals[b : b + len(chunk)] = m[: len(chunk)].numpy() - clean.numpy()[None]
        res[f"a{a}"] = vals
        print(f"alpha {a} done", flush=True)
    np.savez(out / "curves.npz", est=est, clean=clean.numpy(), points=c.names, **res)


def path(c, k: int, out: Path) -> None:
    """D[i, j, point, row] = g(alpha_i) . value(alpha_j) on the grid alpha = j / k of the input path."""
    al = [j / k for j in range(k + 1)]
    acts = []
    with torch.no_grad():
        src_final, _ = _collect(c.loaded, c.src, c.sampler, c.sites, set(STEPS), grad=False)
        for a in al:
            _, ac = _collect(c.loaded, interpolate(c.tgt, c.src, a), c.sampler, c.sites, set(STEPS), grad=False)
            acts.append({p: ac[("cond", *p)].float() for p in c.points})
    D, F = np.zeros((k + 1, k + 1, len(c.points), 2)), np.zeros((k + 1, 2))
    for i, a in enumerate(al[:-1]):  # at alpha 1 (the source itself) mse_to_source is 0, its minimum: no gradient
        final, ac = _collect(c.loaded, interpolate(c.tgt, c.src, a), c.sampler, c.sites, set(STEPS), grad=True)
        m = M.mse(final, src_final)
        F[i] = m.detach().numpy()
        got = torch.autograd.grad(m.sum(), [ac[("cond", *p)] for p in c.points], allow_unused=True)
        for pi, g in enumerate(got):
            g = torch.zeros_like(acts[0][c.points[pi]]) if g is None else g.float()
            for j in range(k + 1):
                D[i, j, pi] = (g * acts[j][c.points[pi]]).flatten(1).sum(1).numpy()
    np.savez(out / "path.npz", D=D, F=F, al=np.array(al), points=c.names)


def graddrop(c, out: Path) -> None:
    """E[l, point, row]: AtP with block l's attention, cross-attention and MLP outputs detached at every step
    (l = 16: nothing detached, plain AtP); NaN where the point's own site is detached."""
    with torch.no_grad():
        src_final, sa = _collect(c.loaded, c.src, c.sampler, c.sites, set(STEPS), grad=False)
        _, ta = _collect(c.loaded, c.tgt, c.sampler, c.sites, set(STEPS), grad=False)
    diff = {p: (sa[("cond", *p)] - ta[("cond", *p)]).float() for p in c.points}
    E = np.zeros((17, len(c.points), 2))
    for layer in range(17):
        drop = [f"blocks.{layer}.hook_{x}" for x in ("attn_out", "cross_attn_out", "mlp_out")] if layer < 16 else []
        acts = {}

        def plan(branch, step, drop=drop, acts=acts):
            def cap(n, s_, v):  # the value the forward goes on with (a read would be a copy: no gradient)
                acts[(n, s_)] = out = v.detach() if n in drop else v * 1.0
                return out

            return ForwardPlan(edit={d: cap for d in drop} | ({x: cap for x in c.sites} if step in STEPS else {}))

        final = run_trajectory(c.loaded, c.tgt, c.sampler, plan=plan, keep=False, grad=True).final
        m = M.mse(final, src_final)
        keys = [p for p in c.points if acts[p].requires_grad]
        got = dict(zip(keys, torch.autograd.grad(m.sum(), [acts[p] for p in keys], allow_unused=True)))
        for pi, p in enumerate(c.points):
            g = got.get(p)
            E[layer, pi] = np.nan if g is None else (g.float() * diff[p]).flatten(1).sum(1).numpy()
    np.savez(out / "graddrop.npz", E=E, points=c.names)


def report(out: Path) -> None:
    cur = np.load(out / "curves.npz")
    alphas = sorted(float(k[1:]) for k in cur.files if k.startswith("a"))
    real = {a: cur[f"a{a}"].mean(1) for a in alphas}
    R, pts = real[1.0], cur["points"]
    site = np.array([p.split("|")[0].split(".")[-1] for p in pts])
    step = np.array([int(p.split("|")[1]) for p in pts])
    att = site == "hook_attn_out"

    def top(est):
        return len(set(np.argsort(-np.abs(R))[:10]) & set(np.argsort(-np.abs(est))[:20])) / 10

    def line(name, est):
        print(f"  {name:52s} rho {spearman(R, est):.3f}  top-10 in top-20 {top(est):.0%}  "
              f"attn_out {spearman(R[att], est[att]):.2f}  mlp_out {spearman(R[~att], est[~att]):.2f}")  # fmt: skip

    est = cur["est"].mean(1)
    print(f"clean mse_to_source {cur['clean'].mean():.4f}; {len(pts)} points; real effect f(alpha) of patching alpha "
          "of the way to the source")  # fmt: skip
    print("the real effect at alpha against the real effect at 1 (an estimator exact at alpha ranks no better):")
    for a in alphas[:-1]:
        print(f"  alpha {a}: Spearman {spearman(R, real[a]):.3f}; AtP against f({a}): {spearman(real[a], est):.3f}")
    print("median real effect / median AtP estimate, per site and step:")
    for s in ("hook_attn_out", "hook_mlp_out"):
        row = [f"step {st}: {np.median(R[(site == s) & (step == st)]):+.5f} / "
               f"{np.median(est[(site == s) & (step == st)]):+.5f}" for st in STEPS]  # fmt: skip
        print(f"  {s}: {'; '.join(row)}")
    big = np.argsort(R)[:12]
    print("the 12 largest real effects: f(" + ", ".join(map(str, alphas)) + ") | AtP")
    for i in big:
        print(f"  {pts[i]:26s} " + " ".join(f"{real[a][i]:+.4f}" for a in alphas) + f" | {est[i]:+.4f}")
    print("estimators, against the real effect at alpha = 1 (cost in forward + backward passes of the target):")
    line("AtP (1)", est)
    for n in (20, 48):  # the largest |AtP| estimates replaced by their real effects: the rest ranked by AtP
        top_n = np.argsort(-np.abs(est))[:n]
        line(
            f"AtP, then real patching of its top {n} (1 + {n} runs)",
            np.where(np.isin(np.arange(len(est)), top_n), R, est),
        )
    if (out / "path.npz").exists():
        p = np.load(out / "path.npz")
        D, k = p["D"], len(p["al"]) - 1

        def endpoint(idx):
            return np.mean([D[i, k] - D[i, 0] for i in idx], 0).mean(1)

        def conduct(idx):
            return sum(D[i, (idx + [k])[n + 1]] - D[i, i] for n, i in enumerate(idx)).mean(1)

        for n in (2, 4, 8):
            if k % n == 0:
                left = list(range(0, k, k // n))
                mid = [i + k // (2 * n) for i in left] if (k // n) % 2 == 0 else None
                line(f"input-path IG, left rule ({n})", endpoint(left))
                if mid:
                    line(f"input-path IG, midpoint rule ({n})", endpoint(mid))
                line(f"input-path conductance, left rule ({n})", conduct(left))
    if (out / "graddrop.npz").exists():
        E = np.load(out / "graddrop.npz")["E"]
        Ef = np.where(np.isnan(E), E[16][None], E)[:16]  # a point's own block: its plain AtP
        line("GradDrop, -mean_l |AtP_l| (17)", -np.abs(Ef).mean(0).mean(1))
        line("GradDrop, signed mean_l AtP_l (17)", Ef.mean(0).mean(1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("what", choices=["curves", "path", "graddrop", "report"])
    p.add_argument("--seed", type=int, default=1, help="held-out maze seed (benchmarks.atp reports seed 0)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--alphas", type=lambda s: [float(v) for v in s.split(",")], default=[0.1, 0.25, 0.5, 0.75, 1.0])
    p.add_argument("--k", type=int, default=8, help="path: grid points along the input path")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "report":
        return report(args.out)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    c = setup(args.seed)
    {"curves": lambda: curves(c, args.alphas, args.out), "path": lambda: path(c, args.k, args.out),
     "graddrop": lambda: graddrop(c, args.out)}[args.what]()  # fmt: skip
    print(f"{args.what}: {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()

"""Laptop-CPU benchmark of the shipped maze model: 16 mazes x 20 Euler steps, wall-clock seconds.

Run: python -m benchmarks.maze_cpu [--threads 2] [--size 5] [--n 16] [--steps 20]
Prints the figure (goal: <= 60 s on 2 CPU cores) and the solve rate of the run.
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", type=int, default=5)
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from interp.apps.evaluate import eval_maze
    from interp.models import load_model

    t0 = time.perf_counter()
    model = load_model("maze-wan", "cpu")
    t_load = time.perf_counter() - t0
    t1 = time.perf_counter()
    res = eval_maze(model, size=args.size, n=args.n, steps=args.steps, batch=args.n)
    t_sample = time.perf_counter() - t1
    rate, lo, hi = res.solve_rate
    print(f"cpu: {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}")
    print(f"maze-wan load: {t_load:.1f} s")
    print(
        f"{args.n} mazes of {args.size}x{args.size} x {args.steps} steps: {t_sample:.1f} s "
        f"({t_sample / args.steps:.2f} s per step); solve rate {rate:.2f} [{lo:.2f}, {hi:.2f}]"
    )
    print(f"goal <= 60 s: {'met' if t_sample <= 60 else 'NOT met'}")


if __name__ == "__main__":
    main()

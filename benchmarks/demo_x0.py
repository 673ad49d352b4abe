"""Which maze size and step count make `interp demo` show the x0 going from wrong to solved, and what it costs.

Run: python -m benchmarks.demo_x0 [--threads 2] [--n 4] 8:12 7:16 5:30   (SIZE:STEPS pairs)

For each pair: the held-out mazes the demo samples (seed 0), wall and CPU seconds of the sampling (CPU seconds of
this process, all threads: on 2 idle cores the wall time lies between CPU/2 and CPU), and per step of the x0
prediction (the maze scorer on each step's x0): mazes solved, mean path recall, mean trail cells off the path.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("pairs", nargs="+", help="SIZE:STEPS")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--model", default="maze-wan")
    args = p.parse_args()
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from interp.apps.evaluate import eval_maze
    from interp.models import load_model
    from interp.tasks.maze_score import score_video

    model = load_model(args.model, "cpu")
    print(f"{args.model}, {args.n} held-out mazes (seed 0), {args.threads} torch threads")
    for pair in args.pairs:
        size, steps = map(int, pair.split(":"))
        w0, c0 = time.perf_counter(), time.process_time()
        res = eval_maze(model, size=size, n=args.n, steps=steps, seed=0, keep_x0=True)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        per = [[score_video(res.x0_steps[i][s], res.conditions[i]) for s in range(steps)] for i in range(args.n)]
        solved = [sum(per[i][s].success for i in range(args.n)) for s in range(steps)]
        recall = [float(np.mean([per[i][s].path_recall for i in range(args.n)])) for s in range(steps)]
        extra = [float(np.mean([per[i][s].extra_cells for i in range(args.n)])) for s in range(steps)]
        print(f"\n{size}x{size}, {steps} steps: sampling {wall:.1f} s wall, {cpu:.1f} s CPU; "
              f"final video solved {sum(s.success for s in res.scores)}/{args.n}")  # fmt: skip
        print("  x0 solved/step   " + " ".join(f"{v:d}" for v in solved))
        print("  x0 recall/step   " + " ".join(f"{v:.2f}" for v in recall))
        print("  x0 off-path/step " + " ".join(f"{v:.1f}" for v in extra))


if __name__ == "__main__":
    main()

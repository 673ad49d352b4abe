"""The docs' figures of the per-head sites and of attribution patching, on maze-wan (CPU, about a minute).

- ``docs/assets/attention-agent.png``: where the agent's token attends, one row per chosen layer, at one denoising
  step: the softmax(q k^T / sqrt(d)) row of the agent's token in one frame (``blocks.{i}.attn.hook_q`` / ``hook_k``
  through ``Traced.attention_rows``, averaged over the heads), over every frame's tokens, drawn on the maze.
- ``docs/assets/atp-vs-real.png``: AtP's estimate against the real patching effect of every point of
  ``python -m benchmarks.atp`` (from the results files its ``--out DIR`` kept), and both as step x block maps.

Run: python -m benchmarks.figures_heads_atp [--atp-dir DIR] [--layers 2,8,14] [--step 2] [--frame 4] [--out docs/assets]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np

from benchmarks.atp import spearman
from interp.experiments import read_metrics
from interp.inputs import model_inputs
from interp.models import load_model
from interp.tasks import maze as maze_task
from interp.trajectory import SamplerConfig, TrajectoryInputs, initial_latents, run_trajectory, traced_experts

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the Agg backend)


def attention_figure(out: Path, layers: list[int], step: int, frame: int, size: int, seed: int) -> Path:
    loaded = load_model("maze-wan", "cpu")
    mi = model_inputs(loaded, 1, seed, size=size)
    maze = mi.instances[0]
    sampler = SamplerConfig.from_task(loaded.task, steps=max(step + 1, 4))
    inputs = TrajectoryInputs(
        mi.text, mi.latent_shape, condition=mi.condition, latents=initial_latents(mi.latent_shape, 0)
    )
    sites = [f"blocks.{i}.attn.hook_{x}" for i in layers for x in ("q", "k")]
    traj = run_trajectory(loaded, inputs, sampler, read=sites)
    traced = next(iter(traced_experts(loaded).values()))
    grid = traced.adapter.token_grid(loaded.transformer, mi.latent_shape)  # (frames, rows, cols) of tokens
    frames = grid[0]
    _, agent = maze_task.frame_blocks(maze, mi.latent_shape[2])
    r, c = map(int, np.argwhere(agent[frame])[0])
    query = frame * grid[1] * grid[2] + r * grid[2] + c  # the agent's token in that frame
    video = maze_task.from_model_space(traj.final)[0].numpy()  # (frames, h, w, 3) the sampled video
    acts = traj.records[step].branches["cond"]
    fig, axes = plt.subplots(len(layers), frames, figsize=(1.25 * frames, 1.35 * len(layers)), squeeze=False)
    for row, i in enumerate(layers):
        q, k = acts[f"blocks.{i}.attn.hook_q"], acts[f"blocks.{i}.attn.hook_k"]
        pattern = traced.attention_rows(f"blocks.{i}.attn", q, k, [query], mi.latent_shape)  # (1, head, 1, key)
        a = pattern[0, :, 0].float().mean(0).reshape(grid).numpy()
        for f in range(frames):
            ax = axes[row, f]
            ax.imshow(video[f], extent=(0, grid[2], grid[1], 0))
            ax.imshow(a[f], extent=(0, grid[2], grid[1], 0), cmap="magma", alpha=0.75, vmin=0, vmax=float(a.max()))
            if f == frame:
                ax.add_patch(plt.Rectangle((c, r), 1, 1, fill=False, ec="cyan", lw=1.5))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"frame {f}", fontsize=7)
            if f == 0:
                ax.set_ylabel(f"block {i}\n{a.sum(axis=(1, 2))[frame]:.0%} own frame", fontsize=7)
    fig.suptitle(f"maze-wan: where the agent's token (cyan, frame {frame}) attends at step {step} of "
                 f"{sampler.steps} (blocks.{{i}}.attn, mean over heads)", fontsize=8)  # fmt: skip
    fig.tight_layout()
    path = out / "attention-agent.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def atp_figure(out: Path, atp_dir: Path) -> Path:
    r = read_metrics(atp_dir / "real" / "results.h5")
    a = read_metrics(atp_dir / "atp-1" / "results.h5")
    pts = r["points"]
    real = (r["metrics"]["mse_to_source"] - a["clean"]["mse_to_source"][None]).mean(1)
    est = a["metrics"]["atp_effect"].mean(1)
    site = np.array([p["interventions.0.site"].split(".")[-1] for p in pts])
    step = np.array([p["interventions.0.steps"][0] for p in pts])
    layer = np.array([p["interventions.0.layers"][0] for p in pts])
    steps, sites = sorted(set(step)), sorted(set(site))
    fig = plt.figure(figsize=(11, 3.8))
    ax = fig.add_subplot(1, 3, 1)
    for s, marker in zip(sites, "os"):
        for st, color in zip(steps, ["#1b9e77", "#d95f02", "#7570b3", "#e7298a"]):
            m = (site == s) & (step == st)
            ax.scatter(real[m], est[m], s=14, marker=marker, color=color, label=f"{s[5:]} step {st}")
    lim = [min(real.min(), est.min()) * 1.05, max(real.max(), est.max(), 0.005)]
    ax.plot(lim, lim, "k:", lw=0.8)
    ax.set_xscale("symlog", linthresh=1e-3)
    ax.set_yscale("symlog", linthresh=1e-3)
    ticks = [-0.1, -0.01, 0, 0.01]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlabel("real patching effect on mse_to_source")
    ax.set_ylabel("AtP estimate")
    ax.set_title(f"96 points, Spearman {spearman(real, est):.2f}", fontsize=9)
    ax.legend(fontsize=5.5, ncol=2, loc="lower right")
    fig.subplots_adjust(wspace=0.55)
    vmax = float(np.abs(real).max())
    for j, (vals, title) in enumerate([(real, "real patching"), (est, "AtP (1 forward + backward)")]):
        grid = np.full((len(sites) * len(steps), 16), np.nan)
        for i in range(len(pts)):
            grid[sites.index(site[i]) * len(steps) + steps.index(step[i]), layer[i]] = vals[i]
        ax = fig.add_subplot(1, 3, 2 + j)
        im = ax.imshow(-grid, aspect="auto", cmap="viridis", norm=matplotlib.colors.SymLogNorm(1e-3, vmin=0, vmax=vmax))
        labels = [f"{s[5:]} step {st}" for s in sites for st in steps] if j == 0 else []
        ax.set_yticks(range(grid.shape[0]) if j == 0 else [], labels, fontsize=7)
        ax.set_xticks(range(0, 16, 3))
        ax.set_xlabel("block")
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=fig.axes[1:], label="- effect (distance to the source removed)", shrink=0.8)
    path = out / "atp-vs-real.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--atp-dir", type=Path, default=None, help="a benchmarks.atp --out DIR (skip the AtP figure if unset)"
    )
    p.add_argument("--layers", type=lambda s: [int(v) for v in s.split(",")], default=[2, 8, 14])
    p.add_argument("--step", type=int, default=2)
    p.add_argument("--frame", type=int, default=4, help="the query: the agent's token in this frame")
    p.add_argument("--size", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("docs/assets"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(attention_figure(args.out, args.layers, args.step, args.frame, args.size, args.seed))
    if args.atp_dir is not None:
        print(atp_figure(args.out, args.atp_dir))


if __name__ == "__main__":
    main()

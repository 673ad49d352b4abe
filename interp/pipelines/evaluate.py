"""Held-out evaluation of an image-to-video pipeline on the task suite: success per (task, level) with 95% intervals.

Samples are drawn with :func:`interp.pipelines.sampling.sample_i2v` (the pipeline's own components) and scored by
each task's pixel-only scorer. The prompt-chosen-goal task is evaluated on pairs (the same maze with either
prompt), reporting how often the named goal and how often the other goal is reached.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from interp.pipelines.decode import encode_latents
from interp.pipelines.sampling import decode, sample_i2v
from interp.tasks import goalmaze, suite


def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95% interval of a rate k/n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def eval_instances(task_name: str, level, n: int, seed: int = 0) -> list[dict]:
    task = suite.get_task(task_name)
    if task_name == "goalmaze":
        return [inst for pair in goalmaze.heldout_pairs(level, max(1, n // 2), seed) for inst in pair]
    return suite.heldout(task, level, n, seed)


def summarize(task_name: str, level, scores: list[dict]) -> dict:
    n = len(scores)
    keys = sorted({k for s in scores for k in s})
    means = {k: float(np.mean([s.get(k, np.nan) for s in scores])) for k in keys}
    k = sum(s["success"] for s in scores)
    out = {
        "task": task_name,
        "level": level,
        "n": n,
        "success": k / max(n, 1),
        "ci95": list(wilson(k, n)),
        "means": means,
    }
    for key in ("reached_target", "reached_other"):
        if key in means:
            kk = sum(s[key] for s in scores)
            out[key] = kk / n
            out[f"{key}_ci95"] = list(wilson(kk, n))
    return out


def evaluate(
    pipe,
    tasks: list[str],
    n: int = 100,
    steps: int = 50,
    guidance: float = 3.0,
    batch: int = 400,
    seed: int = 0,
    device="cpu",
    levels: dict | None = None,
    batch_cfg: bool = True,
    log=print,
    on_batch=None,
) -> list[dict]:
    """One row per (task, level): success rate, Wilson 95% interval, mean partial scores.

    ``on_batch(chunk, images, prompts, videos, scores)``, when given, sees every sampled batch: ``chunk`` the
    (task, level, instance) jobs, their condition images and prompts, the videos (B, F, H, W, 3) uint8 and the
    per-sample score dicts (for writing the samples)."""
    jobs = []
    for name in tasks:
        task = suite.get_task(name)
        for level in (levels or {}).get(name, task.levels):
            for inst in eval_instances(name, level, n, seed):
                jobs.append((name, level, inst))
    scores: dict[tuple, list] = {}
    t0 = time.time()
    for start in range(0, len(jobs), batch):
        chunk = jobs[start : start + batch]
        images = [suite.get_task(name).render(inst)[0] for name, _, inst in chunk]
        prompts = [suite.get_task(name).prompt(inst) for name, _, inst in chunk]
        videos = sample_i2v(
            pipe,
            images,
            prompts,
            num_inference_steps=steps,
            guidance_scale=guidance,
            seed=seed + start,
            num_frames=suite.FRAMES,
            height=suite.SIZE,
            width=suite.SIZE,
            device=device,
            batch_cfg=batch_cfg,
        )
        batch_scores = [suite.get_task(name).score(video, inst) for (name, _, inst), video in zip(chunk, videos)]
        for (name, level, _), sc in zip(chunk, batch_scores):
            scores.setdefault((name, level), []).append(sc)
        if on_batch is not None:
            on_batch(chunk, images, prompts, videos, batch_scores)
        log(f"eval g={guidance}: {min(start + batch, len(jobs))}/{len(jobs)} samples {time.time() - t0:.0f}s")
    return [summarize(name, level, s) for (name, level), s in scores.items()]


def table(rows: list[dict]) -> str:
    lines = ["| task | level | n | success | 95% CI | other goal |", "|---|---|---|---|---|---|"]
    for r in rows:
        other = f"{r['reached_other']:.3f}" if "reached_other" in r else ""
        lines.append(
            f"| {r['task']} | {r['level']} | {r['n']} | **{r['success']:.3f}** | [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] | {other} |"
        )
    return "\n".join(lines)


@torch.no_grad()
def vae_ceiling(pipe, tasks: list[str], n: int = 50, seed: int = 0, batch: int = 25, device="cpu") -> list[dict]:
    """Held-out ground-truth videos encoded and decoded by the pipeline's VAE (latents normalised and de-normalised
    as the pipeline does), scored by each task's scorer: the success no denoiser can exceed through this VAE."""
    rows = []
    for name in tasks:
        task = suite.get_task(name)
        for level in task.levels:
            insts = eval_instances(name, level, n, seed)
            scores = []
            for start in range(0, len(insts), batch):
                chunk = insts[start : start + batch]
                v = torch.from_numpy(np.stack([task.render(i) for i in chunk])).to(device)
                x = v.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
                z = encode_latents(pipe.vae, x)
                scores += [task.score(r, i) for r, i in zip(decode(pipe, z), chunk)]
            rows.append(summarize(name, level, scores))
    return rows

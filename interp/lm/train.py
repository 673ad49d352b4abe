"""Training of the maze language model: next-token loss on the answer (moves and ``<eos>``) of mazes generated on
the fly from the training stream (held-out eval mazes rejected, as for the DiTs); batches of one maze size each.

``interp train experiments/train/maze-lm.yaml`` reaches this through ``kind: lm``.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from interp.lm import tokens as T
from interp.lm.model import LMSpec, build_lm, load_weights, save_lm
from interp.lm.run import eval_lm
from interp.tasks import maze as mz
from interp.train import RunSpec, SizeMix, _Strict, training_estimate


class LMData(SizeMix):
    tokens_per_batch: int = 32768
    seed: int = 0


class LMOptim(_Strict):
    lr: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0


class LMEval(_Strict):
    every: int = 500
    sizes: list[int] = [3, 5]
    n: int = 64


class LMTrainConfig(RunSpec):
    kind: Literal["lm"] = "lm"
    model: LMSpec = Field(default_factory=LMSpec)
    data: LMData = Field(default_factory=LMData)
    optim: LMOptim = Field(default_factory=LMOptim)
    eval: LMEval = Field(default_factory=LMEval)
    out: str = "runs/maze-lm"
    max_minutes: float = 10.0
    threads: int | None = None  # CPU threads (None: torch's default)


def maze_batches(spec: LMData, start_step: int = 0):
    """Endless (size, mazes) batches of one size each, weighted by ``size_weights``; never an eval maze."""
    held_out = mz.eval_keys()
    sizes = sorted(spec.size_weights)
    p = np.array([spec.size_weights[s] for s in sizes], float)
    p /= p.sum()
    rng = np.random.default_rng(np.random.SeedSequence([mz.TRAIN_STREAM, 0x1A, spec.seed, start_step]))
    while True:
        size = int(rng.choice(sizes, p=p))
        b = max(1, spec.tokens_per_batch // T.max_len(size))
        mazes = []
        while len(mazes) < b:
            m = mz.generate(size, rng)
            if m.key() not in held_out:
                mazes.append(m)
        yield size, mazes


def lm_loss(bridge, toks: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over the answer tokens, and per-sequence exactness under teacher forcing."""
    logits = bridge(toks[:, :-1])
    tgt = toks[:, 1:]
    ce = F.cross_entropy(logits.float().flatten(0, 1), tgt.flatten(), reduction="none").view_as(tgt)
    loss = (ce * mask).sum() / mask.sum()
    right = ((logits.argmax(-1) == tgt) | ~mask).all(dim=1)
    return loss, right


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train_lm(cfg: LMTrainConfig, progress: bool = False) -> dict:
    """Train until ``max_steps`` or ``max_minutes``; checkpoints to ``cfg.out``/ckpt (weights bf16)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    bridge = build_lm(cfg.model, device)
    training_estimate(bridge, cfg.data.tokens_per_batch, cfg.model.d_model, out).check(cfg.force)  # nothing written yet
    out.mkdir(parents=True, exist_ok=True)
    state = {"step": 0, "samples": 0, "train_seconds": 0.0, "history": []}
    if cfg.resume_from:
        state.update(load_weights(bridge, cfg.resume_from))
        print(f"[train-lm] resumed from {cfg.resume_from} at step {state['step']}", flush=True)
    o = cfg.optim
    params = [p for p in bridge.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=o.lr, betas=o.betas)  # fmt: skip
    horizon = cfg.max_steps if cfg.max_steps < 1_000_000 else None

    def lr_at(s: int) -> float:
        warm = min(1.0, (s + 1) / o.warmup_steps)
        if horizon is None:
            return warm
        return warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / horizon))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(state["step"]))
    amp = torch.bfloat16 if (cfg.bf16 and device.type == "cuda") else None
    t0, seconds0, local = time.time(), state["train_seconds"], 0
    run_loss, run_acc = [], []
    for size, mazes in maze_batches(cfg.data, state["step"]):
        toks, mask = T.batch(mazes)
        toks, mask = toks.to(device), mask.to(device)
        bridge.train()
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss, right = lm_loss(bridge, toks, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
        opt.step()
        sched.step()
        local += 1
        state["step"] += 1
        state["samples"] += len(mazes)
        run_loss.append(loss.item())
        run_acc.append(right.float().mean().item())
        elapsed = time.time() - t0
        if local % cfg.log_every == 0:
            print(f"[train-lm] step {state['step']} loss {np.mean(run_loss):.4f} teacher-forced exact "
                  f"{np.mean(run_acc):.3f} gnorm {gnorm.item():.2f} lr {sched.get_last_lr()[0]:.2e} "
                  f"{local / elapsed:.2f} it/s samples {state['samples']}", flush=True)  # fmt: skip
            run_loss, run_acc = [], []
        done = state["step"] >= cfg.max_steps or elapsed > cfg.max_minutes * 60
        if local % cfg.eval.every == 0 or done:
            bridge.eval()
            rows = eval_lm(bridge, cfg.eval.sizes, cfg.eval.n, seed=12345, stream=mz.TRAIN_STREAM ^ 0xFFFF)
            metrics = {f"eval/exact_{r['size']}": r["exact"] for r in rows}
            state["history"].append({"step": state["step"], **metrics})
            print(f"[eval-lm] step {state['step']} " + " ".join(f"{k}={v:.3f}" for k, v in metrics.items()), flush=True)
        if local % cfg.save_every == 0 or done:
            state["train_seconds"] = seconds0 + time.time() - t0
            save_lm(bridge, cfg.model, out / "ckpt", state, cfg.model_dump(mode="json"))
        if done:
            break
    return state


def main(config: str, overrides: list[str] | None = None) -> dict:
    return train_lm(LMTrainConfig.from_yaml(config, overrides), progress=os.isatty(1))

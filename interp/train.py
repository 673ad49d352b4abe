"""Training of the embedded maze models: rectified flow on maze videos generated on the fly.

The model is a diffusers ``WanTransformer3DModel`` in pixel space. The first frame is given as in Wan2.2
image-to-video, by channel concatenation: input = cat([x_t (3), mask (1), first frame padded with zeros (3)]).
The text slot holds a fixed all-zero "null prompt" of one token.

Training is resumable across sessions: ``resume_from`` names a saved model directory (the shipped EMA weights);
the step counter continues from its ``train_state.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import yaml
from diffusers import CogVideoXTransformer3DModel, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
from pydantic import BaseModel, ConfigDict, Field, field_validator
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from safetensors.torch import load_file, save_file

from interp.adapters import TextConditioning, get_adapter
from interp.budget import Estimate, forward_bytes
from interp.store.atomic import publish_dir, staging_dir
from interp.tasks import maze as mz
from interp.tasks import maze_inputs
from interp.tasks.maze_score import score_batch, solve_rate
from interp.tracking import Tracker
from interp.yamlio import load_yaml, read_yaml

# ---------------------------------------------------------------------------------------------------------------
# config


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Strict):
    # diffusers family: wan (WanTransformer3DModel, the shipped maze-wan) or cogvideox (CogVideoXTransformer3DModel,
    # its image-to-video variant: the first frame concatenated on channels, as CogVideoX-I2V does with its latents)
    family: Literal["wan", "cogvideox"] = "wan"
    num_layers: int = 16
    num_attention_heads: int = 4
    attention_head_dim: int = 56
    ffn_dim: int = 672
    text_dim: int = 32
    freq_dim: int = 256
    time_embed_dim: int = 128  # cogvideox only (wan uses freq_dim)

    def wan_config(self, frames_channels: int = 3) -> dict:
        return dict(
            patch_size=(1, mz.BLOCK_PX, mz.BLOCK_PX),
            num_attention_heads=self.num_attention_heads,
            attention_head_dim=self.attention_head_dim,
            in_channels=2 * frames_channels + 1,
            out_channels=frames_channels,
            text_dim=self.text_dim,
            freq_dim=self.freq_dim,
            ffn_dim=self.ffn_dim,
            num_layers=self.num_layers,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=64,
        )

    def cogvideox_config(self, frames_channels: int = 3, frames: int = 5) -> dict:
        """Pixel-space CogVideoX: a 4x4 patch per frame (one token per maze block), 3D sin-cos positions computed
        for each maze size, one null text token; no ffn_dim (diffusers fixes CogVideoX's FFN at 4 x d_model)."""
        side = (2 * 5 + 1) * mz.BLOCK_PX  # the default 5x5 maze; other sizes get their positions on the fly
        return dict(
            num_attention_heads=self.num_attention_heads,
            attention_head_dim=self.attention_head_dim,
            in_channels=2 * frames_channels + 1,
            out_channels=frames_channels,
            time_embed_dim=self.time_embed_dim,
            text_embed_dim=self.text_dim,
            num_layers=self.num_layers,
            sample_width=side,
            sample_height=side,
            sample_frames=frames,
            patch_size=mz.BLOCK_PX,
            patch_size_t=None,
            temporal_compression_ratio=1,
            max_text_seq_length=1,
            spatial_interpolation_scale=1.0,
        )


class SizeMix(_Strict):
    """Sampling weights of the maze sizes in training batches (one size per batch)."""

    size_weights: dict[int, float] = Field(default_factory=lambda: {3: 1.0, 4: 2.0, 5: 4.0, 6: 3.0, 7: 1.5, 8: 1.0})

    @field_validator("size_weights")
    @classmethod
    def _sizes(cls, v):
        bad = [s for s in v if s not in mz.SIZES]
        if bad:
            raise ValueError(f"maze sizes {bad} not in {list(mz.SIZES)}")
        return v


class DataSpec(SizeMix):
    frames: int = 5
    tokens_per_batch: int = 98304
    seed: int = 0
    workers: int = 8


class OptimSpec(_Strict):
    lr: float = 4e-4
    warmup_steps: int = 1000
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    ema_decay: float = 0.9995
    # training noise levels: sigma = shift*u / (1 + (shift-1)*u), u = sigmoid(N(mean, std))
    time_mean: float = 0.0
    time_std: float = 1.0
    time_shift: float = 3.0
    # loss weights per block of frames >= 1 (frame 0 and walls use `copy`)
    weight_copy: float = 0.5
    weight_open: float = 1.0
    weight_path: float = 3.0


class EvalSpec(_Strict):
    every: int = 1000
    size: int = 5
    n: int = 64
    steps: int = 20
    shift: float = 5.0


class RunSpec(_Strict):
    """Run control shared by the trainers: output, resume, stopping, checkpoint and log cadence, device."""

    out: str = "runs/maze-wan"
    resume_from: str | None = None
    max_steps: int = 1_000_000
    max_minutes: float = 25.0
    save_every: int = 500
    log_every: int = 50
    device: str = "auto"
    bf16: bool = True
    force: bool = False  # train even when the estimate (:func:`training_estimate`) exceeds the free memory or disk

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None):
        """The config of a YAML file with ``key.sub=value`` overrides (values parsed as YAML)."""
        data = read_yaml(path) or {}
        for item in overrides or []:
            key, _, value = item.partition("=")
            node = data
            *parents, leaf = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = load_yaml(value, f"--set {key}")
        return cls.model_validate(data)


class TrainConfig(RunSpec):
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    optim: OptimSpec = Field(default_factory=OptimSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    wandb: str = "offline"


def training_estimate(model, tokens_per_batch: int, d_model: int, out: Path) -> Estimate:
    """What training ``model`` holds and writes (:mod:`interp.budget`): the weights, an EMA copy, AdamW's two moments
    and the gradients (float32), plus a batch's forward and backward working set; two checkpoints on disk."""
    n = sum(p.numel() for p in model.parameters())
    return Estimate("training", memory=5 * 4 * n + 2 * forward_bytes(1, tokens_per_batch, d_model),
                    disk=2 * 4 * n, out=out,
                    detail=f"{n / 1e6:.1f}M parameters, {tokens_per_batch} tokens a batch")  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# data


def batch_size_for(size: int, frames: int, tokens_per_batch: int) -> int:
    return max(1, tokens_per_batch // (frames * (2 * size + 1) ** 2))


class MazeBatches(torch.utils.data.IterableDataset):
    """Endless batches of one maze size each, as block classes and agent masks; eval mazes are never drawn."""

    def __init__(self, spec: DataSpec, start_step: int = 0):
        self.spec, self.start_step = spec, start_step

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        held_out = mz.eval_keys()
        sizes = sorted(self.spec.size_weights)
        p = np.array([self.spec.size_weights[s] for s in sizes], dtype=float)
        p /= p.sum()
        rng = np.random.default_rng(np.random.SeedSequence([mz.TRAIN_STREAM, self.spec.seed, self.start_step, wid, nw]))
        while True:
            size = int(rng.choice(sizes, p=p))
            b = batch_size_for(size, self.spec.frames, self.spec.tokens_per_batch)
            classes, agents = [], []
            while len(classes) < b:
                maze = mz.generate(size, rng)
                if maze.key() in held_out:
                    continue
                c, a = mz.frame_blocks(maze, self.spec.frames)
                classes.append(c)
                agents.append(a)
            yield torch.from_numpy(np.stack(classes)), torch.from_numpy(np.stack(agents))


def block_weights(classes: torch.Tensor, agents: torch.Tensor, o: OptimSpec) -> torch.Tensor:
    """Per-block loss weights (B, F, S, S): copying is cheap, open cells matter, the path matters most."""
    w = torch.full(classes.shape, o.weight_open, device=classes.device)
    path = (classes == mz.TRAIL) | (classes == mz.START) | (classes == mz.GOAL) | agents
    w[path] = o.weight_path
    w[classes == mz.WALL] = o.weight_copy
    w[:, 0] = o.weight_copy
    return w


# ---------------------------------------------------------------------------------------------------------------
# model i/o


def build_model(spec: ModelSpec):
    if spec.family == "cogvideox":
        return CogVideoXTransformer3DModel(**spec.cogvideox_config())

    return WanTransformer3DModel(**spec.wan_config())


def model_meta(cfg: TrainConfig) -> dict:
    """The ``interp.json`` written beside the weights: how to feed and score the model."""
    return {
        "task": "maze",
        "family": cfg.model.family,
        "pixel_space": True,
        "frames": cfg.data.frames,
        "block_px": mz.BLOCK_PX,
        "conditioning": "concat",
        "text_len": 1,
        "text_dim": cfg.model.text_dim,
        "sizes": list(mz.SIZES),
        "default_size": 5,
        "sampler": {"steps": 50, "shift": 5.0, "guidance": 1.0},
    }


def predict(model, x_t, condition, sigma, text):
    """Velocity prediction (noise - x0) of the maze model."""
    if type(model).__name__ != "WanTransformer3DModel":  # other families: through their adapter (same convention)
        return get_adapter(model).forward(model, x_t, sigma * 1000.0, TextConditioning(text), condition)
    inp = torch.cat([x_t, condition], dim=1)
    return model(inp, timestep=sigma * 1000.0, encoder_hidden_states=text, return_dict=False)[0]


@torch.no_grad()
def sample(model, condition, text, steps: int, shift: float, generator: torch.Generator, dtype=None):
    """Flow-matching Euler sampling with diffusers' scheduler; returns the final x (B, 3, F, H, W)."""
    sched = FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.set_timesteps(steps, device=condition.device)
    b, _, f, h, w = condition.shape
    x = torch.randn((b, 3, f, h, w), generator=generator).to(condition.device)
    for t in sched.timesteps:
        sigma = (t / 1000.0).expand(b).to(condition.device)
        with torch.autocast(condition.device.type, dtype=dtype, enabled=dtype is not None):
            v = predict(model, x, condition, sigma, text).float()
        x = sched.step(v, t, x, return_dict=False)[0]
    return x


def evaluate(model, spec: EvalSpec, meta: dict, device, dtype=None, size: int | None = None) -> dict:
    size = size or spec.size
    mazes = [mz.generate(size, mz.maze_rng(mz.TRAIN_STREAM ^ 0xFFFF, size, 12345, i)) for i in range(spec.n)]
    inputs = maze_inputs(meta, mazes)
    g = torch.Generator().manual_seed(0)
    x = sample(
        model, inputs.condition.to(device), inputs.encoder_hidden_states.to(device), spec.steps, spec.shift, g, dtype
    )
    videos = mz.from_model_space(x.cpu())
    scores = score_batch(videos, inputs.condition_frames)
    rate, lo, hi = solve_rate(scores)
    return {
        f"eval/solve_{size}": rate,
        f"eval/recall_{size}": float(np.mean([s.path_recall for s in scores])),
        f"eval/extra_{size}": float(np.mean([s.extra_cells for s in scores])),
        f"eval/fidelity_{size}": float(np.mean([s.first_frame_fidelity for s in scores])),
    }


# ---------------------------------------------------------------------------------------------------------------
# checkpoints


def save_checkpoint(ema, cfg: TrainConfig, out: Path, state: dict) -> Path:
    """Atomically write ``out`` as a pipeline-style directory: transformer/ (bf16), scheduler/, interp.json."""
    tmp = staging_dir(out)
    ema_bf16 = {k: v.detach().to(torch.bfloat16).cpu() for k, v in ema.state_dict().items()}

    (tmp / "transformer").mkdir()
    save_file(ema_bf16, tmp / "transformer" / "diffusion_pytorch_model.safetensors", metadata={"format": "pt"})
    ema.save_config(tmp / "transformer")
    FlowMatchEulerDiscreteScheduler(shift=5.0).save_pretrained(tmp / "scheduler")
    (tmp / "interp.json").write_text(json.dumps(model_meta(cfg), indent=2))
    (tmp / "train_state.json").write_text(json.dumps(state, indent=2))
    (tmp / "train_config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return publish_dir(tmp, out)


def load_weights(model, path: str | Path) -> dict:
    path = Path(path)
    weights = load_file(path / "transformer" / "diffusion_pytorch_model.safetensors")
    model.load_state_dict({k: v.float() for k, v in weights.items()})
    state_file = path / "train_state.json"
    return json.loads(state_file.read_text()) if state_file.exists() else {}


# ---------------------------------------------------------------------------------------------------------------
# loop


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train until ``max_steps`` or ``max_minutes``; checkpoints the EMA weights to ``cfg.out``/ckpt."""
    device = resolve_device(cfg.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    out = Path(cfg.out)
    torch.manual_seed(cfg.data.seed)

    model = build_model(cfg.model).to(device)
    d_model = cfg.model.num_attention_heads * cfg.model.attention_head_dim
    training_estimate(model, cfg.data.tokens_per_batch, d_model, out).check(cfg.force)  # before anything is written
    out.mkdir(parents=True, exist_ok=True)
    state = {"step": 0, "samples": 0, "train_seconds": 0.0, "history": []}
    if cfg.resume_from:
        state.update(load_weights(model, cfg.resume_from))
        print(f"[train] resumed from {cfg.resume_from} at step {state['step']}")
    ema = build_model(cfg.model).to(device)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    ema_params, model_params = list(ema.parameters()), list(model.parameters())
    meta = model_meta(cfg)

    o = cfg.optim
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in n or "scale_shift" in n else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=o.lr,
        betas=o.betas,
        fused=device.type == "cuda",
    )
    # warm up again on resume: the optimizer state is not shipped
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / o.warmup_steps))

    loader = torch.utils.data.DataLoader(
        MazeBatches(cfg.data, state["step"]),
        batch_size=None,
        num_workers=cfg.data.workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if cfg.data.workers else None,
        persistent_workers=cfg.data.workers > 0,
    )
    tracker = Tracker("interp-maze-train", cfg.model_dump(mode="json"), mode=cfg.wandb, dir=out)
    amp = torch.bfloat16 if (cfg.bf16 and device.type == "cuda") else None
    text_dim = cfg.model.text_dim
    start_time = time.time()
    step0, seconds0 = state["step"], state["train_seconds"]
    local = 0
    bar = Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        TextColumn("{task.completed} steps"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        disable=not progress,
    )
    with bar:
        task = bar.add_task("train", total=None, info="")
        for classes, agents in loader:
            classes = classes.to(device, non_blocking=True)
            agents = agents.to(device, non_blocking=True)
            x0 = mz.to_model_space(mz.render(classes, agents)).float()
            b = x0.shape[0]
            cond = mz.condition_from_first_frame(x0[:, :, 0], x0.shape[2])
            u = torch.sigmoid(torch.randn(b, device=device) * o.time_std + o.time_mean)
            sigma = o.time_shift * u / (1 + (o.time_shift - 1) * u)
            noise = torch.randn_like(x0)
            s = sigma.view(b, 1, 1, 1, 1)
            x_t = (1 - s) * x0 + s * noise
            text = torch.zeros(b, 1, text_dim, device=device)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                v = predict(model, x_t, cond, sigma, text)
            w = block_weights(classes, agents, o)
            w = w.repeat_interleave(mz.BLOCK_PX, -1).repeat_interleave(mz.BLOCK_PX, -2)[:, None]
            err = (v.float() - (noise - x0)) ** 2
            loss = (err * w).sum() / (w.sum() * 3)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
            opt.step()
            sched.step()
            local += 1
            state["step"] += 1
            state["samples"] += b
            with torch.no_grad():
                d = 0.0 if (step0 == 0 and local <= o.warmup_steps) else o.ema_decay
                torch._foreach_lerp_(ema_params, model_params, 1 - d)
            elapsed = time.time() - start_time
            if local % cfg.log_every == 0:
                rate = local / elapsed
                info = f"loss {loss.item():.4f} gnorm {gnorm.item():.2f} {rate:.2f} it/s"
                bar.update(task, completed=state["step"], info=info)
                if not progress:
                    print(f"[train] step {state['step']} {info} samples {state['samples']}", flush=True)
                tracker.log(
                    {
                        "train/loss": loss.item(),
                        "train/grad_norm": gnorm.item(),
                        "train/it_per_s": rate,
                        "train/lr": sched.get_last_lr()[0],
                        "train/samples": state["samples"],
                    },
                    step=state["step"],
                )
            done = state["step"] >= cfg.max_steps or elapsed > cfg.max_minutes * 60
            if local % cfg.eval.every == 0 or done:
                ema.eval()
                metrics = evaluate(ema, cfg.eval, meta, device, amp)
                state["history"].append({"step": state["step"], **metrics})
                print(
                    f"[eval] step {state['step']} " + " ".join(f"{k}={v:.3f}" for k, v in metrics.items()), flush=True
                )
                tracker.log(metrics, step=state["step"])
            if local % cfg.save_every == 0 or done:
                state["train_seconds"] = seconds0 + time.time() - start_time
                save_checkpoint(ema, cfg, out / "ckpt", state)
            if done:
                break
    tracker.finish()
    return state


def main(config: str, overrides: list[str] | None = None) -> dict:
    """Train the DiT of a training YAML (``interp train`` dispatches ``kind: lm`` files to :mod:`interp.lm.train`:
    :func:`interp.apps.train.main`)."""
    cfg = TrainConfig.from_yaml(config, overrides)
    return train(cfg, progress=os.isatty(1))


def pack_shards(ckpt: str | Path, dest: str | Path, max_bytes: int = 15 * 2**20) -> list[Path]:
    """Split a checkpoint's weights into safetensors shards of at most ``max_bytes`` (for size-limited transfers)."""
    weights = load_file(Path(ckpt) / "transformer" / "diffusion_pytorch_model.safetensors")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    shards, cur, size = [], {}, 0
    for k in sorted(weights):
        n = weights[k].numel() * weights[k].element_size()
        if cur and size + n > max_bytes:
            shards.append(cur)
            cur, size = {}, 0
        cur[k], size = weights[k], size + n
    shards.append(cur)
    paths = []
    for i, shard in enumerate(shards):
        paths.append(dest / f"shard{i}.safetensors")
        save_file(shard, paths[-1])
    for name in ("interp.json", "train_state.json", "train_config.yaml"):
        shutil.copy(Path(ckpt) / name, dest / name)
    shutil.copy(Path(ckpt) / "transformer" / "config.json", dest / "config.json")
    return paths


def unpack_shards(src: str | Path, ckpt: str | Path) -> Path:
    """Rebuild a checkpoint directory from :func:`pack_shards` output."""
    src, ckpt = Path(src), Path(ckpt)
    weights = {}
    for shard in sorted(src.glob("shard*.safetensors")):
        weights.update(load_file(shard))
    (ckpt / "transformer").mkdir(parents=True, exist_ok=True)
    save_file(weights, ckpt / "transformer" / "diffusion_pytorch_model.safetensors", metadata={"format": "pt"})
    shutil.copy(src / "config.json", ckpt / "transformer" / "config.json")
    for name in ("interp.json", "train_state.json", "train_config.yaml"):
        shutil.copy(src / name, ckpt / name)
    FlowMatchEulerDiscreteScheduler(shift=5.0).save_pretrained(ckpt / "scheduler")
    return ckpt

"""Training the reasoning organism (``interp.pipelines.organism``) on the task suite, in stages.

Stage ``vae``: the ``AutoencoderKLWan`` learns to reconstruct the suite's videos (L1 + MSE, changed pixels weighted
up, a small KL term), then the per-channel latent mean and std are measured and written into its config, as Wan's
own VAE config carries them. Stage ``dit``: with the VAE and the text encoder frozen, the ``WanTransformer3DModel``
learns rectified flow on the normalised latents, with the condition built exactly as
``WanImageToVideoPipeline.prepare_latents`` builds it and the prompt embedded by the pipeline's ``encode_prompt``;
the prompt is dropped (replaced by the empty negative prompt) with probability ``prompt_dropout`` so that
classifier-free guidance is meaningful. The text encoder stays at its seeded random initialisation, frozen, as a
real pipeline's pretrained T5 is frozen (it only has to keep the words apart).

Data is generated on the fly by CPU workers from the training stream of every task, rejecting held-out instances.
Every stage ends by publishing a complete pipeline directory (bf16 safetensors) plus ``train_state.json``; a later
run resumes from it (``resume_from``), continuing the step counters (the optimiser restarts with its warm-up).
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from pydantic import BaseModel, ConfigDict, Field

from interp.pipelines import evaluate as ev
from interp.pipelines import organism as org
from interp.pipelines.decode import encode_latents
from interp.tasks import suite
from interp.train import RunSpec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSpec(_Strict):
    tasks: dict[str, float] = {"loopmaze": 1.0, "goalmaze": 1.0, "permanence": 1.0, "mirror": 1.0}
    level_weights: list[float] = [1.0, 1.0, 1.0]  # easiest first; a task's levels beyond these are never trained
    heldout_n: int = 200  # held-out instances per level rejected from training
    seed: int = 1
    workers: int = 8


class VaeStage(_Strict):
    minutes: float = 4.0
    max_steps: int = 100000
    batch: int = 32
    lr: float = 1e-3
    warmup_steps: int = 100
    kl_weight: float = 1e-6
    changed_weight: float = 4.0
    stats_batches: int = 16


class DecoderStage(_Strict):
    """Fine-tune the VAE decoder alone (the encoder, hence the DiT's latent space, stays fixed), as
    Stable Diffusion's ft-MSE VAE did; latents get a little noise so the decoder tolerates generated ones."""

    minutes: float = 5.0
    max_steps: int = 100000
    batch: int = 32
    lr: float = 3e-4
    warmup_steps: int = 50
    latent_noise: float = 0.1  # in units of each channel's latent std
    salient_weight: float = 10.0  # pixels that are neither the open floor nor wall colour
    changed_weight: float = 4.0
    save_every_s: float = 60.0
    save_to: str | None = None  # also write the VAE here every save_every_s seconds


class VaeTuneStage(_Strict):
    """Fine-tune the whole VAE, encoder included, while holding the DiT's latent space where the DiT already works.

    A decoder alone cannot fix what the encoder lost (the order of a moving object's positions inside the frames
    that share a latent frame), so this stage trains both, and pulls the latents of every task outside
    ``free_tasks``, every first frame, and every image condition (the first frame followed by zeros, as
    ``prepare_latents`` builds it) to those of the VAE it starts from (a frozen copy). Only the free tasks' later
    latent frames may move; the DiT then learns those. The latent mean and std in the config stay as they are."""

    minutes: float = 4.0
    max_steps: int = 100000
    batch: int = 32
    lr: float = 2e-4
    warmup_steps: int = 50
    free_tasks: list[str] = ["permanence"]
    anchor_weight: float = 1.0  # on the squared error of normalised latents
    condition_share: float = 0.25  # the share of each batch also encoded as an image condition and anchored
    latent_noise: float = 0.1  # in units of each channel's latent std, as the decoder stage
    salient_weight: float = 10.0
    changed_weight: float = 8.0
    kl_weight: float = 1e-6


class DitStage(_Strict):
    minutes: float = 16.0
    max_steps: int = 1000000
    batch: int = 192
    lr: float = 3e-4
    warmup_steps: int = 300
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    final_lr_frac: float = 1.0  # cosine-decay the rate to this share of lr over the stage's minutes
    time_shift: float = 3.0
    prompt_dropout: float = 0.1
    changed_weight: float = 3.0  # loss weight of tokens whose block changes from the first frame
    compile: bool = True
    vae_bf16: bool = False  # encode the training latents in bf16 (faster) or float32 as inference does


class EvalSpec(_Strict):
    n: int = 100  # held-out instances per (task, level)
    steps: int = 50
    guidance: list[float] = [3.0, 1.0]
    batch: int = 400
    seed: int = 0
    ceiling_n: int = 50  # held-out instances per (task, level) for the VAE ceiling


class OrganismTrainConfig(_Strict):
    spec: org.OrganismSpec = Field(default_factory=org.OrganismSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    vae: VaeStage = Field(default_factory=VaeStage)
    decoder: DecoderStage = Field(default_factory=DecoderStage)
    vae_tune: VaeTuneStage = Field(default_factory=VaeTuneStage)
    dit: DitStage = Field(default_factory=DitStage)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    stages: list[str] = ["vae", "dit"]
    out: str = "runs/organism"
    resume_from: str | None = None
    device: str = "auto"
    log_every: int = 50

    # the trainers' one YAML loader: a file plus ``key.sub=value`` overrides (values parsed as YAML)
    from_yaml = classmethod(RunSpec.from_yaml.__func__)


# ---------------------------------------------------------------------------------------------------------------
# data


class SuiteBatches(torch.utils.data.IterableDataset):
    """Endless batches (videos uint8 (B, F, H, W, 3), prompt indices (B,), task indices (B,)) from the training
    stream; every worker has its own seed sequence, held-out instances are rejected."""

    def __init__(self, spec: DataSpec, batch: int, prompts: list[str], start_step: int = 0):
        self.spec, self.batch, self.prompts, self.start_step = spec, batch, prompts, start_step

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        rng = np.random.default_rng(
            np.random.SeedSequence([suite.TRAIN_STREAM, self.spec.seed, self.start_step, worker, workers])
        )
        names = list(self.spec.tasks)
        tasks = [suite.get_task(n) for n in names]
        p_task = np.array([self.spec.tasks[n] for n in names], dtype=float)
        p_task /= p_task.sum()
        reject = [suite.heldout_keys(t, self.spec.heldout_n) for t in tasks]
        pidx = {p: i for i, p in enumerate(self.prompts)}
        while True:
            vids, ps, ts = [], [], []
            while len(vids) < self.batch:
                ti = int(rng.choice(len(tasks), p=p_task))
                task = tasks[ti]
                w = np.array(self.spec.level_weights[: len(task.levels)], dtype=float)  # later levels: never trained
                level = task.levels[int(rng.choice(len(w), p=w / w.sum()))]
                inst = task.generate(level, rng)
                if task.key(inst) in reject[ti]:
                    continue
                vids.append(task.render(inst))
                ps.append(pidx[task.prompt(inst)])
                ts.append(ti)
            yield torch.from_numpy(np.stack(vids)), torch.tensor(ps), torch.tensor(ts)


def loader(spec: DataSpec, batch: int, prompts: list[str], start_step: int, device: torch.device):
    workers = spec.workers if device.type == "cuda" else 0
    return torch.utils.data.DataLoader(
        SuiteBatches(spec, batch, prompts, start_step),
        batch_size=None,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None,
        persistent_workers=bool(workers),
    )


def to_video_tensor(videos: torch.Tensor, device) -> torch.Tensor:
    """uint8 (B, F, H, W, 3) -> float (B, 3, F, H, W) in [-1, 1]."""
    return videos.to(device, non_blocking=True).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


def changed_pixels(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, F, H, W) bool: pixels that differ from the first frame."""
    return (x - x[:, :, :1]).abs().amax(1, keepdim=True) > 0.05


def changed_tokens(x: torch.Tensor, temporal: int = 4, block: int = suite.BLOCK) -> torch.Tensor:
    """(B, F', G, G) float: tokens (latent frame, block) whose pixels change from the first frame."""
    ch = changed_pixels(x).float()  # (B, 1, F, H, W)
    first, rest = ch[:, :, :1], ch[:, :, 1:]
    b, _, f, h, w = rest.shape
    rest = rest.view(b, 1, f // temporal, temporal, h, w).amax(3)
    ch = torch.cat([first, rest], dim=2)[:, 0]
    return F.max_pool2d(ch, block)


# ---------------------------------------------------------------------------------------------------------------
# latents and conditions, as the pipeline makes them


encode_videos = encode_latents  # normalised latents of videos in [-1, 1], as prepare_latents takes them


@torch.no_grad()
def conditions(vae, x: torch.Tensor, temporal: int = 4) -> torch.Tensor:
    """The I2V condition cat([mask, latent of (first frame, zeros...)]) of each video, as ``prepare_latents``."""
    video_condition = torch.cat([x[:, :, :1], torch.zeros_like(x[:, :, 1:])], dim=2)
    lat = encode_videos(vae, video_condition)
    b, _, f, h, w = lat.shape
    mask = torch.zeros(b, temporal, f, h, w, device=lat.device)
    mask[:, :, 0] = 1.0
    return torch.cat([mask, lat], dim=1)


def prompt_table(pipe, prompts: list[str], device) -> torch.Tensor:
    """(P, L, D): every prompt embedded once by the pipeline's own ``encode_prompt``."""
    with torch.no_grad():
        return torch.cat(
            [pipe.encode_prompt(p, do_classifier_free_guidance=False, device=device)[0] for p in prompts]
        ).float()


# ---------------------------------------------------------------------------------------------------------------
# stages


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_at(step: int, base: float, warmup: int, progress: float = 0.0, final_frac: float = 1.0) -> float:
    """Linear warmup over `warmup` steps, then a cosine from `base` to `final_frac * base` over the stage's
    time budget (`progress` is the elapsed share of it, 0..1); final_frac 1.0 keeps the rate constant."""
    cos = final_frac + (1.0 - final_frac) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))
    return base * min(1.0, (step + 1) / max(1, warmup)) * cos


def log(msg: str, path: Path | None = None) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if path is not None:
        with open(path, "a") as f:
            f.write(line + "\n")


def train_vae(pipe, cfg: OrganismTrainConfig, device, state: dict, logf: Path) -> None:
    s = cfg.vae
    vae = pipe.vae.to(device).float().train()
    opt = torch.optim.AdamW(vae.parameters(), lr=s.lr, betas=(0.9, 0.99), weight_decay=0.0)
    data = iter(loader(cfg.data, s.batch, org.all_prompts(), state.get("vae_steps", 0), device))
    amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    t0, step = time.time(), 0
    while step < s.max_steps and time.time() - t0 < s.minutes * 60:
        videos, _, _ = next(data)
        x = to_video_tensor(videos, device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, s.lr, s.warmup_steps)
        with torch.autocast(**amp):
            post = vae.encode(x).latent_dist
            rec = vae.decode(post.sample()).sample.float()
        w = 1.0 + s.changed_weight * changed_pixels(x).float()
        rec_loss = reconstruction_loss(rec, x, w)
        kl = post.kl().mean() / np.prod(x.shape[1:])
        loss = rec_loss + s.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        if step % cfg.log_every == 0:
            db = psnr(rec, x)
            log(
                f"vae step {step} loss {loss.item():.4f} rec {rec_loss.item():.4f} psnr {db:.2f} dB "
                f"{time.time() - t0:.0f}s",
                logf,
            )
    state["vae_steps"] = state.get("vae_steps", 0) + step
    state["vae_minutes"] = state.get("vae_minutes", 0.0) + (time.time() - t0) / 60
    # latent statistics, measured on fresh batches, written into the config as Wan's VAE carries them
    vae.eval()
    zs = []
    with torch.no_grad():
        for _ in range(s.stats_batches):
            videos, _, _ = next(data)
            zs.append(vae.encode(to_video_tensor(videos, device)).latent_dist.mode().float())
    z = torch.cat(zs)
    mean = z.mean(dim=(0, 2, 3, 4)).tolist()
    std = z.std(dim=(0, 2, 3, 4)).clamp_min(1e-3).tolist()
    vae.register_to_config(latents_mean=[round(v, 5) for v in mean], latents_std=[round(v, 5) for v in std])
    log(f"vae done: {step} steps; latent mean {np.round(mean, 3).tolist()} std {np.round(std, 3).tolist()}", logf)


def reconstruction_loss(rec: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The VAE stages' loss: L1 + MSE per pixel, weighted by ``w``."""
    err = rec - x
    return (w * (err.abs() + err.pow(2))).mean()


def psnr(rec: torch.Tensor, x: torch.Tensor) -> float:
    """PSNR in dB of a reconstruction of videos in [-1, 1]."""
    with torch.no_grad():
        return -10 * math.log10(float(((rec.clamp(-1, 1) - x) / 2).pow(2).mean()) + 1e-12)


def pixel_weights(x: torch.Tensor, salient: float, changed: float) -> torch.Tensor:
    """1 + ``salient`` on pixels of neither background colour + ``changed`` on pixels that change from frame 0."""
    return 1.0 + salient * salient_pixels(x).float() + changed * changed_pixels(x).float()


def salient_pixels(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, F, H, W) bool: pixels of neither background colour (the open floor, the walls)."""
    out = torch.ones_like(x[:, :1], dtype=torch.bool)
    for name in ("open", "wall"):
        c = torch.tensor(suite.COLORS[name], dtype=x.dtype, device=x.device).view(1, 3, 1, 1, 1) / 127.5 - 1
        out &= (x - c).abs().amax(1, keepdim=True) > 0.1
    return out


def save_vae(vae, path: Path) -> None:
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    copy = org.build_vae(cfg_spec_of(vae))
    copy.register_to_config(latents_mean=vae.config.latents_mean, latents_std=vae.config.latents_std)
    copy.load_state_dict(vae.state_dict())
    copy.to(torch.bfloat16).save_pretrained(tmp)
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def cfg_spec_of(vae) -> org.OrganismSpec:
    c = vae.config
    return org.OrganismSpec(
        vae_base_dim=c.base_dim, vae_dim_mult=list(c.dim_mult), vae_res_blocks=c.num_res_blocks, z_dim=c.z_dim
    )


def train_decoder(pipe, cfg: OrganismTrainConfig, device, state: dict, logf: Path) -> None:
    s = cfg.decoder
    vae = pipe.vae.to(device).float()
    vae.requires_grad_(False)
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=s.lr, betas=(0.9, 0.99), weight_decay=0.0)
    data = iter(loader(cfg.data, s.batch, org.all_prompts(), state.get("decoder_steps", 0), device))
    std = torch.tensor(vae.config.latents_std, device=device).view(1, -1, 1, 1, 1)
    amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    t0, step, last_save = time.time(), 0, time.time()
    while step < s.max_steps and time.time() - t0 < s.minutes * 60:
        videos, _, _ = next(data)
        x = to_video_tensor(videos, device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, s.lr, s.warmup_steps)
        with torch.no_grad():
            vae.eval()
            z = vae.encode(x).latent_dist.mode()
            z = z + s.latent_noise * std * torch.randn_like(z)
        vae.train()
        with torch.autocast(**amp):
            rec = vae.decode(z).sample.float()
        w = pixel_weights(x, s.salient_weight, s.changed_weight)
        loss = reconstruction_loss(rec, x, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % cfg.log_every == 0:
            db = psnr(rec, x)
            log(f"decoder step {step} loss {loss.item():.4f} psnr {db:.2f} dB {time.time() - t0:.0f}s", logf)
        if s.save_to and time.time() - last_save > s.save_every_s:
            save_vae(vae, Path(s.save_to))
            last_save = time.time()
    vae.eval().requires_grad_(False)
    state["decoder_steps"] = state.get("decoder_steps", 0) + step
    state["decoder_minutes"] = state.get("decoder_minutes", 0.0) + (time.time() - t0) / 60
    if s.save_to:
        save_vae(vae, Path(s.save_to))
    log(f"decoder done: {step} steps", logf)


def held_latents(free: torch.Tensor, n_cond: int, like: torch.Tensor) -> torch.Tensor:
    """(B + n_cond, 1, F', h, w) 0/1: the latents :class:`VaeTuneStage` holds to the reference VAE's. ``free`` (B,)
    bool marks the samples of free tasks: their latent frames after the first may move; the first latent frame of
    every video and all of the ``n_cond`` image conditions (the last rows of ``like``) are held."""
    hold = torch.ones_like(like[:, :1])
    hold[: len(free)] = (~free).to(like.dtype).view(-1, 1, 1, 1, 1)
    hold[:, :, :1] = 1.0
    return hold


def train_vae_tune(pipe, cfg: OrganismTrainConfig, device, state: dict, logf: Path) -> None:
    s = cfg.vae_tune
    names = list(cfg.data.tasks)
    unknown = sorted(set(s.free_tasks) - set(names))
    if unknown:
        raise ValueError(f"vae_tune.free_tasks {unknown} are not in data.tasks {names}")
    free = torch.tensor([n in s.free_tasks for n in names], device=device)
    vae = pipe.vae.to(device).float()
    ref = copy.deepcopy(vae).eval().requires_grad_(False)
    vae.requires_grad_(True)
    params = list(vae.parameters())
    opt = torch.optim.AdamW(params, lr=s.lr, betas=(0.9, 0.99), weight_decay=0.0)
    data = iter(loader(cfg.data, s.batch, org.all_prompts(), state.get("vae_tune_steps", 0), device))
    std = torch.tensor(vae.config.latents_std, device=device).view(1, -1, 1, 1, 1)
    amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    n_cond = max(1, round(s.condition_share * s.batch))
    t0, step = time.time(), 0
    while step < s.max_steps and time.time() - t0 < s.minutes * 60:
        videos, _, tasks = next(data)
        x = to_video_tensor(videos, device)
        xc = torch.cat([x[:n_cond, :, :1], torch.zeros_like(x[:n_cond, :, 1:])], dim=2)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, s.lr, s.warmup_steps)
        vae.train()
        with torch.no_grad():
            mu_ref = ref.encode(torch.cat([x, xc])).latent_dist.mode()
        with torch.autocast(**amp):
            post = vae.encode(torch.cat([x, xc])).latent_dist
            mu = post.mode().float()
            z = mu[: len(x)] + s.latent_noise * std * torch.randn_like(mu[: len(x)])
            rec = vae.decode(z).sample.float()
        hold = held_latents(free[tasks.to(device)], n_cond, mu)
        anchor = (hold * ((mu - mu_ref) / std).pow(2)).sum() / (hold.sum() * mu.shape[1])
        w = pixel_weights(x, s.salient_weight, s.changed_weight)
        rec_loss = reconstruction_loss(rec, x, w)
        kl = post.kl().mean() / np.prod(x.shape[1:])
        loss = rec_loss + s.anchor_weight * anchor + s.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % cfg.log_every == 0:
            db = psnr(rec, x)
            log(
                f"vae_tune step {step} loss {loss.item():.4f} rec {rec_loss.item():.4f} anchor {anchor.item():.5f} "
                f"psnr {db:.2f} dB {time.time() - t0:.0f}s",
                logf,
            )
    vae.eval().requires_grad_(False)
    state["vae_tune_steps"] = state.get("vae_tune_steps", 0) + step
    state["vae_tune_minutes"] = state.get("vae_tune_minutes", 0.0) + (time.time() - t0) / 60
    log(f"vae_tune done: {step} steps", logf)
    ceiling = ev.vae_ceiling(pipe, names, n=cfg.eval.ceiling_n, seed=cfg.eval.seed, device=device)
    log("VAE ceiling after vae_tune (held-out ground truth through the VAE, scored):\n" + ev.table(ceiling), logf)


def train_dit(pipe, cfg: OrganismTrainConfig, device, state: dict, logf: Path, out: Path) -> None:
    s = cfg.dit
    prompts = org.all_prompts()
    pipe.vae.to(device).float().eval().requires_grad_(False)
    pipe.text_encoder.to(device).float().eval().requires_grad_(False)
    table = prompt_table(pipe, prompts + [""], device)  # the last row: the empty negative prompt
    null = len(prompts)
    model = pipe.transformer.to(device).float().train()
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    live = model.state_dict()  # views of the parameters, updated in place by the optimiser
    ema_f = [ema[k] for k, v in live.items() if v.dtype.is_floating_point]
    live_f = [v for v in live.values() if v.dtype.is_floating_point]
    decay_params = [p for n, p in model.named_parameters() if p.ndim >= 2]
    other = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay_params, "weight_decay": s.weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=s.lr,
        betas=s.betas,
    )
    fwd = model
    if s.compile and device.type == "cuda":
        fwd = torch.compile(model)
    amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    start = state.get("dit_steps", 0)
    data = iter(loader(cfg.data, s.batch, prompts, start, device))
    gen = torch.Generator(device=device).manual_seed(cfg.data.seed * 1000003 + start)
    t0, step, losses = time.time(), 0, []
    while step < s.max_steps and time.time() - t0 < s.minutes * 60:
        videos, pidx, _ = next(data)
        x = to_video_tensor(videos, device)
        with torch.autocast(**{**amp, "enabled": amp["enabled"] and s.vae_bf16}):
            z0 = encode_videos(pipe.vae, x)
            cond = conditions(pipe.vae, x)
        z0, cond = z0.float(), cond.float()
        tok_w = 1.0 + s.changed_weight * changed_tokens(x)  # (B, F', G, G)
        b = z0.shape[0]
        u = torch.sigmoid(torch.randn(b, device=device, generator=gen))
        sigma = s.time_shift * u / (1 + (s.time_shift - 1) * u)
        eps = torch.randn(z0.shape, device=device, generator=gen)
        sig = sigma.view(b, 1, 1, 1, 1)
        x_t = (1 - sig) * z0 + sig * eps
        pidx = pidx.to(device)
        drop = torch.rand(b, device=device, generator=gen) < s.prompt_dropout
        text = table[torch.where(drop, torch.full_like(pidx, null), pidx)]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, s.lr, s.warmup_steps, (time.time() - t0) / (s.minutes * 60), s.final_lr_frac)

        def loss_of(f):
            with torch.autocast(**amp):
                pred = f(
                    hidden_states=torch.cat([x_t, cond], dim=1),
                    timestep=sigma * 1000,
                    encoder_hidden_states=text,
                    return_dict=False,
                )[0].float()
            err = (pred - (eps - z0)).pow(2).mean(1)  # (B, F', H', W')
            w = F.interpolate(tok_w, scale_factor=2, mode="nearest")  # tokens are 2x2 latents
            return (w * err).sum() / w.sum()

        opt.zero_grad(set_to_none=True)
        if step == 0 and fwd is not model:
            try:  # a compile failure must not cost the run: fall back to eager
                loss = loss_of(fwd)
                loss.backward()
                log(f"compiled first step in {time.time() - t0:.0f}s", logf)
            except Exception as e:  # noqa: BLE001
                log(f"torch.compile failed ({type(e).__name__}: {str(e)[:200]}); training eagerly", logf)
                fwd = model
                opt.zero_grad(set_to_none=True)
                loss = loss_of(fwd)
                loss.backward()
        else:
            loss = loss_of(fwd)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
        opt.step()
        with torch.no_grad():
            d = min(s.ema_decay, (1 + step) / (10 + step))
            torch._foreach_lerp_(ema_f, live_f, 1 - d)
        step += 1
        losses.append(loss.detach())
        if step % cfg.log_every == 0:
            mean_loss = torch.stack(losses).mean().item()
            losses = []
            log(
                f"dit step {start + step} loss {mean_loss:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                f"{step / (time.time() - t0):.2f} it/s {time.time() - t0:.0f}s",
                logf,
            )
    state["dit_steps"] = start + step
    state["dit_minutes"] = state.get("dit_minutes", 0.0) + (time.time() - t0) / 60
    model.load_state_dict(ema)
    model.eval()
    log(f"dit done: {step} steps this stage ({state['dit_steps']} in all)", logf)


def evaluate_stage(pipe, cfg: OrganismTrainConfig, device, out: Path, logf: Path) -> None:
    """Held-out success per (task, level) at each guidance scale, written to ``<out>/eval.json``."""
    pipe.to(device)
    for n in ("vae", "text_encoder", "transformer"):
        getattr(pipe, n).float().eval()
    e = cfg.eval
    results = {}
    for g in e.guidance:
        rows = ev.evaluate(
            pipe,
            list(cfg.data.tasks),
            n=e.n,
            steps=e.steps,
            guidance=g,
            batch=e.batch,
            seed=e.seed,
            device=device,
            log=lambda m: log(m, logf),
        )
        results[str(g)] = rows
        log(f"held-out, {e.steps} steps, guidance {g}:\n" + ev.table(rows), logf)
        (out / "eval.json").write_text(
            json.dumps({"steps": e.steps, "n": e.n, "seed": e.seed, "results": results}, indent=1)
        )
    ceiling = ev.vae_ceiling(pipe, list(cfg.data.tasks), n=e.ceiling_n, seed=e.seed, device=device)
    log("VAE ceiling (held-out ground truth through the VAE, scored):\n" + ev.table(ceiling), logf)
    (out / "vae_ceiling.json").write_text(
        json.dumps(
            {"what": "VAE round trip of held-out ground truth, scored", "n": e.ceiling_n, "results": ceiling}, indent=1
        )
    )


def pin_tokenizer_class(path: Path) -> None:
    """Name the tokenizer ``PreTrainedTokenizerFast`` in the saved pipeline, whatever transformers wrote.

    transformers 5 saves a ``tokenizers``-backed tokenizer as ``TokenizersBackend``, a class transformers 4 lacks;
    ``PreTrainedTokenizerFast`` loads the same ``tokenizer.json`` in both, so the shipped directory names it.
    """
    index = json.loads((path / "model_index.json").read_text())
    index["tokenizer"] = ["transformers", "PreTrainedTokenizerFast"]
    index.pop("_name_or_path", None)
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
    tc = path / "tokenizer" / "tokenizer_config.json"
    conf = json.loads(tc.read_text())
    conf["tokenizer_class"] = "PreTrainedTokenizerFast"
    tc.write_text(json.dumps(conf, indent=2))


def save(pipe, out: Path, cfg: OrganismTrainConfig, state: dict) -> Path:
    """Publish the pipeline directory in bf16 (partial directory, then rename)."""
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    dtypes = {n: getattr(pipe, n).dtype for n in ("vae", "text_encoder", "transformer")}
    for n in dtypes:
        getattr(pipe, n).to(torch.bfloat16)
    pipe.save_pretrained(tmp, max_shard_size="15MB")
    pin_tokenizer_class(tmp)
    for n, dt in dtypes.items():
        getattr(pipe, n).to(dt)
    (tmp / "train_state.json").write_text(json.dumps(state, indent=1))
    (tmp / "train_config.yaml").write_text(yaml.safe_dump(json.loads(cfg.model_dump_json()), sort_keys=False))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def train(cfg: OrganismTrainConfig) -> dict:
    device = resolve_device(cfg.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    logf = out.parent / f"{out.name}.log"
    if cfg.resume_from:
        pipe = org.load_pipeline(cfg.resume_from)
        state = json.loads((Path(cfg.resume_from) / "train_state.json").read_text())
    else:
        pipe = org.build_pipeline(cfg.spec)
        state = {}
    state.setdefault("stages", [])
    log(
        f"organism: te {org.n_params(pipe.text_encoder) / 1e6:.2f}M vae {org.n_params(pipe.vae) / 1e6:.2f}M "
        f"dit {org.n_params(pipe.transformer) / 1e6:.2f}M on {device}",
        logf,
    )
    for stage in cfg.stages:
        if stage == "vae":
            train_vae(pipe, cfg, device, state, logf)
        elif stage == "dit":
            train_dit(pipe, cfg, device, state, logf, out)
        elif stage == "decoder":
            train_decoder(pipe, cfg, device, state, logf)
        elif stage == "vae_tune":
            train_vae_tune(pipe, cfg, device, state, logf)
        elif stage == "eval":
            evaluate_stage(pipe, cfg, device, out, logf)
            continue
        else:
            raise ValueError(f"unknown stage {stage!r}; stages: ['vae', 'decoder', 'vae_tune', 'dit', 'eval']")
        state["stages"].append(stage)
        save(pipe, out, cfg, state)
        log(f"saved {out} after stage {stage}", logf)
    return state


def main(config: str, overrides: list[str] | None = None) -> dict:
    return train(OrganismTrainConfig.from_yaml(config, overrides))


if __name__ == "__main__":
    import sys

    main(sys.argv[1], sys.argv[2:])

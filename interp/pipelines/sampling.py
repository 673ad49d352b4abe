"""Batched image-to-video sampling through a ``WanImageToVideoPipeline``'s own components.

The pipeline's ``__call__`` takes one image per call. :func:`sample_i2v` runs the same steps for a batch of
(image, prompt) pairs: prompts are encoded once each with the pipeline's ``encode_prompt``, images preprocessed by
its ``video_processor`` and conditioned by its ``prepare_latents`` (one image at a time, as the pipeline does), the
loop runs the pipeline's scheduler with the conditional and unconditional forwards of classifier-free guidance, and
the final latents are de-normalised and decoded by its VAE exactly as ``__call__`` does.

Seed convention: sample i draws its initial noise from ``torch.Generator().manual_seed(seed + i)``, so sample i of a
batch equals ``pipe(image=images[i], prompt=prompts[i], generator=torch.Generator().manual_seed(seed + i))``.

Looking inside the loop: ``on_step`` is called at every step with an :class:`I2VStep` (the latents, the guided
velocity and the flow-matching x0 prediction ``latents - sigma * v``), and ``keep_x0_steps`` decodes x0 of the chosen
steps through the VAE exactly as the final latents are decoded (only those steps: decoding costs about as much as
a forward). ``timings`` (a dict) receives the seconds spent encoding prompts, conditioning images, denoising and
decoding.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import WanImageToVideoPipeline
from PIL import Image

from interp.pipelines.decode import denormalize


@dataclass
class I2VConditioning:
    prompt_embeds: torch.Tensor  # (B, L, text_dim)
    negative_embeds: torch.Tensor | None  # (B, L, text_dim) or None without guidance
    condition: torch.Tensor  # (B, mask + z, F', H', W')
    latent_shape: tuple[int, ...]


@dataclass
class I2VStep:
    """One denoising step as ``on_step`` sees it (before the scheduler moves the latents)."""

    step: int  # 0-based index into the scheduler's timesteps
    timestep: torch.Tensor
    sigma: float  # the flow-matching noise level of ``latents``
    latents: torch.Tensor  # (B, z, F', H', W') normalised latents at this step
    velocity: torch.Tensor  # (B, z, F', H', W') guided prediction
    x0: torch.Tensor  # latents - sigma * velocity: the clean latents the model predicts now


def encode_prompts(
    pipe: WanImageToVideoPipeline, prompts: list[str], device, max_sequence_length: int = 512
) -> torch.Tensor:
    """(B, L, D) prompt embeddings, each distinct prompt encoded once by the pipeline's ``encode_prompt``."""
    cache: dict[str, torch.Tensor] = {}
    for p in dict.fromkeys(prompts):
        emb, _ = pipe.encode_prompt(
            p, do_classifier_free_guidance=False, max_sequence_length=max_sequence_length, device=device
        )
        cache[p] = emb
    return torch.cat([cache[p] for p in prompts])


def condition_images(
    pipe: WanImageToVideoPipeline, images: list, num_frames: int, height: int, width: int, device
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """The channel-concatenated condition (mask, image latent) of each image, through ``prepare_latents``."""
    conds = []
    shape = None
    for img in images:
        if isinstance(img, np.ndarray):
            img = Image.fromarray(img)
        x = pipe.video_processor.preprocess(img, height=height, width=width).to(device, dtype=torch.float32)
        lat, cond = pipe.prepare_latents(
            x, 1, pipe.vae.config.z_dim, height, width, num_frames, torch.float32, device, None, None, None
        )
        shape = tuple(lat.shape[1:])
        conds.append(cond)
    return torch.cat(conds), shape


def prepare(
    pipe: WanImageToVideoPipeline,
    images: list,
    prompts: list[str],
    num_frames: int,
    height: int,
    width: int,
    guidance_scale: float,
    negative_prompt: str = "",
    device="cpu",
    max_sequence_length: int = 512,
    timings: dict | None = None,
) -> I2VConditioning:
    if len(images) != len(prompts):
        raise ValueError(f"got {len(images)} images and {len(prompts)} prompts: give one prompt per image")
    t0 = time.perf_counter()
    emb = encode_prompts(pipe, prompts, device, max_sequence_length)
    neg = (
        encode_prompts(pipe, [negative_prompt] * len(prompts), device, max_sequence_length)
        if guidance_scale > 1.0
        else None
    )
    t1 = time.perf_counter()
    cond, shape = condition_images(pipe, images, num_frames, height, width, device)
    if timings is not None:
        timings["prompt_encoding"] = timings.get("prompt_encoding", 0.0) + t1 - t0
        timings["conditioning"] = timings.get("conditioning", 0.0) + time.perf_counter() - t1
    return I2VConditioning(emb, neg, cond, (len(images), *shape))


def initial_noise(shape: tuple[int, ...], seed: int, device) -> torch.Tensor:
    return torch.cat(
        [torch.randn((1, *shape[1:]), generator=torch.Generator().manual_seed(seed + i)) for i in range(shape[0])]
    ).to(device)


def decode(pipe: WanImageToVideoPipeline, latents: torch.Tensor) -> np.ndarray:
    """Final latents -> uint8 video (B, F, H, W, 3), de-normalised as ``__call__`` does."""
    video = pipe.vae.decode(denormalize(pipe.vae, latents), return_dict=False)[0]
    video = pipe.video_processor.postprocess_video(video, output_type="np")  # (B, F, H, W, 3) float in [0, 1]
    return np.round(np.asarray(video) * 255).clip(0, 255).astype(np.uint8)


@torch.no_grad()
def sample_i2v(
    pipe: WanImageToVideoPipeline,
    images: list,
    prompts: list[str],
    num_inference_steps: int = 50,
    guidance_scale: float = 1.0,
    seed: int = 0,
    num_frames: int = 9,
    height: int = 96,
    width: int = 96,
    negative_prompt: str = "",
    device="cpu",
    batch_cfg: bool = False,
    return_latents: bool = False,
    on_step: Callable[[I2VStep], None] | None = None,
    keep_x0_steps: Sequence[int] | None = None,
    timings: dict | None = None,
):
    """Videos (B, F, H, W, 3) uint8 for (image, prompt) pairs; equal to the pipeline's ``__call__`` per sample.

    ``batch_cfg`` runs the conditional and unconditional forwards as one batch of 2B (faster on a GPU; the
    arithmetic then differs from ``__call__`` by float rounding only).

    ``on_step(I2VStep)`` is called at every step; ``keep_x0_steps`` (step indices, negative ones count from the end)
    decodes the x0 prediction of those steps. Returns ``video``; with ``keep_x0_steps``, ``(video, x0_videos)`` where
    ``x0_videos`` is uint8 (B, len(keep_x0_steps), F, H, W, 3) in the order given; ``return_latents`` appends the
    final latents to either.
    """
    c = prepare(
        pipe, images, prompts, num_frames, height, width, guidance_scale, negative_prompt, device, timings=timings
    )
    t_loop = time.perf_counter()
    model = pipe.transformer
    dtype = model.dtype
    latents = initial_noise(c.latent_shape, seed, device)
    pipe.scheduler.set_timesteps(num_inference_steps, device=device)
    timesteps = pipe.scheduler.timesteps
    n_steps = len(timesteps)
    keep = [int(s) % n_steps if -n_steps <= int(s) < n_steps else None for s in (keep_x0_steps or [])]
    if None in keep:
        raise ValueError(f"keep_x0_steps {list(keep_x0_steps)}: steps are 0..{n_steps - 1} (or negative from the end)")
    kept: dict[int, torch.Tensor] = {}
    for i, t in enumerate(timesteps):
        x_in = torch.cat([latents, c.condition], dim=1).to(dtype)
        ts = t.expand(latents.shape[0])
        if c.negative_embeds is not None and batch_cfg:
            both = model(
                hidden_states=torch.cat([x_in, x_in]),
                timestep=torch.cat([ts, ts]),
                encoder_hidden_states=torch.cat([c.prompt_embeds, c.negative_embeds]).to(dtype),
                return_dict=False,
            )[0]
            cond, uncond = both.chunk(2)
            pred = uncond + guidance_scale * (cond - uncond)
        else:
            pred = model(
                hidden_states=x_in, timestep=ts, encoder_hidden_states=c.prompt_embeds.to(dtype), return_dict=False
            )[0]
            if c.negative_embeds is not None:
                uncond = model(
                    hidden_states=x_in,
                    timestep=ts,
                    encoder_hidden_states=c.negative_embeds.to(dtype),
                    return_dict=False,
                )[0]
                pred = uncond + guidance_scale * (pred - uncond)
        if on_step is not None or i in keep:
            sigma = float(pipe.scheduler.sigmas[i])
            x0 = latents - sigma * pred.to(latents.dtype)
            if i in keep:
                kept[i] = x0
            if on_step is not None:
                on_step(I2VStep(i, t, sigma, latents, pred, x0))
        latents = pipe.scheduler.step(pred, t, latents, return_dict=False)[0]
    t_dec = time.perf_counter()
    video = decode(pipe, latents)
    x0_videos = np.zeros((video.shape[0], 0, *video.shape[1:]), dtype=np.uint8)
    if keep:
        b = latents.shape[0]
        stacked = torch.cat([kept[s] for s in keep])  # (len(keep) * B, ...), step-major
        x0_videos = decode(pipe, stacked).reshape(len(keep), b, *video.shape[1:]).swapaxes(0, 1)
    if timings is not None:
        timings["denoising"] = timings.get("denoising", 0.0) + t_dec - t_loop
        timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - t_dec
    out = (video,) + ((x0_videos,) if keep_x0_steps is not None else ()) + ((latents,) if return_latents else ())
    return out[0] if len(out) == 1 else out

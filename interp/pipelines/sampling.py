"""Batched image-to-video sampling through a ``WanImageToVideoPipeline``'s own components.

The pipeline's ``__call__`` takes one image per call. :func:`sample_i2v` runs the same steps for a batch of
(image, prompt) pairs: prompts are encoded once each with the pipeline's ``encode_prompt``, images preprocessed by
its ``video_processor`` and conditioned by its ``prepare_latents`` (one image at a time, as the pipeline does), the
loop runs the pipeline's scheduler with the conditional and unconditional forwards of classifier-free guidance, and
the final latents are de-normalised and decoded by its VAE exactly as ``__call__`` does.

Seed convention: sample i draws its initial noise from ``torch.Generator().manual_seed(seed + i)``, so sample i of a
batch equals ``pipe(image=images[i], prompt=prompts[i], generator=torch.Generator().manual_seed(seed + i))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import WanImageToVideoPipeline
from PIL import Image


@dataclass
class I2VConditioning:
    prompt_embeds: torch.Tensor  # (B, L, text_dim)
    negative_embeds: torch.Tensor | None  # (B, L, text_dim) or None without guidance
    condition: torch.Tensor  # (B, mask + z, F', H', W')
    latent_shape: tuple[int, ...]


def encode_prompts(pipe: WanImageToVideoPipeline, prompts: list[str], device, max_sequence_length: int = 512) -> torch.Tensor:
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
) -> I2VConditioning:
    if len(images) != len(prompts):
        raise ValueError(f"got {len(images)} images and {len(prompts)} prompts: give one prompt per image")
    emb = encode_prompts(pipe, prompts, device, max_sequence_length)
    neg = encode_prompts(pipe, [negative_prompt] * len(prompts), device, max_sequence_length) if guidance_scale > 1.0 else None
    cond, shape = condition_images(pipe, images, num_frames, height, width, device)
    return I2VConditioning(emb, neg, cond, (len(images), *shape))


def initial_noise(shape: tuple[int, ...], seed: int, device) -> torch.Tensor:
    return torch.cat(
        [torch.randn((1, *shape[1:]), generator=torch.Generator().manual_seed(seed + i)) for i in range(shape[0])]
    ).to(device)


def decode(pipe: WanImageToVideoPipeline, latents: torch.Tensor) -> np.ndarray:
    """Final latents -> uint8 video (B, F, H, W, 3), de-normalised as ``__call__`` does."""
    vae = pipe.vae
    latents = latents.to(device=next(vae.parameters()).device, dtype=vae.dtype)
    mean = torch.tensor(vae.config.latents_mean).view(1, vae.config.z_dim, 1, 1, 1).to(latents.device, latents.dtype)
    std = 1.0 / torch.tensor(vae.config.latents_std).view(1, vae.config.z_dim, 1, 1, 1).to(latents.device, latents.dtype)
    video = vae.decode(latents / std + mean, return_dict=False)[0]
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
):
    """Videos (B, F, H, W, 3) uint8 for (image, prompt) pairs; equal to the pipeline's ``__call__`` per sample.

    ``batch_cfg`` runs the conditional and unconditional forwards as one batch of 2B (faster on a GPU; the
    arithmetic then differs from ``__call__`` by float rounding only).
    """
    c = prepare(pipe, images, prompts, num_frames, height, width, guidance_scale, negative_prompt, device)
    model = pipe.transformer
    dtype = model.dtype
    latents = initial_noise(c.latent_shape, seed, device)
    pipe.scheduler.set_timesteps(num_inference_steps, device=device)
    for t in pipe.scheduler.timesteps:
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
            pred = model(hidden_states=x_in, timestep=ts, encoder_hidden_states=c.prompt_embeds.to(dtype), return_dict=False)[0]
            if c.negative_embeds is not None:
                uncond = model(
                    hidden_states=x_in, timestep=ts, encoder_hidden_states=c.negative_embeds.to(dtype), return_dict=False
                )[0]
                pred = uncond + guidance_scale * (pred - uncond)
        latents = pipe.scheduler.step(pred, t, latents, return_dict=False)[0]
    video = decode(pipe, latents)
    return (video, latents) if return_latents else video

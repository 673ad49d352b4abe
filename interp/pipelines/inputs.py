"""Prompts and images -> :class:`~interp.trajectory.TrajectoryInputs`, through the pipeline's own methods.

For the Wan family (``WanPipeline``: text-to-video; ``WanImageToVideoPipeline``: Wan2.1 I2V with CLIP image
embeddings, Wan2.2 A14B's two experts, Wan2.2 TI2V-5B's ``expand_timesteps``; ``SkyReelsV2Pipeline`` and
``SkyReelsV2ImageToVideoPipeline`` the same way; ``WanVACEPipeline``: :func:`_wan_vace_inputs`), ``MochiPipeline``
(:func:`_mochi_inputs`), ``HunyuanVideo15Pipeline`` (:func:`_hunyuan15_inputs`), CogVideoX (``CogVideoXPipeline``,
``CogVideoXImageToVideoPipeline``: :func:`_cogvideox_inputs`), LTX-Video (``LTXPipeline``,
``LTXImageToVideoPipeline``: :func:`_ltx_inputs`), ``HunyuanVideoPipeline`` (:func:`_hunyuan_inputs`) and
``LTX2Pipeline`` / ``LTX2ImageToVideoPipeline`` (video and audio: :mod:`interp.pipelines.ltx2`),
:func:`encode_inputs` does what the pipeline's ``__call__`` does before its loop, with the same knobs and
names (``num_frames``, ``height`` and
``width`` in pixels, ``guidance_scale``, ``negative_prompt``, ``max_sequence_length``):

- ``num_frames`` rounded to ``4k + 1`` and ``height`` / ``width`` to the patchification multiple, with the
  pipeline's warnings;
- every distinct prompt (and the negative prompt) encoded once with ``encode_prompt``; every distinct image once with
  ``encode_image`` (Wan2.1, when the transformer has ``image_dim``);
- images preprocessed by ``video_processor.preprocess(image, height, width)`` (an image of another size is resized,
  with a warning) and conditioned by ``prepare_latents``.

Seed convention (as :mod:`interp.pipelines.sampling`): sample i draws its initial noise inside ``prepare_latents``
from ``torch.Generator().manual_seed(seed + i)``, so sample i equals the pipeline's own
``pipe(prompt=prompts[i], image=images[i], generator=torch.Generator().manual_seed(seed + i))``; with one sample,
``--seed S`` is exactly ``generator=torch.Generator().manual_seed(S)``.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from interp.adapters import TextConditioning
from interp.pipelines.components import SUPPORTED_PIPELINES, PipelineError, PipelineModel
from interp.trajectory import TrajectoryInputs


@dataclass
class PipelineInputs:
    """What one batch of prompts / images became: the loop's inputs and what the capture records about them."""

    trajectory: TrajectoryInputs
    prompts: list[str]
    negative_prompt: str | None
    image_digests: list[str] = field(default_factory=list)
    num_frames: int = 0
    height: int = 0
    width: int = 0
    images: np.ndarray | None = None  # (B, H, W, 3) uint8: the images as the pipeline saw them (preprocessed)
    # the scale of the loop's classifier-free guidance (cond / uncond forwards): ``guidance_scale``, except for
    # HunyuanVideo, whose ``guidance_scale`` is embedded in the model and whose CFG is ``true_cfg_scale``
    # (None: as given)
    loop_guidance: float | None = None
    knobs: dict | None = None  # the pipeline's other __call__ knobs as resolved (LTX-2's guidance terms)


def load_image(img) -> Image.Image:
    """A path, PIL image or (H, W, 3) uint8 array -> an RGB PIL image."""
    if isinstance(img, (str, Path)):
        p = Path(img)
        if not p.is_file():
            raise PipelineError(f"image {str(p)!r} does not exist")
        return Image.open(p).convert("RGB")
    if isinstance(img, np.ndarray):
        return Image.fromarray(img.astype(np.uint8)).convert("RGB")
    if isinstance(img, Image.Image):
        return img.convert("RGB")
    raise PipelineError(f"an image is a file path, a PIL image or an (H, W, 3) uint8 array, not {type(img).__name__}")


def image_digest(img: Image.Image) -> str:
    """sha256 of an RGB image's size and pixels (independent of the file format it came in)."""
    a = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return hashlib.sha256(f"{a.shape}".encode() + a.tobytes()).hexdigest()


def pipeline_sizes(pipe, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
    """``__call__``'s own rounding of (num_frames, height, width), with its warnings."""
    tf, sf = vae_ratios(pipe)
    if num_frames % tf != 1:
        warnings.warn(f"num_frames - 1 has to be divisible by {tf}: {num_frames} -> "
                      f"{num_frames // tf * tf + 1} (as the pipeline rounds it)", stacklevel=4)  # fmt: skip
        num_frames = num_frames // tf * tf + 1
    num_frames = max(num_frames, 1)
    t = pipe.transformer if getattr(pipe, "transformer", None) is not None else pipe.transformer_2
    ps = t.config.patch_size
    ph, pw = (ps, ps) if isinstance(ps, int) else (ps[1], ps[2])  # CogVideoX: one int; Wan: (t, h, w)
    hm, wm = sf * ph, sf * pw
    h, w = height // hm * hm, width // wm * wm
    if (h, w) != (height, width):
        warnings.warn(f"height and width must be multiples of ({hm}, {wm}): ({height}, {width}) -> ({h}, {w}) "
                      "(as the pipeline adjusts them)", stacklevel=4)  # fmt: skip
    if h <= 0 or w <= 0:
        raise PipelineError(f"height {height} and width {width} are below one patch ({hm} x {wm} pixels)")
    return num_frames, h, w


def check_inputs(pm: PipelineModel, prompts: list[str] | None, images: list | None) -> None:
    """One clear error for inputs this pipeline cannot take (before anything is loaded into the loop or written)."""
    if pm.pipeline_class not in SUPPORTED_PIPELINES:
        raise PipelineError(f"pipeline class {pm.pipeline_class} takes no prompts in interp yet; supported: "
                            f"{', '.join(SUPPORTED_PIPELINES)}")  # fmt: skip
    if not prompts:
        raise PipelineError("no prompt given: pass at least one (--prompt P)")
    i2v = pm.pipeline_class in I2V_PIPELINES
    if i2v and not images:
        raise PipelineError(f"{pm.pipeline_class} is image-to-video: give one image per prompt (--image IMG); "
                            f"got {len(prompts)} prompt(s) and no image")  # fmt: skip
    if not i2v and images and pm.pipeline_class not in REFERENCE_PIPELINES:
        raise PipelineError(f"{pm.pipeline_class} is text-to-video and takes no image; image-to-video pipelines: "
                            f"{', '.join(I2V_PIPELINES)}; reference images: "
                            f"{', '.join(REFERENCE_PIPELINES)}")  # fmt: skip
    if images and len(images) != len(prompts):
        raise PipelineError(f"got {len(prompts)} prompt(s) and {len(images)} image(s): give one prompt per image")
    t = pm.transformers.get("transformer")
    if pm.pipeline_class == "SkyReelsV2ImageToVideoPipeline" and (t is None or t.config.get("image_dim") is None):
        raise PipelineError("SkyReelsV2ImageToVideoPipeline always passes CLIP image embeddings: its transformer "
                            "needs image_dim set")  # fmt: skip
    if i2v and t is not None and t.config.get("image_dim") is not None and pm.components.get("image_encoder") is None:
        raise PipelineError("the transformer takes CLIP image embeddings (image_dim set) but the pipeline has no "
                            "image_encoder / image_processor")  # fmt: skip


REFERENCE_PIPELINES = ("WanVACEPipeline",)  # an image per prompt is optional: a reference image (R2V)
I2V_PIPELINES = ("WanImageToVideoPipeline", "CogVideoXImageToVideoPipeline", "LTXImageToVideoPipeline",
                 "SkyReelsV2ImageToVideoPipeline", "HunyuanVideo15ImageToVideoPipeline",
                 "LTX2ImageToVideoPipeline")  # fmt: skip
HUNYUAN15_PIPELINES = ("HunyuanVideo15Pipeline", "HunyuanVideo15ImageToVideoPipeline")
COGVIDEOX_PIPELINES = ("CogVideoXPipeline", "CogVideoXImageToVideoPipeline")
LTX_PIPELINES = ("LTXPipeline", "LTXImageToVideoPipeline")
LTX2_PIPELINES = ("LTX2Pipeline", "LTX2ImageToVideoPipeline")


def vae_ratios(pipe) -> tuple[int, int]:
    """(temporal, spatial) VAE compression as the pipeline names it (Wan / CogVideoX: ``vae_scale_factor_*``; LTX:
    ``vae_*_compression_ratio``; Mochi: ``vae_*_scale_factor``)."""
    if hasattr(pipe, "vae_temporal_compression_ratio"):
        return pipe.vae_temporal_compression_ratio, pipe.vae_spatial_compression_ratio
    if hasattr(pipe, "vae_temporal_scale_factor"):  # Mochi
        return pipe.vae_temporal_scale_factor, pipe.vae_spatial_scale_factor
    return pipe.vae_scale_factor_temporal, pipe.vae_scale_factor_spatial


def call_default(pipe, name: str):
    """The default of ``name`` in the pipeline's own ``__call__`` (e.g. ``max_sequence_length``: Wan 512, CogVideoX
    226); ``guidance_scale`` of a pipeline whose guidance is a guider component (HunyuanVideo 1.5) is the guider's;
    None for a knob ``__call__`` does not have."""
    import inspect

    params = inspect.signature(type(pipe).__call__).parameters
    if name in params:
        return params[name].default
    if name == "guidance_scale" and getattr(pipe, "guider", None) is not None:
        return pipe.guider.guidance_scale
    return None


def encode_prompts(pipe, prompts: list[str], device, max_sequence_length: int) -> torch.Tensor:
    """(B, L, D): each distinct prompt encoded once by the pipeline's ``encode_prompt``."""
    cache: dict[str, torch.Tensor] = {}
    for p in dict.fromkeys(prompts):
        cache[p] = pipe.encode_prompt(p, do_classifier_free_guidance=False, max_sequence_length=max_sequence_length,
                                      device=device)[0]  # fmt: skip
    return torch.cat([cache[p] for p in prompts])


@torch.no_grad()
def encode_inputs(
    pm: PipelineModel,
    prompts: list[str],
    *,
    images: list | None = None,
    negative_prompt: str | None = None,
    num_frames: int = 81,
    height: int = 480,
    width: int = 832,
    guidance_scale: float = 5.0,
    seed: int = 0,
    max_sequence_length: int | None = None,
    true_cfg_scale: float | None = None,
    pipeline_kwargs: dict | None = None,
) -> PipelineInputs:
    """Prompts (and images) -> the loop's inputs, exactly as the pipeline's ``__call__`` prepares them
    (``max_sequence_length=None``: the pipeline's own default). ``pipeline_kwargs``: other ``__call__`` knobs by
    their own names (``LTX2Pipeline``'s guidance terms: :data:`interp.pipelines.ltx2.KNOBS`)."""
    check_inputs(pm, prompts, images)
    pipe = pm.pipeline
    if max_sequence_length is None:
        max_sequence_length = call_default(pipe, "max_sequence_length")
    if pm.pipeline_class in LTX2_PIPELINES:
        from interp.pipelines.ltx2 import ltx2_inputs  # here: interp.pipelines.ltx2 builds on this module

        return ltx2_inputs(pm, prompts, images, negative_prompt, num_frames, height, width, guidance_scale, seed,
                           max_sequence_length, pipeline_kwargs)  # fmt: skip
    if pipeline_kwargs:
        raise PipelineError(f"pipeline_kwargs {sorted(pipeline_kwargs)}: {pm.pipeline_class} takes none (they are "
                            "LTX2Pipeline's guidance knobs)")  # fmt: skip
    if pm.pipeline_class == "HunyuanVideoPipeline":
        return _hunyuan_inputs(pm, prompts, negative_prompt, num_frames, height, width, guidance_scale, seed,
                               max_sequence_length, true_cfg_scale)  # fmt: skip
    if true_cfg_scale is not None:
        raise PipelineError(f"true_cfg_scale is HunyuanVideoPipeline's; {pm.pipeline_class}'s classifier-free guidance "
                            "is guidance_scale (--guidance)")  # fmt: skip
    if pm.pipeline_class in HUNYUAN15_PIPELINES:
        return _hunyuan15_inputs(pm, prompts, images, negative_prompt, num_frames, height, width, guidance_scale,
                                 seed, max_sequence_length)  # fmt: skip
    if pm.pipeline_class == "WanVACEPipeline":
        return _wan_vace_inputs(pm, prompts, images, negative_prompt, num_frames, height, width, guidance_scale, seed,
                                max_sequence_length)  # fmt: skip
    if pm.pipeline_class == "MochiPipeline":
        return _mochi_inputs(pm, prompts, negative_prompt, num_frames, height, width, guidance_scale, seed,
                             max_sequence_length)  # fmt: skip
    if pm.pipeline_class in LTX_PIPELINES:
        return _ltx_inputs(pm, prompts, images, negative_prompt, num_frames, height, width, guidance_scale, seed,
                           max_sequence_length)  # fmt: skip
    if pm.pipeline_class in COGVIDEOX_PIPELINES:
        return _cogvideox_inputs(pm, prompts, images, negative_prompt, num_frames, height, width, guidance_scale, seed,
                                 max_sequence_length)  # fmt: skip
    num_frames, height, width = pipeline_sizes(pipe, num_frames, height, width)
    t0 = pm.transformer
    device = next(t0.parameters()).device
    cfg = guidance_scale > 1.0
    b = len(prompts)
    emb = encode_prompts(pipe, prompts, device, max_sequence_length)
    neg = encode_prompts(pipe, [negative_prompt or ""] * b, device, max_sequence_length) if cfg else None
    extras: dict[str, torch.Tensor] = {}
    pil = [load_image(i) for i in images] if images else []
    digests = [image_digest(i) for i in pil]
    for k, img in enumerate(pil):
        if img.size != (width, height):
            warnings.warn(f"image {k} is {img.size[0]}x{img.size[1]} pixels, not {width}x{height}: resized as the "
                          "pipeline resizes it (video_processor.preprocess)", stacklevel=3)  # fmt: skip
    first = pm.transformers.get("transformer")
    if pil and first is not None and first.config.image_dim is not None:  # Wan2.1 I2V: CLIP image embeddings
        cache: dict[str, torch.Tensor] = {}
        for d, img in zip(digests, pil):
            if d not in cache:
                cache[d] = pipe.encode_image(img, device)
        extras["encoder_hidden_states_image"] = torch.cat([cache[d] for d in digests])
    text = TextConditioning(emb, dict(extras))
    negative = TextConditioning(neg, dict(extras)) if neg is not None else None

    noise, conds, first_frames, mask, shown = [], [], [], None, []
    if pil:
        z = pipe.vae.config.z_dim
        for i, img in enumerate(pil):
            x = pipe.video_processor.preprocess(img, height=height, width=width).to(device, dtype=torch.float32)
            shown.append(((x[0].permute(1, 2, 0).cpu().numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8))
            out = pipe.prepare_latents(x, 1, z, height, width, num_frames, torch.float32, device,
                                       torch.Generator().manual_seed(seed + i), None, None)  # fmt: skip
            noise.append(out[0])
            if pipe.config.get("expand_timesteps", False):
                first_frames.append(out[1])
                mask = out[2]
            else:
                conds.append(out[1])
    else:
        c = t0.config.in_channels
        for i in range(b):
            noise.append(pipe.prepare_latents(1, c, height, width, num_frames, torch.float32, device,
                                              torch.Generator().manual_seed(seed + i), None))  # fmt: skip
        # TI2V-5B text-to-video: every token at t (per-token timesteps all equal)
        if pipe.config.get("expand_timesteps", False):
            mask = torch.ones((1, 1, *noise[0].shape[2:]), dtype=torch.float32, device=device)
    latents = torch.cat(noise)
    ti = TrajectoryInputs(
        text, tuple(latents.shape), negative=negative, condition=torch.cat(conds) if conds else None,
        first_frame=torch.cat(first_frames) if first_frames else None, latents=latents, timestep_mask=mask,
    )  # fmt: skip
    pm.release_encoders()
    return PipelineInputs(ti, list(prompts), negative_prompt, digests, num_frames, height, width,
                          np.stack(shown) if shown else None)  # fmt: skip


def _check_sizes(pil: list, width: int, height: int) -> None:
    for k, img in enumerate(pil):
        if img.size != (width, height):
            warnings.warn(f"image {k} is {img.size[0]}x{img.size[1]} pixels, not {width}x{height}: resized as the "
                          "pipeline resizes it (video_processor.preprocess)", stacklevel=4)  # fmt: skip


def _cogvideox_inputs(
    pm, prompts, images, negative_prompt, num_frames, height, width, guidance_scale, seed, max_sequence_length
) -> PipelineInputs:
    """``CogVideoXPipeline`` / ``CogVideoXImageToVideoPipeline``: T5 prompts by ``encode_prompt``; latents (and the
    I2V image latents, padded with zero frames) by ``prepare_latents`` in the pipeline's (B, F, C, H, W) layout, moved
    to (B, C, F, H, W); the I2V image latents are the channel condition (``cat([x, image_latents], dim=2)`` in the
    pipeline's layout); ``ofs`` (CogVideoX 1.5 I2V) as the pipeline sets it; the rotary embeddings are the adapter's
    copy of ``_prepare_rotary_positional_embeddings``. Each sample's generator is kept: ``CogVideoXDPMScheduler``'s
    step draws noise from it, as ``__call__`` passes its generator to ``scheduler.step``."""
    pipe = pm.pipeline
    t = pm.transformer
    if t.config.patch_size_t is not None:
        raise PipelineError(f"{pm.pipeline_class} with patch_size_t={t.config.patch_size_t} (CogVideoX 1.5: padded "
                            "latent frames) is not supported yet; supported: CogVideoX 1.0 "
                            "(patch_size_t null)")  # fmt: skip
    num_frames, height, width = pipeline_sizes(pipe, num_frames, height, width)
    device = next(t.parameters()).device
    b = len(prompts)
    emb = encode_prompts(pipe, prompts, device, max_sequence_length)
    neg = None
    if guidance_scale > 1.0:
        neg = encode_prompts(pipe, [negative_prompt or ""] * b, device, max_sequence_length)
    extras: dict[str, torch.Tensor] = {}
    if t.config.get("ofs_embed_dim") is not None:
        extras["ofs"] = torch.full((1,), 2.0, device=device)
    pil = [load_image(i) for i in images] if images else []
    digests = [image_digest(i) for i in pil]
    _check_sizes(pil, width, height)
    gens = [torch.Generator().manual_seed(seed + i) for i in range(b)]
    noise, conds, shown = [], [], []
    for i in range(b):
        if pil:
            x = pipe.video_processor.preprocess(pil[i], height=height, width=width).to(device, dtype=torch.float32)
            shown.append(((x[0].permute(1, 2, 0).cpu().numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8))
            lat, img_lat = pipe.prepare_latents(x, 1, t.config.in_channels // 2, num_frames, height, width,
                                                torch.float32, device, gens[i], None)  # fmt: skip
            conds.append(img_lat.permute(0, 2, 1, 3, 4))
        else:
            lat = pipe.prepare_latents(1, t.config.in_channels, num_frames, height, width, torch.float32, device,
                                       gens[i], None)  # fmt: skip
        noise.append(lat.permute(0, 2, 1, 3, 4))  # (B, F, C, H, W) -> (B, C, F, H, W)
    latents = torch.cat(noise).contiguous()
    ti = TrajectoryInputs(
        TextConditioning(emb, dict(extras)), tuple(latents.shape),
        negative=TextConditioning(neg, dict(extras)) if neg is not None else None,
        condition=torch.cat(conds).contiguous() if conds else None, latents=latents, generators=gens,
        step_layout=(0, 2, 1, 3, 4),
    )  # fmt: skip
    pm.release_encoders()
    return PipelineInputs(ti, list(prompts), negative_prompt, digests, num_frames, height, width,
                          np.stack(shown) if shown else None)  # fmt: skip


def ltx_sigmas(steps: int) -> np.ndarray:
    """The sigmas ``LTXPipeline.__call__`` passes to ``set_timesteps``: ``np.linspace(1.0, 1 / steps, steps)``."""
    return np.linspace(1.0, 1 / steps, steps)


def _ltx_inputs(
    pm, prompts, images, negative_prompt, num_frames, height, width, guidance_scale, seed, max_sequence_length
) -> PipelineInputs:
    """``LTXPipeline`` / ``LTXImageToVideoPipeline``: T5 prompts and their attention masks by ``encode_prompt``; the
    packed latents of ``prepare_latents`` unpacked to (B, C, F, H, W) (``_unpack_latents``); ``set_timesteps`` gets the
    pipeline's ``sigmas = linspace(1, 1/N, N)`` and ``mu = calculate_shift(F * H * W latent tokens, base_image_seq_len,
    max_image_seq_len, base_shift, max_shift)`` from the scheduler config; ``rope_interpolation_scale`` =
    (temporal ratio / frame_rate, spatial, spatial) with ``__call__``'s default ``frame_rate``. I2V: the first latent
    frame is the image latent (``first_frame``, kept through every step as the pipeline keeps it) and its tokens get
    timestep 0 (``t * (1 - conditioning_mask)``: ``timestep_mask``)."""
    from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift

    pipe = pm.pipeline
    t = pm.transformer
    num_frames, height, width = pipeline_sizes(pipe, num_frames, height, width)
    tr, sr = vae_ratios(pipe)
    device = next(t.parameters()).device
    b = len(prompts)

    def encode(texts):
        cache = {}
        for p in dict.fromkeys(texts):
            emb, mask, _, _ = pipe.encode_prompt(p, do_classifier_free_guidance=False,
                                                 max_sequence_length=max_sequence_length, device=device)  # fmt: skip
            cache[p] = (emb, mask)
        return torch.cat([cache[p][0] for p in texts]), torch.cat([cache[p][1] for p in texts])

    rope = (tr / call_default(pipe, "frame_rate"), sr, sr)
    emb, mask = encode(prompts)
    text = TextConditioning(emb, {"encoder_attention_mask": mask, "rope_interpolation_scale": rope})
    negative = None
    if guidance_scale > 1.0:
        nemb, nmask = encode([negative_prompt or ""] * b)
        negative = TextConditioning(nemb, {"encoder_attention_mask": nmask, "rope_interpolation_scale": rope})
    pil = [load_image(i) for i in images] if images else []
    digests = [image_digest(i) for i in pil]
    _check_sizes(pil, width, height)
    lf, lh, lw = (num_frames - 1) // tr + 1, height // sr, width // sr
    ps, pt = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
    c = t.config.in_channels
    noise, shown = [], []
    for i in range(b):
        gen = torch.Generator().manual_seed(seed + i)
        if pil:
            x = pipe.video_processor.preprocess(pil[i], height=height, width=width).to(device, dtype=torch.float32)
            shown.append(((x[0].permute(1, 2, 0).cpu().numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8))
            packed, _ = pipe.prepare_latents(x, 1, c, height, width, num_frames, torch.float32, device, gen, None)
        else:
            packed = pipe.prepare_latents(1, c, height, width, num_frames, torch.float32, device, gen, None)
        noise.append(pipe._unpack_latents(packed, lf, lh, lw, ps, pt))
    latents = torch.cat(noise)
    first, tmask = None, None
    if pil:
        first = latents[:, :, :1].clone()
        tmask = torch.ones((1, 1, *latents.shape[2:]), dtype=torch.float32, device=device)
        tmask[:, :, 0] = 0.0
    cfg = pipe.scheduler.config
    mu = calculate_shift(lf * lh * lw, cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096),
                         cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.15))  # fmt: skip
    ti = TrajectoryInputs(text, tuple(latents.shape), negative=negative, latents=latents, first_frame=first,
                          timestep_mask=tmask, timestep_kwargs={"sigmas": ltx_sigmas, "mu": mu})  # fmt: skip
    pm.release_encoders()
    return PipelineInputs(ti, list(prompts), negative_prompt, digests, num_frames, height, width,
                          np.stack(shown) if shown else None)  # fmt: skip


def hunyuan_sigmas(steps: int) -> np.ndarray:
    """The sigmas ``HunyuanVideoPipeline.__call__`` passes to ``set_timesteps``: ``linspace(1, 0, steps + 1)[:-1]``."""
    return np.linspace(1.0, 0.0, steps + 1)[:-1]


def _hunyuan_inputs(
    pm, prompts, negative_prompt, num_frames, height, width, guidance_scale, seed, max_sequence_length, true_cfg_scale
) -> PipelineInputs:
    """``HunyuanVideoPipeline``: ``encode_prompt`` with ``__call__``'s default ``prompt_template`` (Llama hidden
    states, cropped, and their mask; CLIP's pooled output as ``pooled_projections``); ``guidance_scale`` is the
    *embedded* guidance (``guidance = guidance_scale * 1000`` to every forward; no unconditional forward);
    classifier-free guidance is ``true_cfg_scale`` and, as in ``__call__``, runs only with a negative prompt;
    ``set_timesteps`` gets ``sigmas = linspace(1, 0, N + 1)[:-1]``."""
    pipe = pm.pipeline
    t = pm.transformer
    num_frames, height, width = pipeline_sizes(pipe, num_frames, height, width)
    device = next(t.parameters()).device
    dtype = t.dtype
    b = len(prompts)
    template = call_default(pipe, "prompt_template")
    true_cfg = 1.0 if true_cfg_scale is None else float(true_cfg_scale)
    do_true_cfg = true_cfg > 1.0 and negative_prompt is not None
    if true_cfg > 1.0 and negative_prompt is None:
        warnings.warn(f"true_cfg_scale {true_cfg} without a negative prompt: no classifier-free guidance runs (as "
                      "HunyuanVideoPipeline does); give --negative-prompt to run it", stacklevel=3)  # fmt: skip

    def encode(texts):
        cache = {}
        for p in dict.fromkeys(texts):
            emb, pooled, mask = pipe.encode_prompt(prompt=p, prompt_template=template, device=device,
                                                   max_sequence_length=max_sequence_length)  # fmt: skip
            cache[p] = (emb.to(dtype), pooled.to(dtype), mask.to(dtype))
        return [torch.cat([cache[p][k] for p in texts]) for k in range(3)]

    def conditioning(texts) -> TextConditioning:
        emb, pooled, mask = encode(texts)
        extras = {"encoder_attention_mask": mask, "pooled_projections": pooled}
        if t.config.guidance_embeds:
            extras["guidance"] = torch.tensor([guidance_scale] * b, dtype=dtype, device=device) * 1000.0
        return TextConditioning(emb, extras)

    text = conditioning(prompts)
    negative = conditioning([negative_prompt] * b) if do_true_cfg else None
    noise = [pipe.prepare_latents(1, t.config.in_channels, height, width, num_frames, torch.float32, device,
                                  torch.Generator().manual_seed(seed + i), None) for i in range(b)]  # fmt: skip
    latents = torch.cat(noise)
    ti = TrajectoryInputs(text, tuple(latents.shape), negative=negative, latents=latents,
                          timestep_kwargs={"sigmas": hunyuan_sigmas})  # fmt: skip
    pm.release_encoders()
    return PipelineInputs(ti, list(prompts), negative_prompt, [], num_frames, height, width, None,
                          loop_guidance=true_cfg if do_true_cfg else 1.0)  # fmt: skip


def _wan_vace_inputs(
    pm, prompts, images, negative_prompt, num_frames, height, width, guidance_scale, seed, max_sequence_length
) -> PipelineInputs:
    """``WanVACEPipeline`` without a control video or mask (what ``__call__`` does given none: a zero video, an
    all-ones mask), with an optional reference image per prompt (``reference_images``, R2V): per sample, with that
    sample's generator and in ``__call__``'s order, ``preprocess_conditions``, ``prepare_video_latents`` and
    ``prepare_masks``, concatenated to the control latents (``control_hidden_states``, the same in both CFG
    branches), then ``prepare_latents`` for ``num_frames`` plus the reference frames. The reference image's latent
    frame leads the latents (``reference_frames``) and is dropped before decoding, as ``__call__`` drops it.
    ``__call__``'s default ``conditioning_scale`` 1.0 per VACE layer is the transformer's own default
    (``control_hidden_states_scale=None``: ones), so it is not passed. Prompts as Wan's."""
    pipe = pm.pipeline
    t = pm.transformer
    num_frames, height, width = pipeline_sizes(pipe, num_frames, height, width)
    device = next(t.parameters()).device
    dtype = t.dtype
    b = len(prompts)
    emb = encode_prompts(pipe, prompts, device, max_sequence_length)
    neg = encode_prompts(pipe, [negative_prompt or ""] * b, device, max_sequence_length) if guidance_scale > 1 else None
    pil = [load_image(i) for i in images] if images else []
    digests = [image_digest(i) for i in pil]
    refs_n = 1 if pil else 0
    tf, _ = vae_ratios(pipe)
    noise, controls = [], []
    for i in range(b):
        gen = torch.Generator().manual_seed(seed + i)
        video, mask, refs = pipe.preprocess_conditions(None, None, pil[i] if pil else None, 1, height, width,
                                                       num_frames, torch.float32, device)  # fmt: skip
        cond = pipe.prepare_video_latents(video, mask, refs, gen, device)
        controls.append(torch.cat([cond, pipe.prepare_masks(mask, refs, gen)], dim=1).to(dtype))
        noise.append(pipe.prepare_latents(1, t.config.in_channels, height, width, num_frames + refs_n * tf,
                                          torch.float32, device, gen, None))  # fmt: skip
    extras = {"control_hidden_states": torch.cat(controls)}
    latents = torch.cat(noise)
    ti = TrajectoryInputs(TextConditioning(emb, dict(extras)), tuple(latents.shape),
                          negative=TextConditioning(neg, dict(extras)) if neg is not None else None,
                          latents=latents, reference_frames=refs_n)  # fmt: skip
    pm.release_encoders()
    return PipelineInputs(ti, list(prompts), negative_prompt, digests, num_frames, height, width, None)


def _mochi_inputs(
    pm, prompts, negative_prompt, num_frames, height, width, guidance_scale, seed, max_sequence_length
) -> PipelineInputs:
    """``MochiPipeline``: T5 prompts and their attention masks by ``encode_prompt`` (the mask is the transformer's
    ``encoder_attention_mask``); latents by ``prepare_latents`` in the prompt embeddings' dtype; ``set_timesteps``
    gets ``__call__``'s ``sigmas = linear_quadratic_schedule(N, 0.025)``. ``__call__`` runs CFG as one batch of
    [uncond, cond]; the loop runs two forwards (the same arithmetic up to the batch's reduction order)."""
    pipe = pm.pipeline
    t = pm.transformer
    num_frames, height, width = pipeline_sizes(pipe, num_frames, height, width)
    device = next(t.parameters()).device
    b = len(prompts)

    def encode(texts):
        cache = {}
        for p in dict.fromkeys(texts):
            emb, mask, _, _ = pipe.encode_prompt(p, do_classifier_free_guidance=False,
                                                 max_sequence_length=max_sequence_length, device=device)  # fmt: skip
            cache[p] = (emb, mask)
        return torch.cat([cache[p][0] for p in texts]), torch.cat([cache[p][1] for p in texts])

    emb, mask = encode(prompts)
    text = TextConditioning(emb, {"encoder_attention_mask": mask})
    negative = None
    if guidance_scale > 1.0:
        nemb, nmask = encode([negative_prompt or ""] * b)
        negative = TextConditioning(nemb, {"encoder_attention_mask": nmask})
    noise = [pipe.prepare_latents(1, t.config.in_channels, height, width, num_frames, emb.dtype, device,
                                  torch.Generator().manual_seed(seed + i), None) for i in range(b)]  # fmt: skip
    latents = torch.cat(noise)
    ti = TrajectoryInputs(text, tuple(latents.shape), negative=negative, latents=latents,
                          timestep_kwargs={"sigmas": mochi_sigmas})  # fmt: skip
    pm.release_encoders()
    return PipelineInputs(ti, list(prompts), negative_prompt, [], num_frames, height, width, None)


def mochi_sigmas(steps: int) -> np.ndarray:
    """The sigmas ``MochiPipeline.__call__`` passes to ``set_timesteps``: ``linear_quadratic_schedule(N, 0.025)``."""
    from diffusers.pipelines.mochi.pipeline_mochi import linear_quadratic_schedule

    return np.array(linear_quadratic_schedule(steps, 0.025))


def _hunyuan15_inputs(
    pm, prompts, images, negative_prompt, num_frames, height, width, guidance_scale, seed, max_sequence_length
) -> PipelineInputs:
    """``HunyuanVideo15Pipeline`` / ``HunyuanVideo15ImageToVideoPipeline``: ``encode_prompt`` (Qwen2.5-VL hidden
    states through the chat template, cropped, and their mask; ByT5 embeddings of the prompt's quoted glyph text,
    zeros without one) in the transformer's dtype; ``set_timesteps`` gets ``sigmas = linspace(1, 0, N + 1)[:-1]``;
    ``prepare_latents``. Text-to-video: ``image_embeds`` all zeros (``vision_num_semantic_tokens`` x
    ``vision_states_dim``) and the zero condition (the adapter's ``condition=None``). Image-to-video: the video size
    is the pipeline's own from the image and ``target_size`` (``calculate_default_height_width``; the image is
    resized with ``resize_mode="crop"``), ``image_embeds`` by ``encode_image`` (SigLIP), the condition by
    ``prepare_cond_latents_and_mask`` (the image latent in frame 0 and its mask). Guidance: ``__call__`` takes it from
    its ``guider`` component (a ``ClassifierFreeGuidance``, cond and uncond as separate forwards);
    ``guidance_scale`` here is that guider's ``guidance_scale`` (the pipeline's equivalent is
    ``pipe.guider = ClassifierFreeGuidance(guidance_scale=g)``)."""
    pipe = pm.pipeline
    t = pm.transformer
    guider = pipe.guider
    if max_sequence_length is not None:
        raise PipelineError(f"{pm.pipeline_class} has no max_sequence_length (its prompt length is the pipeline's "
                            "tokenizer_max_length); leave it unset")  # fmt: skip
    if (
        type(guider).__name__ != "ClassifierFreeGuidance"
        or guider.guidance_rescale != 0.0
        or (guider.use_original_formulation or guider._start != 0.0 or guider._stop != 1.0)
    ):
        raise PipelineError(f"{pm.pipeline_class}'s guider is {type(guider).__name__}({dict(guider.config)}); "
                            "supported: ClassifierFreeGuidance with guidance_rescale 0, use_original_formulation "
                            "false, start 0, stop 1 (plain classifier-free guidance)")  # fmt: skip
    pil = [load_image(i) for i in images] if images else []
    digests = [image_digest(i) for i in pil]
    if pil:  # __call__ sizes the video from the image (it takes no height / width)
        fit = pipe.video_processor.calculate_default_height_width
        sizes = {fit(height=i.size[1], width=i.size[0], target_size=pipe.target_size) for i in pil}
        if len(sizes) > 1:
            raise PipelineError(f"{pm.pipeline_class} sizes each video from its image: these images give "
                                f"{sorted(sizes)}; give images of one aspect ratio per batch")  # fmt: skip
        (h, w), *_ = sizes
        if (h, w) != (height, width):
            warnings.warn(f"{pm.pipeline_class} sizes the video from the image and target_size "
                          f"{pipe.target_size}: {h}x{w}, not {height}x{width}", stacklevel=3)  # fmt: skip
        height, width = h, w
        pil = [pipe.video_processor.resize(i, height=height, width=width, resize_mode="crop") for i in pil]
    num_frames, height, width = pipeline_sizes(pipe, num_frames, height, width)
    device = next(t.parameters()).device
    dtype = t.dtype
    b = len(prompts)
    if pil:
        image_embeds = torch.cat([pipe.encode_image(image=i, batch_size=1, device=device, dtype=dtype) for i in pil])
    else:
        image_embeds = torch.zeros(b, pipe.vision_num_semantic_tokens, pipe.vision_states_dim, dtype=dtype,
                                   device=device)  # fmt: skip

    def conditioning(texts) -> TextConditioning:
        cache = {}
        for p in dict.fromkeys(texts):
            cache[p] = pipe.encode_prompt(prompt=p, device=device, dtype=dtype, batch_size=1)
        emb, mask, emb2, mask2 = (torch.cat([cache[p][k] for p in texts]) for k in range(4))
        return TextConditioning(emb, {"encoder_attention_mask": mask, "encoder_hidden_states_2": emb2,
                                      "encoder_attention_mask_2": mask2, "image_embeds": image_embeds})  # fmt: skip

    text = conditioning(prompts)
    negative = conditioning([negative_prompt or ""] * b) if guidance_scale > 1.0 else None
    noise, conds = [], []
    for i in range(b):
        lat = pipe.prepare_latents(1, pipe.num_channels_latents, height, width, num_frames, dtype, device,
                                   torch.Generator().manual_seed(seed + i), None)  # fmt: skip
        noise.append(lat)
        if pil:
            cond, mask = pipe.prepare_cond_latents_and_mask(latents=lat, image=pil[i], batch_size=1, height=height,
                                                            width=width, dtype=dtype, device=device)  # fmt: skip
            conds.append(torch.cat([cond, mask], dim=1))
    latents = torch.cat(noise)
    ti = TrajectoryInputs(text, tuple(latents.shape), negative=negative, latents=latents,
                          condition=torch.cat(conds) if conds else None,
                          timestep_kwargs={"sigmas": hunyuan_sigmas})  # fmt: skip
    pm.release_encoders()
    shown = np.stack([np.asarray(i.convert("RGB"), dtype=np.uint8) for i in pil]) if pil else None
    return PipelineInputs(ti, list(prompts), negative_prompt, digests, num_frames, height, width, shown)

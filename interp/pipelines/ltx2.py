"""``LTX2Pipeline`` (LTX-2 / 2.3 text to video and audio) and ``LTX2ImageToVideoPipeline``: inputs, guidance and
audio decode, as their ``__call__`` does them.

One transformer denoises the video and the audio latents together. Before the loop (:func:`ltx2_inputs`):

- each distinct prompt (and the negative prompt) through ``encode_prompt`` (Gemma hidden states of every layer,
  stacked, and the mask), then the pipeline's ``connectors`` (video text embeddings, audio text embeddings and their
  mask; the transformer gets the one mask for both streams);
- per sample, with that sample's generator in ``__call__``'s order: the video noise by ``prepare_latents`` (packed;
  unpacked here to (B, C, F, H, W)), then the audio noise by ``prepare_audio_latents`` (packed (B, audio frames,
  C * mel bins)) for ``round(num_frames / frame_rate * sample_rate / hop_length / audio temporal ratio)`` frames;
- ``set_timesteps`` gets ``sigmas = linspace(1, 1/N, N)`` and ``mu = calculate_shift(video tokens, ...)`` with the
  scheduler config's values and ``LTX2Pipeline``'s fallbacks (1024, 4096, 0.95, 2.05);
- every forward gets ``fps = frame_rate / motion_speed``, ``use_cross_timestep`` and ``sigma = timestep``;
- ``LTX2ImageToVideoPipeline``: each image re-compressed at ``image_crf`` (default: the pipeline's, 33 for a Gemma 3
  text encoder; 0 skips it; PyAV does it), preprocessed by ``video_processor`` and encoded by ``prepare_latents``
  into the first latent frame, kept clean through every step (``first_frame``) with its tokens at timestep 0
  (``timestep_mask``); the audio and the prompt modulation take the sample's timestep.

The loop steps the audio latents as a second stream (``TrajectoryInputs.streams``) with its own copy of the
scheduler, and combines the forwards of a step with :class:`LTX2Guidance`, ``__call__``'s own rule, with its knob
names: ``guidance_scale`` (CFG, the ``uncond`` branch), ``stg_scale`` with ``spatio_temporal_guidance_blocks`` (the
``stg`` branch: those blocks' self-attention perturbed), ``modality_scale`` (the ``modality`` branch: audio-video
cross-attention off), ``guidance_rescale``, and their ``audio_*`` counterparts (``None`` or 0: the video's, as
``__call__`` falls back). A branch runs when its video or audio scale is active, as in ``__call__``.

The end of ``__call__``: the video through the video VAE (:func:`interp.pipelines.decode.decode_video`); the audio
latents de-normalised and unpacked to (B, C, audio frames, mel bins) (``output_type="latent"``'s ``audio``) and
decoded by the audio VAE and the vocoder to a waveform (:func:`decode_audio`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch
from diffusers import LTX2Pipeline
from diffusers.pipelines.ltx2.pipeline_ltx2 import calculate_shift, rescale_noise_cfg
from diffusers.pipelines.ltx2.utils import (
    apply_image_conditioning_crf,
    conditioning_frame_rate,
    resolve_default_image_crf,
)
from PIL import Image
from torch import Tensor

from interp.adapters import TextConditioning
from interp.pipelines.components import PipelineError
from interp.pipelines.inputs import PipelineInputs, call_default, image_digest, load_image, pipeline_sizes
from interp.trajectory import TrajectoryInputs

AUDIO = "audio_hidden_states"  # the extras key (and stream name) of the audio latents
KNOBS = ("frame_rate", "motion_speed", "stg_scale", "modality_scale", "guidance_rescale", "audio_guidance_scale",
         "audio_stg_scale", "audio_modality_scale", "audio_guidance_rescale", "spatio_temporal_guidance_blocks",
         "use_cross_timestep")  # fmt: skip
"""``LTX2Pipeline.__call__`` knobs interp takes besides ``guidance_scale`` (``pipeline_kwargs``; default: its own);
``LTX2ImageToVideoPipeline`` also takes ``image_crf``."""
I2V_KNOBS = ("image_crf",)


def ltx2_sigmas(steps: int) -> np.ndarray:
    """The sigmas ``LTX2Pipeline.__call__`` passes to ``set_timesteps``: ``linspace(1, 1/N, N)``."""
    return np.linspace(1.0, 1 / steps, steps)


@dataclass
class LTX2Guidance:
    """``LTX2Pipeline.__call__``'s guidance (:class:`interp.trajectory.Guider`): each branch's prediction to x0
    (``x - v * sigma``), ``x0_cond + (g - 1)(x0_cond - x0_uncond) + stg (x0_cond - x0_stg) + (m - 1)(x0_cond -
    x0_modality)``, ``rescale_noise_cfg`` against ``x0_cond`` when the rescale is > 0, and back to a velocity
    (``(x - x0) / sigma``), with the video's scales for the video and the audio's for the audio. The video is combined
    in the pipeline's packed token layout (the rescale's standard deviations reduce in its order)."""

    kinds: tuple[str, ...]
    video: tuple[float, float, float, float]  # guidance_scale, stg_scale, modality_scale, guidance_rescale
    audio: tuple[float, float, float, float]
    stg_blocks: tuple[int, ...]
    patch: tuple[int, int] = (1, 1)  # the transformer's (patch_size, patch_size_t), for the packed layout

    def conditioning(self, kind: str, text: TextConditioning, negative: TextConditioning | None) -> TextConditioning:
        if kind == "uncond":
            return negative
        if kind == "stg":
            return replace(text, extras={**text.extras, "spatio_temporal_guidance_blocks": list(self.stg_blocks)})
        if kind == "modality":
            return replace(text, extras={**text.extras, "isolate_modalities": True})
        return text

    def combine(self, stream: str | None, x: Tensor, preds: dict[str, Tensor], sigma: Tensor) -> Tensor:
        g, stg, m, rescale = self.video if stream is None else self.audio
        shape = x.shape
        if stream is None:
            p, pt = self.patch  # the pipeline's own (un)packing
            x = LTX2Pipeline._pack_latents(x, p, pt)
            preds = {k: LTX2Pipeline._pack_latents(v, p, pt) for k, v in preds.items()}
        x0 = {k: x - v.float() * sigma for k, v in preds.items()}
        cond = x0["cond"]
        cfg = (g - 1) * (cond - x0["uncond"]) if "uncond" in x0 else 0
        stg_delta = stg * (cond - x0["stg"]) if "stg" in x0 else 0
        modality = (m - 1) * (cond - x0["modality"]) if "modality" in x0 else 0
        guided = cond + cfg + stg_delta + modality
        out = rescale_noise_cfg(guided, cond, guidance_rescale=rescale) if rescale > 0 else guided
        v = (x - out) / sigma
        if stream is None:
            f, h, w = shape[2:]
            v = LTX2Pipeline._unpack_latents(v, f // self.patch[1], h // self.patch[0], w // self.patch[0], *self.patch)
        return v


def resolve_knobs(pipe, guidance_scale: float, pipeline_kwargs: dict | None) -> dict:
    """``__call__``'s knobs: ``pipeline_kwargs`` over its own defaults, with its fallbacks for the ``audio_*`` ones."""
    name = type(pipe).__name__
    valid = KNOBS + (I2V_KNOBS if name == "LTX2ImageToVideoPipeline" else ())
    unknown = sorted(set(pipeline_kwargs or {}) - set(valid))
    if unknown:
        raise PipelineError(f"{name}: pipeline_kwargs {unknown} are not knobs interp takes; valid: "
                            f"{', '.join(valid)} (guidance_scale is --guidance)")  # fmt: skip
    kw = {k: call_default(pipe, k) for k in valid} | dict(pipeline_kwargs or {})
    kw["guidance_scale"] = float(guidance_scale)
    for k in ("guidance_scale", "stg_scale", "modality_scale", "guidance_rescale"):  # as __call__: `a or video's`
        kw[f"audio_{k}"] = kw[f"audio_{k}"] or kw[k]
    blocks = kw["spatio_temporal_guidance_blocks"]
    kw["spatio_temporal_guidance_blocks"] = [int(b) for b in blocks] if blocks else []
    if (kw["stg_scale"] > 0 or kw["audio_stg_scale"] > 0) and not kw["spatio_temporal_guidance_blocks"]:
        raise PipelineError("LTX2Pipeline: stg_scale / audio_stg_scale > 0 needs spatio_temporal_guidance_blocks (the "
                            "block indices whose self-attention STG perturbs); or set both scales to 0")  # fmt: skip
    if kw["frame_rate"] <= 0 or kw["motion_speed"] <= 0:
        raise PipelineError(f"LTX2Pipeline: frame_rate {kw['frame_rate']} and motion_speed {kw['motion_speed']} "
                            "must be positive")  # fmt: skip
    return kw


def guidance_of(kw: dict, transformer) -> LTX2Guidance:
    """The branches ``__call__`` runs with these knobs (a branch runs when its video or audio scale is active)."""
    kinds = ["cond"]
    n_blocks = len(transformer.transformer_blocks)
    if kw["guidance_scale"] > 1.0 or kw["audio_guidance_scale"] > 1.0:
        kinds.append("uncond")
    if kw["stg_scale"] > 0.0 or kw["audio_stg_scale"] > 0.0:
        kinds.append("stg")
        outside = [b for b in kw["spatio_temporal_guidance_blocks"] if not 0 <= b < n_blocks]
        if not transformer.config.perturbed_attn:
            warnings.warn("the transformer has perturbed_attn=False (LTX-2.0): the STG forward perturbs nothing and "
                          "equals the conditional one (as in the pipeline); stg_scale=0 saves it",
                          stacklevel=4)  # fmt: skip
        elif outside:
            warnings.warn(f"spatio_temporal_guidance_blocks {outside} name no block of this {n_blocks}-block "
                          "transformer: they perturb nothing (as in the pipeline)", stacklevel=4)  # fmt: skip
    if kw["modality_scale"] > 1.0 or kw["audio_modality_scale"] > 1.0:
        kinds.append("modality")
    scales = lambda a: tuple(float(kw[f"{a}{k}"]) for k in ("guidance_scale", "stg_scale", "modality_scale",  # noqa: E731
                                                           "guidance_rescale"))  # fmt: skip
    patch = (transformer.config.patch_size, transformer.config.patch_size_t)
    return LTX2Guidance(tuple(kinds), scales(""), scales("audio_"), tuple(kw["spatio_temporal_guidance_blocks"]), patch)


def ltx2_inputs(pm, prompts, images, negative_prompt, num_frames, height, width, guidance_scale, seed,
                max_sequence_length, pipeline_kwargs):  # fmt: skip
    """``LTX2Pipeline`` / ``LTX2ImageToVideoPipeline`` inputs (see the module doc) ->
    :class:`~interp.pipelines.inputs.PipelineInputs`."""
    pipe = pm.pipeline
    t = pm.transformer
    kw = resolve_knobs(pipe, guidance_scale, pipeline_kwargs)
    num_frames, height, width = pipeline_sizes(pipe, num_frames, height, width)
    if height % 32 or width % 32:  # LTX2Pipeline.check_inputs
        raise PipelineError(f"{pm.pipeline_class}: height and width have to be divisible by 32, got {height} x "
                            f"{width}")  # fmt: skip
    device = next(t.parameters()).device
    b = len(prompts)

    def conditioning(texts) -> TextConditioning:
        cache = {}
        for p in dict.fromkeys(texts):
            emb, mask, _, _ = pipe.encode_prompt(p, do_classifier_free_guidance=False,
                                                 max_sequence_length=max_sequence_length, device=device)  # fmt: skip
            # the padding side as __call__ reads it, after encode_prompt set the tokenizer's (Gemma: left)
            side = getattr(pipe.tokenizer, "padding_side", "left") if pipe.tokenizer is not None else "left"
            cache[p] = pipe.connectors(emb, mask, padding_side=side)  # video embeds, audio embeds, mask
        video, audio, mask = (torch.cat([cache[p][k] for p in texts]) for k in range(3))
        return TextConditioning(video, {"encoder_attention_mask": mask, "audio_encoder_hidden_states": audio,
                                        "audio_encoder_attention_mask": mask, "fps": fps,
                                        "use_cross_timestep": bool(kw["use_cross_timestep"])})  # fmt: skip

    fps = conditioning_frame_rate(kw["frame_rate"], kw["motion_speed"])
    guider = guidance_of(kw, t)
    text = conditioning(prompts)
    negative = conditioning([negative_prompt or ""] * b) if "uncond" in guider.kinds else None

    lf = (num_frames - 1) // pipe.vae_temporal_compression_ratio + 1
    lh, lw = height // pipe.vae_spatial_compression_ratio, width // pipe.vae_spatial_compression_ratio
    ps, pt = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
    per_second = pipe.audio_sampling_rate / pipe.audio_hop_length / float(pipe.audio_vae_temporal_compression_ratio)
    audio_frames = round(num_frames / kw["frame_rate"] * per_second)
    avae = pipe.audio_vae
    pil = [load_image(i) for i in images] if images else []
    digests = [image_digest(i) for i in pil]
    if pil:
        crf = kw["image_crf"] if kw["image_crf"] is not None else resolve_default_image_crf(pipe.text_encoder)
        try:
            pil = [Image.fromarray(apply_image_conditioning_crf(np.array(i), int(crf))) if crf else i for i in pil]
        except ImportError as e:
            raise PipelineError(f"{pm.pipeline_class}: image_crf {crf} re-compresses each image with PyAV ({e}); "
                                "install av, or set pipeline_kwargs={image_crf: 0} to skip it") from None  # fmt: skip
    video, audio, shown = [], [], []
    emb_dtype = pipe.text_encoder.dtype  # __call__ casts the image to the prompt embeddings' dtype
    for i in range(b):
        gen = torch.Generator().manual_seed(seed + i)
        if pil:
            x = pipe.video_processor.preprocess(pil[i], height=height, width=width).to(device, dtype=emb_dtype)
            shown.append(((x[0].permute(1, 2, 0).cpu().numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8))
            packed, _ = pipe.prepare_latents(x, 1, t.config.in_channels, height, width, num_frames, 0.0,
                                             torch.float32, device, gen, None)  # fmt: skip
        else:
            packed = pipe.prepare_latents(1, t.config.in_channels, height, width, num_frames, 0.0, torch.float32,
                                          device, gen, None)  # fmt: skip
        video.append(pipe._unpack_latents(packed, lf // pt, lh // ps, lw // ps, ps, pt))
        audio.append(pipe.prepare_audio_latents(1, num_channels_latents=avae.config.latent_channels,
                                                audio_latent_length=audio_frames, num_mel_bins=avae.config.mel_bins,
                                                noise_scale=0.0, dtype=torch.float32, device=device,
                                                generator=gen))  # fmt: skip
    latents, audio_latents = torch.cat(video), torch.cat(audio)
    first, tmask = None, None
    if pil:  # the image latent frame stays clean, its tokens at timestep 0 (t * (1 - conditioning_mask))
        first = latents[:, :, :1].clone()
        tmask = torch.ones((1, 1, *latents.shape[2:]), dtype=torch.float32, device=device)
        tmask[:, :, 0] = 0.0
    for c in (text, negative):
        if c is not None:  # the first forward's audio (the loop passes the current audio latents at every step)
            c.extras[AUDIO] = audio_latents
    cfg = pipe.scheduler.config
    mu = calculate_shift(lf // pt * (lh // ps) * (lw // ps), cfg.get("base_image_seq_len", 1024),
                         cfg.get("max_image_seq_len", 4096), cfg.get("base_shift", 0.95),
                         cfg.get("max_shift", 2.05))  # fmt: skip
    ti = TrajectoryInputs(text, tuple(latents.shape), negative=negative, latents=latents, first_frame=first,
                          timestep_mask=tmask, timestep_kwargs={"sigmas": ltx2_sigmas, "mu": mu},
                          streams={AUDIO: audio_latents}, guider=guider)  # fmt: skip
    pm.release_encoders()
    knobs = {k: kw[k] for k in ("guidance_scale", *KNOBS, *(I2V_KNOBS if pil else ()))}
    return PipelineInputs(ti, list(prompts), negative_prompt, digests, num_frames, height, width,
                          np.stack(shown) if shown else None, knobs=knobs)  # fmt: skip


@torch.no_grad()
def decode_audio(pm, audio_latents: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Final packed audio latents (B, audio frames, C * mel bins) -> (the de-normalised latents (B, C, audio frames,
    mel bins) as ``__call__(output_type="latent")`` returns them, the vocoder's waveform (B, channels, samples)
    float32), as the end of ``__call__``."""
    pipe = pm.pipeline
    avae, vocoder = pipe.audio_vae, pipe.vocoder
    if avae is None or vocoder is None:
        raise PipelineError(f"{pm.name}: decoding the audio needs the pipeline's audio_vae and vocoder")
    dev = next(avae.parameters()).device
    a = pipe._denormalize_audio_latents(audio_latents.to(dev), avae.latents_mean, avae.latents_std)
    bins = avae.config.mel_bins // pipe.audio_vae_mel_compression_ratio
    a = pipe._unpack_audio_latents(a, a.shape[1], num_mel_bins=bins)
    mel = avae.decode(a.to(avae.dtype), return_dict=False)[0]
    wave = vocoder(mel.to(next(vocoder.parameters()).device))
    return a.float().cpu().numpy(), wave.float().cpu().numpy()

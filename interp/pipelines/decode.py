"""Latents -> video through the pipeline's VAE, de-normalised as the pipeline's ``__call__`` does; the step lens.

:func:`decode_video` is the end of ``__call__`` (``latents / latents_std + latents_mean``, ``vae.decode``,
``video_processor.postprocess_video(output_type="np")``), returning uint8 (B, F, H, W, 3) = ``round(255 * video)``.
The step lens decodes x0 of chosen steps the same way (:func:`x0_steps` parses the choice: ``all``, ``every:K``
(steps 0, K, 2K, ... and the last), or a list ``0,5,9``), stored as ``x0_video`` (steps, B, F, H, W, 3) uint8,
optionally downscaled by an integer factor. The VAE's tiling / slicing are used when ``tiling`` is set and it has them.
On a GPU, :class:`StepLens` decodes on a side CUDA stream, so the loop does not wait for the lens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from interp.pipelines.components import PipelineError


def x0_steps(spec: str | Sequence[int] | None, steps: int) -> list[int]:
    """The steps whose x0 the lens decodes: ``None`` / ``"none"`` -> [], ``"all"``, ``"every:K"`` (0, K, ... and the
    last step), ``"0,5,9"`` or a list of ints (each in 0..steps-1)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "none")):
        return []
    valid = "x0 steps are 'all', 'every:K' (K >= 1), or a comma-separated list of steps"
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s == "all":
            return list(range(steps))
        if s.startswith("every:"):
            try:
                k = int(s.split(":", 1)[1])
            except ValueError:
                raise PipelineError(f"x0 steps {spec!r}: {valid}") from None
            if k < 1:
                raise PipelineError(f"x0 steps {spec!r}: {valid}")
            return sorted(set(range(0, steps, k)) | {steps - 1})
        try:
            spec = [int(v) for v in s.split(",") if v.strip()]
        except ValueError:
            raise PipelineError(f"x0 steps {spec!r}: {valid}") from None
    out = sorted(set(int(v) for v in spec))
    bad = [v for v in out if not 0 <= v < steps]
    if bad:
        raise PipelineError(f"x0 steps {bad} outside 0..{steps - 1} ({steps} steps)")
    return out


def denormalize(vae, latents: Tensor) -> Tensor:
    """``latents / latents_std + latents_mean`` on the VAE's device and dtype, as the pipeline's ``__call__``."""
    dev = next(vae.parameters()).device
    latents = latents.to(device=dev, dtype=vae.dtype)
    cfg = vae.config
    if getattr(cfg, "latents_mean", None) is None:  # VAEs with one scaling factor (CogVideoX, HunyuanVideo)
        return latents / cfg.scaling_factor
    # non-blocking host->device copies: on a side stream (StepLens) a blocking one would wait for the loop's stream
    kw = dict(device=latents.device, dtype=latents.dtype, non_blocking=True)
    mean = torch.tensor(cfg.latents_mean).view(1, cfg.z_dim, 1, 1, 1).to(**kw)
    std = 1.0 / torch.tensor(cfg.latents_std).view(1, cfg.z_dim, 1, 1, 1).to(**kw)
    return latents / std + mean


def normalize(vae, latents: Tensor) -> Tensor:
    """``(latents - latents_mean) * (1 / latents_std)``, as ``prepare_latents`` normalises an encoded image: the
    inverse of :func:`denormalize`."""
    cfg = vae.config
    if getattr(cfg, "latents_mean", None) is None:  # VAEs with one scaling factor (CogVideoX, HunyuanVideo)
        return latents * cfg.scaling_factor
    mean = torch.tensor(cfg.latents_mean).view(1, cfg.z_dim, 1, 1, 1).to(latents.device, latents.dtype)
    inv_std = 1.0 / torch.tensor(cfg.latents_std).view(1, cfg.z_dim, 1, 1, 1).to(latents.device, latents.dtype)
    return (latents - mean) * inv_std


@torch.no_grad()
def encode_latents(vae, x: Tensor) -> Tensor:
    """Normalised float32 latents of videos (B, 3, F, H, W) in [-1, 1]: the posterior's mode, as ``prepare_latents``
    takes it."""
    return normalize(vae, vae.encode(x.to(vae.dtype)).latent_dist.mode().float())


@torch.no_grad()
def decode_frames(pm, latents: Tensor, *, downscale: int = 1, first_frame: Tensor | None = None,
                  reference_frames: int = 0) -> Tensor:  # fmt: skip
    """(B, C, F, H, W) latents -> uint8 (B, F', H', W', 3) on the VAE's device: ``__call__``'s decode and
    ``postprocess_video`` (``output_type="pt"``), then ``round(255 * v)`` there, so a GPU decode leaves the GPU as
    uint8 (a quarter of the float32 bytes, no host-side rounding). ``first_frame`` (TI2V) replaces the leading latent
    frames first, as the pipeline does; ``reference_frames`` leading latent frames (WanVACE's reference images) are
    dropped first, as it does."""
    pipe = pm.pipeline
    vae = getattr(pipe, "vae", None)
    if vae is None:
        raise PipelineError(f"{pm.name}: no VAE loaded; decoding needs the pipeline's vae component")
    latents = latents[:, :, reference_frames:]
    if first_frame is not None:
        latents = latents.clone()
        latents[:, :, : first_frame.shape[2]] = first_frame.to(latents)
    if type(pipe).__name__ in ("LTXPipeline", "LTXImageToVideoPipeline", "LTX2Pipeline", "LTX2ImageToVideoPipeline"):
        video = _ltx_decode(pipe, latents)
    elif type(pipe).__name__ == "MochiPipeline":
        video = _mochi_decode(pipe, latents)
    else:
        video = vae.decode(denormalize(vae, latents), return_dict=False)[0]
    video = pipe.video_processor.postprocess_video(video, output_type="pt")  # (B, F, 3, H, W) in [0, 1]
    video = video.float()
    if downscale > 1:
        video = F.avg_pool2d(video.flatten(0, 1), downscale).unflatten(0, video.shape[:2])
    return (video * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 1, 3, 4, 2).contiguous()


def decode_video(pm, latents: Tensor, *, downscale: int = 1, first_frame: Tensor | None = None,
                 reference_frames: int = 0) -> np.ndarray:  # fmt: skip
    """(B, C, F, H, W) latents -> uint8 (B, F', H', W', 3), as ``__call__`` with ``output_type="np"`` then
    ``round(255 * v)`` (:func:`decode_frames`, brought to the host)."""
    return decode_frames(pm, latents, downscale=downscale, first_frame=first_frame,
                         reference_frames=reference_frames).cpu().numpy()  # fmt: skip


class StepLens:
    """The step lens' decodes, kept off the denoising loop's critical path.

    :meth:`submit` queues the decode of one step's x0; :meth:`result` gives its uint8 frames (B, F, H, W, 3) as a
    numpy array once done. On a GPU with ``overlap`` (the default) each decode runs on a side CUDA stream that waits
    only for the x0 it reads, and its frames come back through pinned memory, so the next steps' forwards are queued
    without waiting for it and the two share the GPU; elsewhere (CPU, ``overlap=False``) :meth:`submit` decodes at
    once. The frames are the same either way (:func:`decode_frames`). ``gpu_seconds``: each overlapped decode's time
    on its stream (CUDA events), contention included.
    """

    def __init__(self, pm, *, downscale: int = 1, first_frame: Tensor | None = None, reference_frames: int = 0,
                 overlap: bool = True):  # fmt: skip
        vae = getattr(pm.pipeline, "vae", None)
        if vae is None:
            raise PipelineError(f"{pm.name}: no VAE loaded; the step lens needs the pipeline's vae component")
        self.pm, self.downscale, self.first_frame, self.reference_frames = pm, downscale, first_frame, reference_frames
        self.device = next(vae.parameters()).device
        self.stream = torch.cuda.Stream(self.device) if overlap and self.device.type == "cuda" else None
        self._jobs: dict[int, tuple] = {}  # step -> (done event, pinned host frames, start event)
        self._done: dict[int, np.ndarray] = {}
        self.gpu_seconds: list[float] = []

    @property
    def overlapped(self) -> bool:
        return self.stream is not None

    def submit(self, step: int, x0: Tensor) -> None:
        if self.stream is None:
            self._done[step] = decode_video(self.pm, x0, downscale=self.downscale, first_frame=self.first_frame,
                                            reference_frames=self.reference_frames)  # fmt: skip
            return
        stream = self.stream
        stream.wait_stream(torch.cuda.current_stream(x0.device if x0.is_cuda else self.device))
        with torch.cuda.stream(stream):
            start = torch.cuda.Event(enable_timing=True)
            start.record(stream)
            frames = decode_frames(
                self.pm,
                x0,
                downscale=self.downscale,
                first_frame=self.first_frame,
                reference_frames=self.reference_frames,
            )
            host = torch.empty(frames.shape, dtype=torch.uint8, pin_memory=True)
            host.copy_(frames, non_blocking=True)
            done = torch.cuda.Event(enable_timing=True)
            done.record(stream)
        if x0.is_cuda:
            x0.record_stream(stream)  # x0 came from the loop's stream: not reused before the side stream read it
        self._jobs[step] = (done, host, start)

    def ready(self, step: int) -> bool:
        """Whether :meth:`result` of ``step`` would return without waiting."""
        if step in self._done:
            return True
        job = self._jobs.get(step)
        return job is not None and job[0].query()

    def result(self, step: int) -> np.ndarray:
        """The decoded frames of ``step`` (waits for its decode)."""
        if step not in self._done:
            if step not in self._jobs:
                raise KeyError(f"step {step} was not submitted to the step lens")
            done, host, start = self._jobs.pop(step)
            done.synchronize()
            self.gpu_seconds.append(start.elapsed_time(done) / 1e3)
            self._done[step] = host.numpy()
        return self._done.pop(step)


def _ltx_decode(pipe, latents: Tensor) -> Tensor:
    """The end of ``LTXPipeline.__call__``: ``_denormalize_latents`` (the VAE's ``latents_mean`` / ``latents_std``
    buffers and ``scaling_factor``) and, for a timestep-conditioned decoder, ``__call__``'s default
    ``decode_timestep`` with its noise scale (default: the same value; 0.0 adds no noise, so none is drawn)."""
    import inspect

    vae = pipe.vae
    dev = next(vae.parameters()).device
    latents = pipe._denormalize_latents(latents.to(dev, torch.float32), vae.latents_mean, vae.latents_std,
                                        vae.config.scaling_factor)  # fmt: skip
    timestep = None
    if vae.config.timestep_conditioning:
        params = inspect.signature(type(pipe).__call__).parameters
        dt, scale = params["decode_timestep"].default, params["decode_noise_scale"].default
        scale = dt if scale is None else scale
        if scale != 0.0:
            raise PipelineError(f"{type(pipe).__name__}'s default decode_noise_scale is {scale}: decoding would draw "
                                "noise from the generator, which interp does not replay; supported: 0.0")  # fmt: skip
        timestep = torch.tensor([dt] * latents.shape[0], device=dev, dtype=latents.dtype)
    return vae.decode(latents.to(vae.dtype), timestep, return_dict=False)[0]


def _mochi_decode(pipe, latents: Tensor) -> Tensor:
    """The end of ``MochiPipeline.__call__``: ``latents * latents_std / scaling_factor + latents_mean`` (the VAE
    config's statistics, its own arithmetic), else ``latents / scaling_factor``."""
    vae = pipe.vae
    cfg = vae.config
    latents = latents.to(next(vae.parameters()).device)
    if cfg.get("latents_mean") is not None and cfg.get("latents_std") is not None:
        n = len(cfg.latents_mean)
        mean = torch.tensor(cfg.latents_mean).view(1, n, 1, 1, 1).to(latents.device, latents.dtype)
        std = torch.tensor(cfg.latents_std).view(1, n, 1, 1, 1).to(latents.device, latents.dtype)
        latents = latents * std / cfg.scaling_factor + mean
    else:
        latents = latents / cfg.scaling_factor
    return vae.decode(latents, return_dict=False)[0]


def to_uint8(video: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(video) * 255).clip(0, 255).astype(np.uint8)


def set_tiling(pm, tiling: bool) -> None:
    vae = pm.components.get("vae")
    if tiling and vae is not None:
        for name in ("enable_tiling", "enable_slicing"):
            if hasattr(vae, name):
                getattr(vae, name)()

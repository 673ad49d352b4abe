"""The x0 lens: every block's residual stream read out as the model's prediction, x0 and frames, at every step.

The logit lens of a video DiT: ``blocks.{i}.hook_resid_post`` at step s goes through the model's own final norm, its
timestep modulation, the output projection and the unpatchify (:meth:`interp.adapters.Adapter.readout`), giving
what the model would predict had it stopped after block i. Classifier-free guidance combines the branches' readouts
as the loop combines the outputs (:func:`interp.trajectory.guide`), and x0 follows from the step's latent under the
scheduler's parametrization (:func:`interp.trajectory.predict_x0`). The last block's lens is the model's own x0,
exactly (``torch.equal``). Frames: a pixel-space model's x0 is the video (:func:`interp.tasks.maze.from_model_space`);
a latent model's goes through its pipeline's VAE (:func:`interp.pipelines.decode.decode_video`).

Tuned lens (:class:`TunedLens`, as the tuned lens of LMs): one affine map per block, fitted by ridge least squares
on the streams of a fitting run to the last block's stream, applied before the readout (the last block's map is the
identity, so its tuned lens is the plain one).

Two sources, the same numbers: a capture holding every ``blocks.*.hook_resid_post`` (:func:`lens_from_cache`), or a
live run (:func:`run_lens`) that reads the streams step by step and keeps none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from interp.adapters import TextConditioning
from interp.models import LoadedModel
from interp.pipelines.decode import decode_video
from interp.store import ActivationCache
from interp.tasks.maze import from_model_space
from interp.trajectory import (
    SamplerConfig,
    StepRecord,
    TrajectoryInputs,
    forward_timestep,
    guide,
    make_scheduler,
    predict_x0,
    run_trajectory,
    set_timesteps,
    step_guidance,
    traced_experts,
)

RESID = "hook_resid_post"
LensX0 = Float[Tensor, "blocks batch channels frames height width"]


def resid_sites(n_blocks: int) -> list[str]:
    """``blocks.{i}.hook_resid_post`` of every block, in order: what the lens reads."""
    return [f"blocks.{i}.{RESID}" for i in range(n_blocks)]


def n_blocks(loaded: LoadedModel) -> int:
    return len(loaded.adapter.blocks(loaded.transformer))


def split_label(label: str) -> tuple[str, str]:
    """A branch label -> (expert, kind): ``cond`` -> (``transformer``, ``cond``), ``transformer_2/uncond`` -> ..."""
    expert, _, kind = label.rpartition("/")
    return expert or "transformer", kind


@dataclass
class TunedLens:
    """One affine map per block (``maps[i]``: (d_model + 1, d_model), the last row the bias) taking block i's stream
    to the last block's; the last block's map is the identity."""

    maps: Float[Tensor, "blocks d_in d_model"]
    ridge: float

    def apply(self, i: int, resid: Tensor) -> Tensor:
        if i == len(self.maps) - 1:
            return resid
        w = self.maps[i].to(resid.device)
        return (resid.double() @ w[:-1] + w[-1]).to(resid.dtype)


class TunedLensFit:
    """Accumulates the normal equations of every block's ridge fit, one step's streams at a time."""

    def __init__(self, blocks: int, ridge: float = 1e-3):
        self.blocks, self.ridge = blocks, ridge
        self.xtx: list[Tensor | None] = [None] * blocks
        self.xty: list[Tensor | None] = [None] * blocks

    def add(self, resid: list[Tensor]) -> None:
        """One forward's streams, ``resid[i]`` (B, tokens, d) of block i."""
        y = resid[-1].reshape(-1, resid[-1].shape[-1]).double().cpu()
        for i, r in enumerate(resid[:-1]):
            x = r.reshape(-1, r.shape[-1]).double().cpu()
            x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
            xtx, xty = x.T @ x, x.T @ y
            self.xtx[i] = xtx if self.xtx[i] is None else self.xtx[i] + xtx
            self.xty[i] = xty if self.xty[i] is None else self.xty[i] + xty

    def solve(self) -> TunedLens:
        if self.xtx[0] is None:
            raise ValueError("tuned lens: nothing to fit (no streams were added)")
        d = self.xty[0].shape[1]
        maps = []
        for i in range(self.blocks - 1):
            a = self.xtx[i]
            reg = self.ridge * a.diagonal()[:-1].mean() * torch.eye(len(a), dtype=a.dtype)
            reg[-1, -1] = 0.0  # the bias is not shrunk
            maps.append(torch.linalg.solve(a + reg, self.xty[i]))
        maps.append(torch.cat([torch.eye(d, dtype=torch.float64), torch.zeros(1, d, dtype=torch.float64)]))
        return TunedLens(torch.stack(maps), self.ridge)


@dataclass
class LensStep:
    """The lens of one step: x0 read after every block (``x0[i]``: after block i), the model's own x0 and the
    tuned lens' x0 (when one is given)."""

    step: int
    timestep: float
    x0: LensX0
    model_x0: Tensor
    tuned: LensX0 | None = None


class Lens:
    """The x0 lens of one model under one sampler: a step's per-branch streams -> x0 after every block.

    ``text`` / ``negative`` are the branches' conditioning: needed where the final modulation reads more than the
    timestep (:attr:`~interp.adapters.Adapter.readout_reads_text`: HunyuanVideo), else optional.
    """

    def __init__(self, loaded: LoadedModel, sampler: SamplerConfig, *, text: TextConditioning | None = None,
                 negative: TextConditioning | None = None, timestep_kwargs: dict | None = None,
                 token_mask: Tensor | None = None, tuned: TunedLens | None = None):  # fmt: skip
        self.loaded, self.sampler, self.tuned = loaded, sampler, tuned
        self.adapter = loaded.adapter
        self.device = next(loaded.transformer.parameters()).device
        self.dtype = next(loaded.transformer.parameters()).dtype
        self.sched = make_scheduler(loaded, sampler.shift, timestep_kwargs)
        set_timesteps(self.sched, sampler.steps, timestep_kwargs, device=self.device)
        self.timesteps = self.sched.timesteps
        self.sigmas = self.sched.sigmas[: len(self.timesteps)] if hasattr(self.sched, "sigmas") else None
        if text is None and self.adapter.readout_reads_text:
            raise ValueError(f"{self.adapter.family}: the lens needs the text conditioning (the final modulation "
                             "reads it)")  # fmt: skip
        if text is not None and negative is None and sampler.cfg:
            negative = self.adapter.null_text(text)
        move = lambda t: None if t is None else t.to(self.device, self.dtype)  # noqa: E731
        self.texts = {"cond": move(text), "uncond": move(negative)}
        self.token_mask = None if token_mask is None else token_mask.to(self.device)

    def outputs(self, expert: str, kind: str, resid: list[Tensor], latent_shape: tuple[int, ...],
                step: int) -> tuple[Tensor, Tensor | None]:  # fmt: skip
        """The model's prediction read after every block (blocks, B, C, F, H, W), and the tuned lens' (or None)."""
        transformer = self.loaded.transformers[expert]
        t = forward_timestep(self.timesteps[step], resid[0].shape[0], self.token_mask)
        text = self.texts[kind]
        with torch.no_grad():
            cond = self.adapter.readout_conditioning(transformer, t, text)
            read = lambda r: self.adapter.readout(transformer, r.to(self.device, self.dtype), cond, latent_shape)  # noqa: E731
            plain = torch.stack([read(r) for r in resid])
            tuned = None
            if self.tuned is not None:
                tuned = torch.stack([read(self.tuned.apply(i, r.to(self.device, self.dtype)))
                                     for i, r in enumerate(resid)])  # fmt: skip
        return plain, tuned

    def step(self, step: int, x: Tensor, branches: dict[str, list[Tensor]], model_x0: Tensor | None = None) -> LensStep:
        """x0 after every block at ``step``: ``x`` the latent entering it, ``branches`` label -> every block's
        stream (in block order) of that branch's forward."""
        x = x.to(self.device)
        t = self.timesteps[step]
        preds, tuned = {}, {}
        expert = None
        for label, resid in branches.items():
            expert, kind = split_label(label)
            preds[kind], tuned[kind] = self.outputs(expert, kind, resid, tuple(x.shape), step)
        if "cond" not in preds:
            raise ValueError(f"step {step}: no cond branch among {sorted(branches)}")
        g = step_guidance(self.sampler, expert)
        sigma = None if self.sigmas is None else self.sigmas[step]
        v = guide(preds["cond"], preds.get("uncond"), g)
        x0 = predict_x0(self.sched, x, v, t, sigma)
        tx0 = None
        if self.tuned is not None:
            tx0 = predict_x0(self.sched, x, guide(tuned["cond"], tuned.get("uncond"), g), t, sigma)
        return LensStep(step, float(t), x0, model_x0 if model_x0 is not None else x0[-1], tx0)


def pixel_space(loaded: LoadedModel) -> bool:
    """A task model whose x0 is the video: ``pixel_space`` in its interp.json, or 3 latent (RGB) channels."""
    task = loaded.task or {}
    return bool(task) and (bool(task.get("pixel_space")) or loaded.adapter.latent_channels(loaded.transformer) == 3)


def lens_frames(loaded: LoadedModel, x0: Float[Tensor, "n channels frames height width"]) -> np.ndarray:
    """x0 as uint8 video (n, F, H, W, 3): a pixel-space model's x0 is the video (in [-1, 1]); a pipeline's latent
    goes through its VAE as the pipeline decodes (:func:`interp.pipelines.decode.decode_video`)."""
    if getattr(loaded, "vae", None) is not None:
        return decode_video(loaded, x0)
    if not pixel_space(loaded):
        raise ValueError(f"{loaded.name}: its x0 is a latent and no VAE is loaded; frames need a pixel-space model "
                         "or a whole pipeline")  # fmt: skip
    return from_model_space(x0.detach().float().cpu()).numpy()


def _block_values(acts: dict[str, Tensor], blocks: int) -> list[Tensor]:
    missing = [s for s in resid_sites(blocks) if s not in acts]
    if missing:
        raise ValueError(
            f"the lens reads every block's {RESID}; missing {missing[:3]}{'...' if len(missing) > 3 else ''}"
        )
    return [acts[s] for s in resid_sites(blocks)]


def run_lens(loaded: LoadedModel, inputs: TrajectoryInputs, sampler: SamplerConfig, *,
             on_lens: Callable[[LensStep], None], tuned: TunedLens | None = None,
             fit: TunedLensFit | None = None, progress: bool = False) -> None:  # fmt: skip
    """Run the trajectory of ``inputs``, reading every block's stream, and hand each step's :class:`LensStep` to
    ``on_lens`` (nothing is stored); ``fit`` also accumulates the tuned lens' fit from the cond branch."""
    blocks = n_blocks(loaded)
    lens = Lens(loaded, sampler, text=inputs.text, negative=inputs.negative, timestep_kwargs=inputs.timestep_kwargs,
                token_mask=_token_mask(loaded, inputs), tuned=tuned)  # fmt: skip

    def on_step(rec: StepRecord) -> None:
        branches = {label: _block_values(acts, blocks) for label, acts in rec.branches.items()}
        if fit is not None:
            fit.add(next(v for k, v in branches.items() if split_label(k)[1] == "cond"))
        on_lens(lens.step(rec.step, rec.x, branches, rec.x0))

    traced_experts(loaded)  # hook points installed before the sites are read
    run_trajectory(loaded, inputs, sampler, read=resid_sites(blocks), on_step=on_step, keep=False, progress=progress)


def fit_tuned_lens(loaded: LoadedModel, inputs: TrajectoryInputs, sampler: SamplerConfig, *,
                   ridge: float = 1e-3) -> TunedLens:  # fmt: skip
    """The tuned lens fitted on the streams of one run of ``inputs`` (every step, the cond branch)."""
    fit = TunedLensFit(n_blocks(loaded), ridge)
    run_lens(loaded, inputs, sampler, on_lens=lambda s: None, fit=fit)
    return fit.solve()


def _token_mask(loaded: LoadedModel, inputs: TrajectoryInputs) -> Tensor | None:
    if inputs.timestep_mask is None:
        return None
    pt, ph, pw = loaded.adapter.patch_size(loaded.transformer)
    return inputs.timestep_mask[0][0][::pt, ::ph, ::pw]


def cache_sampler(cache: ActivationCache) -> SamplerConfig:
    """The sampler a capture ran (its ``sampler`` attribute, else its config)."""
    s = cache.sampler or {}
    cfg = cache.config
    steps = int(s.get("steps") or cfg.get("steps") or len(cache.file["timesteps"]))
    shift = s.get("shift", cfg.get("shift"))
    guidance = s.get("guidance", cfg.get("guidance"))
    guidance = 1.0 if guidance is None else float(guidance)
    seed = int(s.get("seed", cfg.get("noise_seed", 0)))
    return SamplerConfig(steps=steps, shift=shift, guidance_scale=guidance, guidance_scale_2=s.get("guidance_2"),
                         seed=seed)  # fmt: skip


def lens_from_cache(loaded: LoadedModel, cache: ActivationCache, *, text: TextConditioning | None = None,
                    negative: TextConditioning | None = None, tuned: TunedLens | None = None,
                    steps: list[int] | None = None) -> Iterator[LensStep]:  # fmt: skip
    """The lens of every step of a capture (or of ``steps``) made by ``loaded``, from its stored
    ``blocks.*.hook_resid_post`` (all blocks, every branch, unpooled), its latents and its x0."""
    blocks = n_blocks(loaded)
    if cache.file.attrs.get("pool", "none") != "none":
        raise ValueError(f"{cache.path}: the lens reads per-token streams; this capture is pooled "
                         f"({cache.file.attrs['pool']})")  # fmt: skip
    views = {label: cache.branch(label) for label in cache.branches}
    for label, view in views.items():
        missing = [s for s in resid_sites(blocks) if s not in view]
        if missing:
            raise ValueError(f"{cache.path}: the lens reads every block's {RESID}; branch {label!r} lacks "
                             f"{len(missing)} of {blocks} (capture with --sites 'blocks.*.{RESID}')")  # fmt: skip
    lens = Lens(loaded, cache_sampler(cache), text=text, negative=negative, tuned=tuned)
    latents, x0 = cache.file["latents"], cache.file["x0"]
    done = sorted({int(s) for view in views.values() for s in view.steps})  # the experts' steps together
    all_steps = done if steps is None else [s for s in steps if s in done]
    for s in all_steps:
        branches = {}
        for label, view in views.items():
            if s not in set(view.steps.tolist()):
                continue
            one = view.select(s)
            branches[label] = [one[site][0] for site in resid_sites(blocks)]
        x = torch.from_numpy(latents[s]).to(getattr(torch, latents.attrs.get("source_dtype", "float32")))
        model_x0 = torch.from_numpy(x0[s]).to(getattr(torch, x0.attrs.get("source_dtype", "float32")))
        yield lens.step(s, x, branches, model_x0.to(lens.device))

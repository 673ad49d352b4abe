"""The denoising loop: any diffusers scheduler, CFG and experts as labelled branches, per-step x_s, v_s, x0_s.

Per step s: the model's input latent x_s, the (guided) prediction v_s, x0_s derived from the scheduler's
parametrization (flow matching: x0 = x - sigma * v), the timestep and sigma. Each forward runs through
:meth:`interp.trace.Traced.run` with a :class:`~interp.trace.ForwardPlan`; what it reads is returned per branch:
``cond`` / ``uncond`` (classifier-free guidance as two separate forwards, as diffusers' WanPipeline), prefixed by
the expert's name (``transformer/cond``, ``transformer_2/uncond``) for two-expert Wan2.2 models. A pipeline with its
own guidance rule names its branches and combines them (:class:`Guider`; LTX-2: ``cond``, ``uncond``, ``stg``,
``modality``); latents denoised beside the video (LTX-2's audio) are ``TrajectoryInputs.streams``, stepped with them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import torch
from jaxtyping import Float
from pydantic import BaseModel, ConfigDict, Field
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor

from interp.adapters import TextConditioning
from interp.models import LoadedModel
from interp.precision import PRECISIONS, Precision
from interp.trace import ForwardPlan, Traced

Latent = Float[Tensor, "batch channels frames height width"]
PlanFn = Callable[[str, int], ForwardPlan]
"""(branch, step) -> what that forward reads, edits and skips."""


@contextlib.contextmanager
def precision_context(precision: str, device: str | torch.device) -> Iterator[None]:
    """Run the body's forwards in ``precision`` (:mod:`interp.precision`) on ``device``: float32 unchanged; tf32 turns
    on TensorFloat-32 matrix products and convolutions (CUDA; restored on exit); bfloat16 autocasts."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "float32":
        yield
    elif precision == "tf32":
        old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
    else:
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
            yield


class SamplerConfig(BaseModel):
    """Sampling options. ``shift=None`` keeps the scheduler's own; guidance <= 1 runs no unconditional branch."""

    model_config = ConfigDict(extra="forbid")
    steps: int = Field(20, ge=1)
    shift: float | None = None
    guidance_scale: float = 1.0
    guidance_scale_2: float | None = None  # second expert's guidance (default: guidance_scale)
    seed: int = 0
    precision: Precision = "float32"  # the forwards' arithmetic (interp.precision); the scheduler steps in float32

    @property
    def cfg(self) -> bool:
        return self.guidance_scale > 1.0 or (self.guidance_scale_2 or 0.0) > 1.0

    @classmethod
    def from_task(
        cls,
        task: dict | None,
        *,
        steps: int | None = None,
        shift: float | None = None,
        guidance: float | None = None,
        seed: int = 0,
        fallback: dict | None = None,
        precision: Precision = "float32",
    ) -> SamplerConfig:
        """The one rule for sampler defaults: an explicit value, else the model's task metadata (``interp.json``
        ``sampler``: steps, shift, guidance), else ``fallback`` (default :data:`SAMPLER_FALLBACK`: 20 steps, the
        scheduler's own shift, guidance 1)."""
        fb = {**SAMPLER_FALLBACK, **(fallback or {})}
        meta = (task or {}).get("sampler", {})
        pick = lambda v, k: v if v is not None else meta.get(k, fb[k])  # noqa: E731
        shift_ = pick(shift, "shift")
        return cls(steps=int(steps or meta.get("steps", fb["steps"])), shift=None if shift_ is None else float(shift_),
                   guidance_scale=float(pick(guidance, "guidance")), seed=seed, precision=precision)  # fmt: skip

    def describe(self, scheduler) -> dict:
        """The resolved sampler as a capture records it."""
        return {"steps": self.steps, "shift": self.shift, "guidance": self.guidance_scale,
                "guidance_2": self.guidance_scale_2, "seed": self.seed, "scheduler": type(scheduler).__name__,
                **({} if self.precision == "float32" else {"precision": self.precision})}  # fmt: skip


SAMPLER_FALLBACK = {"steps": 20, "shift": None, "guidance": 1.0}
"""Sampler defaults of a model whose task metadata names none (capture, run, experiments)."""
EVAL_FALLBACK = {"steps": 50, "shift": 5.0}
"""``interp eval`` / ``interp compare``'s documented defaults for a task model whose ``interp.json`` names no sampler
(the shipped maze models name theirs: 50 steps, shift 5)."""


class Guider(Protocol):
    """A pipeline's own rule for the forwards of a step and how their predictions combine, in place of the loop's
    classifier-free guidance (``LTX2Pipeline``: CFG, spatio-temporal and modality-isolation guidance in x0 space,
    rescaled; :class:`interp.pipelines.ltx2.LTX2Guidance`)."""

    kinds: tuple[str, ...]  # the forwards (branches) of every step, in order; "cond" first, "uncond" the negative text

    def conditioning(self, kind: str, text: TextConditioning, negative: TextConditioning | None) -> TextConditioning:
        """What the ``kind`` forward conditions on."""
        ...

    def combine(self, stream: str | None, x: Tensor, preds: dict[str, Tensor], sigma: Tensor) -> Tensor:
        """The guided prediction of the video (``stream=None``) or of another stream, from each kind's prediction, the
        latents ``x`` the step entered with and the step's sigma."""
        ...


@dataclass
class TrajectoryInputs:
    """What the loop conditions on. ``negative`` defaults to the adapter's null text (zeros)."""

    text: TextConditioning
    latent_shape: tuple[int, int, int, int, int]  # (B, C, F, H, W)
    negative: TextConditioning | None = None
    condition: Float[Tensor, "batch cond_channels frames height width"] | None = None  # cat([x_t, condition], dim=1)
    first_frame: Float[Tensor, "batch channels lead height width"] | None = None  # replaces x's leading frames
    latents: Latent | None = None  # initial noise override
    # per-token timesteps (Wan2.2 TI2V ``expand_timesteps``): (1, 1, F, H, W) latent mask, 0 where a token is clean;
    # each forward gets timestep (B, tokens) = mask[0, 0, ::pt, ::ph, ::pw].flatten() * t, as diffusers' Wan pipelines
    timestep_mask: Float[Tensor, "1 1 frames height width"] | None = None
    # stochastic scheduler steps (CogVideoXDPMScheduler): one generator per sample, continuing the state the
    # pipeline's own generator has after ``prepare_latents`` (``torch.Generator().manual_seed(seed + i)``), so the
    # step's noise draws equal the pipeline's; None: fresh generators seeded with ``SamplerConfig.seed + i``
    generators: list[torch.Generator] | None = None
    # the pipeline's latent layout as a permutation of (B, C, F, H, W) (CogVideoX: (0, 2, 1, 3, 4), i.e. (B, F, C, H,
    # W)): a stochastic step draws its noise in that layout, as the pipeline does
    step_layout: tuple[int, ...] | None = None
    # keywords of ``scheduler.set_timesteps`` the pipeline passes besides the step count (LTX: ``sigmas`` =
    # linspace(1, 1/N, N) and the dynamic shift ``mu`` it computes from the token count; see interp.pipelines.inputs)
    timestep_kwargs: dict | None = None
    # leading latent frames that are not video (WanVACE's reference images): denoised with the rest, dropped before
    # decoding, as the pipeline drops them
    reference_frames: int = 0
    # latents the model denoises beside the video, by the extras key the adapter takes them in (LTX-2: the packed
    # audio latents, {"audio_hidden_states": (B, tokens, C)}): every forward gets their current value and each is
    # stepped by its own copy of the scheduler with the model's prediction for it, as the pipeline steps them
    streams: dict[str, Tensor] | None = None
    # the pipeline's own guidance rule (None: classifier-free guidance with SamplerConfig.guidance_scale)
    guider: Guider | None = None


@dataclass
class StepInput:
    """What a latent edit sees at step s, before the step's forward: the latent ``x`` entering the step, its place on
    the schedule (``x = signal * x0 + noise * eps``; flow matching: ``1 - sigma_s, sigma_s``), and ``x0``, the
    clean prediction of step s-1 that ``x`` was stepped from (None at the first step run: ``x`` is the initial
    noise). For the Euler flow step (and DDIM), ``x = signal * x0 + noise * eps_hat`` holds exactly with step
    s-1's noise estimate ``eps_hat``."""

    step: int
    x: Latent
    signal: float
    noise: float
    x0: Latent | None


@dataclass
class StepRecord:
    step: int
    timestep: float
    sigma: float
    expert: str
    x: Latent  # model input latent x_s
    v: Latent  # guided prediction v_s
    x0: Latent
    x_next: Latent  # the scheduler's output, input of the next step (the final latent after the last step)
    branches: dict[str, dict[str, Tensor]] = field(default_factory=dict)  # branch -> site -> value
    streams: dict[str, Tensor] = field(default_factory=dict)  # the other streams after this step (TrajectoryInputs)


@dataclass
class Trajectory:
    timesteps: Float[Tensor, " steps"]
    sigmas: Float[Tensor, " steps"]
    final: Latent
    records: list[StepRecord] = field(default_factory=list)  # kept steps (all unless keep=False)
    branch_steps: dict[str, list[int]] = field(default_factory=dict)
    final_streams: dict[str, Tensor] = field(default_factory=dict)  # the other streams' final latents

    def stack(self, attr: str) -> Tensor:
        """``x``, ``v`` or ``x0`` of the kept steps, stacked: (steps, B, C, F, H, W)."""
        return torch.stack([getattr(r, attr) for r in self.records])


STATEFUL_STEPS = ("CogVideoXDPMScheduler",)
"""Schedulers whose ``step`` takes more state than (model_output, timestep, sample) and that the loop steps as their
pipeline does: ``CogVideoXDPMScheduler.step(v, old_pred_original_sample, t, timestep_back, x, eta=0.0,
generator=...)`` (CogVideoXPipeline: ``timestep_back`` is the previous step's timestep, None at the first step; the
step draws noise from the pipeline's generator)."""


def is_stateful(sched) -> bool:
    return type(sched).__name__ in STATEFUL_STEPS


def keeps_history(sched) -> bool:
    """Whether ``sched`` carries state between steps (a multistep history, or a :data:`STATEFUL_STEPS` step), so a
    run cannot begin mid-schedule (:func:`run_trajectory`'s ``start``)."""
    return hasattr(sched, "model_outputs") or is_stateful(sched)


def check_steppable(sched, timestep_kwargs: dict | None = None) -> None:
    """An error, before anything runs, for a scheduler the loop cannot step exactly as its pipeline does (never a
    silent fallback): a ``step`` needing more state than (model_output, timestep, sample) that the loop does not keep
    (:data:`STATEFUL_STEPS` it keeps), or ``set_timesteps`` needing ``mu`` (dynamic shifting, LTX)."""
    import inspect

    name = type(sched).__name__
    if is_stateful(sched):
        return
    params = inspect.signature(sched.step).parameters
    extra = [p for p, v in params.items() if v.default is inspect.Parameter.empty and v.kind is v.POSITIONAL_OR_KEYWORD
             and p not in ("self", "model_output", "timestep", "sample")]  # fmt: skip
    if extra:
        raise ValueError(f"{name}.step needs {', '.join(extra)} (a multistep state the loop does not keep); "
                         "schedulers the loop steps take (model_output, timestep, sample), e.g. CogVideoXDDIMScheduler, "
                         "FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler, DDIMScheduler")  # fmt: skip
    if sched.config.get("use_dynamic_shifting") and (timestep_kwargs or {}).get("mu") is None:
        raise ValueError(f"{name} has use_dynamic_shifting=True: set_timesteps needs mu (the pipeline computes it from "
                         "the token count); the loop does not compute mu yet: use a scheduler config with "
                         "use_dynamic_shifting=false and an explicit shift")  # fmt: skip


def make_scheduler(loaded: LoadedModel, shift: float | None = None, timestep_kwargs: dict | None = None):
    """A fresh copy of the model's scheduler (never mutate the loaded one), with ``shift`` if given."""
    sched = loaded.scheduler
    check_steppable(sched, timestep_kwargs)
    overrides = {}
    if shift is not None and sched.config.get("use_dynamic_shifting"):
        raise ValueError(f"{type(sched).__name__} has use_dynamic_shifting=True: the shift is mu, which the pipeline "
                         "computes from the token count; leave --shift unset")  # fmt: skip
    if shift is not None:
        key = next((k for k in ("shift", "flow_shift") if k in sched.config), None)
        if key is None:
            raise ValueError(f"{type(sched).__name__} has no shift option (config keys: {sorted(sched.config)})")
        overrides[key] = shift
    return type(sched).from_config(sched.config, **overrides)


def set_timesteps(sched, steps: int, timestep_kwargs: dict | None = None, device=None) -> None:
    """``sched.set_timesteps(steps, device=..., **timestep_kwargs)`` as the pipeline's ``retrieve_timesteps`` calls
    it; a callable value is called with ``steps`` (LTX's ``sigmas``), and given ``sigmas`` the step count is theirs."""
    kw = {k: v(steps) if callable(v) else v for k, v in (timestep_kwargs or {}).items()}
    if kw.get("sigmas") is not None:
        sched.set_timesteps(device=device, **kw)
    else:
        sched.set_timesteps(steps, device=device, **kw)
    if len(sched.timesteps) != steps:
        raise ValueError(f"{type(sched).__name__} made {len(sched.timesteps)} timesteps for {steps} steps")


def schedule(loaded: LoadedModel, config: SamplerConfig,
             inputs: TrajectoryInputs | None = None) -> tuple[Tensor, Tensor, dict[str, list[int]]]:  # fmt: skip
    """(timesteps, sigmas, branch -> steps) a run of ``config`` (on ``inputs``) will use, without running the model."""
    kw = inputs.timestep_kwargs if inputs is not None else None
    sched = make_scheduler(loaded, config.shift, kw)
    set_timesteps(sched, config.steps, kw)
    ts = sched.timesteps.cpu()
    sigmas = sched.sigmas[: len(ts)].cpu() if hasattr(sched, "sigmas") else torch.zeros(len(ts))
    branches: dict[str, list[int]] = {}
    two = len(loaded.transformers) > 1
    guider = inputs.guider if inputs is not None else None
    for i, t in enumerate(ts):
        expert = loaded.expert_for(float(t))
        g = step_guidance(config, expert)
        for kind in guider.kinds if guider is not None else ("cond", "uncond") if g > 1.0 else ("cond",):
            branches.setdefault(f"{expert}/{kind}" if two else kind, []).append(i)
    return ts, sigmas, branches


def step_guidance(config: SamplerConfig, expert: str) -> float:
    """The guidance scale of a step run by ``expert`` (Wan2.2's second expert may have its own)."""
    if expert == "transformer_2" and config.guidance_scale_2 is not None:
        return config.guidance_scale_2
    return config.guidance_scale


def forward_timestep(t: Tensor, batch: int, token_mask: Tensor | None = None) -> Tensor:
    """The timestep a step's forward gets: ``t`` for every sample (B,), or per token (B, tokens) = ``token_mask * t``
    (Wan2.2 TI2V, as diffusers' Wan pipelines)."""
    if token_mask is None:
        return t.expand(batch)
    return (token_mask * t).flatten().unsqueeze(0).expand(batch, -1)


def guide(cond: Tensor, uncond: Tensor | None, guidance: float) -> Tensor:
    """Classifier-free guidance as the loop combines the branches: ``uncond + guidance * (cond - uncond)``."""
    return cond if uncond is None else uncond + guidance * (cond - uncond)


def is_flow(sched) -> bool:
    return type(sched).__name__.startswith("FlowMatch") or sched.config.get("prediction_type") == "flow_prediction"


def predict_x0(sched, x: Tensor, out: Tensor, t: Tensor, sigma: Tensor | None) -> Tensor:
    """x0 from a model output under the scheduler's parametrization."""
    if is_flow(sched):
        return x - sigma * out
    kind = sched.config.get("prediction_type", "epsilon")
    a = sched.alphas_cumprod.to(x.device)[int(t)]
    if kind == "epsilon":
        return (x - (1 - a).sqrt() * out) / a.sqrt()
    if kind == "v_prediction":
        return a.sqrt() * x - (1 - a).sqrt() * out
    if kind == "sample":
        return out
    raise ValueError(f"unknown prediction_type {kind!r}")


def signal_noise(sched, t: float, sigma: float) -> tuple[float, float]:
    """(a, b) with ``x_t = a x0 + b eps`` at timestep ``t`` (sigma ``sigma``) under the scheduler's parametrization."""
    if is_flow(sched):
        return 1.0 - sigma, sigma
    a = float(sched.alphas_cumprod[int(t)])
    return a**0.5, (1.0 - a) ** 0.5


def traced_experts(loaded: LoadedModel) -> dict[str, Traced]:
    """One :class:`Traced` per expert, cached on the loaded model."""
    cache = loaded.extra.setdefault("traced", {})
    for name, module in loaded.transformers.items():
        if name not in cache:
            cache[name] = Traced(module, loaded.adapter)
    return cache


def initial_latents(shape: tuple[int, ...], seed: int, init_sigma: float = 1.0) -> Latent:
    """Reproducible initial noise: N(0,1) from a CPU ``torch.Generator`` seeded with ``seed``."""
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed)) * init_sigma


@torch.no_grad()
def run_trajectory(
    loaded: LoadedModel,
    inputs: TrajectoryInputs,
    config: SamplerConfig | None = None,
    *,
    read: str | list[str] = (),
    plan: PlanFn | None = None,
    on_step: Callable[[StepRecord], None] | None = None,
    start: tuple[int, Latent] | tuple[int, Latent, Latent] | None = None,
    stop: int | None = None,
    keep: bool = True,
    progress: bool = False,
    edit_latent: Callable[[StepInput], Latent] | None = None,
    grad: bool = False,
    start_streams: dict[str, Tensor] | None = None,
) -> Trajectory:
    """Denoise ``inputs`` with ``loaded``'s scheduler; record every step.

    read: sites to capture at every forward (globs allowed); plan: per (branch, step) plan, overriding ``read``.
    start: (step, x_step) to resume a run from a recorded step (single-step schedulers only), or (step, x_step,
    x0 of the step before), which latent edits then see as :attr:`StepInput.x0`; with ``inputs.streams``,
    ``start_streams`` holds each stream's latents entering that step (``StepRecord.streams`` of the step before).
    stop: the step to stop before (default: the last step is run); ``final`` is then the latent entering it.
    edit_latent: :class:`StepInput` -> the latent entering the step, applied before each step's forward (the record's
    ``x`` and the scheduler step see the edited latent; ``first_frame`` is imposed again after it).
    grad: run the loop with autograd on (attribution patching): every forward traces with ``grad=True``, so the final
    latent's graph reaches the values read at every step (``torch.autograd.grad``); otherwise all under no_grad.
    """
    config = config or SamplerConfig()
    sched = make_scheduler(loaded, config.shift, inputs.timestep_kwargs)
    device = next(loaded.transformer.parameters()).device
    dtype = next(loaded.transformer.parameters()).dtype
    set_timesteps(sched, config.steps, inputs.timestep_kwargs, device=device)
    timesteps = sched.timesteps
    sigmas = sched.sigmas[: len(timesteps)] if hasattr(sched, "sigmas") else torch.zeros(len(timesteps))
    # host copies for the per-step Python numbers: reading a GPU scalar would wait for the GPU every step
    timesteps_host, sigmas_host = timesteps.cpu().tolist(), sigmas.cpu().tolist()
    experts = traced_experts(loaded)
    text = inputs.text.to(device, dtype)
    guider = inputs.guider
    wants_negative = config.cfg if guider is None else "uncond" in guider.kinds
    negative = (inputs.negative or loaded.adapter.null_text(inputs.text)).to(device, dtype) if wants_negative else None
    condition = None if inputs.condition is None else inputs.condition.to(device, dtype)
    token_mask = None
    if inputs.timestep_mask is not None:
        pt, ph, pw = loaded.adapter.patch_size(loaded.transformer)
        token_mask = inputs.timestep_mask[0][0][::pt, ::ph, ::pw].to(device)

    begin = 0
    if start is not None:
        begin, x = start[0], start[1].clone()
        if keeps_history(sched) and begin > 0:
            raise ValueError(f"cannot resume {type(sched).__name__} mid-run: it keeps a multistep history")
        x = x.to(device)
    elif inputs.latents is not None:
        x = inputs.latents.to(device).clone()
    else:
        x = initial_latents(inputs.latent_shape, config.seed, float(getattr(sched, "init_noise_sigma", 1.0)))
        x = x.to(device)
    if tuple(x.shape) != tuple(inputs.latent_shape):
        raise ValueError(f"initial latents {tuple(x.shape)} != latent_shape {tuple(inputs.latent_shape)}")
    if inputs.first_frame is not None:
        x[:, :, : inputs.first_frame.shape[2]] = inputs.first_frame.to(x)
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(begin)
    elif begin:
        raise ValueError(f"{type(sched).__name__} cannot start at step {begin}")
    streams = {k: v.to(device).clone() for k, v in (inputs.streams or {}).items()}
    if streams and begin:
        missing = sorted(set(streams) - set(start_streams or {}))
        if missing:
            raise ValueError(f"resuming at step {begin} needs the {', '.join(missing)} latents entering it "
                             "(start_streams)")  # fmt: skip
        streams = {k: start_streams[k].to(device).clone() for k in streams}
    stream_scheds = {}
    for k in streams:  # the pipeline steps each other stream with its own copy of the scheduler
        stream_scheds[k] = make_scheduler(loaded, config.shift, inputs.timestep_kwargs)
        set_timesteps(stream_scheds[k], config.steps, inputs.timestep_kwargs, device=device)
        if hasattr(stream_scheds[k], "set_begin_index"):
            stream_scheds[k].set_begin_index(begin)

    stateful = is_stateful(sched)
    generators, old_x0 = None, None
    if stateful:
        generators = inputs.generators or [torch.Generator().manual_seed(config.seed + k) for k in range(x.shape[0])]
        if len(generators) != x.shape[0]:
            raise ValueError(f"{len(generators)} generators for a batch of {x.shape[0]}")
    perm = inputs.step_layout
    inv = None if perm is None else tuple(sorted(range(len(perm)), key=perm.__getitem__))
    two = len(experts) > 1
    default = ForwardPlan(read=read if isinstance(read, (list, tuple)) else [read]) if read else ForwardPlan()
    traj = Trajectory(timesteps.cpu(), sigmas.cpu(), x)
    columns = (TextColumn("denoising"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    # the previous step's clean prediction
    x0 = start[2].to(device) if start is not None and len(start) > 2 and start[2] is not None else None
    end = config.steps if stop is None else stop
    if not begin <= end <= config.steps:
        raise ValueError(f"stop {stop}: the run starts at step {begin} of {config.steps}; "
                         f"valid: {begin}..{config.steps}")  # fmt: skip
    with Progress(*columns, disable=not progress, transient=True) as bar, torch.set_grad_enabled(grad):
        task = bar.add_task("steps", total=end - begin)
        for i in range(begin, end):
            t = timesteps[i]
            if edit_latent is not None:
                x = edit_latent(StepInput(i, x, *signal_noise(sched, timesteps_host[i], sigmas_host[i]), x0))
                if inputs.first_frame is not None:
                    x[:, :, : inputs.first_frame.shape[2]] = inputs.first_frame.to(x)
            expert = loaded.expert_for(timesteps_host[i])
            traced = experts[expert]
            guidance = step_guidance(config, expert)
            x_in = sched.scale_model_input(x, t) if hasattr(sched, "scale_model_input") else x
            x_in = x_in.to(dtype)
            ts = forward_timestep(t, x.shape[0], token_mask)
            branches: dict[str, dict[str, Tensor]] = {}
            preds, stream_preds = {}, {}
            if guider is None:
                forwards = [(k, c) for k, c in (("cond", text), ("uncond", negative))
                            if c is not None and not (k == "uncond" and guidance <= 1.0)]  # fmt: skip
            else:
                forwards = [(k, guider.conditioning(k, text, negative)) for k in guider.kinds]
            for kind, txt in forwards:
                label = f"{expert}/{kind}" if two else kind
                fplan = plan(label, i) if plan is not None else default
                if streams:  # the other streams' current latents go into the forward
                    txt = TextConditioning(txt.encoder_hidden_states,
                                           {**txt.extras, **{k: s.to(dtype) for k, s in streams.items()}})  # fmt: skip
                with precision_context(config.precision, device):
                    res = traced.run(x_in, ts, txt, condition, plan=fplan, step=i, grad=grad, streams=bool(streams))
                preds[kind], stream_preds[kind] = res.output, res.streams
                if config.precision == "bfloat16":  # the autocast prediction joins the update in the latents' dtype
                    preds[kind] = res.output.to(x_in.dtype)
                    stream_preds[kind] = {k: p.to(x_in.dtype) for k, p in res.streams.items()}
                branches[label] = res.acts
                traj.branch_steps.setdefault(label, []).append(i)
            sigma = sigmas[i] if len(sigmas) else None
            stream_v = {}
            if guider is None:
                v = guide(preds["cond"], preds.get("uncond"), guidance)
                for k in streams:
                    stream_v[k] = guide(stream_preds["cond"][k], stream_preds.get("uncond", {}).get(k), guidance)
            else:
                v = guider.combine(None, x, preds, sigma)
                for k in streams:
                    stream_v[k] = guider.combine(k, streams[k], {kind: p[k] for kind, p in stream_preds.items()},
                                                 stream_scheds[k].sigmas[i])  # fmt: skip
            x0 = predict_x0(sched, x, v, t, sigma)
            if stateful:  # CogVideoXPipeline's DPM step, in the pipeline's layout (where its noise is drawn)
                lay = (lambda a: a) if perm is None else (lambda a: a.permute(perm))  # noqa: E731
                back = timesteps[i - 1] if i > 0 else None
                x_next, old_x0 = sched.step(lay(v), None if old_x0 is None else lay(old_x0), t, back, lay(x), eta=0.0,
                                            generator=generators, return_dict=False)  # fmt: skip
                if inv is not None:
                    x_next, old_x0 = x_next.permute(inv).contiguous(), old_x0.permute(inv).contiguous()
            else:
                x_next = sched.step(v, t, x, return_dict=False)[0]
            if inputs.first_frame is not None:
                x_next[:, :, : inputs.first_frame.shape[2]] = inputs.first_frame.to(x_next)
            for k in streams:  # as the pipeline steps them: the video's timestep, the stream's own scheduler
                streams[k] = stream_scheds[k].step(stream_v[k], t, streams[k], return_dict=False)[0]
            s_val = sigmas_host[i] if sigma is not None else float("nan")
            rec = StepRecord(i, timesteps_host[i], s_val, expert, x, v, x0, x_next, branches, dict(streams))
            x = x_next
            if on_step is not None:
                on_step(rec)
            if keep:
                traj.records.append(rec)
            bar.advance(task)
    traj.final = x
    traj.final_streams = streams
    return traj

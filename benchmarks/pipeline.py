"""The pipeline level at real scale: seconds per step of sampling bare, with a pooled capture, and with the step lens.

Random weights in the real shapes, built on the device (no download, no CPU init): a diffusers ``WanPipeline`` of
Wan2.1-T2V-1.3B (``wan1.3b``) or the ``WanImageToVideoPipeline`` of Wan2.2-I2V-A14B with its two experts
(``a14b``), each with the Wan2.1 VAE and a UniPC flow-matching scheduler; ``tiny`` / ``tiny-a14b`` are the same
classes at test sizes for the CPU. The text encoder is a ``UMT5EncoderModel`` with UMT5-XXL's width (d_model 4096,
64 heads, d_ff 10240) but 2 of its 24 layers, over a word-level tokenizer: it runs once per prompt, outside the
measured loop, so its depth does not enter the figures.

At the config's video size (wan1.3b / a14b: 81 frames at 480 x 832, a 21 x 60 x 104 latent, 32,760 tokens), with
classifier-free guidance (two forwards a step, as the pipeline's ``__call__``), side by side in one run, rounds
interleaved (the order rotates every round) and compared pairwise per round:

- ``diffusers``: the pipeline's own ``__call__`` (``output_type="latent"``, the same embeddings and noise), its
  steps 2..N timed through ``callback_on_step_end``: the reference the toolkit's loop should equal;
- ``bare``: :func:`interp.trajectory.run_trajectory`, nothing read (the toolkit's loop, no capture);
- ``pooled``: :func:`interp.apps.capture.capture` of every block's ``hook_resid_post`` pooled over tokens
  (``pool="mean"``, float16, streamed to HDF5);
- ``lens``: a capture with the step lens (``x0_steps``) decoding x0 through the VAE every ``x0_every`` steps
  (steps 0, K, 2K, ...; ``every:K`` of ``interp capture`` adds the last step too), overlapped with the loop on a side
  CUDA stream (:class:`interp.pipelines.decode.StepLens`); ``lens_sync``: the same decoded in the loop
  (``x0_overlap=False``).

A capture's figure is its ``loop`` time (the steps, and for the lens every decode finished; prompt encoding and the
final video decode are apart). Also measured: seconds per decode of one x0 alone (and tiled), and the peak GPU memory
(``torch.cuda.max_memory_allocated``; CPU: peak resident set) of each. Targets: lens <= 1.3x bare, pooled <= 1.05x
bare. A time budget bounds the run: another round starts only if it fits (the process's age + the last round's time).

Run: ``python -m benchmarks.pipeline --config wan1.3b --device cuda --steps 10 --out DIR`` (writes
``DIR/pipeline-<config>.json`` and ``.txt``); ``--config tiny`` runs on a CPU in seconds.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import typer
from diffusers import (
    AutoencoderKLWan,
    UniPCMultistepScheduler,
    WanImageToVideoPipeline,
    WanPipeline,
    WanTransformer3DModel,
)
from diffusers.utils import logging as dlogging
from PIL import Image
from transformers import UMT5Config, UMT5EncoderModel

from benchmarks.capture import PeakMemory, med, save, spread, sync
from interp.apps.capture import CaptureConfig, capture
from interp.models import EXPERTS
from interp.pipelines.components import PipelineModel, pipeline_model
from interp.pipelines.decode import decode_video, set_tiling
from interp.pipelines.inputs import PipelineInputs, encode_inputs
from interp.pipelines.organism import build_tokenizer
from interp.trajectory import SamplerConfig, run_trajectory

WAN21_13B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
                 text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                 qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)  # fmt: skip
"""Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json."""
WAN22_A14B = dict(WAN21_13B, num_attention_heads=40, ffn_dim=13824, num_layers=40, in_channels=36)
"""Wan-AI/Wan2.2-I2V-A14B-Diffusers transformer/ and transformer_2/config.json (the same config twice)."""
WAN21_VAE = dict(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                 temperal_downsample=[False, True, True],
                 latents_mean=[-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715,
                               0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921],
                 latents_std=[2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652,
                              1.5579, 1.6382, 1.1253, 2.8251, 1.9160])  # fmt: skip
"""The Wan2.1 VAE (vae/config.json of Wan2.1 and of Wan2.2-A14B)."""
UMT5_XXL_2 = dict(d_model=4096, d_kv=64, d_ff=10240, num_layers=2, num_heads=64, relative_attention_num_buckets=32,
                  relative_attention_max_distance=128, feed_forward_proj="gated-gelu", dropout_rate=0.0)  # fmt: skip
"""UMT5-XXL's width (google/umt5-xxl: 24 layers, 4.7B parameters with its 256k vocabulary), 2 layers."""
TINY_T = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
              text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
              qk_norm="rms_norm_across_heads", rope_max_seq_len=32)  # fmt: skip
TINY_VAE = dict(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])
TINY_TEXT = dict(d_model=32, d_kv=8, d_ff=32, num_layers=1, num_heads=4, relative_attention_num_buckets=8,
                 relative_attention_max_distance=16, feed_forward_proj="gated-gelu", dropout_rate=0.0)  # fmt: skip


@dataclass(frozen=True)
class PipelineSpec:
    pipeline: str  # WanPipeline | WanImageToVideoPipeline
    transformer: dict
    vae: dict
    text: dict
    experts: int = 1
    boundary_ratio: float | None = None
    flow_shift: float = 3.0
    frames: int = 81
    height: int = 480
    width: int = 832
    dtype: str = "bfloat16"
    budget_s: float = 210.0  # wall seconds for the whole process (another round starts only if it fits)
    note: str = ""


CONFIGS: dict[str, PipelineSpec] = {
    "tiny": PipelineSpec("WanPipeline", TINY_T, TINY_VAE, TINY_TEXT, frames=5, height=32, width=32, dtype="float32",
                         budget_s=40.0, note="test sizes, as tests/helpers/pipelines.py's t2v"),
    "tiny-a14b": PipelineSpec("WanImageToVideoPipeline", dict(TINY_T, in_channels=36), TINY_VAE, TINY_TEXT,
                              experts=2, boundary_ratio=0.9, flow_shift=5.0, frames=5, height=32, width=32,
                              dtype="float32", budget_s=40.0, note="test sizes, two experts"),
    "wan1.3b": PipelineSpec("WanPipeline", WAN21_13B, WAN21_VAE, UMT5_XXL_2, flow_shift=3.0, budget_s=210.0,
                            note="Wan2.1-T2V-1.3B; UniPC flow_shift 3.0 (480p)"),
    "a14b": PipelineSpec("WanImageToVideoPipeline", WAN22_A14B, WAN21_VAE, UMT5_XXL_2, experts=2, boundary_ratio=0.9,
                         flow_shift=5.0, budget_s=540.0,
                         note="Wan2.2-I2V-A14B: two 14B experts, boundary_ratio 0.9; UniPC flow_shift 5.0"),
}  # fmt: skip
VARIANTS = ("diffusers", "bare", "pooled", "lens", "lens_sync")
TARGETS = {"lens": 1.3, "lens_sync": 1.3, "pooled": 1.05}
PROMPT = "a red ball moves left"
SITES = ["blocks.*.hook_resid_post"]


@dataclass
class Options:
    config: str = "tiny"
    device: str = "cpu"
    steps: int = 10
    x0_every: int = 5
    guidance: float = 5.0
    repeats: int = 2  # rounds at most (the budget may stop earlier; one always runs)
    budget_s: float | None = None  # None: the config's
    vae_dtype: str | None = None  # None: the config's dtype
    only: tuple[str, ...] = VARIANTS
    tiled: bool = True  # also time one tiled decode
    threads: int | None = None
    scratch: str | None = None
    dtype: str | None = None  # None: the config's (transformers, text encoder)

    def __post_init__(self):
        if self.config not in CONFIGS:
            raise ValueError(f"unknown config {self.config!r}; known: {', '.join(CONFIGS)}")
        bad = [v for v in self.only if v not in VARIANTS]
        if bad or "bare" not in self.only:
            raise ValueError(f"unknown variant(s) {bad}; known: {', '.join(VARIANTS)} (bare is always measured)"
                             if bad else "the variants must include bare (every ratio is to it)")  # fmt: skip
        if self.steps < 2:
            raise ValueError(f"steps {self.steps}: at least 2 (the diffusers figure times steps 2..N)")
        if self.x0_every < 1:
            raise ValueError(f"x0_every {self.x0_every}: at least 1")
        for name in ("dtype", "vae_dtype"):
            v = getattr(self, name)
            if v is not None and v not in ("float32", "bfloat16", "float16"):
                raise ValueError(f"{name} {v!r}; valid: float32, bfloat16, float16")

    @property
    def spec(self) -> PipelineSpec:
        return CONFIGS[self.config]

    @property
    def lens_steps(self) -> list[int]:
        return list(range(0, self.steps, self.x0_every))


def process_age() -> float:
    """Seconds since this process started (imports included), from /proc; elsewhere since this module loaded."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        ticks = os.sysconf("SC_CLK_TCK")
        start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
        return float(Path("/proc/uptime").read_text().split()[0]) - start
    return time.monotonic() - _LOADED


_LOADED = time.monotonic()


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Build modules with parameters of ``dtype`` from the start (no float32 copy of a 14B expert)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def build_modules(config: str, device: str | torch.device = "cpu", dtype: str | None = None,
                  vae_dtype: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The pipeline's components with random weights (seed 0), initialised where they live: on ``device`` by their
    own ``__init__`` in their dtype (``meta``: shapes only). Returns the components by pipeline name."""
    spec = CONFIGS[config]
    dt = getattr(torch, dtype or spec.dtype)
    vdt = getattr(torch, vae_dtype or dtype or spec.dtype)
    torch.manual_seed(0)
    tok = build_tokenizer([PROMPT])
    out: dict[str, Any] = {"tokenizer": tok}
    level = dlogging.get_verbosity()
    dlogging.set_verbosity_error()
    try:
        with torch.device(device):
            with default_dtype(dt):
                te = UMT5EncoderModel(UMT5Config(vocab_size=len(tok), pad_token_id=0, eos_token_id=1,
                                                 decoder_start_token_id=0, **spec.text))  # fmt: skip
                out["text_encoder"] = te.to(dt).eval()
                for name in EXPERTS[: spec.experts]:
                    out[name] = WanTransformer3DModel(**spec.transformer).to(dt).eval()
            with default_dtype(vdt):
                out["vae"] = AutoencoderKLWan(**spec.vae).to(vdt).eval()
    finally:
        dlogging.set_verbosity(level)
    out["scheduler"] = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                               num_train_timesteps=1000, flow_shift=spec.flow_shift)  # fmt: skip
    return out


def parameter_counts(modules: dict[str, Any]) -> dict[str, int]:
    return {k: sum(p.numel() for p in m.parameters()) for k, m in modules.items() if isinstance(m, torch.nn.Module)}


def count(n: int) -> str:
    return next(f"{n / d:.2f}{u}" for d, u in ((1e9, "B"), (1e6, "M"), (1e3, "k"), (1, "")) if n >= d or d == 1)


def build_pipeline(opts: Options) -> PipelineModel:
    """The diffusers pipeline of ``opts.config`` around :func:`build_modules`, as a :class:`PipelineModel`."""
    spec = opts.spec
    mods = build_modules(opts.config, opts.device, opts.dtype, opts.vae_dtype)
    if spec.pipeline == "WanPipeline":
        pipe = WanPipeline(**mods)
    else:
        pipe = WanImageToVideoPipeline(**mods, boundary_ratio=spec.boundary_ratio)
    pipe.set_progress_bar_config(disable=True)
    pm = pipeline_model(pipe, name=f"bench-{opts.config}", source=f"random init, seed 0: {opts.config}")
    # a random-init pipeline is named by its config: no hashing (and copying off the GPU) of every weight
    pm.__dict__["weight_hash"] = f"random-seed0-{opts.config}-{pm.transformer.dtype}"
    return pm


def bench_image(spec: PipelineSpec, path: Path) -> Path:
    """A random RGB first frame of the video's size (image-to-video configs), written as PNG."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (spec.height, spec.width, 3), dtype=np.uint8)).save(path)
    return path


# ---- the variants -------------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, opts: Options, pm: PipelineModel, scratch: Path):
        self.opts, self.pm, self.scratch = opts, pm, scratch
        self.device = torch.device(opts.device)
        spec = opts.spec
        self.i2v = spec.pipeline == "WanImageToVideoPipeline"
        self.image = bench_image(spec, scratch / "first.png") if self.i2v else None
        self.size = dict(num_frames=spec.frames, height=spec.height, width=spec.width)
        self.pi: PipelineInputs = encode_inputs(pm, [PROMPT], images=[str(self.image)] if self.i2v else None,
                                                guidance_scale=opts.guidance, seed=0, **self.size)  # fmt: skip
        self.sampler = SamplerConfig(steps=opts.steps, guidance_scale=opts.guidance, seed=0)

    def capture_config(self, steps: int, sites: list[str], lens: list[int] | None, overlap: bool = True):
        s = self.opts.spec
        return CaptureConfig(model=self.pm.name, steps=steps, sites=sites, pool="mean", dtype="float16",
                             guidance=self.opts.guidance, seed=0, prompts=[PROMPT],
                             images=[str(self.image)] if self.i2v else None, frames=s.frames, height=s.height,
                             width=s.width, x0_steps=lens or None, x0_overlap=overlap,
                             device=self.opts.device)  # fmt: skip

    def _capture(self, cfg: CaptureConfig) -> dict:
        timings: dict = {}
        out = self.scratch / "bench.h5"
        capture(cfg, out, loaded=self.pm, overwrite=True, timings=timings)
        timings["file_bytes"] = out.stat().st_size
        out.unlink()
        return timings

    def bare(self, steps: int | None = None) -> dict:
        sampler = self.sampler if steps is None else self.sampler.model_copy(update={"steps": steps})
        sync(self.device)
        t0 = time.perf_counter()
        run_trajectory(self.pm, self.pi.trajectory, sampler, keep=False)
        sync(self.device)
        return {"loop": time.perf_counter() - t0}

    def pooled(self, steps: int | None = None) -> dict:
        return self._capture(self.capture_config(steps or self.opts.steps, SITES, None))

    def lens(self, steps: int | None = None, overlap: bool = True) -> dict:
        n = steps or self.opts.steps
        return self._capture(self.capture_config(n, [], [s for s in self.opts.lens_steps if s < n], overlap))

    def lens_sync(self, steps: int | None = None) -> dict:
        return self.lens(steps, overlap=False)

    def diffusers(self, steps: int | None = None) -> dict:
        """The pipeline's own ``__call__`` on the same embeddings and initial noise; steps 2..N timed."""
        n = steps or self.opts.steps
        tr = self.pi.trajectory
        stamps: list[float] = []

        def stamp(pipe, i, t, kw):
            sync(self.device)
            stamps.append(time.perf_counter())
            return {}

        extra = {"image": Image.open(self.image).convert("RGB")} if self.i2v else {}
        sync(self.device)
        t0 = time.perf_counter()
        self.pm.pipeline(**extra, prompt_embeds=tr.text.encoder_hidden_states,
                         negative_prompt_embeds=tr.negative.encoder_hidden_states if tr.negative else None,
                         **self.size, num_inference_steps=n, guidance_scale=self.opts.guidance,
                         latents=tr.latents.clone(), output_type="latent",
                         callback_on_step_end=stamp)  # fmt: skip
        sync(self.device)
        total = time.perf_counter() - t0
        return {"loop": (stamps[-1] - stamps[0]) / (n - 1) * n, "call": total}


def run(opts: Options, log=print) -> dict:
    """Build, warm up, then interleave the variants round by round within the budget; returns plain data."""
    if opts.threads:
        torch.set_num_threads(opts.threads)
    budget = opts.budget_s if opts.budget_s is not None else opts.spec.budget_s
    device = torch.device(opts.device)
    base = Path(opts.scratch) if opts.scratch else Path(tempfile.gettempdir())
    scratch = Path(tempfile.mkdtemp(prefix="interp-pipebench-", dir=base))
    try:
        t0 = time.perf_counter()
        pm = build_pipeline(opts)
        sync(device)
        build_s = time.perf_counter() - t0
        counts = parameter_counts(pm.components)
        log(f"built {opts.config} on {_device_name(device)} in {build_s:.1f} s: "
            + ", ".join(f"{k} {count(v)}" for k, v in counts.items()))  # fmt: skip
        t1 = time.perf_counter()
        bench = Bench(opts, pm, scratch)
        encode_s = time.perf_counter() - t1
        shape = tuple(bench.pi.trajectory.latent_shape)
        grid = pm.adapter.token_grid(pm.transformer, shape)
        fns = {"diffusers": bench.diffusers, "bare": bench.bare, "pooled": bench.pooled, "lens": bench.lens,
               "lens_sync": bench.lens_sync}  # fmt: skip
        names = [v for v in VARIANTS if v in opts.only]
        # warm-up: every path once, short (kernels, the trace, the writer, the VAE)
        t2 = time.perf_counter()
        bench.bare(1)
        if "pooled" in names:
            bench.pooled(1)
        if "lens" in names or "lens_sync" in names:
            bench.lens(1)
        warm_s = time.perf_counter() - t2
        log(f"warm-up {warm_s:.1f} s; process age {process_age():.0f} s of a {budget:.0f} s budget")
        decode = bench_decode(bench, opts)
        log(f"decode of one x0 {decode['seconds']:.2f} s alone"
            + (f", tiled {decode['tiled_seconds']:.2f} s" if "tiled_seconds" in decode else ""))  # fmt: skip
        rounds: list[dict[str, dict]] = []
        while len(rounds) < max(1, opts.repeats):
            if rounds and process_age() + rounds[-1]["_wall"] > budget:
                log(f"stopping after {len(rounds)} round(s): another would end past the {budget:.0f} s budget")
                break
            r0 = time.perf_counter()
            k = len(rounds) % len(names)
            got: dict[str, dict] = {}
            for name in names[k:] + names[:k]:
                with PeakMemory(device) as pmem:
                    res = fns[name]()
                res["peak_bytes"], res["peak_abs_bytes"] = pmem.peak, pmem.peak + pmem.base
                res["per_step"] = res["loop"] / opts.steps
                got[name] = res
                log(f"round {len(rounds) + 1} {name}: {res['per_step']:.3f} s/step")
            got["_wall"] = time.perf_counter() - r0
            rounds.append(got)
        result = summarize(opts, rounds, names)
        result.update(
            options=asdict(opts), budget_s=budget, env=environment(device), build_s=build_s, encode_s=encode_s,
            warmup_s=warm_s, parameters=counts, latent_shape=list(shape), tokens=int(np.prod(grid)),
            lens_steps=opts.lens_steps, decode=decode, spec=asdict(opts.spec), process_s=process_age(),
        )  # fmt: skip
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def bench_decode(bench: Bench, opts: Options) -> dict:
    """Seconds and peak memory of decoding one x0 through the VAE alone (twice after a warm decode; median), and
    once tiled (the VAE's own enable_tiling/enable_slicing) when asked."""
    device = bench.device
    x0 = bench.pi.trajectory.latents
    decode_video(bench.pm, x0)  # warm
    ts, peak = [], 0
    for _ in range(2):
        with PeakMemory(device) as pmem:
            sync(device)
            t = time.perf_counter()
            frames = decode_video(bench.pm, x0)
            ts.append(time.perf_counter() - t)
        peak = max(peak, pmem.peak)
    out = {"seconds": med(ts), "times": ts, "peak_bytes": peak, "frames_shape": list(frames.shape)}
    if opts.tiled:
        set_tiling(bench.pm, True)
        try:
            with PeakMemory(device) as pmem:
                sync(device)
                t = time.perf_counter()
                decode_video(bench.pm, x0)
                out["tiled_seconds"] = time.perf_counter() - t
            out["tiled_peak_bytes"] = pmem.peak
        finally:
            vae = bench.pm.vae
            vae.disable_tiling()
            vae.disable_slicing()
    return out


def summarize(opts: Options, rounds: list[dict], names: list[str]) -> dict:
    """Medians per variant, ratios to bare as medians of the per-round ratios, targets, and what a 50-step run with
    ``every:K`` (the last step decoded too) would take from the measured per-decode cost."""
    per = {n: [r[n]["per_step"] for r in rounds] for n in names}
    ratio = {n: med([r[n]["per_step"] / r["bare"]["per_step"] for r in rounds]) for n in names if n != "bare"}
    peak = {n: max(r[n]["peak_abs_bytes"] for r in rounds) for n in names}
    peak_above = {n: max(r[n]["peak_bytes"] for r in rounds) for n in names}
    targets = {n: {"target": TARGETS[n], "met": ratio[n] <= TARGETS[n]} for n in ratio if n in TARGETS}
    decodes = len(opts.lens_steps)
    projected = {}
    for n in ("lens", "lens_sync"):
        if n in names and decodes:
            extra = med([(r[n]["loop"] - r["bare"]["loop"]) / decodes for r in rounds])
            bare_step = med(per["bare"])
            k = opts.x0_every
            n50 = len(set(range(0, 50, k)) | {49})
            projected[n] = {"extra_s_per_decode": extra, "every_k_of_50_decodes": n50,
                            "ratio_50_steps_every_k": (50 * bare_step + n50 * extra) / (50 * bare_step)}  # fmt: skip
    lens_gpu = {n: med([r[n]["lens_gpu_s"] / decodes for r in rounds]) for n in ("lens",)
                if n in names and all("lens_gpu_s" in r[n] for r in rounds)}  # fmt: skip
    return {
        "rounds": len(rounds), "seconds_per_step": {n: med(v) for n, v in per.items()},
        "spread": {n: spread(v) for n, v in per.items()}, "ratio_to_bare": ratio, "targets": targets,
        "peak_bytes": peak, "peak_above_start_bytes": peak_above, "projected": projected,
        "lens_decode_gpu_s": lens_gpu, "per_round": [{k: v for k, v in r.items()} for r in rounds],
    }  # fmt: skip


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())


def environment(device: torch.device) -> dict:
    import diffusers
    import transformers

    return {"device": _device_name(device), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "cuda": torch.version.cuda, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__}  # fmt: skip


LABELS = {
    "diffusers": "diffusers __call__ (reference; steps 2..N)",
    "bare": "bare: run_trajectory, nothing read",
    "pooled": "pooled capture: every hook_resid_post, mean over tokens",
    "lens": "step lens, decode overlapped (side stream)",
    "lens_sync": "step lens, decode in the loop",
}


def report(result: dict) -> str:
    o, env, spec = result["options"], result["env"], result["spec"]
    gib = lambda b: f"{b / 2**30:.2f} GiB"  # noqa: E731
    peak_name = "peak RSS" if o["device"] == "cpu" else "peak GPU"
    lines = [
        f"python -m benchmarks.pipeline --config {o['config']} --device {o['device']} --steps {o['steps']}: "
        f"{env['device']}, torch {env['torch']}, diffusers {env['diffusers']}; {result['rounds']} round(s), medians",
        f"{spec['pipeline']} ({spec['note']}), random weights, transformer(s) {o['dtype'] or spec['dtype']}, VAE "
        f"{o['vae_dtype'] or o['dtype'] or spec['dtype']}; {spec['frames']} frames {spec['height']}x{spec['width']}, "
        f"latent {result['latent_shape'][2:]}, {result['tokens']} tokens; CFG {o['guidance']} (2 forwards a step)",
        "text encoder: UMT5EncoderModel, d_model " + str(spec["text"]["d_model"]) + f", {spec['text']['num_layers']} "
        "layer(s) (UMT5-XXL has 24, 4.7B parameters; it runs once per prompt, outside the timed loop)",
        "parameters: " + ", ".join(f"{k} {count(v)}" for k, v in result["parameters"].items())
        + f"; built in {result['build_s']:.1f} s",
        f"step lens: x0 decoded at steps {result['lens_steps']} of {o['steps']} (every {o['x0_every']})",
        "",
        f"{'variant':<58} {'s/step':>8} {'x bare':>7} {'target':>14} {peak_name:>10}",
    ]  # fmt: skip
    sps, ratio, tg = result["seconds_per_step"], result["ratio_to_bare"], result["targets"]
    for n in VARIANTS:
        if n not in sps:
            continue
        r = "1.000" if n == "bare" else f"{ratio[n]:.3f}"
        t = f"<= {tg[n]['target']:.2f} {'met' if tg[n]['met'] else 'NOT met'}" if n in tg else ""
        peak = result["peak_bytes"][n]
        lines.append(f"{LABELS[n]:<58} {sps[n]:>8.3f} {r:>7} {t:>14} {gib(peak):>10}")
    d = result["decode"]
    lines += [
        "",
        f"decode of one x0 alone: {d['seconds']:.3f} s ({gib(d['peak_bytes'])} above the weights), frames "
        f"{d['frames_shape']}" + (f"; tiled {d['tiled_seconds']:.3f} s ({gib(d['tiled_peak_bytes'])})"
                                  if "tiled_seconds" in d else ""),
    ]  # fmt: skip
    if result["lens_decode_gpu_s"]:
        each = result["lens_decode_gpu_s"]["lens"]
        lines.append(f"overlapped decode on its stream: {each:.3f} s each (sharing the GPU with the loop)")
    for n, p in result["projected"].items():
        lines.append(f"{n}: {p['extra_s_per_decode']:+.3f} s per decode in the loop; a 50-step run with every:"
                     f"{o['x0_every']} ({p['every_k_of_50_decodes']} decodes, the last step's included) would be "
                     f"{p['ratio_50_steps_every_k']:.3f}x bare")  # fmt: skip
    lines.append(f"process wall time {result['process_s']:.0f} s (budget {result['budget_s']:.0f} s)")
    return "\n".join(lines)


cli = typer.Typer(add_completion=False)


@cli.command()
def main(
    config: str = typer.Option("tiny", help=f"one of {', '.join(CONFIGS)}"),
    device: str = typer.Option("cpu", help="torch device (cuda for the real configs)"),
    steps: int = typer.Option(10, help="denoising steps per measurement"),
    x0_every: int = typer.Option(5, help="the step lens decodes x0 at steps 0, K, 2K, ..."),
    guidance: float = typer.Option(5.0, help="classifier-free guidance scale"),
    repeats: int = typer.Option(2, help="rounds at most (the time budget may stop earlier)"),
    budget_s: float = typer.Option(None, help="wall seconds for the whole process (default: the config's)"),
    dtype: str = typer.Option(None, help="transformers / text encoder dtype (default: the config's)"),
    vae_dtype: str = typer.Option(None, help="VAE dtype (default: --dtype)"),
    only: str = typer.Option(",".join(VARIANTS), help="comma-separated variants (bare always)"),
    tiled: bool = typer.Option(True, help="also time one tiled decode"),
    threads: int = typer.Option(None, help="CPU torch threads"),
    scratch: str = typer.Option(None, help="where capture files go (default: the system temp dir)"),
    out: Path = typer.Option(Path("pipeline-bench"), help="directory for pipeline-<config>.json and .txt"),
) -> None:
    """Seconds per step of a whole Wan pipeline: bare, pooled capture, the step lens; peak memory; decode cost."""
    try:
        opts = Options(config=config, device=device, steps=steps, x0_every=x0_every, guidance=guidance,
                       repeats=repeats, budget_s=budget_s, dtype=dtype, vae_dtype=vae_dtype,
                       only=tuple(s.strip() for s in only.split(",") if s.strip()), tiled=tiled, threads=threads,
                       scratch=scratch)  # fmt: skip
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    result = run(opts, log=lambda m: typer.echo(m, err=True))
    text = report(result)
    typer.echo(text)
    out.mkdir(parents=True, exist_ok=True)
    save(result, out / f"pipeline-{config}.json")
    (out / f"pipeline-{config}.txt").write_text(text + "\n")
    typer.echo(f"wrote {out / f'pipeline-{config}.json'} and .txt")


__all__ = ["CONFIGS", "VARIANTS", "Options", "build_modules", "build_pipeline", "parameter_counts", "report", "run"]

if __name__ == "__main__":
    cli()

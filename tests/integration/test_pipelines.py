"""Whole pipelines: prompts and images in, the pipeline's own video out (issue 18).

Tiny random pipelines from the real component classes (tests/helpers/pipelines.py, nothing downloaded): Wan2.1 T2V
(WanPipeline), Wan2.1 I2V with a CLIP image encoder, Wan2.2 A14B's two experts (boundary_ratio) and Wan2.2 TI2V
(expand_timesteps: first-frame tokens at timestep 0); CogVideoX T2V / I2V with its DDIM and DPM schedulers; LTX-Video
T2V / I2V; HunyuanVideo (Llama + CLIP, embedded guidance, true CFG). ``interp capture PIPE --prompt P [--image
IMG]`` must end on exactly the video of the pipeline's own
``__call__(..., generator=torch.Generator().manual_seed(S))``.
"""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from helpers.pipelines import COG_SIZE, HUNYUAN_SIZE, LTX_SIZE, build, build_all, image
from typer.testing import CliRunner

from interp.apps.capture import CaptureConfig, capture
from interp.cli import app
from interp.pipelines.components import PipelineError, hub_patterns, load_pipeline, needed_components, read_index
from interp.pipelines.decode import decode_video, x0_steps
from interp.pipelines.inputs import encode_inputs
from interp.store import load_cache, partial_path

runner = CliRunner()
KINDS = ("t2v", "i2v", "a14b", "ti2v")
SIZE = dict(num_frames=5, height=32, width=32)


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    return build_all(KINDS, tmp_path_factory.mktemp("pipes"))


def reference(path, prompt, seed, guidance, steps, img=None):
    """The pipeline's own __call__: (uint8 video, final latents as its decode sees them)."""
    pipe = DiffusionPipeline.from_pretrained(path)
    got = {}

    def grab(p, i, t, kw):
        got["latents"] = kw["latents"]
        return {}

    extra = {} if img is None else {"image": img}
    gen = torch.Generator().manual_seed(seed)
    frames = pipe(prompt=prompt, **extra, **SIZE, num_inference_steps=steps, guidance_scale=guidance, generator=gen,
                  callback_on_step_end=grab, output_type="np").frames  # fmt: skip
    return np.round(np.asarray(frames) * 255).clip(0, 255).astype(np.uint8), got["latents"]


@pytest.mark.parametrize("guidance", [1.0, 4.0], ids=["no-cfg", "cfg"])
@pytest.mark.parametrize("kind", KINDS)
def test_capture_equals_pipeline_call(pipes, tmp_path, kind, guidance):
    """Bit-exact: the final latent and the decoded uint8 video equal the pipeline's own __call__."""
    out = tmp_path / "run.h5"
    args = ["capture", str(pipes[kind]), "--prompt", "a red ball moves left", "--steps", "3", "--guidance",
            str(guidance), "--seed", "7", "--frames", "5", "--height", "32", "--width", "32", "--out", str(out),
            "--sites", "blocks.1.hook_resid_post"]  # fmt: skip
    if kind != "t2v":
        args += ["--image", str(pipes["img"])]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    from PIL import Image

    img = None if kind == "t2v" else Image.open(pipes["img"]).convert("RGB")
    ref_video, ref_latents = reference(pipes[kind], "a red ball moves left", 7, guidance, 3, img)
    with load_cache(out) as c:
        final = c.final
        if kind == "ti2v":  # the pipeline replaces the first latent frame by the image latent before decoding
            assert c.video is not None
            ref_latents = ref_latents.clone()
            ref_latents[:, :, :1] = final[:, :, :1]
        assert torch.equal(final, ref_latents)
        assert np.array_equal(c.video, ref_video)
        assert c.video.shape == (1, 5, 32, 32, 3)
        assert c.prompts == ["a red ball moves left"]
        assert len(c.image_digests) == (0 if kind == "t2v" else 1)
        assert c.sampler["seed"] == 7 and c.sampler["num_frames"] == 5
        expected = {"t2v": 1, "i2v": 1, "a14b": 2, "ti2v": 1}[kind] * (2 if guidance > 1 else 1)
        assert len(c.branches) == expected, c.branches  # a14b: both experts ran


def test_ti2v_first_frame_tokens_at_timestep_zero(pipes):
    """expand_timesteps: every forward gets (B, tokens) timesteps, 0 on the first latent frame's tokens."""
    from interp.trajectory import SamplerConfig, run_trajectory

    pm = load_pipeline(pipes["ti2v"])
    pi = encode_inputs(pm, ["a ball"], images=[str(pipes["img"])], guidance_scale=1.0, seed=0, **SIZE)
    seen = []
    t = pm.transformer
    h = t.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["timestep"].clone()), with_kwargs=True)
    try:
        run_trajectory(pm, pi.trajectory, SamplerConfig(steps=2))
    finally:
        h.remove()
    grid = pm.adapter.token_grid(t, pi.trajectory.latent_shape)
    per_frame = grid[1] * grid[2]
    assert seen[0].shape == (1, grid[0] * per_frame)
    assert (seen[0][:, :per_frame] == 0).all() and (seen[0][:, per_frame:] > 0).all()


def test_step_lens_and_batch_seed_convention(pipes, tmp_path):
    """x0_video holds the chosen steps decoded by the VAE; sample i of a batch equals __call__ with seed + i."""
    prompts = ["a red ball moves left", "a blue square moves up"]
    cfg = CaptureConfig(model=str(pipes["t2v"]), prompts=prompts, steps=3, guidance=1.0, seed=3, frames=5, height=32,
                        width=32, x0_steps="every:2", sites=["blocks.0.hook_resid_post"])  # fmt: skip
    out = capture(cfg, tmp_path / "b.h5")
    pm = load_pipeline(pipes["t2v"])
    with load_cache(out) as c:
        assert c.x0_video_steps == [0, 2]
        assert c.x0_video.shape == (2, 2, 5, 32, 32, 3) and c.x0_video.dtype == np.uint8
        x0 = torch.from_numpy(c.file["x0"][2])
        assert np.array_equal(c.x0_video[1], decode_video(pm, x0))
        ref_video, _ = reference(pipes["t2v"], prompts[1], 3 + 1, 1.0, 3)
        assert np.array_equal(c.video[1], ref_video[0])
        assert c["blocks.0.hook_resid_post"].shape[:2] == (3, 2)
    assert x0_steps("all", 3) == [0, 1, 2] and x0_steps("0,2", 3) == [0, 2] and x0_steps(None, 3) == []
    with pytest.raises(PipelineError, match="outside"):
        x0_steps("5", 3)


def test_load_pipeline_components_dtypes_offload(pipes):
    pm = load_pipeline(pipes["i2v"], dtype={"text_encoder": "bfloat16"}, text_encoder_offload="release")
    assert pm.pipeline_class == "WanImageToVideoPipeline" and list(pm.transformers) == ["transformer"]
    assert pm.components["text_encoder"].dtype == torch.bfloat16 and pm.transformer.dtype == torch.float32
    assert pm.components["image_encoder"] is not None and pm.vae is not None
    encode_inputs(pm, ["a ball"], images=[str(pipes["img"])], guidance_scale=1.0, **SIZE)
    assert pm.components["text_encoder"] is None and pm.pipeline.text_encoder is None  # released after encoding
    index = read_index(pipes["a14b"])
    comps = needed_components(index)
    assert set(comps) == {"tokenizer", "text_encoder", "vae", "scheduler", "transformer", "transformer_2"}
    pats = hub_patterns(index, ["transformer", "scheduler"])
    assert "transformer/*.safetensors" in pats and not any(p.startswith(("vae", "text_encoder")) for p in pats)
    only = load_pipeline(pipes["t2v"], components=["transformer", "scheduler"])
    assert only.components.keys() == {"transformer", "scheduler"} and only.pipeline.vae is None


def _broken(pipes, tmp_path, kind, **index_edits):
    d = tmp_path / f"broken-{kind}-{len(list(tmp_path.glob('broken-*')))}"
    shutil.copytree(pipes[kind], d)
    index = json.loads((d / "model_index.json").read_text())
    index.update(index_edits)
    (d / "model_index.json").write_text(json.dumps(index))
    return d


def _capture_fails(args, out) -> str:
    res = runner.invoke(app, ["capture", *args, "--steps", "2", "--frames", "5", "--height", "32", "--width", "32",
                              "--out", str(out)])  # fmt: skip
    assert res.exit_code == 2, res.output + repr(res.exception)
    assert not out.exists() and not partial_path(out).exists()  # nothing written
    return res.output


def test_bad_inputs_one_clear_error_nothing_written(pipes, tmp_path):
    out = tmp_path / "bad.h5"
    img = str(pipes["img"])
    msg = _capture_fails([str(_broken(pipes, tmp_path, "t2v", vae=[None, None])), "--prompt", "a ball"], out)
    assert "lacks 'vae'" in msg and "it has:" in msg
    msg = _capture_fails([str(pipes["i2v"]), "--prompt", "a", "--prompt", "b", "--image", img], out)
    assert "2 prompt(s) and 1 image(s)" in msg
    msg = _capture_fails([str(pipes["i2v"]), "--prompt", "a ball"], out)
    assert "image-to-video" in msg and "--image" in msg
    msg = _capture_fails([str(pipes["t2v"]), "--prompt", "a ball", "--image", img], out)
    assert "text-to-video" in msg
    msg = _capture_fails([str(_broken(pipes, tmp_path, "t2v", _class_name="AllegroPipeline")), "--prompt", "a"], out)
    assert "AllegroPipeline is not supported" in msg and "WanPipeline, WanImageToVideoPipeline" in msg
    msg = _capture_fails([str(_broken(pipes, tmp_path, "i2v", _class_name="MyCustomPipeline")), "--prompt", "a"], out)
    assert "not a diffusers pipeline class" in msg
    remote = _broken(pipes, tmp_path, "i2v", image_encoder=["my_package", "Encoder"])
    msg = _capture_fails([str(remote), "--prompt", "a", "--image", img], out)
    assert "library 'my_package'" in msg and "never remote code" in msg
    msg = _capture_fails([str(pipes["t2v"] / "transformer"), "--prompt", "a"], out)
    assert "no model_index.json" in msg
    msg = _capture_fails([str(pipes["t2v"]), "--prompt", "a", "--x0-steps", "every:0"], out)
    assert "every:K" in msg


def test_image_of_another_size_is_resized_with_a_warning(pipes, tmp_path):
    big = image(tmp_path / "big.png", (48, 40), seed=2)
    pm = load_pipeline(pipes["i2v"])
    with pytest.warns(UserWarning, match="48x40 pixels, not 32x32: resized as the pipeline resizes it"):
        pi = encode_inputs(pm, ["a ball"], images=[big], guidance_scale=1.0, **SIZE)
    assert pi.images.shape == (1, 32, 32, 3)
    with pytest.warns(UserWarning, match="multiples of"):
        pi = encode_inputs(pm, ["a ball"], images=[big], guidance_scale=1.0, num_frames=5, height=40, width=32)
    assert pi.height == 32


def test_schedulers_family_default_or_one_clear_error(tmp_path):
    """A bare CogVideoX transformer directory is sampled as v-prediction DDIM (its x0), never flow matching; a
    scheduler the loop cannot step is an error before anything runs."""
    from diffusers import CogVideoXDPMScheduler, FlowMatchEulerDiscreteScheduler

    from interp.adapters import ADAPTERS
    from interp.models import LoadedModel, load_model
    from interp.trajectory import SamplerConfig, schedule

    ADAPTERS["cogvideox"].tiny(0).save_pretrained(tmp_path / "cog")
    m = load_model(tmp_path / "cog")
    assert type(m.scheduler).__name__ == "CogVideoXDDIMScheduler"
    assert m.scheduler.config.prediction_type == "v_prediction"
    assert type(load_model("tiny-wan").scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    a = ADAPTERS["cogvideox"]
    dpm = LoadedModel("c", a, {"transformer": m.transformer}, CogVideoXDPMScheduler(prediction_type="v_prediction"))
    assert len(schedule(dpm, SamplerConfig(steps=2))[0]) == 2  # the loop keeps its state (old x0, timestep_back)
    from interp.trajectory import TrajectoryInputs, run_trajectory

    text = a.random_text(m.transformer, 1, torch.Generator().manual_seed(0))
    shape = (1, 4, 2, 8, 8)
    with pytest.raises(ValueError, match="cannot resume CogVideoXDPMScheduler mid-run"):
        run_trajectory(dpm, TrajectoryInputs(text, shape), SamplerConfig(steps=3), start=(1, torch.zeros(shape)))
    dyn = LoadedModel("l", ADAPTERS["ltx"], {"transformer": ADAPTERS["ltx"].tiny(0)},
                      FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True))  # fmt: skip
    with pytest.raises(ValueError, match="use_dynamic_shifting=True: set_timesteps needs mu"):
        schedule(dyn, SamplerConfig(steps=2))


COG_KINDS = ("cog-t2v", "cog-t2v-dpm", "cog-i2v", "cog-i2v-dpm")


@pytest.fixture(scope="module")
def cog_pipes(tmp_path_factory):
    root = tmp_path_factory.mktemp("cog")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dirs = {k: build(k, root) for k in COG_KINDS}
    image(root / "img.png", (32, 32), seed=1)
    dirs["img"] = root / "img.png"
    return dirs


def cog_reference(path, prompt, seed, guidance, steps, img=None):
    """CogVideoX's own __call__ (default max_sequence_length 226): (uint8 video, final latents as (B, C, F, H, W))."""
    pipe = DiffusionPipeline.from_pretrained(path)
    got = {}

    def grab(p, i, t, kw):
        got["latents"] = kw["latents"]
        return {}

    extra = {} if img is None else {"image": img}
    frames = pipe(
        prompt=prompt,
        **extra,
        **COG_SIZE,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator().manual_seed(seed),
        callback_on_step_end=grab,
        output_type="np",
    ).frames
    video = np.round(np.asarray(frames) * 255).clip(0, 255).astype(np.uint8)
    return video, got["latents"].permute(0, 2, 1, 3, 4)  # the pipeline's (B, F, C, H, W) -> (B, C, F, H, W)


@pytest.mark.parametrize("guidance", [1.0, 4.0], ids=["no-cfg", "cfg"])
@pytest.mark.parametrize("kind", COG_KINDS)
def test_cogvideox_capture_equals_pipeline_call(cog_pipes, tmp_path, kind, guidance):
    """CogVideoXPipeline / CogVideoXImageToVideoPipeline with CogVideoXDDIMScheduler and CogVideoXDPMScheduler
    (v-prediction; DPM's stochastic step draws from the pipeline's generator): without CFG the final latent is
    bit-exact and the uint8 video equal but for rare one-level roundings of the decode. With CFG the pipeline runs [uncond, cond] as one batch-2 forward and interp as two
    batch-1 forwards (branches are separate sites): float32 rounding differs (measured: <= 2.8e-6 on latents of
    magnitude ~2.7 after 3 steps, video within one uint8 level)."""
    out = tmp_path / "run.h5"
    args = ["capture", str(cog_pipes[kind]), "--prompt", "a red ball moves left", "--steps", "3", "--guidance",
            str(guidance), "--seed", "7", "--frames", "9", "--height", "32", "--width", "32", "--out", str(out),
            "--sites", "blocks.1.hook_resid_post"]  # fmt: skip
    img = None
    if "i2v" in kind:
        args += ["--image", str(cog_pipes["img"])]
        from PIL import Image

        img = Image.open(cog_pipes["img"]).convert("RGB")
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    ref_video, ref_latents = cog_reference(cog_pipes[kind], "a red ball moves left", 7, guidance, 3, img)
    with load_cache(out) as c:
        assert c.video.shape == (1, 9, 32, 32, 3)
        assert c.sampler["scheduler"] == ("CogVideoXDPMScheduler" if kind.endswith("dpm") else "CogVideoXDDIMScheduler")
        if guidance == 1.0:
            assert torch.equal(c.final, ref_latents)
            # the latents are bit-exact; the VAE decode of the same latents can round one value to the other uint8
            # level on some CPUs (measured on an AMD EPYC host: 1 value in 27,648, one level)
            diff = np.abs(c.video.astype(int) - ref_video)
            assert diff.max() <= 1 and (diff > 0).mean() <= 1e-4, (diff.max(), (diff > 0).mean())
        else:
            torch.testing.assert_close(c.final, ref_latents, atol=1e-5, rtol=0)
            assert np.abs(c.video.astype(int) - ref_video).max() <= 1
        assert len(c.branches) == (2 if guidance > 1 else 1)


def test_cogvideox_x0_is_v_prediction(cog_pipes):
    """The loop's x0 is the scheduler's own pred_original_sample (v-prediction), not flow matching's x - sigma v."""
    from diffusers import CogVideoXDPMScheduler

    from interp.trajectory import SamplerConfig, run_trajectory

    pm = load_pipeline(cog_pipes["cog-t2v-dpm"])
    pi = encode_inputs(pm, ["a ball"], guidance_scale=1.0, seed=0, **COG_SIZE)
    traj = run_trajectory(pm, pi.trajectory, SamplerConfig(steps=3))
    sched = CogVideoXDPMScheduler.from_config(pm.scheduler.config)
    sched.set_timesteps(3)
    r = traj.records[1]
    perm = (0, 2, 1, 3, 4)
    _, x0 = sched.step(r.v.permute(perm), traj.records[0].x0.permute(perm), sched.timesteps[1], sched.timesteps[0],
                       r.x.permute(perm), generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.equal(r.x0, x0.permute(perm))


LTX_KINDS = ("ltx-t2v", "ltx-i2v")


@pytest.fixture(scope="module")
def ltx_pipes(tmp_path_factory):
    root = tmp_path_factory.mktemp("ltx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dirs = {k: build(k, root) for k in LTX_KINDS}
    image(root / "img.png", (32, 32), seed=1)
    dirs["img"] = root / "img.png"
    return dirs


@pytest.mark.parametrize("guidance", [1.0, 4.0], ids=["no-cfg", "cfg"])
@pytest.mark.parametrize("kind", LTX_KINDS)
def test_ltx_capture_equals_pipeline_call(ltx_pipes, tmp_path, kind, guidance):
    """LTXPipeline / LTXImageToVideoPipeline: dynamic shift mu and sigmas as __call__ computes them, packed latents,
    I2V first-frame latents with per-token timesteps (t * (1 - conditioning_mask)), the timestep-conditioned VAE
    decode with non-trivial latents_mean / latents_std. Without CFG bit-exact; with CFG (one batch-2 forward in the
    pipeline, two batch-1 forwards here) measured <= 1.1e-6 on latents of magnitude ~4.5, video within one level."""
    out = tmp_path / "run.h5"
    args = ["capture", str(ltx_pipes[kind]), "--prompt", "a red ball moves left", "--steps", "3", "--guidance",
            str(guidance), "--seed", "7", "--frames", "9", "--height", "32", "--width", "32", "--out", str(out),
            "--sites", "blocks.1.hook_resid_post", "--x0-steps", "all"]  # fmt: skip
    extra = {}
    if kind == "ltx-i2v":
        args += ["--image", str(ltx_pipes["img"])]
        from PIL import Image

        extra["image"] = Image.open(ltx_pipes["img"]).convert("RGB")
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    pipe = DiffusionPipeline.from_pretrained(ltx_pipes[kind])
    got = {}

    def grab(p, i, t, kw):
        got.setdefault("t", []).append(float(t))
        got["latents"] = kw["latents"]
        return {}

    frames = pipe(
        prompt="a red ball moves left",
        **extra,
        **LTX_SIZE,
        num_inference_steps=3,
        guidance_scale=guidance,
        generator=torch.Generator().manual_seed(7),
        callback_on_step_end=grab,
        output_type="np",
    ).frames
    ref_video = np.round(np.asarray(frames) * 255).clip(0, 255).astype(np.uint8)
    ref_latents = pipe._unpack_latents(got["latents"], 3, 8, 8, 1, 1)
    with load_cache(out) as c:
        assert c.timesteps.tolist() == got["t"]  # mu and the pipeline's sigmas
        assert c.video.shape == (1, 9, 32, 32, 3) and c.x0_video.shape == (3, 1, 9, 32, 32, 3)
        if guidance == 1.0:
            assert torch.equal(c.final, ref_latents)
            # the latents are bit-exact; the VAE decode of the same latents can round one value to the other uint8
            # level on some CPUs (measured on an AMD EPYC host: 1 value in 27,648, one level)
            diff = np.abs(c.video.astype(int) - ref_video)
            assert diff.max() <= 1 and (diff > 0).mean() <= 1e-4, (diff.max(), (diff > 0).mean())
        else:
            torch.testing.assert_close(c.final, ref_latents, atol=1e-5, rtol=0)
            assert np.abs(c.video.astype(int) - ref_video).max() <= 1
        if kind == "ltx-i2v":  # the first latent frame stays the image latent
            assert torch.equal(c.final[:, :, :1], ref_latents[:, :, :1])


def test_ltx_i2v_first_frame_tokens_at_timestep_zero(ltx_pipes):
    from interp.trajectory import SamplerConfig, run_trajectory

    pm = load_pipeline(ltx_pipes["ltx-i2v"])
    pi = encode_inputs(pm, ["a ball"], images=[str(ltx_pipes["img"])], guidance_scale=1.0, seed=0, **LTX_SIZE)
    seen = []
    h = pm.transformer.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["timestep"].clone()), with_kwargs=True)
    try:
        run_trajectory(pm, pi.trajectory, SamplerConfig(steps=2))
    finally:
        h.remove()
    assert seen[0].shape == (1, 3 * 8 * 8)
    assert (seen[0][:, :64] == 0).all() and (seen[0][:, 64:] == 1000.0).all()


def test_ltx_shift_is_mu(ltx_pipes, tmp_path):
    """Dynamic shifting: --shift is refused (the pipeline computes mu), with one clear error and nothing written."""
    msg = _capture_fails([str(ltx_pipes["ltx-t2v"]), "--prompt", "a ball", "--shift", "3"], tmp_path / "s.h5")
    assert "use_dynamic_shifting=True" in msg and "leave --shift unset" in msg


@pytest.fixture(scope="module")
def hunyuan_pipe(tmp_path_factory):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build("hunyuan", tmp_path_factory.mktemp("hunyuan"))


@pytest.mark.parametrize("cfg", [False, True], ids=["no-cfg", "true-cfg"])
def test_hunyuan_capture_equals_pipeline_call(hunyuan_pipe, tmp_path, cfg):
    """HunyuanVideoPipeline: a Llama text encoder through __call__'s default prompt template (hidden state -3, cropped,
    with its mask) and CLIP's pooled output, the embedded guidance (--guidance is its guidance_scale: guidance * 1000
    to every forward), the pipeline's sigmas; true classifier-free guidance (--set true_cfg_scale with a negative
    prompt) runs two forwards, as the pipeline does. Bit-exact both ways."""
    out = tmp_path / "run.h5"
    args = ["capture", str(hunyuan_pipe), "--prompt", "a red ball moves left", "--steps", "3", "--guidance", "6",
            "--seed", "7", "--frames", "9", "--height", "16", "--width", "16", "--out", str(out),
            "--sites", "blocks.0.hook_resid_post"]  # fmt: skip
    kw = {}
    if cfg:
        args += ["--negative-prompt", "a blue square", "--set", "true_cfg_scale=4"]
        kw = {"negative_prompt": "a blue square", "true_cfg_scale": 4.0}
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    pipe = DiffusionPipeline.from_pretrained(hunyuan_pipe)
    got = {}

    def grab(p, i, t, k):
        got["latents"] = k["latents"]
        return {}

    frames = pipe(
        prompt="a red ball moves left",
        **HUNYUAN_SIZE,
        num_inference_steps=3,
        guidance_scale=6.0,
        generator=torch.Generator().manual_seed(7),
        callback_on_step_end=grab,
        output_type="np",
        **kw,
    ).frames
    ref_video = np.round(np.asarray(frames) * 255).clip(0, 255).astype(np.uint8)
    with load_cache(out) as c:
        assert torch.equal(c.final, got["latents"])
        assert np.array_equal(c.video, ref_video)
        assert len(c.branches) == (2 if cfg else 1)
        assert c.sampler["guidance_scale"] == 6.0 and c.sampler["guidance"] == (4.0 if cfg else 1.0)


def test_hunyuan_needs_both_text_encoders_and_true_cfg_is_its_own(hunyuan_pipe, pipes, tmp_path):
    d = tmp_path / "no-clip"
    shutil.copytree(hunyuan_pipe, d)
    index = json.loads((d / "model_index.json").read_text())
    index["text_encoder_2"] = [None, None]
    (d / "model_index.json").write_text(json.dumps(index))
    msg = _capture_fails([str(d), "--prompt", "a ball"], tmp_path / "a.h5")
    assert "lacks 'text_encoder_2'" in msg
    msg = _capture_fails([str(pipes["t2v"]), "--prompt", "a ball", "--set", "true_cfg_scale=4"], tmp_path / "b.h5")
    assert "true_cfg_scale is HunyuanVideoPipeline's" in msg


def test_viewer_shows_the_step_lens_decoded_frames(pipes, tmp_path):
    """interp view on a pipeline capture shows x0 decoded by the VAE at the step-lens steps (the stored x0_video,
    pixel for pixel), black at steps not decoded, and says which steps those are."""
    import base64
    import io

    from PIL import Image

    from interp.report.viewer import frames_strip, load_capture

    cfg = CaptureConfig(model=str(pipes["t2v"]), prompts=["a red ball moves left"], steps=3, guidance=1.0, seed=0,
                        frames=5, height=32, width=32, x0_steps="0,2", sites=["blocks.0.hook_resid_post"])  # fmt: skip
    out = capture(cfg, tmp_path / "v.h5")
    data = load_capture(out)
    assert "decoded by the pipeline's VAE" in data.x0_note and "steps [0, 2]" in data.x0_note
    with load_cache(out) as c:
        lens = c.x0_video  # (2, 1, 5, 32, 32, 3)

    def strip(uri):
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))

    gap = max(1, 32 // 16)
    assert np.array_equal(strip(data.x0[0][0]), frames_strip(lens[0, 0], gap=gap))
    assert np.array_equal(strip(data.x0[2][0]), frames_strip(lens[1, 0], gap=gap))
    assert not strip(data.x0[1][0])[:, :32].any()  # step 1 was not decoded: black frames

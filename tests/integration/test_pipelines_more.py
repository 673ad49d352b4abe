"""SkyReelsV2Pipeline, WanVACEPipeline, MochiPipeline and HunyuanVideo15Pipeline: prompts through the pipeline's own
encoders, the traced trajectory ends on exactly the latents of the pipeline's own ``__call__(output_type="latent")``,
and ``interp capture`` decodes them to the pipeline's own video.

Tiny random pipelines from the real component classes (tests/helpers/pipelines.py, nothing downloaded).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from diffusers import DiffusionPipeline
from helpers.pipelines import HUNYUAN15_SIZE, MOCHI_SIZE, NEW_SIZE, build, build_all, image

from interp.pipelines.components import load_pipeline
from interp.pipelines.inputs import encode_inputs
from interp.trajectory import SamplerConfig, run_trajectory

KINDS = ("skyreels", "skyreels-i2v", "wanvace", "wanvace-r2v", "mochi")
SIZES = {"skyreels": NEW_SIZE, "skyreels-i2v": NEW_SIZE, "wanvace": NEW_SIZE, "wanvace-r2v": NEW_SIZE,
         "mochi": MOCHI_SIZE, "hunyuan15": HUNYUAN15_SIZE, "hunyuan15-i2v": HUNYUAN15_SIZE}  # fmt: skip
IMAGE_KINDS = ("skyreels-i2v", "wanvace-r2v", "hunyuan15-i2v")  # --image: the I2V first frame; VACE's reference image
PROMPT = "a red ball moves left"
EXTRA = {"mochi": {"max_sequence_length": 16}}


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    return build_all(KINDS, tmp_path_factory.mktemp("pipes"))


def call_extra(pipes, kind) -> dict:
    """What the pipeline's __call__ gets besides the prompt: the image of an I2V pipeline, VACE's reference image,
    Mochi's text length."""
    if kind in IMAGE_KINDS:
        from PIL import Image

        img = Image.open(pipes["img"]).convert("RGB")
        return {"reference_images": img} if kind == "wanvace-r2v" else {"image": img}
    return dict(EXTRA.get(kind, {}))


def pipeline_latents(pipes, kind, guidance, steps, seed):
    pipe = DiffusionPipeline.from_pretrained(pipes[kind])
    gen = torch.Generator().manual_seed(seed)
    return pipe(prompt=PROMPT, **SIZES[kind], num_inference_steps=steps, guidance_scale=guidance, generator=gen,
                output_type="latent", **call_extra(pipes, kind)).frames  # fmt: skip


@pytest.mark.parametrize("guidance", [1.0, 4.0], ids=["no-cfg", "cfg"])
@pytest.mark.parametrize("kind", KINDS)
def test_trajectory_equals_pipeline_call(pipes, kind, guidance):
    """Bit-exact without CFG; with CFG bit-exact where the pipeline runs cond and uncond as two forwards (SkyReels-V2,
    Wan VACE), within float tolerance where it batches them (Mochi: one batch of [uncond, cond]; measured 1.7e-6 on
    latents of magnitude ~4.4)."""
    pm = load_pipeline(pipes[kind])
    assert pm.adapter.family == kind.split("-")[0]
    images = [str(pipes["img"])] if kind in IMAGE_KINDS else None
    pi = encode_inputs(pm, [PROMPT], images=images, guidance_scale=guidance, seed=7, **SIZES[kind],
                       **EXTRA.get(kind, {}))  # fmt: skip
    traj = run_trajectory(pm, pi.trajectory, SamplerConfig(steps=3, guidance_scale=guidance),
                          read=["blocks.1.hook_resid_post"])  # fmt: skip
    ref = pipeline_latents(pipes, kind, guidance, 3, 7)
    assert traj.final.shape == ref.shape
    assert not torch.equal(traj.final, pi.trajectory.latents)  # it denoised
    if kind == "mochi" and guidance > 1.0:
        torch.testing.assert_close(traj.final, ref, atol=1e-5, rtol=0)
    else:
        assert torch.equal(traj.final, ref)
    frames = 3 if kind == "wanvace-r2v" else 2  # the reference image's latent frame leads the video's two
    assert traj.final.shape[2] == frames == pi.trajectory.reference_frames + 2
    assert traj.records[0].branches["cond"]["blocks.1.hook_resid_post"].shape[1] == frames * 2 * 2


@pytest.mark.parametrize("kind", (*KINDS, "hunyuan15", "hunyuan15-i2v"))
def test_capture_video_equals_pipeline_call(request, tmp_path, kind):
    """``interp capture PIPE --prompt P`` ends on the pipeline's own final latents and decodes them to its own uint8
    video (the family's de-normalisation: Wan's latents_mean / latents_std, Mochi's own arithmetic, HunyuanVideo
    1.5's scaling factor)."""
    import numpy as np
    from diffusers.guiders import ClassifierFreeGuidance
    from typer.testing import CliRunner

    from interp.cli import app
    from interp.store import load_cache

    pipes = request.getfixturevalue("hv15" if kind.startswith("hunyuan15") else "pipes")
    size = SIZES[kind]
    out = tmp_path / "run.h5"
    args = ["capture", str(pipes[kind]), "--prompt", PROMPT, "--steps", "2", "--guidance", "1", "--seed", "3",
            "--frames", str(size["num_frames"]), "--height", "32", "--width", "32", "--out", str(out),
            "--sites", "blocks.0.hook_resid_post"]  # fmt: skip
    if kind == "mochi":
        args += ["--set", "max_sequence_length=16"]
    if kind in IMAGE_KINDS:
        args += ["--image", str(pipes["img"])]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    pipe = DiffusionPipeline.from_pretrained(pipes[kind])
    kw = {**size, "guidance_scale": 1.0, **call_extra(pipes, kind)}
    if kind.startswith("hunyuan15"):  # guidance is its guider's; the I2V pipeline sizes the video from the image
        pipe.guider = ClassifierFreeGuidance(guidance_scale=1.0)
        kw = {"num_frames": size["num_frames"], **call_extra(pipes, kind)} if kind.endswith("i2v") else size
    gen = torch.Generator().manual_seed(3)
    ref_latents = pipe(prompt=PROMPT, num_inference_steps=2, generator=gen, output_type="latent", **kw).frames
    gen = torch.Generator().manual_seed(3)
    frames = pipe(prompt=PROMPT, num_inference_steps=2, generator=gen, output_type="np", **kw).frames
    ref_video = np.round(np.asarray(frames) * 255).clip(0, 255).astype(np.uint8)
    with load_cache(out) as c:
        assert torch.equal(c.final, ref_latents)
        assert c.video.shape == ref_video.shape
        assert np.array_equal(c.video, ref_video)


@pytest.fixture(scope="module")
def hv15(tmp_path_factory):
    root = tmp_path_factory.mktemp("hv15")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dirs = {k: build(k, root) for k in ("hunyuan15", "hunyuan15-i2v")}
    image(root / "img.png", (32, 32), seed=1)
    dirs["img"] = root / "img.png"
    return dirs


@pytest.mark.parametrize("guidance", [1.0, 4.0], ids=["no-cfg", "cfg"])
@pytest.mark.parametrize("kind", ["hunyuan15", "hunyuan15-i2v"])
def test_hunyuan15_trajectory_equals_pipeline_call(hv15, kind, guidance):
    """HunyuanVideo15Pipeline / HunyuanVideo15ImageToVideoPipeline: Qwen2.5-VL prompts through the chat template
    (cropped) and ByT5 glyph embeddings of the quoted text, the pipeline's sigmas; text-to-video with zero image
    embeddings and zero condition, image-to-video with SigLIP embeddings and the image latent as condition, sized by
    the pipeline from the image; guidance is its guider's (cond and uncond as two forwards), so bit-exact both ways."""
    from diffusers.guiders import ClassifierFreeGuidance
    from PIL import Image

    prompt = 'a red ball draws "maze"'  # quoted: a glyph text, so ByT5 runs
    i2v = kind == "hunyuan15-i2v"
    pm = load_pipeline(hv15[kind])
    assert pm.adapter.family == "hunyuan15"
    pi = encode_inputs(pm, [prompt], images=[str(hv15["img"])] if i2v else None, guidance_scale=guidance, seed=7,
                       **SIZES["hunyuan15"])  # fmt: skip
    e = pi.trajectory.text.extras
    assert e["encoder_attention_mask_2"].sum() > 0  # the glyph text was encoded
    assert bool(e["image_embeds"].abs().sum() > 0) == i2v and (pi.trajectory.condition is not None) == i2v
    traj = run_trajectory(pm, pi.trajectory, SamplerConfig(steps=2, guidance_scale=guidance))
    pipe = DiffusionPipeline.from_pretrained(hv15[kind])
    pipe.guider = ClassifierFreeGuidance(guidance_scale=guidance)
    size = SIZES["hunyuan15"]
    kw = {"image": Image.open(hv15["img"]).convert("RGB"), "num_frames": size["num_frames"]} if i2v else size
    ref = pipe(prompt=prompt, **kw, num_inference_steps=2, generator=torch.Generator().manual_seed(7),
               output_type="latent").frames  # fmt: skip
    assert len(traj.branch_steps) == (2 if guidance > 1 else 1)
    assert torch.equal(traj.final, ref)


def test_experiment_on_a_pipeline_keeps_its_schedule(pipes, tmp_path):
    """An experiment with prompt inputs steps the pipeline's own schedule (Mochi's linear-quadratic sigmas passed to
    set_timesteps, as capture does): its clean run ends on the pipeline's own latents (up to the float rounding of the
    runner's larger batch of clean and edited rows); a skip changes the edited run."""
    import numpy as np

    from interp.experiments.schema import Experiment
    from interp.experiments.verb import run_experiment
    from interp.store.results import read_group

    exp = Experiment.validate_data({
        "model": str(pipes["mochi"]), "inputs": {"prompts": [PROMPT], "frames": 7, "height": 32, "width": 32},
        "sampler": {"steps": 3, "guidance": 1.0, "seed": 7},
        "interventions": [{"kind": "skip", "layers": 1, "steps": "0:3"}], "metrics": ["mse"],
    })  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_experiment(exp, tmp_path / "exp", wandb="disabled", progress=False)
    g = read_group(res.results, "group_0")
    clean = torch.from_numpy(np.asarray(g["clean_final"]))
    pipe = DiffusionPipeline.from_pretrained(pipes["mochi"])
    ref = pipe(prompt=PROMPT, **MOCHI_SIZE, num_inference_steps=3, guidance_scale=1.0,
               generator=torch.Generator().manual_seed(7), output_type="latent").frames  # fmt: skip
    torch.testing.assert_close(clean, ref, atol=1e-5, rtol=0)
    assert np.abs(np.asarray(g["final"])[0] - np.asarray(g["clean_final"])).max() > 1e-2

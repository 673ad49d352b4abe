"""LTX2Pipeline and LTX2ImageToVideoPipeline: ``interp capture PIPE --prompt P [--image IMG]`` ends on the pipeline's
own ``__call__`` video and audio.

A tiny random LTX-2 pipeline from the real component classes (tests/helpers/pipelines.py: Gemma 3, text connectors,
the audio-video transformer, video VAE, audio VAE, vocoder; nothing downloaded). The loop denoises the audio latents
beside the video with the pipeline's guidance rule (CFG, STG, modality isolation, rescale in x0 space).
"""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from helpers.pipelines import LTX2_SIZE, build, image
from PIL import Image
from typer.testing import CliRunner

from interp.cli import app
from interp.pipelines.components import PipelineError, load_pipeline
from interp.pipelines.inputs import encode_inputs
from interp.store import load_cache, partial_path

runner = CliRunner()
PROMPT = "a red ball moves left"
# every guidance term off: guidance_scale 1 and __call__'s other defaults turned off (its audio CFG is 7, STG 1,
# modality 3); guidance_rescale keeps its default 0.7 (a no-op in value, not in float arithmetic)
OFF = dict(audio_guidance_scale=1.0, stg_scale=0.0, audio_stg_scale=0.0, modality_scale=1.0, audio_modality_scale=1.0)


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    root = tmp_path_factory.mktemp("ltx2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dirs = {k: build(k, root) for k in ("ltx2", "ltx2-i2v")}
    image(root / "img.png", (32, 32), seed=1)
    return {**dirs, "img": root / "img.png"}


@pytest.fixture(scope="module")
def ltx2(pipes):
    return pipes["ltx2"]


def capture_args(path, out, knobs: dict, guidance: float | None, img=None) -> list[str]:
    args = ["capture", str(path), "--prompt", PROMPT, "--steps", "2", "--seed", "7", "--frames", "5", "--height", "32",
            "--width", "32", "--max-sequence-length", "16", "--out", str(out),
            "--sites", "blocks.1.hook_resid_post,blocks.1.hook_audio_resid_post",
            "--set", f"pipeline_kwargs={json.dumps(knobs)}"]  # fmt: skip
    return (
        args + (["--guidance", str(guidance)] if guidance is not None else []) + (["--image", str(img)] if img else [])
    )


CASES = {  # name: (pipeline_kwargs, --guidance or None for __call__'s default 3.0, bit-exact)
    "no-guidance": (OFF, 1.0, True),
    # STG on block 1 of 2, modality isolation and rescale at __call__'s defaults, CFG off for video and audio
    "stg-modality": ({"spatio_temporal_guidance_blocks": [1], "audio_guidance_scale": 1.0}, 1.0, True),
    "all-defaults": ({"spatio_temporal_guidance_blocks": [1]}, None, False),  # and CFG: 3 video, 7 audio
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", ["ltx2", "ltx2-i2v"])
def test_ltx2_capture_equals_pipeline_call(pipes, tmp_path, kind, case):
    """Bit-exact final latents, video and waveform where the pipeline runs each forward as interp does: without
    guidance and with STG, modality isolation and rescale. With CFG the pipeline runs cond and uncond as one batch of
    two (and its connectors on both prompts at once), interp as two forwards: measured 2.4e-6 on video latents of
    magnitude ~4.5 and 2.9e-6 on audio latents of magnitude ~4.3 (steps 2). Image-to-video: the image latent is the
    first latent frame, clean at every step, its tokens at timestep 0 (``image_crf=0``: no H.264 re-compression)."""
    knobs, guidance, exact = CASES[case]
    i2v = kind == "ltx2-i2v"
    knobs = {**knobs, "image_crf": 0} if i2v else knobs
    out = tmp_path / "run.h5"
    res = runner.invoke(app, capture_args(pipes[kind], out, knobs, guidance, pipes["img"] if i2v else None))
    assert res.exit_code == 0, res.output + repr(res.exception)
    pipe = DiffusionPipeline.from_pretrained(pipes[kind])
    got = {}

    def grab(p, i, t, kw):
        got.setdefault("t", []).append(float(t))
        got["latents"] = kw["latents"]
        return {}

    call = dict(knobs, guidance_scale=3.0 if guidance is None else guidance)
    if i2v:
        call["image"] = Image.open(pipes["img"]).convert("RGB")
    frames, wave = pipe(prompt=PROMPT, **LTX2_SIZE, num_inference_steps=2, max_sequence_length=16, **call,
                        generator=torch.Generator().manual_seed(7), callback_on_step_end=grab, output_type="np",
                        return_dict=False)  # fmt: skip
    ref_video = np.round(np.asarray(frames) * 255).clip(0, 255).astype(np.uint8)
    ref_latents = pipe._unpack_latents(got["latents"], 3, 16, 16, 1, 1)
    wave = wave.float().numpy()
    with load_cache(out) as c:
        assert c.timesteps.tolist() == got["t"]  # sigmas linspace(1, 1/N, N) and mu from the 768 video tokens
        assert c.video.shape == (1, 5, 32, 32, 3) and c.audio.shape == wave.shape == (1, 2, 68)
        assert c.audio_sample_rate == 16000 and c.audio_latents.shape == (1, 2, 5, 2)
        branches = sorted(json.loads(c.file.attrs["branches"]))
        assert branches == {"no-guidance": ["cond"], "stg-modality": ["cond", "modality", "stg"]}.get(
            case, ["cond", "modality", "stg", "uncond"])  # fmt: skip
        if exact:
            assert torch.equal(c.final, ref_latents)
            assert np.array_equal(c.video, ref_video)
            assert np.array_equal(c.audio, wave)
        if i2v:  # the image latent frame is the one prepare_latents encoded, never stepped
            assert c.images.shape == (1, 32, 32, 3)
            start = torch.from_numpy(c.file["latents"][0])  # the latents entering step 0
            assert torch.equal(c.final[:, :, :1], start[:, :, :1])
            assert not torch.equal(c.final[:, :, 1:], start[:, :, 1:])
        else:
            torch.testing.assert_close(c.final, ref_latents, atol=1e-5, rtol=0)
            assert np.abs(c.video.astype(int) - ref_video).max() <= 1
            np.testing.assert_allclose(c.audio, wave, atol=1e-5, rtol=0)
        if "stg" in branches:  # STG perturbs block 1's self-attention; modality isolation cuts audio-video attention
            assert not np.array_equal(c.file["cond/blocks.1.hook_resid_post"][0],
                                      c.file["stg/blocks.1.hook_resid_post"][0])  # fmt: skip
            assert not np.array_equal(c.file["cond/blocks.1.hook_audio_resid_post"][0],
                                      c.file["modality/blocks.1.hook_audio_resid_post"][0])  # fmt: skip


def test_ltx2_bad_inputs_one_clear_error(ltx2, tmp_path):
    """A missing component, an unknown knob, STG without blocks and an image: one clear error, nothing written."""
    broken = tmp_path / "broken"
    shutil.copytree(ltx2, broken)
    index = json.loads((broken / "model_index.json").read_text())
    index["connectors"] = [None, None]
    (broken / "model_index.json").write_text(json.dumps(index))
    out = tmp_path / "bad.h5"
    res = runner.invoke(app, capture_args(broken, out, {}, 1.0))
    assert res.exit_code == 2, res.output + repr(res.exception)
    assert "lacks 'connectors'" in res.output and not out.exists() and not partial_path(out).exists()
    res = runner.invoke(app, capture_args(ltx2, out, {"stg": 1.0}, 1.0))
    assert res.exit_code == 2 and "'stg'" in res.output and "stg_scale" in res.output, res.output
    assert not out.exists() and not partial_path(out).exists()
    pm = load_pipeline(ltx2)
    kw = dict(guidance_scale=1.0, max_sequence_length=16, **LTX2_SIZE)
    with pytest.raises(PipelineError, match="needs spatio_temporal_guidance_blocks"):
        encode_inputs(pm, [PROMPT], pipeline_kwargs={"spatio_temporal_guidance_blocks": []}, **kw)
    with pytest.raises(PipelineError, match="takes no image"):
        encode_inputs(pm, [PROMPT], images=[np.zeros((32, 32, 3), np.uint8)], **kw)
    with pytest.raises(PipelineError, match="divisible by 32"):
        encode_inputs(pm, [PROMPT], **{**kw, "height": 48})


def test_ltx2_i2v_bad_inputs_one_clear_error(pipes):
    """LTX2ImageToVideoPipeline: no image, and its default H.264 re-compression (image_crf 33) without PyAV."""
    import importlib.util

    pm = load_pipeline(pipes["ltx2-i2v"])
    kw = dict(guidance_scale=1.0, max_sequence_length=16, **LTX2_SIZE)
    with pytest.raises(PipelineError, match="is image-to-video"):
        encode_inputs(pm, [PROMPT], **kw)
    if importlib.util.find_spec("av") is None:
        with pytest.raises(PipelineError, match="image_crf 33 .* install av"):
            encode_inputs(pm, [PROMPT], images=[str(pipes["img"])], **kw)


def test_ltx2_experiment_clean_rows_equal_capture(ltx2, tmp_path):
    """An experiment on LTX-2 prompt inputs runs its guidance rule (here STG on block 1 and modality isolation) and
    carries the audio stream through the batch: each clean row ends on ``interp capture``'s video and audio latents
    of the same prompt and seed, bit-exact in batches of the capture's size; the rows keep their own audio; a layer
    skip and a zero ablation of a video site change the video and the audio."""
    from interp.apps.capture import CaptureConfig, capture_pipeline
    from interp.experiments.schema import Experiment, ExperimentError
    from interp.experiments.verb import run_experiment
    from interp.pipelines.ltx2 import AUDIO, decode_audio
    from interp.store.results import read_group

    prompts = [PROMPT, "a blue cube spins"]
    knobs = {"spatio_temporal_guidance_blocks": [1], "audio_guidance_scale": 1.0}
    exp = Experiment.validate_data({
        "model": str(ltx2), "sampler": {"steps": 2, "guidance": 1.0, "seed": 7}, "metrics": ["mse"], "max_batch": 2,
        "inputs": {"prompts": prompts, "frames": 5, "height": 32, "width": 32, "max_sequence_length": 16,
                   "pipeline_kwargs": knobs},
        "interventions": [{"kind": "skip", "layers": 1, "steps": "0:2"}],
        "sweep": {"interventions.0": [{"kind": "skip", "layers": 1, "steps": "0:2"},
                                      {"kind": "ablate", "mode": "zero", "site": "blocks.0.hook_attn_out"}]},
    })  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_experiment(exp, tmp_path / "exp", wandb="disabled", progress=False)
        cfg = CaptureConfig(model=str(ltx2), prompts=prompts, steps=2, guidance=1.0, seed=7, frames=5, height=32,
                            width=32, max_sequence_length=16, pipeline_kwargs=knobs)  # fmt: skip
        capture_pipeline(cfg, tmp_path / "run.h5")
    g = read_group(res.results, "group_0")
    audio, clean_audio = g[f"final_{AUDIO}"], g[f"clean_final_{AUDIO}"]
    assert clean_audio.shape == (2, 5, 4) and audio.shape == (2, 2, 5, 4)  # (points, samples, tokens, C)
    with load_cache(tmp_path / "run.h5") as c:
        clean = torch.from_numpy(g["clean_final"])
        unpacked, _ = decode_audio(load_pipeline(ltx2), torch.from_numpy(clean_audio))
        # max_batch 2: batches of two rows (edited, clean), as the capture's one batch of two samples; the CPU
        # rounds a batch of another size differently (max_batch 16, one batch of six rows: 1.9e-6 on video latents
        # of magnitude ~4, 1.2e-6 on audio latents)
        assert torch.equal(clean, c.final)
        assert np.array_equal(unpacked, c.audio_latents)
    assert np.abs(clean_audio[0] - clean_audio[1]).max() > 0.1  # each row its own audio noise and prompt
    for point in range(2):  # the skip, the ablation: the video and the audio move
        assert np.abs(g["final"][point] - g["clean_final"]).max() > 1e-2
        assert np.abs(audio[point] - clean_audio).max() > 1e-3
    assert all(m["metrics"]["mse"] > 0 for m in res.summary["points"])
    with pytest.raises(ExperimentError, match="pipeline_kwargs are inputs of task: prompts"):
        Experiment.validate_data({"model": str(ltx2), "inputs": {"task": "random", "pipeline_kwargs": knobs},
                                  "interventions": [{"kind": "skip", "layers": 1}]})  # fmt: skip


def test_ltx2_partial_capture_resumes_exactly(ltx2, tmp_path):
    """A capture stopped mid-run resumes from the audio latents it stored per step (``stream_audio_hidden_states``):
    the resumed file's video latents, audio latents and waveform equal an uninterrupted capture's, bit-exact."""
    from interp.apps.capture import CaptureConfig, capture_pipeline

    cfg = CaptureConfig(model=str(ltx2), prompts=[PROMPT], steps=3, guidance=1.0, frames=5, height=32, width=32,
                        max_sequence_length=16, sites=["blocks.0.hook_resid_post"], pipeline_kwargs=OFF)  # fmt: skip
    whole, out = tmp_path / "whole.h5", tmp_path / "run.h5"
    capture_pipeline(cfg, whole)

    def stop(rec):
        if rec.step == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        capture_pipeline(cfg, out, on_step=stop)
    assert partial_path(out).exists() and not out.exists()
    seen = []
    capture_pipeline(cfg, out, on_step=lambda rec: seen.append(rec.step))
    assert seen == [2]  # steps 0 and 1 were on disk: only step 2 ran
    with load_cache(whole) as a, load_cache(out) as b:
        assert torch.equal(a.final, b.final)
        assert np.array_equal(a.audio_latents, b.audio_latents) and np.array_equal(a.audio, b.audio)
        assert np.array_equal(a.file["stream_audio_hidden_states"][:], b.file["stream_audio_hidden_states"][:])
        assert np.abs(b.file["stream_audio_hidden_states"][2] - b.file["stream_audio_hidden_states"][1]).max() > 0.1

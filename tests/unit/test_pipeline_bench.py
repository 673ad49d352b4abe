"""benchmarks.pipeline: the tiny configs run every variant and report (no timing assertions), the CLI writes its
files and refuses bad options, the real configs have the real shapes (built on the meta device), and a lens step
whose decode is still running is marked done only once its frames are written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from benchmarks.pipeline import (
    CONFIGS,
    VARIANTS,
    Options,
    build_modules,
    build_pipeline,
    cli,
    parameter_counts,
    report,
    run,
)
from interp.apps.capture import CaptureConfig, capture
from interp.pipelines import decode as decode_mod
from interp.pipelines.decode import StepLens, decode_video
from interp.store import RunWriter, load_cache


@pytest.mark.parametrize("config", ["tiny", "tiny-a14b"])
def test_tiny_runs_every_variant(config):
    opts = Options(config=config, steps=2, x0_every=1, repeats=1, tiled=False, budget_s=1e9)
    r = run(opts, log=lambda m: None)
    assert r["rounds"] == 1 and set(r["seconds_per_step"]) == set(VARIANTS)
    assert r["lens_steps"] == [0, 1] and r["latent_shape"] == [1, 16, 2, 4, 4] and r["tokens"] == 8
    rnd = r["per_round"][0]
    for v in VARIANTS:
        assert rnd[v]["per_step"] == pytest.approx(rnd[v]["loop"] / 2) and rnd[v]["peak_abs_bytes"] >= 0
        if v != "bare":
            assert r["ratio_to_bare"][v] == pytest.approx(rnd[v]["per_step"] / rnd["bare"]["per_step"])
    # the lens file holds two decoded x0 videos more than the bare latents-only capture would
    frame_bytes = int(np.prod(r["decode"]["frames_shape"]))
    assert r["decode"]["frames_shape"] == [1, 5, 32, 32, 3]
    assert rnd["lens"]["file_bytes"] > 2 * frame_bytes and rnd["lens_sync"]["file_bytes"] > 2 * frame_bytes
    assert set(r["targets"]) == {"pooled", "lens", "lens_sync"} and r["targets"]["lens"]["target"] == 1.3
    p = r["projected"]["lens"]
    assert p["every_k_of_50_decodes"] == 50  # every:1 decodes all 50 steps
    text = report(r)
    assert "step lens, decode overlapped" in text and "x bare" in text and "UMT5" in text
    assert json.loads(json.dumps(r, default=str))["options"]["config"] == config
    if config == "tiny-a14b":
        assert r["parameters"].keys() >= {"transformer", "transformer_2"}


def test_cli_writes_json_and_text(tmp_path):
    res = CliRunner().invoke(cli, ["--config", "tiny", "--steps", "2", "--repeats", "1", "--no-tiled", "--only",
                                   "bare,lens", "--out", str(tmp_path)])  # fmt: skip
    assert res.exit_code == 0, res.output + repr(res.exception)
    data = json.loads((tmp_path / "pipeline-tiny.json").read_text())
    assert set(data["seconds_per_step"]) == {"bare", "lens"} and data["lens_steps"] == [0]
    assert "step lens, decode overlapped" in (tmp_path / "pipeline-tiny.txt").read_text()
    for args, msg in ((["--config", "wan2"], "unknown config"), (["--only", "pooled"], "must include bare"),
                      (["--steps", "1"], "at least 2"), (["--dtype", "int8"], "valid: float32")):  # fmt: skip
        bad = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "bad")])
        assert bad.exit_code == 2 and msg in bad.output, bad.output
        assert not (tmp_path / "bad").exists()


def test_real_configs_have_the_real_shapes():
    m = build_modules("wan1.3b", "meta")
    n = parameter_counts(m)
    t = m["transformer"]
    assert 1.3e9 < n["transformer"] < 1.5e9 and len(t.blocks) == 30 and t.dtype == torch.bfloat16
    assert t.config.num_attention_heads == 12 and t.config.attention_head_dim == 128 and t.config.ffn_dim == 8960
    assert 1.2e8 < n["vae"] < 1.35e8 and len(m["vae"].config.latents_mean) == len(m["vae"].config.latents_std) == 16
    assert m["text_encoder"].config.d_model == 4096 and m["text_encoder"].config.num_layers == 2
    assert m["scheduler"].config.flow_shift == 3.0 and m["scheduler"].config.prediction_type == "flow_prediction"
    a = build_modules("a14b", "meta")
    na = parameter_counts(a)
    assert "transformer_2" in a and 1.3e10 < na["transformer"] == na["transformer_2"] < 1.5e10
    assert a["transformer"].config.in_channels == 36 and a["transformer"].config.out_channels == 16
    assert len(a["transformer"].blocks) == 40 and CONFIGS["a14b"].boundary_ratio == 0.9
    # in bf16, the experts are 28 GB each: both fit one H200 with the activations
    assert 2 * na["transformer"] * 2 < 60e9


def test_bf16_build_is_bf16_and_runs():
    """The real configs' build path (parameters created in bf16) on the tiny sizes."""
    pm = build_pipeline(Options(config="tiny", dtype="bfloat16"))
    assert all(p.dtype == torch.bfloat16 for p in pm.transformer.parameters()) and pm.vae.dtype == torch.bfloat16
    frames = decode_video(pm, torch.randn(1, 16, 2, 4, 4))
    assert frames.shape == (1, 5, 32, 32, 3) and frames.dtype == np.uint8


def test_held_back_lens_records_reach_the_file_in_order(tmp_path, monkeypatch):
    """A lens decode still running does not hold the loop or the later steps' values: its step is marked done once
    its frames are written; x0_video equals the decode of that step's stored x0."""
    pm = build_pipeline(Options(config="tiny"))
    asked: list[int] = []
    real_ready = StepLens.ready

    def slow_ready(self, step):  # not done until asked three times
        asked.append(step)
        return asked.count(step) > 3 and real_ready(self, step)

    monkeypatch.setattr(decode_mod.StepLens, "ready", slow_ready)
    marked: list[int] = []
    real_mark = RunWriter._mark_done
    monkeypatch.setattr(RunWriter, "_mark_done", lambda self, step: (marked.append(step), real_mark(self, step)))
    cfg = CaptureConfig(model=pm.name, prompts=["a red ball moves left"], steps=4, guidance=5.0, frames=5, height=32,
                        width=32, x0_steps=[0, 2], sites=["blocks.*.hook_resid_post"], pool="mean")  # fmt: skip
    timings: dict = {}
    out = capture(cfg, tmp_path / "lens.h5", loaded=pm, timings=timings)
    assert set(timings) >= {"encode", "loop", "decode", "finish"} and all(v >= 0 for v in timings.values())
    assert asked == [0, 0, 0, 0, 2]  # step 0's frames were not ready while steps 1 and 2 ran
    assert marked == [1, 3, 0, 2]  # a lens step is marked done once its frames are written, after later steps
    with load_cache(out) as c:
        assert c.x0_video_steps == [0, 2] and c.file["step_done"][:].tolist() == [1, 1, 1, 1]
        for row, s in enumerate([0, 2]):
            assert np.array_equal(c.x0_video[row], decode_video(pm, torch.from_numpy(c.file["x0"][s])))
        assert c["blocks.1.hook_resid_post"].shape[:2] == (4, 1)


def test_step_lens_on_cpu_decodes_at_submit_and_downscales_as_before():
    pm = build_pipeline(Options(config="tiny"))
    lens = StepLens(pm, downscale=2)
    assert not lens.overlapped  # no GPU: decoded in submit, the same frames
    x0 = torch.randn(1, 16, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    lens.submit(3, x0)
    assert lens.ready(3) and not lens.ready(4)
    got = lens.result(3)
    # the reference: the pipeline's own postprocess to float numpy, pooled 2x2, then round(255 v)
    with torch.no_grad():
        video = pm.vae.decode(decode_mod.denormalize(pm.vae, x0), return_dict=False)[0]
    ref = pm.pipeline.video_processor.postprocess_video(video, output_type="np")
    t = torch.from_numpy(ref).permute(0, 1, 4, 2, 3).flatten(0, 1)
    ref = torch.nn.functional.avg_pool2d(t, 2).unflatten(0, ref.shape[:2]).permute(0, 1, 3, 4, 2).numpy()
    assert got.shape == (1, 5, 16, 16, 3) and np.array_equal(got, decode_mod.to_uint8(ref))
    with pytest.raises(KeyError, match="not submitted"):
        lens.result(3)  # taken already

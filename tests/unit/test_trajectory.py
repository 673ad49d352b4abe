"""Trajectory: equals diffusers' WanPipeline (with and without CFG, one or two experts); per-step records are
consistent with the scheduler; conditioning, seeds and resume behave."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler, WanPipeline
from pydantic import ValidationError

from interp.adapters import ADAPTERS
from interp.experiments import Experiment
from interp.interventions import Noise
from interp.interventions.base import Rows
from interp.models import LoadedModel, load_model
from interp.trace import ForwardPlan
from interp.trajectory import (
    SamplerConfig,
    TrajectoryInputs,
    initial_latents,
    precision_context,
    predict_x0,
    run_trajectory,
    schedule,
)

SHAPE = (2, 4, 3, 8, 8)  # (B, C, F, H, W) latent of tiny-wan


def _inputs(m, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = m.adapter
    text, neg = a.random_text(m.transformer, 2, g), a.random_text(m.transformer, 2, g)
    return text, neg, torch.randn(SHAPE, generator=g)


def _pipeline(transformers, shift, boundary=None):
    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=None, scheduler=FlowMatchEulerDiscreteScheduler(shift=shift),
                       boundary_ratio=boundary, **transformers)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("guidance", [1.0, 4.0])
def test_equals_wan_pipeline(guidance):
    m = load_model("tiny-wan")
    text, neg, lat = _inputs(m)
    cfg = SamplerConfig(steps=4, shift=3.0, guidance_scale=guidance)
    ours = run_trajectory(m, TrajectoryInputs(text, SHAPE, negative=neg, latents=lat), cfg, read="hook_out")
    pipe = _pipeline({"transformer": ADAPTERS["wan"].tiny(0)}, shift=3.0)
    ref = pipe(prompt_embeds=text.encoder_hidden_states, negative_prompt_embeds=neg.encoder_hidden_states,
               height=64, width=64, num_frames=9, num_inference_steps=4, guidance_scale=guidance,
               latents=lat, output_type="latent").frames  # fmt: skip
    torch.testing.assert_close(ours.final, ref, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ours.final, lat)
    assert set(ours.branch_steps) == ({"cond", "uncond"} if guidance > 1 else {"cond"})
    if guidance > 1:  # v_s is the guided combination of the two recorded branch predictions
        for r in ours.records:
            c, u = r.branches["cond"]["hook_out"], r.branches["uncond"]["hook_out"]
            torch.testing.assert_close(r.v, u + guidance * (c - u))
            assert not torch.equal(c, u)


def test_two_experts_equal_wan22_pipeline():
    a = ADAPTERS["wan"]
    t1, t2 = a.tiny(0), a.tiny(1)
    m = LoadedModel("two", a, {"transformer": t1, "transformer_2": t2}, FlowMatchEulerDiscreteScheduler(), 0.6)
    text, neg, lat = _inputs(m)
    cfg = SamplerConfig(steps=6, shift=2.0, guidance_scale=3.0)
    ours = run_trajectory(m, TrajectoryInputs(text, SHAPE, negative=neg, latents=lat), cfg)
    pipe = _pipeline({"transformer": a.tiny(0), "transformer_2": a.tiny(1)}, shift=2.0, boundary=0.6)
    ref = pipe(prompt_embeds=text.encoder_hidden_states, negative_prompt_embeds=neg.encoder_hidden_states,
               height=64, width=64, num_frames=9, num_inference_steps=6, guidance_scale=3.0,
               latents=lat, output_type="latent").frames  # fmt: skip
    torch.testing.assert_close(ours.final, ref, rtol=1e-5, atol=1e-6)
    hi = [i for i, t in enumerate(ours.timesteps) if t >= 600]
    lo = [i for i, t in enumerate(ours.timesteps) if t < 600]
    assert hi and lo
    assert ours.branch_steps == {"transformer/cond": hi, "transformer/uncond": hi,
                                 "transformer_2/cond": lo, "transformer_2/uncond": lo}  # fmt: skip
    assert [r.expert for r in ours.records] == ["transformer"] * len(hi) + ["transformer_2"] * len(lo)
    ts, _, planned = schedule(m, cfg)  # the plan a store allocates from, before running
    assert planned == ours.branch_steps and torch.equal(ts, ours.timesteps)


def test_records_follow_flow_matching_euler():
    m = load_model("tiny-wan")
    text, _, _ = _inputs(m)
    tr = run_trajectory(m, TrajectoryInputs(text, SHAPE), SamplerConfig(steps=5, shift=5.0, seed=3))
    assert torch.equal(tr.records[0].x, initial_latents(SHAPE, 3))
    sig = FlowMatchEulerDiscreteScheduler(shift=5.0)
    sig.set_timesteps(5)
    assert torch.equal(tr.sigmas, sig.sigmas[:5]) and torch.equal(tr.timesteps, sig.timesteps)
    xs = [r.x for r in tr.records] + [tr.final]
    for i, r in enumerate(tr.records):
        assert torch.equal(r.x0, r.x - tr.sigmas[i] * r.v)
        nxt = sig.sigmas[i + 1]
        torch.testing.assert_close(xs[i + 1], r.x + (nxt - tr.sigmas[i]) * r.v)
    again = run_trajectory(m, TrajectoryInputs(text, SHAPE), SamplerConfig(steps=5, shift=5.0, seed=3))
    other = run_trajectory(m, TrajectoryInputs(text, SHAPE), SamplerConfig(steps=5, shift=5.0, seed=4))
    assert torch.equal(again.final, tr.final) and not torch.equal(other.final, tr.final)


def test_resume_from_a_recorded_step_is_exact():
    m = load_model("tiny-wan")
    text, neg, _ = _inputs(m)
    cfg = SamplerConfig(steps=5, guidance_scale=2.0)
    full = run_trajectory(m, TrajectoryInputs(text, SHAPE, negative=neg), cfg, read="blocks.1.hook_resid_post")
    part = run_trajectory(m, TrajectoryInputs(text, SHAPE, negative=neg), cfg, read="blocks.1.hook_resid_post",
                          start=(3, full.records[3].x))  # fmt: skip
    assert torch.equal(part.final, full.final)
    assert [r.step for r in part.records] == [3, 4]
    assert torch.equal(part.records[0].branches["uncond"]["blocks.1.hook_resid_post"],
                       full.records[3].branches["uncond"]["blocks.1.hook_resid_post"])  # fmt: skip


def test_a_run_stopped_and_resumed_with_its_x0_equals_the_whole_run():
    """``stop`` ends before a step (``final``: the latent entering it); ``start=(step, x, x0)`` hands the latent edits
    the previous step's x0 (renoise reads it), so two segments are the whole run, edits included."""
    m = load_model("tiny-wan")
    text, _, _ = _inputs(m)
    cfg, spec = SamplerConfig(steps=5), Noise(mode="renoise", steps=[3], seed=1)
    seen = []

    def edit(state):
        seen.append(state.x0 is not None)
        return spec.edit_latent(state, Rows(torch.tensor([0])), None, keys=[0]) if state.step == 3 else state.x

    full = run_trajectory(m, TrajectoryInputs(text, SHAPE), cfg, edit_latent=edit)
    head = run_trajectory(m, TrajectoryInputs(text, SHAPE), cfg, edit_latent=edit, stop=3, keep=True)
    assert [r.step for r in head.records] == [0, 1, 2] and torch.equal(head.final, head.records[2].x_next)
    tail = run_trajectory(m, TrajectoryInputs(text, SHAPE), cfg, edit_latent=edit, keep=False,
                          start=(3, head.final, head.records[2].x0))  # fmt: skip
    assert torch.equal(tail.final, full.final)
    assert seen == [False, True, True, True, True] + [False, True, True] + [True, True]
    blind = run_trajectory(m, TrajectoryInputs(text, SHAPE), cfg, edit_latent=edit, start=(3, head.final))
    assert not torch.equal(blind.final, full.final)  # without x0 renoise has no clean estimate to keep
    with pytest.raises(ValueError, match="stop 2: the run starts at step 3 of 5; valid: 3..5"):
        run_trajectory(m, TrajectoryInputs(text, SHAPE), cfg, start=(3, head.final), stop=2)


def test_channel_condition_and_first_frame():
    a = ADAPTERS["wan"]
    t = a.model_class(**{**a.tiny_config(), "in_channels": 4 + 5}).eval()
    m = LoadedModel("i2v", a, {"transformer": t}, FlowMatchEulerDiscreteScheduler())
    g = torch.Generator().manual_seed(0)
    text = a.random_text(t, 2, g)
    cond = torch.randn(2, 5, 3, 8, 8, generator=g)
    first = torch.randn(2, 4, 1, 8, 8, generator=g)
    cfg = SamplerConfig(steps=3)
    tr = run_trajectory(m, TrajectoryInputs(text, SHAPE, condition=cond, first_frame=first), cfg)
    # the same loop by hand: model input = cat([x_t, condition], dim=1), first frame replaced before each step
    sched = FlowMatchEulerDiscreteScheduler()
    sched.set_timesteps(3)
    x = initial_latents(SHAPE, 0)
    with torch.no_grad():
        for step in sched.timesteps:
            x[:, :, :1] = first
            v = t(torch.cat([x, cond], 1), step.expand(2), text.encoder_hidden_states, return_dict=False)[0]
            x = sched.step(v, step, x, return_dict=False)[0]
    x[:, :, :1] = first
    assert torch.equal(tr.final, x)
    assert all(torch.equal(r.x[:, :, :1], first) for r in tr.records)
    plain = run_trajectory(m, TrajectoryInputs(text, SHAPE, condition=torch.zeros_like(cond)), cfg)
    assert not torch.allclose(plain.final, tr.final)


def test_plan_per_branch_and_step():
    m = load_model("tiny-wan")
    text, neg, _ = _inputs(m)
    seen = []

    def plan(branch, step):
        seen.append((branch, step))
        return ForwardPlan(read=["hook_out"] if branch == "uncond" else [])

    tr = run_trajectory(
        m, TrajectoryInputs(text, SHAPE, negative=neg), SamplerConfig(steps=2, guidance_scale=2.0), plan=plan
    )
    assert seen == [("cond", 0), ("uncond", 0), ("cond", 1), ("uncond", 1)]
    assert tr.records[1].branches == {"cond": {}, "uncond": {"hook_out": tr.records[1].branches["uncond"]["hook_out"]}}


def test_x0_for_other_parametrizations():
    for kind in ("epsilon", "v_prediction"):
        sched = DDIMScheduler(prediction_type=kind, clip_sample=False)
        sched.set_timesteps(10)
        x, out = torch.randn(1, 4, 2, 4, 4), torch.randn(1, 4, 2, 4, 4)
        t = sched.timesteps[3]
        ref = sched.step(out, t, x).pred_original_sample
        torch.testing.assert_close(predict_x0(sched, x, out, t, None), ref)


@pytest.mark.parametrize("rope", [False, True])
@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_cogvideox_equals_its_pipeline(rope, guidance):
    """A second peer: CogVideoX (B,F,C,H,W layout, optional 3D RoPE) with its own v-prediction DDIM scheduler."""
    from diffusers import CogVideoXDDIMScheduler, CogVideoXPipeline

    a = ADAPTERS["cogvideox"]

    def model():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            extra = {"use_rotary_positional_embeddings": True, "attention_head_dim": 16} if rope else {}
            return a.model_class(**{**a.tiny_config(), **extra}).eval()

    m = LoadedModel("cog", a, {"transformer": model()}, CogVideoXDDIMScheduler())
    g = torch.Generator().manual_seed(0)
    text, neg = a.random_text(m.transformer, 1, g), a.random_text(m.transformer, 1, g)
    lat = torch.randn(1, 4, 3, 8, 8, generator=g)
    cfg = SamplerConfig(steps=3, guidance_scale=guidance)
    ours = run_trajectory(m, TrajectoryInputs(text, (1, 4, 3, 8, 8), negative=neg, latents=lat), cfg)
    pipe = CogVideoXPipeline(
        tokenizer=None, text_encoder=None, vae=None, transformer=model(), scheduler=CogVideoXDDIMScheduler()
    )
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(prompt_embeds=text.encoder_hidden_states, negative_prompt_embeds=neg.encoder_hidden_states,
               height=64, width=64, num_frames=9, num_inference_steps=3, guidance_scale=guidance,
               latents=lat.permute(0, 2, 1, 3, 4), output_type="latent").frames  # fmt: skip
    torch.testing.assert_close(ours.final, ref.permute(0, 2, 1, 3, 4), rtol=1e-4, atol=1e-5)


def test_edit_latent_changes_the_state_the_scheduler_steps():
    """edit_latent(state) replaces x_s before step s: the record's x is the edit, later steps follow from it; the
    state carries the schedule's coefficients and the previous step's x0."""
    m = load_model("tiny-wan")
    text, _, noise = _inputs(m)
    inputs = TrajectoryInputs(text, SHAPE, latents=noise)
    cfg = SamplerConfig(steps=3, seed=0)
    plain = run_trajectory(m, inputs, cfg)
    seen = []

    def double_at_step_1(state):
        seen.append(state)
        return 2 * state.x if state.step == 1 else state.x

    edited = run_trajectory(m, inputs, cfg, edit_latent=double_at_step_1)
    assert seen[0].x0 is None and torch.equal(seen[1].x0, plain.records[0].x0)
    assert (seen[1].signal, seen[1].noise) == (1 - float(plain.sigmas[1]), float(plain.sigmas[1]))
    assert torch.equal(edited.records[0].x, plain.records[0].x)
    assert torch.equal(edited.records[1].x, 2 * plain.records[1].x)
    # resuming the plain run from the edited latent at step 1 gives the same end
    resumed = run_trajectory(m, inputs, cfg, start=(1, 2 * plain.records[1].x))
    assert torch.equal(edited.final, resumed.final) and not torch.allclose(edited.final, plain.final)


def test_precision_modes():
    """float32 is the default and exact; tf32 leaves a CPU run bit-identical; bfloat16 autocasts the forwards (the
    update stays float32) and moves the result slightly; an unknown mode names the valid ones."""
    m = load_model("tiny-wan")
    text, _, _ = _inputs(m)
    run = lambda p: run_trajectory(m, TrajectoryInputs(text, SHAPE), SamplerConfig(steps=3, seed=3, precision=p),  # noqa: E731
                                   read="blocks.1.hook_resid_post")  # fmt: skip
    ref, tf32, bf16 = run("float32"), run("tf32"), run("bfloat16")
    assert torch.equal(tf32.final, ref.final)
    assert bf16.final.dtype == torch.float32 and not torch.equal(bf16.final, ref.final)
    rel = (bf16.final - ref.final).norm() / ref.final.norm()
    assert 0 < rel < 0.05
    site = lambda tr: tr.records[0].branches["cond"]["blocks.1.hook_resid_post"]  # noqa: E731
    assert torch.equal(site(tf32), site(ref)) and not torch.equal(site(bf16), site(ref))
    with pytest.raises(ValueError, match="float32, tf32, bfloat16"):
        with precision_context("float16", "cpu"):
            pass
    assert not torch.backends.cuda.matmul.allow_tf32  # tf32's flags restored


def test_experiment_precision_in_its_key():
    base = Experiment(model="tiny-wan")
    bf = Experiment(model="tiny-wan", sampler={"precision": "bfloat16"})
    assert "precision" not in base.canonical() and '"precision":"bfloat16"' in bf.canonical()
    assert base.key("h") != bf.key("h")
    with pytest.raises(ValidationError, match="float32"):
        Experiment(model="tiny-wan", sampler={"precision": "fp16"})

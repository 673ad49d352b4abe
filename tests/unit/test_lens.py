"""The x0 lens: the readout of the last block is the model's output; the lens of the last block is the model's x0,
exactly, from a capture and live, with and without guidance, for every family; the tuned lens fits."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import tiny_inputs
from diffusers import CogVideoXDDIMScheduler

from interp.adapters import ADAPTERS, Adapter
from interp.apps.capture import CaptureConfig, capture, capture_inputs
from interp.lens import TunedLensFit, lens_from_cache, resid_sites, run_lens
from interp.models import load_model
from interp.store import load_cache
from interp.trace import ForwardPlan, Traced
from interp.trajectory import SamplerConfig, TrajectoryInputs, run_trajectory


LENS_FAMILIES = [f for f, a in ADAPTERS.items() if type(a).readout is not Adapter.readout]  # families with a readout


def test_the_lens_families_are_those_with_a_readout_and_others_say_so():
    assert LENS_FAMILIES == ["wan", "cogvideox", "ltx", "hunyuan", "ltx2"]  # LTX-2's video head is LTX's
    a = ADAPTERS["mochi"]
    with pytest.raises(NotImplementedError, match="mochi: no x0 lens readout yet"):
        a.readout(a.tiny(0), torch.zeros(1, 1, 1), {}, (1, 1, 1, 1, 1))


@pytest.mark.parametrize("family", LENS_FAMILIES)
def test_readout_of_the_last_block_is_the_output(family):
    a = ADAPTERS[family]
    plain = a.tiny(0)
    tr = Traced(a.tiny(0))
    m = tr.dit.transformer
    x, t, text = tiny_inputs(family, plain)
    res = tr.run(x, t, text, plan=ForwardPlan(read=resid_sites(tr.n_blocks)))
    with torch.no_grad():
        ref = a.forward(plain, x, t, text)  # diffusers' own forward, never hooked
        cond = a.readout_conditioning(m, t, text)
        outs = [a.readout(m, res.acts[s], cond, x.shape) for s in resid_sites(tr.n_blocks)]
    assert torch.equal(outs[-1], ref)
    assert outs[0].shape == ref.shape and not torch.allclose(outs[0], ref, atol=1e-3)
    with torch.no_grad():  # the modulation follows the timestep: another timestep reads the same stream differently
        other = a.readout(m, res.acts[resid_sites(tr.n_blocks)[-1]], a.readout_conditioning(m, t * 0.1, text), x.shape)
    assert not torch.allclose(other, ref, atol=1e-4)


def _capture(tmp_path, family, guidance, loaded):
    cfg = CaptureConfig(model=f"tiny-{family}", steps=3, batch=2, guidance=guidance, sites=["blocks.*.hook_resid_post"])
    path = capture(cfg, tmp_path / f"{family}-{guidance}.h5", loaded=loaded)
    return cfg.resolved(loaded), path


@pytest.mark.parametrize("family", LENS_FAMILIES)
@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_last_block_lens_is_the_models_x0(tmp_path, family, guidance):
    """From the capture (the stored x0) and live (the loop's x0), bit for bit; live and cached lenses agree."""
    loaded = load_model(f"tiny-{family}")
    cfg, path = _capture(tmp_path, family, guidance, loaded)
    mi = capture_inputs(loaded, cfg)
    with load_cache(path) as cache:
        assert cache.branches == (["cond", "uncond"] if guidance > 1 else ["cond"])
        cached = list(lens_from_cache(loaded, cache, text=mi.text))
    assert [c.step for c in cached] == [0, 1, 2]
    live = []
    run_lens(loaded, TrajectoryInputs(mi.text, mi.latent_shape, condition=mi.condition), cfg.sampler(),
             on_lens=live.append)  # fmt: skip
    for c, v in zip(cached, live):
        assert torch.equal(c.x0[-1], c.model_x0)  # the capture's own x0
        assert torch.equal(v.x0[-1], v.model_x0)  # the loop's x0
        assert torch.equal(c.x0, v.x0)
    first = (cached[0].x0[0] - cached[0].model_x0).abs().mean()
    assert first > 1e-3  # an early block reads out something else


def test_lens_under_a_v_prediction_scheduler(tmp_path):
    """x0 from the scheduler's own parametrization (CogVideoX DDIM, v-prediction): still the model's x0 exactly."""
    loaded = load_model("tiny-cogvideox")
    sched = CogVideoXDDIMScheduler(prediction_type="v_prediction", timestep_spacing="trailing")
    loaded = dataclasses.replace(loaded, scheduler=sched, extra={})
    mi = capture_inputs(loaded, CaptureConfig(model="tiny-cogvideox", batch=2).resolved(loaded))
    got = []
    run_lens(loaded, TrajectoryInputs(mi.text, mi.latent_shape), SamplerConfig(steps=3), on_lens=got.append)
    assert all(torch.equal(s.x0[-1], s.model_x0) for s in got)
    assert not torch.allclose(got[0].x0[0], got[0].model_x0)


def test_hunyuan_lens_needs_the_text(tmp_path):
    loaded = load_model("tiny-hunyuan")
    cfg, path = _capture(tmp_path, "hunyuan", 1.0, loaded)
    with load_cache(path) as cache, pytest.raises(ValueError, match="needs the text conditioning"):
        next(lens_from_cache(loaded, cache))


def test_lens_refuses_a_capture_without_every_block(tmp_path):
    loaded = load_model("tiny-wan")
    path = capture(CaptureConfig(model="tiny-wan", steps=2, sites=["blocks.0.hook_resid_post"]), tmp_path / "c.h5",
                   loaded=loaded)  # fmt: skip
    with load_cache(path) as cache, pytest.raises(ValueError, match="lacks 2 of 3"):
        next(lens_from_cache(loaded, cache))


def test_tuned_lens_fits_the_last_stream():
    """Each block's fitted map brings its stream closer to the last block's than the stream itself (on the fit
    data); the last block's map is the identity, so its tuned lens is the plain one."""
    loaded = load_model("tiny-wan")
    mi = capture_inputs(loaded, CaptureConfig(model="tiny-wan", batch=2).resolved(loaded))
    inputs = TrajectoryInputs(mi.text, mi.latent_shape)
    tr = Traced(loaded.transformer)
    fit = TunedLensFit(tr.n_blocks, ridge=1e-6)
    streams = []

    def on_step(rec):
        streams.append([rec.branches["cond"][s] for s in resid_sites(tr.n_blocks)])
        fit.add(streams[-1])

    run_trajectory(loaded, inputs, SamplerConfig(steps=3), read=resid_sites(tr.n_blocks), on_step=on_step, keep=False)
    tuned = fit.solve()
    for i in range(tr.n_blocks - 1):
        err_plain = sum(((s[i] - s[-1]) ** 2).sum() for s in streams)
        err_tuned = sum(((tuned.apply(i, s[i]) - s[-1]) ** 2).sum() for s in streams)
        assert err_tuned < 0.5 * err_plain
    last = streams[0][-1]
    assert torch.equal(tuned.apply(tr.n_blocks - 1, last), last)
    got = []
    run_lens(loaded, inputs, SamplerConfig(steps=3), on_lens=got.append, tuned=tuned)
    assert all(torch.equal(s.tuned[-1], s.x0[-1]) for s in got)
    err = lambda x0, s: ((x0[0] - s.model_x0) ** 2).mean()  # noqa: E731
    assert sum(err(s.tuned, s) for s in got) < sum(err(s.x0, s) for s in got)

"""Interventions: each kind's exact semantics on tiny-wan, with per-row edits in one batch."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from interp.interventions import Ablate, Ensemble, Noise, Patch, Skip, Steer, Swap, parse
from interp.interventions.bind import Bound, compile_batch, rows
from interp.interventions.noise import fresh_noise
from interp.models import load_model
from interp.trajectory import SamplerConfig, TrajectoryInputs, run_trajectory, traced_experts

SHAPE1 = (1, 4, 3, 8, 8)
CFG = SamplerConfig(steps=3)


@pytest.fixture(scope="module")
def m():
    return load_model("tiny-wan")


def _text(m, n, seed=0):
    return m.adapter.random_text(m.transformer, n, torch.Generator().manual_seed(seed))


def _noise(seed):
    return torch.randn(SHAPE1, generator=torch.Generator().manual_seed(seed))


def run(m, text, noise, bound=(), read=(), steps=3):
    """A batched trajectory of rows (text[i], noise[i]) with ``bound`` interventions."""
    shape = tuple(noise.shape)
    plan, edit_latent = compile_batch(list(bound), traced_experts(m)["transformer"], shape, steps, list(read))
    inputs = TrajectoryInputs(text, shape, latents=noise)
    return run_trajectory(m, inputs, SamplerConfig(steps=steps), plan=plan, edit_latent=edit_latent)


def test_parse_and_errors():
    assert parse({"kind": "skip", "layers": "1:"}).sites(3) == ["blocks.1", "blocks.2"]
    assert Patch(layers=[0, 2]).sites(3) == ["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"]
    with pytest.raises(
        ValueError, match="expected tags: 'patch', 'skip', 'ablate', 'noise', 'swap', 'ensemble', 'steer'"
    ):
        parse({"kind": "zap"})
    with pytest.raises(ValueError, match="for a sublayer use ablate"):
        Skip(site="blocks.1.hook_mlp_out")
    with pytest.raises(ValueError, match="valid: hook_embed, hook_out"):
        Patch(site="blocks.1.resid")
    with pytest.raises(ValueError, match="no \\{layer\\} placeholder"):
        Patch(site="blocks.1.hook_resid_post", layers=[1]).sites(3)
    with pytest.raises(ValueError, match=r"layers \[5\] outside 0..2"):
        Skip(layers=5).sites(3)


class _Identity(torch.nn.Module):
    def forward(self, hidden, *args, **kwargs):
        return hidden


def _plain_loop(transformer, text, noise, steps):
    """Flow-matching Euler in plain torch and diffusers (no interp)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler()
    sched.set_timesteps(steps)
    x = noise.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            v = transformer(hidden_states=x, timestep=t.expand(x.shape[0]), encoder_hidden_states=text.encoder_hidden_states,
                            return_dict=False)[0]  # fmt: skip
            x = sched.step(v, t, x, return_dict=False)[0]
    return x


def test_skip_equals_plain_torch_identity_block(m):
    """Row 0 skips block 1 (all steps), row 1 is clean; row 0 equals a plain diffusers loop whose block 1 is an
    identity module, row 1 equals the clean run."""
    text, noise = _text(m, 2), torch.cat([_noise(0), _noise(1)])
    out = run(m, text, noise, [Bound(Skip(layers=1), rows([0]))])
    clean = run(m, text, noise)
    bare = m.adapter.tiny(seed=0)
    assert torch.allclose(_plain_loop(bare, text, noise, 3), clean.final, atol=1e-6, rtol=0)
    bare.blocks[1] = _Identity()
    plain = _plain_loop(bare, text, noise, 3)
    assert torch.allclose(out.final[0], plain[0], atol=1e-6, rtol=0)
    assert torch.allclose(out.final[1], clean.final[1], atol=1e-6, rtol=0)
    assert (out.final[0] - clean.final[0]).abs().max() > 1e-2


def test_patch_every_resid_post_reproduces_the_source(m):
    """Same noise, different inputs: patching every block's resid_post at every step makes the target's final the
    source's; patching only step 0 does not."""
    text, noise = _text(m, 2), torch.cat([_noise(0), _noise(0)])
    out = run(m, text, noise, [Bound(Patch(), rows([0], source=[1]))])
    assert torch.allclose(out.final[0], out.final[1], atol=1e-6, rtol=0)
    clean = run(m, text, noise)
    assert (clean.final[0] - clean.final[1]).abs().max() > 1e-2
    one = run(m, text, noise, [Bound(Patch(steps=0), rows([0], source=[1]))])
    assert (one.final[0] - one.final[1]).abs().max() > 1e-3


def test_patch_positions_and_swap_read_back(m):
    """Patch at one site, step 0, frame 1 only: the read value equals the source's on frame 1's 16 tokens and the
    target's own elsewhere. Swap is the same with a different input."""
    text, noise = _text(m, 2), torch.cat([_noise(0), _noise(0)])
    site = "blocks.1.hook_resid_post"
    clean = run(m, text, noise, read=[site], steps=1).records[0].branches["cond"][site]
    for spec in (Patch(layers=1, frames=1), Swap(layers=1, frames=[1])):
        got = (
            run(m, text, noise, [Bound(spec, rows([0], source=[1]))], read=[site], steps=1)
            .records[0]
            .branches["cond"][site]
        )
        assert torch.equal(got[0, 16:32], clean[1, 16:32])
        assert torch.equal(got[0, :16], clean[0, :16]) and torch.equal(got[0, 32:], clean[0, 32:])
        assert torch.equal(got[1], clean[1])


def test_ablate_zero_mean_resample(m):
    text, noise = _text(m, 3), torch.cat([_noise(0), _noise(1), _noise(2)])
    site = "blocks.0.hook_attn_out"
    clean = run(m, text, noise, read=[site], steps=1).records[0].branches["cond"][site]

    def edited(spec, r):
        return run(m, text, noise, [Bound(spec, r)], read=[site], steps=1).records[0].branches["cond"][site]

    z = edited(Ablate(site="blocks.{layer}.hook_attn_out", layers=0, tokens=[0, 5]), rows([0]))
    assert torch.equal(z[0, [0, 5]], torch.zeros(2, 16)) and torch.equal(z[0, 1:5], clean[0, 1:5])
    mean = edited(Ablate(site=site, mode="mean"), rows([0], group=[[1, 2]]))
    assert torch.allclose(mean[0], (clean[1] + clean[2]) / 2, atol=1e-7)
    res = edited(Ablate(site=site, mode="resample"), rows([0], source=[2]))
    assert torch.equal(res[0], clean[2])


def test_noise_at_a_frame_touches_only_that_frame(m):
    text, noise = _text(m, 1), _noise(0)
    clean = run(m, text, noise)
    spec = Noise(steps=1, frames=2, seed=7)
    out = run(m, text, noise, [Bound(spec, rows([0]), keys=[0])])
    x_clean, x = clean.records[1].x, out.records[1].x
    eps = fresh_noise(7, 1, [0], SHAPE1[1:])
    assert torch.equal(out.records[0].x, clean.records[0].x)
    assert torch.equal(x[:, :, :2], x_clean[:, :, :2]) and torch.equal(x[:, :, 2], eps[:, :, 2])
    mixed = run(m, text, noise, [Bound(Noise(steps=1, mix=0.25, seed=7), rows([0]), keys=[0])])
    assert torch.allclose(mixed.records[1].x, 0.75 * x_clean + 0.25 * eps, atol=1e-6)


def test_renoise_keeps_x0_and_the_schedules_noise_level(m):
    """renoise at step 1: x_1 := (1 - sigma_1) x0_0 + sigma_1 eps (x0_0: step 0's prediction), by hand; a partial mix
    resamples part of step 0's noise estimate; per frame it touches only that frame; a tiny mix is the clean run."""
    text, noise = _text(m, 1), _noise(0)
    clean = run(m, text, noise)
    sigma, x0 = float(clean.sigmas[1]), clean.records[0].x0
    eps = fresh_noise(7, 1, [0], SHAPE1[1:])
    full = run(m, text, noise, [Bound(Noise(mode="renoise", steps=1, seed=7), rows([0]), keys=[0])])
    assert torch.allclose(full.records[1].x, (1 - sigma) * x0 + sigma * eps, atol=1e-6)
    assert torch.equal(full.records[0].x, clean.records[0].x)
    eps_hat = (clean.records[1].x - (1 - sigma) * x0) / sigma
    half = run(m, text, noise, [Bound(Noise(mode="renoise", steps=1, mix=0.5, seed=7), rows([0]), keys=[0])])
    assert torch.allclose(half.records[1].x, (1 - sigma) * x0 + sigma * (0.75**0.5 * eps_hat + 0.5 * eps), atol=1e-5)
    frame = run(m, text, noise, [Bound(Noise(mode="renoise", steps=1, frames=2, seed=7), rows([0]), keys=[0])])
    x, x_clean = frame.records[1].x, clean.records[1].x
    assert torch.equal(x[:, :, :2], x_clean[:, :, :2])
    assert torch.allclose(x[:, :, 2], (1 - sigma) * x0[:, :, 2] + sigma * eps[:, :, 2], atol=1e-6)
    tiny = run(m, text, noise, [Bound(Noise(mode="renoise", steps=1, mix=1e-6, seed=7), rows([0]), keys=[0])])
    assert torch.allclose(tiny.final, clean.final, atol=1e-4)  # the Euler state is exactly a x0 + b eps_hat


def test_renoise_statistics_and_errors():
    """Over many fresh draws the renoised latent's clean part is x0 exactly and its noise part is N(0, 1) at the
    schedule's level (so x0 is kept in expectation); a step without noise cannot be renoised."""
    from interp.interventions.noise import apply_noise

    n, signal, level = 4000, 0.7, 0.3
    x0 = torch.randn(1, 2, 8).expand(n, -1, -1)
    x = signal * x0 + level * torch.randn(1, 2, 8).expand(n, -1, -1)
    eps = torch.randn(n, 2, 8, generator=torch.Generator().manual_seed(0))
    for mix in (1.0, 0.5):
        out = apply_noise(
            Noise(mode="renoise", mix=mix), x, rows(list(range(n))), None, eps, x0=x0, signal=signal, noise=level
        )
        assert torch.allclose(out.mean(0), signal * x0[0] + level * (1 - mix**2) ** 0.5 * (x[0] - signal * x0[0]) / level,
                              atol=0.05)  # fmt: skip
        assert abs(float(((out - out.mean(0)) / level).std()) - mix) < 0.05
    with pytest.raises(ValueError, match="without noise"):
        apply_noise(Noise(mode="renoise"), x, rows([0]), None, eps[:1], x0=x0, signal=1.0, noise=0.0)
    with pytest.raises(ValueError, match="mode"):
        parse({"kind": "noise", "mode": "fresh"})


def test_renoise_at_the_last_step_costs_less_than_replace(m):
    text, noise = _text(m, 1), _noise(0)
    clean = run(m, text, noise).final
    changed = {mode: float((run(m, text, noise, [Bound(Noise(mode=mode, steps=2, seed=7), rows([0]), keys=[0])]).final
                            - clean).norm()) for mode in ("replace", "renoise")}  # fmt: skip
    assert 0 < changed["renoise"] < changed["replace"]


def test_ensemble_of_identical_seeds_is_the_single_run(m):
    text, noise = _text(m, 1), _noise(0)
    single = run(m, text, noise)
    three = torch.cat([noise] * 3)
    for spec in (Ensemble(seeds=[0, 0, 0]), Ensemble(seeds=[0, 0, 0], target="latent")):
        out = run(m, _text(m, 1).__class__(text.encoder_hidden_states.expand(3, -1, -1)), three,
                  [Bound(spec, rows([0, 1, 2], group=[[0, 1, 2]]))])  # fmt: skip
        assert torch.allclose(out.final[0], single.final[0], atol=1e-6, rtol=0)


def test_ensemble_averages_hidden_states_and_latents(m):
    """Different seeds: averaging the last block's resid_post makes every member's prediction the same; averaging
    latents at step 1 makes the members' x_1 their mean."""
    text = _text(m, 1).__class__(_text(m, 1).encoder_hidden_states.expand(2, -1, -1))
    noise = torch.cat([_noise(0), _noise(1)])
    out = run(m, text, noise, [Bound(Ensemble(layers=2, steps=0), rows([0, 1], group=[[0, 1]]))])
    assert torch.allclose(out.records[0].v[0], out.records[0].v[1], atol=1e-6)
    assert (out.records[1].v[0] - out.records[1].v[1]).abs().max() > 1e-3
    clean = run(m, text, noise)
    lat = run(m, text, noise, [Bound(Ensemble(steps=1, target="latent"), rows([0, 1], group=[[0, 1]]))])
    mean = clean.records[1].x.mean(0)
    assert torch.allclose(lat.records[1].x[0], mean, atol=1e-6) and torch.allclose(lat.records[1].x[1], mean, atol=1e-6)


def test_steer_adds_the_scaled_unit_direction(m, tmp_path):
    text, noise = _text(m, 1), _noise(0)
    site = "blocks.2.hook_resid_post"
    clean = run(m, text, noise, read=[site], steps=1).records[0].branches["cond"][site]
    d = torch.arange(16.0)
    save_file({f"{site}/step_0/direction": torch.stack([torch.zeros(16), d])}, str(tmp_path / "w.safetensors"))
    spec = Steer(layers=2, frames=0, scale=3.0,
                 direction={"file": str(tmp_path / "w.safetensors"), "key": f"{site}/step_0/direction", "index": 1})  # fmt: skip
    from interp.interventions import load_direction

    direction = load_direction(spec)
    got = run(m, text, noise, [Bound(spec, rows([0]), direction=direction)], read=[site], steps=1)
    diff = got.records[0].branches["cond"][site] - clean
    assert torch.allclose(diff[0, :16], (3.0 * d / d.norm()).expand(16, -1), atol=1e-5)
    assert torch.equal(diff[0, 16:], torch.zeros(32, 16))

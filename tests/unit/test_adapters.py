"""Adapters: hooked blocks compute exactly what diffusers computes; geometry maps tokens to latent patches."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_inputs

from interp.adapters import ADAPTERS, get_adapter, tokens_to_grid
from interp.adapters.ltx import LTXAdapter


def test_registry_and_errors():
    assert set(ADAPTERS) == {"wan", "cogvideox", "ltx", "hunyuan"}
    assert get_adapter("WanTransformer3DModel").family == "wan"
    with pytest.raises(ValueError, match="supported families: wan"):
        get_adapter("UNet2DConditionModel")


def test_tiny_is_seeded(family):
    a = ADAPTERS[family]
    m1, m2, m3 = a.tiny(0), a.tiny(0), a.tiny(1)
    p1, p2, p3 = (torch.cat([p.flatten() for p in m.parameters()]) for m in (m1, m2, m3))
    assert torch.equal(p1, p2) and not torch.equal(p1, p3)


def test_hooked_forward_is_exact(family):
    a = ADAPTERS[family]
    plain, hooked = a.tiny(0), a.install_hooks(a.tiny(0))
    assert set(plain.state_dict()) == set(hooked.state_dict())  # hook points add no state
    for (_, p), (_, h) in zip(a.blocks(plain), a.blocks(hooked)):
        # the hooked class is ours, under the base's name (diffusers' class-name lookups find the block)
        assert type(h) is a.hooked_class(h) and type(h).__mro__[1] is type(p)
        assert type(h).__name__ == type(p).__name__ and type(h).__module__.startswith("interp.adapters.")
    x, t, text = tiny_inputs(family, plain)
    with torch.no_grad():
        ref, out = a.forward(plain, x, t, text), a.forward(hooked, x, t, text)
    assert out.shape == x.shape  # canonical (B, C, F, H, W) in and out
    assert torch.equal(ref, out)
    a.install_hooks(hooked)  # idempotent
    assert torch.equal(a.forward(hooked, x, t, text), out)


def test_blocks_one_axis_in_execution_order():
    a = ADAPTERS["hunyuan"]
    m = a.tiny(0)
    paths = [p for p, _ in a.blocks(m)]
    assert paths == ["transformer_blocks.0", "transformer_blocks.1", "single_transformer_blocks.0",
                     "single_transformer_blocks.1"]  # fmt: skip


def test_geometry_token_maps_to_its_latent_patch(family):
    """Perturbing the latent patch at (f, r, c) changes exactly the token token_to_fhw maps there, in hook_embed."""
    from interp.trace import ForwardPlan, Traced

    a = ADAPTERS[family]
    tr = Traced(a.tiny(0))
    m = tr.dit.transformer
    x, t, text = tiny_inputs(family, m, batch=1)
    grid = a.token_grid(m, x.shape)
    n_tok = grid[0] * grid[1] * grid[2]
    base = tr.run(x, t, text, plan=ForwardPlan(read=["hook_embed"])).acts["hook_embed"]
    assert base.shape == (1, n_tok, a.d_model(m))
    pt, ph, pw = a.patch_size(m)
    for index in (0, n_tok - 1, n_tok // 2 + 1):
        f, r, c = a.token_to_fhw(m, x.shape, index)
        assert a.fhw_to_token(m, x.shape, (f, r, c)) == index
        x2 = x.clone()
        x2[:, :, f * pt : (f + 1) * pt, r * ph : (r + 1) * ph, c * pw : (c + 1) * pw] += 1.0
        emb = tr.run(x2, t, text, plan=ForwardPlan(read=["hook_embed"])).acts["hook_embed"]
        changed = (emb != base).any(-1)[0].nonzero().flatten().tolist()
        assert changed == [index]
        assert tokens_to_grid(emb - base, grid)[0, f, r, c].abs().sum() > 0


def test_ltx_pack_matches_pipeline_and_round_trips():
    from diffusers import LTXPipeline

    a = LTXAdapter()
    m = a.model_class(**{**a.tiny_config(), "in_channels": 4 * 8, "out_channels": 4 * 8, "patch_size": 2,
                         "patch_size_t": 2})  # fmt: skip
    x = torch.randn(1, 4, 4, 6, 8)
    packed = a.pack(m, x)
    assert torch.equal(packed, LTXPipeline._pack_latents(x, 2, 2))
    assert torch.equal(a.unpack(m, packed, x.shape), x)
    assert a.latent_channels(m) == 4 and a.token_grid(m, x.shape) == (2, 3, 4)


def test_condition_channels_checked():
    a = ADAPTERS["wan"]
    m = a.model_class(**{**a.tiny_config(), "in_channels": 4 + 5})
    assert a.condition_channels(m) == 5
    x = torch.randn(1, 4, 2, 4, 4)
    text = a.random_text(m, 1, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="4 latent \\+ 5 condition"):
        a.forward(m, x, torch.tensor([1.0]), text)
    with torch.no_grad():
        out = a.forward(m, x, torch.tensor([1.0]), text, condition=torch.zeros(1, 5, 2, 4, 4))
    assert out.shape == x.shape


def test_ltx_forward_is_the_pipelines_call():
    """One forward as LTXPipeline makes it: packed tokens, grid size, text mask, default RoPE interpolation scale."""
    from diffusers import LTXPipeline

    a = LTXAdapter()
    m = a.tiny(0)
    x, t, text = tiny_inputs("ltx", m)
    f, h, w = x.shape[2:]
    with torch.no_grad():
        tokens = m(hidden_states=LTXPipeline._pack_latents(x, 1, 1), encoder_hidden_states=text.encoder_hidden_states,
                   timestep=t, encoder_attention_mask=text.extras["encoder_attention_mask"], num_frames=f, height=h,
                   width=w, rope_interpolation_scale=(8 / 25, 32, 32), return_dict=False)[0]  # fmt: skip
        ours = a.forward(m, x, t, text)
    assert torch.equal(ours, LTXPipeline._unpack_latents(tokens, f, h, w, 1, 1))

"""Adapters: hooked blocks compute exactly what diffusers computes; geometry maps tokens to latent patches."""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest
import torch
from conftest import tiny_inputs

from interp.adapters.base import source_sha
from interp.adapters import ADAPTERS, get_adapter, tokens_to_grid
from interp.adapters.ltx import LTXAdapter


def test_registry_and_errors():
    assert {"wan", "cogvideox", "ltx", "hunyuan", "wanvace", "skyreels", "mochi"} <= set(ADAPTERS)
    assert get_adapter("WanTransformer3DModel").family == "wan"
    assert get_adapter("WanVACETransformer3DModel").family == "wanvace"
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


def test_copied_forwards_match_installed_diffusers(family):
    """Every hooked block's COPIED_FROM_SHA is the hash of the installed diffusers forward it copies: a diffusers
    upgrade that changes one fails here, naming the class."""
    from interp.adapters.base import source_sha

    a = ADAPTERS[family]
    hooked = {type(m) for m in a.install_hooks(a.tiny(0)).modules() if hasattr(type(m), "COPIED_FROM_SHA")}
    assert hooked
    for cls in hooked:
        base = cls.__mro__[1]
        assert source_sha(base.forward) == cls.COPIED_FROM_SHA, (
            f"diffusers' {base.__module__}.{base.__name__}.forward changed: re-copy it into {cls.__module__}."
            f"{cls.__name__} and update COPIED_FROM_SHA"
        )


class _StripHookPoints(ast.NodeTransformer):
    """``self.hook_x(e)`` -> ``e``; then drop the ``x = x`` a hook point on a name leaves."""

    def visit_Call(self, node):
        self.generic_visit(node)
        f = node.func
        is_hook = isinstance(f, ast.Attribute) and f.attr.startswith("hook_") and getattr(f.value, "id", "") == "self"
        return node.args[0] if is_hook else node

    def visit_Assign(self, node):
        self.generic_visit(node)
        t, v = node.targets[0], node.value
        return None if isinstance(t, ast.Name) and isinstance(v, ast.Name) and t.id == v.id else node


def _forward_ast(fn) -> str:
    f = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
    f.decorator_list = []
    if isinstance(f.body[0], ast.Expr) and isinstance(f.body[0].value, ast.Constant):  # a docstring
        f.body = f.body[1:]
    return ast.dump(_StripHookPoints().visit(f))


def test_hooked_forwards_are_diffusers_forwards_plus_hook_points(family):
    """Every hooked block's forward, with its hook points removed, is the installed diffusers forward statement for
    statement (compared as syntax trees: comments and line breaks aside, nothing else differs)."""
    a = ADAPTERS[family]
    hooked = {type(m) for m in a.install_hooks(a.tiny(0)).modules() if hasattr(type(m), "COPIED_FROM_SHA")}
    for cls in hooked:
        base = cls.__mro__[1]
        inlined = getattr(cls, "INLINED_SHAS", {})
        if inlined:  # the copy writes out diffusers' adaLN norms to expose the modulation: guarded by their hashes
            assert all(source_sha(norm.forward) == sha for norm, sha in inlined.items()), cls.__name__
            continue
        assert _forward_ast(cls.forward) == _forward_ast(base.forward), f"{cls.__name__} is not {base.__name__}"


def _vace_inputs(a, m, batch=2):
    x, t, text = tiny_inputs("wanvace", m, batch=batch)
    g = torch.Generator().manual_seed(3)
    control = torch.randn(*a.control_shape(m, x), generator=g)
    scale = torch.tensor([0.5, 2.0])  # one per vace layer; not 1, so a hint added unscaled would show
    return x, t, type(text)(text.encoder_hidden_states, {"control_hidden_states": control,
                                                         "control_hidden_states_scale": scale})  # fmt: skip


def test_wanvace_control_branch_is_exact_and_hints_join_the_stream():
    """With real control latents and per-layer scales: the hooked model equals diffusers'; the control branch's sites
    (named vace_blocks.{j}.hook_*, read in the same trace as the blocks') compose its own stream; after block
    vace_layers[j] the next block's input is resid_post + hint_j * scale_j, with hint_j what diffusers' own
    WanVACETransformerBlock returns."""
    from interp.trace import ForwardPlan, Traced

    a = ADAPTERS["wanvace"]
    plain = a.tiny(0)
    x, t, text = _vace_inputs(a, plain)
    ref_hints = {}
    with torch.no_grad():
        zero_control = a.forward(plain, x, t, type(text)(text.encoder_hidden_states))
        for j, blk in enumerate(plain.vace_blocks):
            blk.register_forward_hook(lambda mod, i, o, j=j: ref_hints.__setitem__(j, o[0]))
        ref = a.forward(plain, x, t, text)
    assert not torch.equal(ref, zero_control)  # the control latents matter
    tr = Traced(a.tiny(0))
    m = tr.dit.transformer
    assert tr.sites[:7] == [f"vace_blocks.0.{h}" for h in m.vace_blocks[0].HOOKS] + ["vace_blocks.1.hook_resid_pre"]
    assert tr.resolve("vace_blocks.*.hook_hint") == ["vace_blocks.0.hook_hint", "vace_blocks.1.hook_hint"]
    res = tr.run(x, t, text, plan=ForwardPlan(read="*"))
    assert torch.equal(res.output, ref)
    scale = text.extras["control_hidden_states_scale"]
    for j, layer in enumerate(m.config.vace_layers):
        s = {h: res.acts[f"vace_blocks.{j}.{h}"] for h in m.vace_blocks[j].HOOKS}
        total = s["hook_resid_pre"] + s["hook_attn_out"] + s["hook_cross_attn_out"] + s["hook_mlp_out"]
        assert torch.equal(total, s["hook_resid_post"])
        assert torch.equal(s["hook_hint"], ref_hints[j])
        after = res.acts[f"blocks.{layer}.hook_resid_post"] + ref_hints[j] * scale[j]
        assert torch.equal(after, res.acts[f"blocks.{layer + 1}.hook_resid_pre"])
    assert a.stream_injections(m) == (0, 1)
    # block 0 of the control branch starts from the embedded stream plus the projected control latents
    pre0 = (
        m.vace_blocks[0].proj_in(
            m.vace_patch_embedding(text.extras["control_hidden_states"]).flatten(2).transpose(1, 2)
        )
        + res.acts["hook_embed"]
    )
    assert torch.equal(res.acts["vace_blocks.0.hook_resid_pre"], pre0)


def test_wanvace_branch_edits_and_skips_equal_plain_torch():
    """Zeroing vace_blocks.0.hook_hint equals diffusers' model whose block-0 hint projection returns zeros; skipping
    vace_blocks.1.hook_attn_out equals its self-attention returning zeros; both change the prediction."""
    import copy

    from interp.trace import ForwardPlan, Traced

    a = ADAPTERS["wanvace"]
    plain = a.tiny(0)
    x, t, text = _vace_inputs(a, plain)
    ref_model = copy.deepcopy(plain)
    ref_model.vace_blocks[0].proj_out.register_forward_hook(lambda mod, i, o: torch.zeros_like(o))
    ref_model.vace_blocks[1].attn1.register_forward_hook(lambda mod, i, o: torch.zeros_like(o))
    with torch.no_grad():
        ref, clean = a.forward(ref_model, x, t, text), a.forward(plain, x, t, text)
    zero = lambda site, step, v: torch.zeros_like(v)  # noqa: E731
    plan = ForwardPlan(edit={"vace_blocks.0.hook_hint": zero}, skip=["vace_blocks.1.hook_attn_out"],
                       read=["vace_blocks.0.hook_hint"])  # fmt: skip
    res = Traced(plain).run(x, t, text, plan=plan)
    assert torch.equal(res.output, ref) and not torch.equal(res.output, clean)
    assert not res.acts["vace_blocks.0.hook_hint"].any()


def test_ltx2_forward_is_the_pipelines_call_and_audio_matters():
    """One forward as LTX2Pipeline makes it (packed video tokens, grid size, audio latents and their text, one mask
    for both, sigma = timestep); the adapter returns the video prediction, which depends on the audio latents (the
    a2v cross-attention), and the audio stream's sites chain from block to block."""
    from diffusers import LTX2Pipeline

    from interp.trace import ForwardPlan, Traced

    a = ADAPTERS["ltx2"]
    m = a.tiny(0)
    x, t, text = tiny_inputs("ltx2", m)
    f, h, w = x.shape[2:]
    e = text.extras
    with torch.no_grad():
        video, audio = m(hidden_states=LTX2Pipeline._pack_latents(x, 1, 1),
                         audio_hidden_states=e["audio_hidden_states"], encoder_hidden_states=text.encoder_hidden_states,
                         audio_encoder_hidden_states=e["audio_encoder_hidden_states"], timestep=t, sigma=t,
                         encoder_attention_mask=e["encoder_attention_mask"],
                         audio_encoder_attention_mask=e["encoder_attention_mask"], num_frames=f, height=h, width=w,
                         audio_num_frames=a.audio_len, return_dict=False)  # fmt: skip
        ours = a.forward(m, x, t, text)
        other_audio = {**e, "audio_hidden_states": torch.randn_like(e["audio_hidden_states"])}
        changed = a.forward(m, x, t, type(text)(text.encoder_hidden_states, other_audio))
    assert torch.equal(ours, LTX2Pipeline._unpack_latents(video, f, h, w, 1, 1))
    assert not torch.equal(ours, changed)
    acts = Traced(m).run(x, t, text, plan=ForwardPlan(read="blocks.*.hook_audio_resid_*")).acts
    assert torch.equal(acts["blocks.0.hook_audio_resid_pre"], m.audio_proj_in(e["audio_hidden_states"]))
    for i in range(2):
        assert torch.equal(acts[f"blocks.{i}.hook_audio_resid_post"], acts[f"blocks.{i + 1}.hook_audio_resid_pre"])


def test_hunyuan15_text_to_video_is_zero_condition():
    """condition=None is HunyuanVideo15Pipeline's text-to-video input: cat([x, zero condition latents, zero mask])."""
    a = ADAPTERS["hunyuan15"]
    m = a.tiny(0)
    x, t, text = tiny_inputs("hunyuan15", m)
    assert a.condition_channels(m) == 5  # 4 condition latent channels + 1 mask
    e = dict(text.extras)
    with torch.no_grad():
        ref = m(hidden_states=torch.cat([x, torch.zeros(2, 5, *x.shape[2:])], dim=1), timestep=t,
                encoder_hidden_states=text.encoder_hidden_states, return_dict=False, **e)[0]  # fmt: skip
        cond = torch.randn(2, 5, *x.shape[2:], generator=torch.Generator().manual_seed(1))
        assert torch.equal(a.forward(m, x, t, text), ref)
        assert not torch.equal(a.forward(m, x, t, text, condition=cond), ref)
    with pytest.raises(ValueError, match="lacks extras"):
        a.forward(m, x, t, type(text)(text.encoder_hidden_states))


def test_ltx2_cross_modal_and_audio_sublayers_skip_as_plain_torch():
    """Skipping blocks.1.hook_a2v_attn_out (audio-to-video) and blocks.0.hook_audio_mlp_out equals diffusers' model
    whose audio_to_video_attn / audio_ff return zeros; a residual site is not skippable (one clear error)."""
    import copy

    from interp.trace import ForwardPlan, Traced

    a = ADAPTERS["ltx2"]
    plain = a.tiny(0)
    x, t, text = tiny_inputs("ltx2", plain)
    ref_model = copy.deepcopy(plain)
    ref_model.transformer_blocks[1].audio_to_video_attn.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
    ref_model.transformer_blocks[0].audio_ff.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
    with torch.no_grad():
        ref, clean = a.forward(ref_model, x, t, text), a.forward(plain, x, t, text)
    tr = Traced(plain)
    res = tr.run(x, t, text, plan=ForwardPlan(skip=["blocks.1.hook_a2v_attn_out", "blocks.0.hook_audio_mlp_out"]))
    assert torch.equal(res.output, ref) and not torch.equal(res.output, clean)
    with pytest.raises(ValueError, match="cannot skip.*hook_audio_resid_post"):
        tr.run(x, t, text, plan=ForwardPlan(skip=["blocks.0.hook_audio_resid_post"]))

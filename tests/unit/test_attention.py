"""Per-head attention sites: hooked processors compute exactly what diffusers computes; hook_z through the output
projection is the attention output; pattern rows equal the full pattern's and reproduce hook_z."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_inputs

from interp.adapters import ADAPTERS
from interp.adapters.attention import (
    FAMILY_ATTENTION,
    attn_out,
    head_count,
    pattern_rows,
    position_tokens,
    rotate,
    site_rotary,
    site_spec,
    video_span,
)
from interp.sites import HEAD_SITE_RE, MOD_HOOKS
from interp.trace import ForwardPlan, Traced


def _tiny(family: str, seed: int = 0, **overrides):
    a = ADAPTERS[family]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        m = a.model_class(**{**a.tiny_config(), **overrides}).eval()
        if family == "mochi":  # its rotary frequencies start at zero (an identity rotation): make them matter
            torch.nn.init.normal_(m.pos_frequencies)
        return m


# CogVideoX's tiny config has no rotary embedding: cover both
ROPE = {"use_rotary_positional_embeddings": True, "attention_head_dim": 16}  # 3D RoPE needs d_head / 4 even
NEWER = ["wanvace", "skyreels", "hunyuan15", "mochi", "ltx2"]
LTX23 = {"rope_type": "split", "gated_attn": True, "perturbed_attn": True}  # LTX-2.3's processor, gates, rotary
CASES = [("wan", {}), ("cogvideox", {}), ("cogvideox", ROPE), ("ltx", {}), ("hunyuan", {})] + [
    (f, {}) for f in NEWER] + [("ltx2", LTX23)]  # fmt: skip
IDS = ["wan", "cogvideox", "cogvideox-rope", "ltx", "hunyuan", *NEWER, "ltx2.3"]


@pytest.mark.parametrize("family,over", CASES, ids=IDS)
def test_hooked_attention_is_exact_and_sites_have_head_shapes(family, over):
    a = ADAPTERS[family]
    plain, tr = _tiny(family, **over), Traced(_tiny(family, **over))
    m = tr.dit.transformer
    assert set(plain.state_dict()) == set(m.state_dict())
    x, t, text = tiny_inputs(family, plain)
    with torch.no_grad():
        ref = a.forward(plain, x, t, text)
    assert torch.equal(ref, tr(x, t, text))  # the bare hooked forward
    heads = [s for s in tr.sites if HEAD_SITE_RE.match(s)]
    expect = {f"blocks.{i}.{spec.name}.{h}" for i in range(tr.n_blocks) for spec in FAMILY_ATTENTION[family]
              for h in ("hook_q", "hook_k", "hook_v", "hook_z")}  # fmt: skip
    assert set(heads) == expect
    res = tr.run(x, t, text, plan=ForwardPlan(read=heads))  # every site read in one trace, in execution order
    assert torch.equal(res.output, ref)
    n_video = math.prod(a.token_grid(m, x.shape))
    c = m.config
    for s in heads:
        v = res.acts[s]
        # LTX-2's audio-stream and cross-modal attentions have the audio stream's heads
        audio = site_spec(a, s).name in ("audio_attn", "audio_attn2", "audio_to_video_attn", "video_to_audio_attn")
        pre = "audio_" if audio else ""
        shape = (c[f"{pre}num_attention_heads"], c[f"{pre}attention_head_dim"])
        assert v.ndim == 4 and v.shape[0] == 2 and v.shape[2:] == shape and head_count(a, m, s) == shape[0], s
        on = position_tokens(a, s)
        if on == "video":
            assert v.shape[1] >= n_video
        elif on == "audio":  # LTX-2's audio tokens
            assert v.shape[1] == text.extras["audio_hidden_states"].shape[1]
    Traced(m)  # installing again is idempotent
    assert torch.equal(tr(x, t, text), ref)


@pytest.mark.parametrize("family,over", CASES, ids=IDS)
def test_z_through_out_projection_is_the_attention_output(family, over):
    a = ADAPTERS[family]
    tr = Traced(_tiny(family, **over))
    m = tr.dit.transformer
    x, t, text = tiny_inputs(family, m)
    outs: dict[str, torch.Tensor] = {}
    handles = []
    for i, (_, block) in enumerate(a.blocks(m)):
        for spec in FAMILY_ATTENTION[family]:

            def keep(mod, args, output, name=f"blocks.{i}.{spec.name}"):
                outs[name] = output[0] if isinstance(output, tuple) else output

            handles.append(getattr(block, spec.module).register_forward_hook(keep))
    try:
        res = tr.run(x, t, text, plan=ForwardPlan(read=[s for s in tr.sites if s.endswith("hook_z")]))
    finally:
        for h in handles:
            h.remove()
    n_video = math.prod(a.token_grid(m, x.shape))
    blocks = a.blocks(m)
    assert len(outs) == len(blocks) * len(FAMILY_ATTENTION[family])
    for name, want in outs.items():
        i = int(name.split(".")[1])
        with torch.no_grad():
            got = attn_out(a, blocks[i][1], name, res.acts[f"{name}.hook_z"], n_video)
        want = want[:, video_span(a, name, want.shape[1], n_video)] if want.shape[1] != n_video else want
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    if family == "wan":  # the block's hook_attn_out is this output times the gate: differs from it
        r = tr.run(x, t, text, plan=ForwardPlan(read=["blocks.0.hook_attn_out"])).acts["blocks.0.hook_attn_out"]
        assert not torch.allclose(r, outs["blocks.0.attn"])


@pytest.mark.parametrize("family,over", CASES, ids=IDS)
def test_pattern_rows_equal_the_full_pattern_and_reproduce_z(family, over):
    """Rows for chosen queries equal the same rows of the full pattern, and rows @ v equal hook_z at those queries
    (so the rotary embedding, the scale and the token layout are the processor's)."""
    a = ADAPTERS[family]
    tr = Traced(_tiny(family, **over))
    m = tr.dit.transformer
    x, t, text = tiny_inputs(family, m)
    n_video = math.prod(a.token_grid(m, x.shape))
    for spec in FAMILY_ATTENTION[family]:
        for i in (0, tr.n_blocks - 1):
            site = f"blocks.{i}.{spec.name}"
            res = tr.run(x, t, text, plan=ForwardPlan(read=[f"{site}.hook_{h}" for h in "qkvz"]))
            q, k, v, z = (res.acts[f"{site}.hook_{h}"] for h in "qkvz")
            key_mask = None
            if family == "hunyuan15":  # text-to-video: the model masks its (last) image tokens, as keys and queries
                key_mask = torch.ones(q.shape[:2], dtype=torch.bool)
                key_mask[:, -a.image_tokens :] = False
                assert z[:, -a.image_tokens :].abs().max() == 0
            last = q.shape[1] - 1 - (a.image_tokens if family == "hunyuan15" else 0)
            queries = [0, 3, last]
            rows = tr.attention_rows(site, q, k, queries, x.shape, text, key_mask=key_mask)
            assert rows.shape == (2, q.shape[2], 3, k.shape[1])
            q_emb, k_emb = site_rotary(a, m, site, x.shape, text)
            qr, kr = rotate(a, site, q, q_emb, n_video), rotate(a, site, k, k_emb, n_video)
            scores = torch.einsum("bqhd,bkhd->bhqk", qr, kr) / math.sqrt(q.shape[-1])
            if key_mask is not None:
                scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
            full = torch.softmax(scores, -1)
            torch.testing.assert_close(rows, full[:, :, queries], rtol=1e-5, atol=1e-6)
            zr = torch.einsum("bhnk,bkhd->bnhd", rows, v.float())
            zq = z[:, queries].float()
            if getattr(getattr(a.blocks(m)[i][1], spec.module), "to_gate_logits", None) is not None:
                # LTX-2.3's per-head gates (2 sigmoid(logits), in (0, 2)) scale each head's output before hook_z
                gate = (zq * zr).sum(-1) / (zr * zr).sum(-1)
                assert ((gate > 0) & (gate < 2)).all() and (gate - 1).abs().max() > 1e-3
                zr = zr * gate[..., None]
            torch.testing.assert_close(zr, zq, rtol=1e-4, atol=1e-5)
            if spec.rotary and q_emb is not None:  # without the rotary embedding the rows differ
                plain = pattern_rows(q, k, queries, key_mask=key_mask)
                assert (plain - rows).abs().max() > 1e-4


def test_pattern_rows_mask_and_errors():
    q, k = torch.randn(1, 5, 2, 4), torch.randn(1, 6, 2, 4)
    mask = torch.tensor([[True, True, False, True, False, True]])
    rows = pattern_rows(q, k, [1, 4], key_mask=mask)
    assert torch.all(rows[..., ~mask[0]] == 0)
    torch.testing.assert_close(rows.sum(-1), torch.ones(1, 2, 2))
    tr = Traced(ADAPTERS["wan"].tiny(0))
    with pytest.raises(IndexError, match="outside 0..4"):
        tr.attention_rows("blocks.0.attn", q, k, [5], (1, 4, 3, 4, 4))
    with pytest.raises(ValueError, match="not an attention site of wan"):
        tr.attention_rows("blocks.0.attn3", q, k, [0], (1, 4, 3, 4, 4))


def test_attention_sites_are_in_execution_order_and_editable():
    """Sites sit between resid_pre and the attention output; an edit of hook_v changes hook_z and the output."""
    tr = Traced(ADAPTERS["wan"].tiny(0))
    s = [x for x in tr.sites if x.startswith("blocks.1.")]
    mod = [f"blocks.1.{h}" for h in MOD_HOOKS]  # the block's adaLN modulation comes first (computed at its top)
    assert s == ["blocks.1.hook_resid_pre", *mod, "blocks.1.attn.hook_q", "blocks.1.attn.hook_k", "blocks.1.attn.hook_v",
                 "blocks.1.attn.hook_z", "blocks.1.hook_attn_out", "blocks.1.attn2.hook_q", "blocks.1.attn2.hook_k",
                 "blocks.1.attn2.hook_v", "blocks.1.attn2.hook_z", "blocks.1.hook_cross_attn_out",
                 "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"]  # fmt: skip
    m = tr.dit.transformer
    x, t, text = tiny_inputs("wan", m)
    clean = tr.run(x, t, text, plan=ForwardPlan(read=["blocks.1.attn.hook_z"]))
    edited = tr.run(x, t, text, plan=ForwardPlan(read=["blocks.1.attn.hook_z"],
                                                 edit={"blocks.1.attn.hook_v": lambda n, s, v: v * 0}))  # fmt: skip
    assert edited.acts["blocks.1.attn.hook_z"].abs().max() == 0
    assert clean.acts["blocks.1.attn.hook_z"].abs().max() > 0
    assert not torch.allclose(edited.output, clean.output)


def test_site_grammar_names_and_orders_attention_sites():
    from interp.sites import HEAD_SITE_RE, SITE_RE, site_order

    for s in ("blocks.{layer}.attn.hook_z", "blocks.*.attn2.hook_q", "blocks.3.attn.hook_k"):
        assert SITE_RE.match(s) and HEAD_SITE_RE.match(s)
    assert not SITE_RE.match("blocks.3.attn3.hook_q") and not HEAD_SITE_RE.match("blocks.3.attn.hook_out")
    names = ["blocks.0.hook_resid_post", "blocks.0.attn2.hook_z", "blocks.0.hook_attn_out", "blocks.0.attn.hook_v",
             "blocks.0.hook_resid_pre", "blocks.0.attn.hook_q"]  # fmt: skip
    assert sorted(names, key=site_order) == ["blocks.0.hook_resid_pre", "blocks.0.attn.hook_q", "blocks.0.attn.hook_v",
                                             "blocks.0.hook_attn_out", "blocks.0.attn2.hook_z",
                                             "blocks.0.hook_resid_post"]  # fmt: skip


@pytest.mark.parametrize("family", ["wan", "skyreels"])
def test_wan_image_to_video_cross_attention_is_exact(family):
    """Wan2.1 / SkyReels-V2 I2V cross-attention also attends to image tokens (added_kv_proj_dim): hook_z is the sum
    of both attentions, still the input of the output projection."""
    a = ADAPTERS[family]
    over = {"added_kv_proj_dim": 16, "image_dim": 16}
    plain, tr = _tiny(family, **over), Traced(_tiny(family, **over))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, *a.default_latent_size(plain), generator=g)
    text = a.random_text(plain, 1, g, text_len=512)  # the processor takes the last 512 tokens as the text
    text.extras["encoder_hidden_states_image"] = torch.randn(1, 5, 16, generator=g)
    t = torch.tensor([600.0])
    with torch.no_grad():
        ref = a.forward(plain, x, t, text)
    res = tr.run(x, t, text, plan=ForwardPlan(read=["blocks.1.attn2.hook_z", "blocks.1.attn2.hook_k"]))
    assert torch.equal(res.output, ref) and torch.equal(tr(x, t, text), ref)
    assert res.acts["blocks.1.attn2.hook_k"].shape[1] == 512
    block = a.blocks(tr.dit.transformer)[1][1]
    outs = []
    h = block.attn2.register_forward_hook(lambda m, i, o: outs.append(o))
    try:
        tr(x, t, text)
    finally:
        h.remove()
    n_video = math.prod(a.token_grid(tr.dit.transformer, x.shape))
    with torch.no_grad():
        got = attn_out(a, block, "blocks.1.attn2", res.acts["blocks.1.attn2.hook_z"], n_video)
    torch.testing.assert_close(got, outs[0], rtol=1e-5, atol=1e-6)


def test_skyreels_causal_frame_blocks_hold_at_the_head_sites():
    """SkyReels-V2 with causal blocks of 2 frames (its self-attention mask): exact; hook_z through the output
    projection is the attention output; zeroing the values of the last 2 frames changes hook_z of those frames only."""
    a = ADAPTERS["skyreels"]
    plain, tr = _tiny("skyreels", num_frame_per_block=2), Traced(_tiny("skyreels", num_frame_per_block=2))
    m = tr.dit.transformer
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 4, *a.default_latent_size(plain)[1:], generator=g)  # 4 latent frames: 2 causal blocks
    text, t = a.random_text(plain, 2, g), torch.tensor([600.0, 300.0])
    with torch.no_grad():
        ref = a.forward(plain, x, t, text)
    site = "blocks.1.attn.hook_z"
    res = tr.run(x, t, text, plan=ForwardPlan(read=[site]))
    assert torch.equal(res.output, ref)
    f, h, w = a.token_grid(m, x.shape)
    late = slice(2 * h * w, None)

    def zero_late(name, step, v):
        v = v.clone()
        v[:, late] = 0
        return v

    edited = tr.run(x, t, text, plan=ForwardPlan(read=[site], edit={"blocks.1.attn.hook_v": zero_late})).acts[site]
    z = res.acts[site]
    assert torch.equal(edited[:, : 2 * h * w], z[:, : 2 * h * w])  # the first block of frames cannot see them
    assert (edited[:, late] - z[:, late]).abs().max() > 1e-3
    outs = []
    hk = a.blocks(m)[1][1].attn1.register_forward_hook(lambda mod, i, o: outs.append(o))
    try:
        tr(x, t, text)
    finally:
        hk.remove()
    with torch.no_grad():
        got = attn_out(a, a.blocks(m)[1][1], "blocks.1.attn", z, f * h * w)
    torch.testing.assert_close(got, outs[0], rtol=1e-5, atol=1e-6)


def test_a_family_without_attention_table_gets_no_per_head_sites():
    from dataclasses import dataclass

    from interp.adapters.attention import attention_sites, install_attention_hooks

    @dataclass
    class Other:
        family: str = "other"

        def blocks(self, transformer):
            return []

    assert attention_sites(Other(), ("hook_resid_pre", "hook_resid_post")) == [
        ("hook_resid_pre", "hook_resid_pre"), ("hook_resid_post", "hook_resid_post")]  # fmt: skip
    m = torch.nn.Linear(2, 2)
    assert install_attention_hooks(Other(), m) is m
    with pytest.raises(ValueError, match="none; per-head sites exist for wan"):
        site_spec(Other(), "blocks.0.attn.hook_z")

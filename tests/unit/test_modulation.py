"""Modulation sites: the adaLN shift / scale / gate of every block, read and edited; the hooked forward stays exact."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_inputs

from interp.adapters import ADAPTERS
from interp.sites import MOD_HOOKS, SITE_RE
from interp.trace import ForwardPlan, Traced


MOD_FAMILIES = ["wan", "cogvideox", "ltx", "hunyuan"]  # the families whose copied blocks expose the adaLN modulation


@pytest.mark.parametrize("family", MOD_FAMILIES)
def test_modulation_sites_exist_in_execution_order(family):
    tr = Traced(ADAPTERS[family].tiny(0))
    for i in range(tr.n_blocks):
        mods = [s for s in tr.sites if s.startswith(f"blocks.{i}.hook_mod_")]
        single = family == "hunyuan" and i >= 2  # HunyuanVideo's single-stream blocks: one shift / scale / gate
        assert [m.split(".")[-1] for m in mods] == list(MOD_HOOKS[:3] if single else MOD_HOOKS)
    assert all(SITE_RE.match(f"blocks.*.{m}") for m in MOD_HOOKS)


@pytest.mark.parametrize("family", MOD_FAMILIES)
def test_reading_and_rewriting_modulation_is_exact(family):
    """Reading every modulation site, or writing each value back unchanged, leaves diffusers' output bit-identical."""
    a = ADAPTERS[family]
    plain = a.tiny(0)
    tr = Traced(a.tiny(0))
    x, t, text = tiny_inputs(family, plain)
    with torch.no_grad():
        ref = a.forward(plain, x, t, text)
    res = tr.run(x, t, text, plan=ForwardPlan(read=["blocks.*.hook_mod_*"]))
    assert torch.equal(res.output, ref)
    assert all(v.shape == (2, 1, a.d_model(plain)) for v in res.acts.values())
    same = tr.run(x, t, text, plan=ForwardPlan(edit={"blocks.*.hook_mod_*": lambda s, k, v: v.clone()}))
    assert torch.equal(same.output, ref)


def test_wan_modulation_is_the_table_plus_temb():
    """Wan's six values of block i are chunks of ``blocks[i].scale_shift_table + timestep_proj``, by hand."""
    a = ADAPTERS["wan"]
    tr = Traced(a.tiny(0))
    m = tr.dit.transformer
    x, t, text = tiny_inputs("wan", m)
    acts = tr.run(x, t, text, plan=ForwardPlan(read=["blocks.*.hook_mod_*"])).acts
    with torch.no_grad():
        _, proj, _, _ = m.condition_embedder(t, text.encoder_hidden_states)
        proj = proj.unflatten(1, (6, -1))
    for i, block in enumerate(m.blocks):
        chunks = (block.scale_shift_table + proj.float()).chunk(6, dim=1)
        for name, want in zip(MOD_HOOKS, chunks):
            assert torch.equal(acts[f"blocks.{i}.{name}"], want)
    assert not torch.equal(acts["blocks.0.hook_mod_gate_msa"], acts["blocks.1.hook_mod_gate_msa"])


ZERO = lambda site, step, v: torch.zeros_like(v)  # noqa: E731


@pytest.mark.parametrize("family", MOD_FAMILIES)
@pytest.mark.parametrize("sub", ["msa", "mlp"])
def test_zero_gate_removes_the_sublayer(family, sub):
    """A gate set to zero equals removing that sublayer's contribution (its site skipped), and changes the output;
    in a HunyuanVideo single-stream block the shared gate removes the whole block."""
    a = ADAPTERS[family]
    tr = Traced(a.tiny(0))
    x, t, text = tiny_inputs(family, tr.dit.transformer)
    base = tr(x, t, text)
    for i in range(tr.n_blocks):
        single = family == "hunyuan" and i >= 2
        if single and sub == "mlp":
            continue
        gated = tr.run(x, t, text, plan=ForwardPlan(edit={f"blocks.{i}.hook_mod_gate_{sub}": ZERO})).output
        skip = f"blocks.{i}" if single else f"blocks.{i}." + ("hook_attn_out" if sub == "msa" else "hook_mlp_out")
        removed = tr.run(x, t, text, plan=ForwardPlan(skip=[skip])).output
        assert torch.equal(gated, removed), (i, sub)
        assert not torch.allclose(gated, base)


def test_zero_gate_by_hand_wan():
    """Wan block 1 with gate_msa = 0, computed by hand from diffusers' modules: the block without self-attention."""
    a = ADAPTERS["wan"]
    tr = Traced(a.tiny(0))
    m = tr.dit.transformer
    x, t, text = tiny_inputs("wan", m)
    plan = ForwardPlan(edit={"blocks.1.hook_mod_gate_msa": ZERO},
                       read=["blocks.1.hook_resid_pre", "blocks.1.hook_resid_post", "blocks.*.hook_mod_*"])  # fmt: skip
    acts = tr.run(x, t, text, plan=plan).acts
    blk = m.blocks[1]
    with torch.no_grad():
        ehs = m.condition_embedder(t, text.encoder_hidden_states)[2]
        h = acts["blocks.1.hook_resid_pre"]
        h = h + blk.attn2(blk.norm2(h.float()).type_as(h), ehs, None, None)
        norm = blk.norm3(h.float()) * (1 + acts["blocks.1.hook_mod_scale_mlp"]) + acts["blocks.1.hook_mod_shift_mlp"]
        h = (h.float() + blk.ffn(norm.type_as(h)).float() * acts["blocks.1.hook_mod_gate_mlp"]).type_as(h)
    assert torch.equal(acts["blocks.1.hook_mod_gate_msa"], torch.zeros_like(acts["blocks.1.hook_mod_gate_msa"]))
    assert torch.equal(acts["blocks.1.hook_resid_post"], h)


@pytest.mark.parametrize("family", MOD_FAMILIES)
def test_scaling_the_shift_moves_the_output(family):
    """Editing a shift changes the prediction; the edit is seen downstream (the next block's input moves)."""
    a = ADAPTERS[family]
    tr = Traced(a.tiny(0))
    x, t, text = tiny_inputs(family, tr.dit.transformer)
    plan = ForwardPlan(edit={"blocks.0.hook_mod_shift_msa": lambda s, k, v: v + 1.0}, read=["blocks.1.hook_resid_pre"])
    edited = tr.run(x, t, text, plan=plan)
    clean = tr.run(x, t, text, plan=ForwardPlan(read=["blocks.1.hook_resid_pre"]))
    assert not torch.allclose(edited.acts["blocks.1.hook_resid_pre"], clean.acts["blocks.1.hook_resid_pre"])
    assert not torch.allclose(edited.output, clean.output)

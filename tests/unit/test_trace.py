"""Tracing: a trace that changes nothing is bit-exact; reads, writes and skips equal the same thing in plain torch."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import tiny_inputs
from torch import nn

from interp.adapters import ADAPTERS
from interp.trace import ForwardPlan, Traced


def test_untouched_trace_equals_bare_forward(family):
    a = ADAPTERS[family]
    plain = a.tiny(0)  # never hooked: diffusers' own forward
    tr = Traced(a.tiny(0))
    x, t, text = tiny_inputs(family, plain)
    with torch.no_grad():
        ref = a.forward(plain, x, t, text)
    res = tr.run(x, t, text, plan=ForwardPlan(read=tr.sites))
    assert torch.equal(res.output, ref)
    assert torch.equal(res.acts["hook_out"], ref)
    assert set(res.acts) == set(tr.sites)


def test_sites_compose_the_residual_stream(family):
    """resid_post = resid_pre + each sublayer output (attn, cross, LTX-2's a2v, mlp), in execution order, bit for bit,
    per stream (LTX-2's audio stream too); block i+1 starts where i ends (except after a block where the model adds
    to the stream itself: WanVACE's hints, tested in test_adapters)."""
    a = ADAPTERS[family]
    tr = Traced(a.tiny(0))
    x, t, text = tiny_inputs(family, tr.dit.transformer)
    acts = tr.run(x, t, text, plan=ForwardPlan(read="*")).acts
    injected = a.stream_injections(tr.dit.transformer)
    assert torch.equal(acts["hook_embed"], acts["blocks.0.hook_resid_pre"])
    for i, (_, block) in enumerate(a.blocks(tr.dit.transformer)):
        b = f"blocks.{i}."
        hooks = a.block_hooks(block)
        for stream in ("hook_", "hook_audio_"):
            own = [
                h for h in hooks if h.startswith(stream) and (stream == "hook_audio_") == h.startswith("hook_audio_")
            ]
            subs = [h for h in own if h.endswith("_out")]
            if not subs:
                continue
            total = acts[b + stream + "resid_pre"]
            for h in subs:
                total = total + acts[b + h]
            assert torch.equal(total, acts[b + stream + "resid_post"]), (stream, subs)
        if i + 1 < tr.n_blocks:
            same = torch.equal(acts[b + "hook_resid_post"], acts[f"blocks.{i + 1}.hook_resid_pre"])
            assert same != (i in injected)
        assert not torch.equal(acts[b + "hook_resid_pre"], acts[b + "hook_resid_post"])


class _Identity(nn.Module):
    def __init__(self, adapter):
        super().__init__()
        self.adapter = adapter

    def forward(self, *args, **kwargs):
        return self.adapter.passthrough(args, kwargs)


@pytest.mark.parametrize("k", [0, 1])
def test_skip_block_equals_plain_torch(family, k):
    a = ADAPTERS[family]
    plain = a.tiny(0)
    x, t, text = tiny_inputs(family, plain)
    attr, j = a.blocks(plain)[k][0].split(".")
    edited = copy.deepcopy(plain)
    getattr(edited, attr)[int(j)] = _Identity(a)
    with torch.no_grad():
        ref, unedited = a.forward(edited, x, t, text), a.forward(plain, x, t, text)
    tr = Traced(plain)
    res = tr.run(x, t, text, plan=ForwardPlan(skip=[f"blocks.{k}"], read=["blocks.*.hook_resid_post", "hook_embed"]))
    assert torch.equal(res.output, ref) and not torch.equal(res.output, unedited)
    # the skipped block's stream passes through: its resid_post is what entered it in the unedited model
    before = tr.run(x, t, text, plan=ForwardPlan(read=[f"blocks.{k}.hook_resid_pre"])).acts
    assert torch.equal(res.acts[f"blocks.{k}.hook_resid_post"], before[f"blocks.{k}.hook_resid_pre"])


def test_skip_sublayer_and_write_equal_plain_torch():
    a = ADAPTERS["wan"]
    plain = a.tiny(0)
    x, t, text = tiny_inputs("wan", plain)
    # plain torch: attention of block 1 returns zeros; block 2's output doubled
    ref_model = copy.deepcopy(plain)
    ref_model.blocks[1].attn1.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
    ref_model.blocks[2].register_forward_hook(lambda m, i, o: o * 2)
    with torch.no_grad():
        ref = a.forward(ref_model, x, t, text)
    calls = []

    def double(site, step, value):
        calls.append((site, step))
        return value * 2

    tr = Traced(plain)
    res = tr.run(
        x, t, text, step=7,
        plan=ForwardPlan(read=["blocks.2.hook_resid_post", "blocks.1.attn.hook_out"],
                         skip=["blocks.1.hook_attn_out"], edit={"blocks.2.hook_resid_post": double}),
    )  # fmt: skip
    assert torch.equal(res.output, ref)
    assert calls == [("blocks.2.hook_resid_post", 7)]
    assert torch.equal(res.acts["blocks.1.hook_attn_out"], torch.zeros_like(res.acts["blocks.1.hook_attn_out"]))
    # the read after an edit is the edited value
    clean = tr.run(x, t, text, plan=ForwardPlan(read=["blocks.2.hook_resid_pre", "blocks.2.hook_resid_post"]))
    assert not torch.equal(res.acts["blocks.2.hook_resid_post"], clean.acts["blocks.2.hook_resid_post"])


def test_edit_at_glob_and_in_place_edit_does_not_corrupt_reads():
    tr = Traced(ADAPTERS["wan"].tiny(0))
    x, t, text = tiny_inputs("wan", tr.dit.transformer)
    clean = tr.run(x, t, text, plan=ForwardPlan(read=["blocks.0.hook_resid_post"]))
    seen = []

    def zero_in_place(site, step, value):
        seen.append(site)
        return value.mul_(0)

    # blocks.0.hook_resid_post and blocks.1.hook_resid_pre are the same tensor object; the edit runs later
    plan = ForwardPlan(read=["blocks.0.hook_resid_post"], edit={"blocks.[12].hook_resid_pre": zero_in_place})
    res = tr.run(x, t, text, plan=plan)
    assert seen == ["blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre"]
    assert torch.equal(res.acts["blocks.0.hook_resid_post"], clean.acts["blocks.0.hook_resid_post"])
    assert not torch.equal(res.output, clean.output)


def test_site_names_globs_and_errors():
    tr = Traced(ADAPTERS["hunyuan"].tiny(0))
    assert tr.resolve("blocks.*.hook_resid_post") == [f"blocks.{i}.hook_resid_post" for i in range(4)]
    assert tr.resolve(["blocks.1.attn.hook_out", "hook_out", "hook_embed"]) == [
        "hook_embed", "blocks.1.hook_attn_out", "hook_out"]  # fmt: skip
    assert tr.resolve("blocks.1.*,hook_out")[-1] == "hook_out"
    # single-stream blocks have no separate attention / MLP outputs
    assert tr.resolve("blocks.*.hook_mlp_out") == ["blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out"]
    with pytest.raises(KeyError, match=r"valid: hook_embed, hook_out, blocks.\{0-3\}.hook_resid_pre"):
        tr.resolve("blocks.4.hook_resid_post")
    with pytest.raises(KeyError, match="unknown site 'blocks.3.hook_attn_out'"):
        tr.resolve("blocks.3.attn.hook_out")
    x, t, text = tiny_inputs("hunyuan", tr.dit.transformer)
    with pytest.raises(ValueError, match="block is skipped"):
        tr.run(x, t, text, plan=ForwardPlan(read=["blocks.1.hook_attn_out"], skip=["blocks.1"]))


def test_reads_via_hooks_equal_nnsight_reads():
    """The opt-in hook path returns exactly what the default nnsight trace reads."""
    t = ADAPTERS["wan"].tiny(0)
    x, ts, text = tiny_inputs("wan", t)
    plan = ForwardPlan(read=["hook_embed", "blocks.*.hook_resid_post", "blocks.1.hook_attn_out", "hook_out"])
    a = Traced(t).run(x, ts, text, plan=plan)
    b = Traced(t, reads_via_hooks=True).run(x, ts, text, plan=plan)
    assert torch.equal(a.output, b.output) and a.acts.keys() == b.acts.keys()
    assert all(torch.equal(a.acts[k], b.acts[k]) for k in a.acts)

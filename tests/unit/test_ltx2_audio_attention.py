"""LTX-2's audio-stream and cross-modal per-head sites (``audio_attn``, ``audio_attn2``, ``audio_to_video_attn``,
``video_to_audio_attn``) on a tiny random ``LTX2VideoTransformer3DModel`` whose audio stream has 3 heads (the video
stream 2, so a site given the wrong stream's heads fails): the traced model is diffusers' model bit for bit; q / k / v
/ z equal what the module's own projections and torch's attention give on the inputs diffusers hands the module;
pattern rows are softmax(q k^T / sqrt(d)) under the rotary embeddings the forward computes; head ablation and head
patching act on the audio heads."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_inputs
from diffusers.models.transformers.transformer_ltx2 import apply_interleaved_rotary_emb
from pydantic import ValidationError

from interp.adapters import ADAPTERS
from interp.adapters.attention import attn_out, site_spec
from interp.interventions import Ablate, Patch, parse
from interp.interventions.bind import Bound, compile_batch
from interp.interventions.bind import rows as make_rows
from interp.trace import ForwardPlan, Traced

NEW = ("audio_attn", "audio_attn2", "audio_to_video_attn", "video_to_audio_attn")
AUDIO3 = dict(audio_num_attention_heads=3, audio_attention_head_dim=4, audio_cross_attention_dim=12)


@pytest.fixture(scope="module")
def ltx2():
    a = ADAPTERS["ltx2"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        plain = a.model_class(**{**a.tiny_config(), **AUDIO3}).eval()
    tr = Traced(copy.deepcopy(plain))
    x, t, text = tiny_inputs("ltx2", plain)
    return a, plain, tr, x, t, text


def _module_inputs(a, plain, x, t, text, block: int) -> dict[str, dict]:
    """The keyword inputs diffusers' own (unhooked) forward hands each new attention module of ``block``."""
    got: dict[str, dict] = {}
    handles = []
    blk = a.blocks(plain)[block][1]
    for name in NEW:

        def keep(mod, args, kwargs, name=name):
            got[name] = {"hidden_states": args[0] if args else kwargs["hidden_states"], **kwargs}

        handles.append(getattr(blk, site_spec(a, f"blocks.0.{name}").module).register_forward_pre_hook(
            keep, with_kwargs=True))  # fmt: skip
    try:
        with torch.no_grad():
            a.forward_streams(plain, x, t, text)
    finally:
        for h in handles:
            h.remove()
    return got


def _recompute(attn, inp: dict):
    """(q, k, v, z, rotated q, rotated k) of an LTX-2 attention module from its own projections, diffusers' rotary
    function and torch's scaled dot-product attention."""
    hs = inp["hidden_states"]
    ehs = inp.get("encoder_hidden_states")
    ehs = hs if ehs is None else ehs
    q, k, v = attn.norm_q(attn.to_q(hs)), attn.norm_k(attn.to_k(ehs)), attn.to_v(ehs)
    q_rot, k_rot = inp.get("query_rotary_emb"), inp.get("key_rotary_emb")
    qr, kr = q, k
    if q_rot is not None:
        qr = apply_interleaved_rotary_emb(q, q_rot)
        kr = apply_interleaved_rotary_emb(k, k_rot if k_rot is not None else q_rot)
    heads = lambda y: y.unflatten(2, (attn.heads, -1))  # noqa: E731
    mask = inp.get("attention_mask")  # an additive bias (batch, 1, keys)
    z = F.scaled_dot_product_attention(
        heads(qr).transpose(1, 2), heads(kr).transpose(1, 2), heads(v).transpose(1, 2),
        attn_mask=None if mask is None else mask[:, None],
    ).transpose(1, 2)  # fmt: skip
    return heads(q), heads(k), heads(v), z, heads(qr), heads(kr)


def test_new_sites_read_exactly_and_match_an_independent_recomputation(ltx2):
    a, plain, tr, x, t, text = ltx2
    m = tr.dit.transformer
    with torch.no_grad():
        ref_video, ref_streams = a.forward_streams(plain, x, t, text)
    i = 1
    sites = [f"blocks.{i}.{n}.hook_{h}" for n in NEW for h in "qkvz"]
    assert all(s in tr.sites for s in sites)
    res = tr.run(x, t, text, plan=ForwardPlan(read=sites), streams=True)
    assert torch.equal(res.output, ref_video)  # reading the new sites changes nothing, in either stream
    assert torch.equal(res.streams["audio_hidden_states"], ref_streams["audio_hidden_states"])
    n_audio, n_video = text.extras["audio_hidden_states"].shape[1], math.prod(a.token_grid(m, x.shape))
    inputs = _module_inputs(a, plain, x, t, text, i)
    block = a.blocks(m)[i][1]
    for name in NEW:
        site = f"blocks.{i}.{name}"
        attn = getattr(a.blocks(plain)[i][1], site_spec(a, site).module)
        with torch.no_grad():
            q, k, v, z, qr, kr = _recompute(attn, inputs[name])
        for h, want in zip("qkvz", (q, k, v, z)):
            got = res.acts[f"{site}.hook_{h}"]
            assert got.shape[2:] == (3, 4), (site, h)  # the audio stream's heads, the cross-modal pair's too
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=f"{site}.hook_{h}")
        n_q = n_audio if name in ("audio_attn", "audio_attn2", "video_to_audio_attn") else n_video
        assert q.shape[1] == n_q
        # pattern rows for two query tokens: rows sum to 1, equal softmax(q k^T / sqrt(d)) under the forward's rotary
        # embeddings, and reproduce hook_z
        queries = [0, n_q - 1]
        rows = tr.attention_rows(site, res.acts[f"{site}.hook_q"], res.acts[f"{site}.hook_k"], queries, x.shape, text)
        assert rows.shape == (2, 3, 2, k.shape[1])
        torch.testing.assert_close(rows.sum(-1), torch.ones(2, 3, 2))
        want = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", qr[:, queries], kr) / math.sqrt(4), -1)
        torch.testing.assert_close(rows, want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.einsum("bhnk,bkhd->bnhd", rows, v), z[:, queries], rtol=1e-4, atol=1e-5)
        if site_spec(a, site).rotary:  # the rotary embedding matters: without it the rows differ
            plain_rows = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q[:, queries], k) / math.sqrt(4), -1)
            assert (plain_rows - rows).abs().max() > 1e-4, site
        with torch.no_grad():  # hook_z through the output projection is the module's output
            torch.testing.assert_close(attn_out(a, block, site, res.acts[f"{site}.hook_z"], n_video),
                                       attn(**inputs[name]), rtol=1e-5, atol=1e-6)  # fmt: skip


def _run(tr, x, t, text, bound, read=()):
    plan, _ = compile_batch(bound, tr, tuple(x.shape), 1, list(read))
    return tr.run(x, t, text, plan=plan("cond", 0), step=0, streams=True)


def test_audio_head_ablation_and_patching(ltx2):
    a, plain, tr, x, t, text = ltx2
    site = "blocks.1.audio_attn.hook_z"
    clean = _run(tr, x, t, text, [], read=[site])
    audio0, z0 = clean.streams["audio_hidden_states"], clean.acts[site]
    abl = parse({"kind": "ablate", "site": "blocks.{layer}.audio_attn.hook_z", "layers": [1], "heads": [2]})
    res = _run(tr, x, t, text, [Bound(abl, make_rows([0]))], read=[site])
    z, audio = res.acts[site], res.streams["audio_hidden_states"]
    assert z[0, :, 2].abs().max() == 0 and torch.equal(z[0, :, :2], z0[0, :, :2]) and torch.equal(z[1], z0[1])
    assert (audio[0] - audio0[0]).abs().max() > 1e-4  # one audio head ablated changes the audio prediction
    assert torch.equal(audio[1], audio0[1])  # of the ablated row only
    none = _run(tr, x, t, text, [Bound(Ablate(site=site, heads=[]), make_rows([0]))])
    assert torch.equal(none.streams["audio_hidden_states"], audio0) and torch.equal(none.output, clean.output)
    # head patching on the cross-modal attention: head 2 of row 0 becomes row 1's, the others stay
    v2a = "blocks.0.video_to_audio_attn.hook_z"
    p0 = _run(tr, x, t, text, [], read=[v2a]).acts[v2a]
    p = _run(tr, x, t, text, [Bound(Patch(site=v2a, heads=[2]), make_rows([0], [1]))], read=[v2a])
    assert torch.equal(p.acts[v2a][0, :, 2], p0[1, :, 2]) and torch.equal(p.acts[v2a][0, :, :2], p0[0, :, :2])
    assert not torch.equal(p0[0, :, 2], p0[1, :, 2])
    assert (p.streams["audio_hidden_states"][0] - audio0[0]).abs().max() > 1e-4
    with pytest.raises(ValueError, match=r"heads \[3\] outside 0..2"):  # the audio stream's 3 heads
        _run(tr, x, t, text, [Bound(Ablate(site=site, heads=[3]), make_rows([0]))])
    with pytest.raises(ValueError, match=r"heads \[2\] outside 0..1"):  # the video stream's 2
        _run(tr, x, t, text, [Bound(Ablate(site="blocks.1.attn.hook_z", heads=[2]), make_rows([0]))])


def test_frames_and_tokens_select_video_positions_only(ltx2):
    a, plain, tr, x, t, text = ltx2
    for site in ("blocks.0.audio_attn.hook_z", "blocks.0.audio_to_video_attn.hook_k"):
        with pytest.raises(ValueError, match="its positions are audio tokens; frames / tokens select video"):
            _run(tr, x, t, text, [Bound(Ablate(site=site, heads=[0], tokens=[0]), make_rows([0]))])
    with pytest.raises(ValueError, match="cross-attention keys and values are text tokens"):
        _run(tr, x, t, text, [Bound(Ablate(site="blocks.0.audio_attn2.hook_v", tokens=[0]), make_rows([0]))])
    a2v = "blocks.0.audio_to_video_attn.hook_z"  # its queries are the video tokens: tokens select among them
    z0 = _run(tr, x, t, text, [], read=[a2v]).acts[a2v]
    z = _run(tr, x, t, text, [Bound(Ablate(site=a2v, heads=[1], tokens=[3]), make_rows([0]))], read=[a2v]).acts[a2v]
    assert (z[0] != z0[0]).any(-1).nonzero().tolist() == [[3, 1]]
    with pytest.raises(ValidationError, match="LTX-2's blocks"):
        parse({"kind": "ablate", "site": "blocks.0.hook_attn_out", "heads": [0]})

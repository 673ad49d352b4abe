"""Head ablation and head patching (``heads`` of ablate / patch) act on the chosen heads of a per-head site only."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_inputs
from pydantic import ValidationError

from interp.adapters import ADAPTERS
from interp.adapters.attention import FAMILY_ATTENTION, video_span
from interp.interventions import Ablate, Patch, parse
from interp.interventions.bind import Bound, compile_batch
from interp.interventions.bind import rows as make_rows
from interp.trace import Traced


def _setup(family: str, batch: int = 3):
    tr = Traced(ADAPTERS[family].tiny(0))
    x, t, text = tiny_inputs(family, tr.dit.transformer, batch=batch)
    if "pooled_projections" in text.extras:  # HunyuanVideo's gates depend on them: one gate for every row
        text.extras["pooled_projections"] = text.extras["pooled_projections"][:1].expand(batch, -1).clone()
    return tr, x, t, text


def _run(tr, x, t, text, bound, read=()):
    plan, _ = compile_batch(bound, tr, tuple(x.shape), 1, list(read))
    return tr.run(x, t, text, plan=plan("cond", 0), step=0)


def test_heads_in_yaml_and_their_errors():
    a = parse({"kind": "ablate", "site": "blocks.{layer}.attn.hook_z", "layers": [1], "heads": [0, 1]})
    assert isinstance(a, Ablate) and a.heads == [0, 1] and a.sites(3) == ["blocks.1.attn.hook_z"]
    p = parse({"kind": "patch", "site": "blocks.2.attn2.hook_z", "heads": "0:1"})
    assert isinstance(p, Patch) and p.heads == "0:1"
    with pytest.raises(ValidationError, match="heads selects heads of a per-head site"):
        parse({"kind": "patch", "site": "blocks.2.hook_attn_out", "heads": [0]})
    tr, x, t, text = _setup("wan")
    with pytest.raises(ValueError, match=r"heads \[5\] outside 0..1"):
        _run(tr, x, t, text, [Bound(Patch(site="blocks.0.attn.hook_z", heads=[5]), make_rows([0], [1]))])


AFFINE = sorted(set(FAMILY_ATTENTION) - {"mochi"})  # Mochi's hook_attn_out is RMS-normalised: not affine in heads


@pytest.mark.parametrize("family", AFFINE)  # the families with per-head sites
@pytest.mark.parametrize("mode", ["mean", "resample"])
def test_ablating_all_heads_equals_ablating_the_attention_output(family, mode):
    tr, x, t, text = _setup(family)
    f = ADAPTERS[family].token_grid(tr.dit.transformer, x.shape)[0]
    rows = make_rows([0], group=[[1, 2]]) if mode == "mean" else make_rows([0], source=[2])
    frames = list(range(f))  # the video tokens (joint attention puts text tokens on the same axis)
    heads = _run(tr, x, t, text, [Bound(Ablate(mode=mode, site="blocks.0.attn.hook_z", heads=[0, 1], frames=frames),
                                        rows)]).output  # fmt: skip
    whole = _run(tr, x, t, text, [Bound(Ablate(mode=mode, site="blocks.0.hook_attn_out"), rows)]).output
    clean = tr(x, t, text)
    assert (whole[0] - clean[0]).abs().max() > 1e-3  # the ablation matters
    torch.testing.assert_close(heads, whole, rtol=1e-4, atol=1e-5)
    one = _run(tr, x, t, text, [Bound(Ablate(mode=mode, site="blocks.0.attn.hook_z", heads=[0], frames=frames),
                                      rows)]).output  # fmt: skip
    assert (one[0] - whole[0]).abs().max() > 1e-4  # one head is not all of them


@pytest.mark.parametrize("family", sorted(FAMILY_ATTENTION))
@pytest.mark.parametrize("mode", ["zero", "mean", "resample"])
def test_ablating_all_heads_equals_diffusers_with_that_attention_output(family, mode):
    """All heads of block 0's hook_z ablated (video tokens) equals diffusers' own model whose block-0 attention
    returns, for row 0's video tokens, the output projection of zeros (its bias), the mean of rows 1-2's outputs,
    or row 2's output; one head alone differs from both the clean and the all-heads run."""
    a = ADAPTERS[family]
    tr, x, t, text = _setup(family)
    m = tr.dit.transformer
    n_video = math.prod(a.token_grid(m, x.shape))
    f = a.token_grid(m, x.shape)[0]
    spec = FAMILY_ATTENTION[family][0]
    rows = {"zero": make_rows([0]), "mean": make_rows([0], group=[[1, 2]]), "resample": make_rows([0], source=[2])}
    heads = _run(tr, x, t, text, [Bound(Ablate(mode=mode, site="blocks.0.attn.hook_z", heads=[0, 1],
                                               frames=list(range(f))), rows[mode])]).output  # fmt: skip
    plain = a.tiny(0)
    attn = getattr(a.blocks(plain)[0][1], spec.module)

    def replace(mod, args, output):
        video = output[0] if isinstance(output, tuple) else output
        span = video_span(a, "blocks.0.attn", video.shape[1], n_video) if video.shape[1] != n_video else slice(None)
        video = video.clone()
        if mode == "zero":
            bias = mod.to_out[0].bias
            video[0, span] = 0 if bias is None else bias
        elif mode == "mean":
            video[0, span] = video[1:3, span].mean(0)
        else:
            video[0, span] = video[2, span]
        return (video, *output[1:]) if isinstance(output, tuple) else video

    h = attn.register_forward_hook(replace)
    try:
        with torch.no_grad():
            want = a.forward(plain, x, t, text)
    finally:
        h.remove()
    clean = tr(x, t, text)
    assert (want[0] - clean[0]).abs().max() > 1e-3  # the ablation matters
    torch.testing.assert_close(heads, want, rtol=1e-4, atol=1e-5)
    one = _run(tr, x, t, text, [Bound(Ablate(mode=mode, site="blocks.0.attn.hook_z", heads=[0],
                                          frames=list(range(f))), rows[mode])]).output  # fmt: skip
    assert (one[0] - want[0]).abs().max() > 1e-4 and (one[0] - clean[0]).abs().max() > 1e-4


@pytest.mark.parametrize("family", sorted(FAMILY_ATTENTION))
def test_patching_one_head_changes_only_that_heads_z(family):
    tr, x, t, text = _setup(family, batch=2)
    site = f"blocks.{tr.n_blocks - 1}.attn.hook_z"
    clean = _run(tr, x, t, text, [], read=[site])
    z0 = clean.acts[site]
    res = _run(tr, x, t, text, [Bound(Patch(site=site, heads=[1]), make_rows([0], [1]))], read=[site])
    z = res.acts[site]
    assert torch.equal(z[0, :, 1], z0[1, :, 1])  # head 1 of the target is the source's
    assert torch.equal(z[0, :, 0], z0[0, :, 0])  # head 0 is untouched
    assert torch.equal(z[1], z0[1])  # so is the source row
    assert not torch.equal(z0[0, :, 1], z0[1, :, 1])
    assert not torch.allclose(res.output[0], clean.output[0])
    zeroed = _run(tr, x, t, text, [Bound(Ablate(site=site, heads=0), make_rows([0]))], read=[site]).acts[site]
    assert zeroed[0, :, 0].abs().max() == 0 and torch.equal(zeroed[0, :, 1], z0[0, :, 1])


def test_head_patch_tokens_select_video_tokens_of_joint_attention():
    """CogVideoX puts text tokens first on hook_z's position axis: ``tokens`` index the video tokens after them."""
    tr, x, t, text = _setup("cogvideox", batch=2)
    site = "blocks.1.attn.hook_z"
    z0 = _run(tr, x, t, text, [], read=[site]).acts[site]
    n_text = text.encoder_hidden_states.shape[1]
    z = _run(tr, x, t, text, [Bound(Patch(site=site, heads=[0], tokens=[2]), make_rows([0], [1]))],
             read=[site]).acts[site]  # fmt: skip
    changed = (z[0] != z0[0]).any(-1).nonzero().tolist()
    assert changed == [[n_text + 2, 0]]

"""Head ablation and head patching (``heads`` of ablate / patch) act on the chosen heads of a per-head site only."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_inputs
from pydantic import ValidationError

from interp.adapters import ADAPTERS
from interp.adapters.attention import FAMILY_ATTENTION
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


@pytest.mark.parametrize("family", sorted(FAMILY_ATTENTION))  # the families with per-head sites
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

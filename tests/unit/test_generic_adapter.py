"""The generic adapter on a tiny random model of every diffusers video transformer class.

For each class: a trace that changes nothing is bit-identical to diffusers' bare forward; the blocks are numbered
in the order they run; reading ``hook_resid_pre`` / ``hook_resid_post`` gives what plain torch hooks on the
unhooked block see; an edit there equals the same edit in a plain torch hook; skipping a block equals the model with
that block's forward replaced by the identity (its inputs returned in its output's form, written out by hand below).
"""

from __future__ import annotations

import copy
import inspect
import warnings

import diffusers
import pytest
import torch
from helpers.video_dits import NOT_BUILT, TINY

import interp.adapters as adapters
from interp.adapters import ADAPTERS, EXACT, GenericAdapter, TextConditioning, generic_adapter, get_adapter
from interp.adapters.generic import GENERIC_HOOKS, find_block_lists, video_transformer_classes
from interp.trace import ForwardPlan, Traced

# What each block class returns, read off diffusers' sources: None = the hidden states alone; a tuple = the
# arguments it returns, in order (the identity returns those inputs). Index 0 holds the hidden states in all.
RETURNS: dict[str, tuple[str, ...] | None] = {
    "WanTransformerBlock": None,
    "SkyReelsV2TransformerBlock": None,
    "HeliosTransformerBlock": None,
    "AnyFlowTransformerBlock": None,
    "LTXVideoTransformerBlock": None,
    "AllegroTransformerBlock": None,
    "SanaVideoTransformerBlock": None,
    "BasicTransformerBlock": None,
    "CosmosTransformerBlock": None,  # (hidden_states, hs_proj) only with after_proj (ControlNet); not built here
    "CogVideoXBlock": ("hidden_states", "encoder_hidden_states"),
    "ConsisIDBlock": ("hidden_states", "encoder_hidden_states"),
    "LTX2VideoTransformerBlock": ("hidden_states", "audio_hidden_states"),
    "HunyuanVideoTransformerBlock": ("hidden_states", "encoder_hidden_states"),
    "HunyuanVideoSingleTransformerBlock": ("hidden_states", "encoder_hidden_states"),
    "HunyuanVideo15TransformerBlock": ("hidden_states", "encoder_hidden_states"),
    "MochiTransformerBlock": ("hidden_states", "encoder_hidden_states"),
    "EasyAnimateTransformerBlock": ("hidden_states", "encoder_hidden_states"),
    "MotifVideoTransformerBlock": ("hidden_states", "encoder_hidden_states"),
    "MotifVideoSingleTransformerBlock": ("hidden_states", "encoder_hidden_states"),
    "JoyImageTransformerBlock": ("hidden_states", "encoder_hidden_states"),
    "JoyImageEditPlusTransformerBlock": ("hidden_states", "encoder_hidden_states"),
    "MiniMaxH3TransformerBlock": None,
    "Kandinsky5TransformerDecoderBlock": None,
    "Kandinsky6FusedTransformerDecoderBlock": ("vis", "aud"),
    "Kandinsky6SRTransformerBlock": None,
    "SanaVideoMSCamCtrlBlock": None,
    "SanaWMLTX2RefinerTransformerBlock": None,
    "WanAnimate2TransformerBlock": None,
}
HIDDEN_ARG = {"Kandinsky5TransformerDecoderBlock": "visual_embed", "Kandinsky6FusedTransformerDecoderBlock": "vis",
              "SanaVideoMSCamCtrlBlock": "x"}  # fmt: skip

CLASSES = sorted(TINY)


def _build(name: str, seed: int = 0):
    """The tiny model; zero-initialised parameters (adaLN-zero gates: Kandinsky's blocks start as the identity) are
    redrawn so that every block changes the stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = getattr(diffusers, name)(**TINY[name].config).eval()
        with torch.no_grad():
            for p in model.parameters():
                if not p.any():
                    p.normal_(0, 0.1)
    return model


def _call(name: str):
    """(latents, timestep, text) of the generic call, from the class's tiny inputs."""
    tiny = TINY[name]
    kw = tiny.inputs(torch.Generator().manual_seed(0))
    if tiny.from_model:
        kw.update(tiny.from_model(_build(name)))
    x, t, ehs = kw.pop("hidden_states"), kw.pop("timestep"), kw.pop("encoder_hidden_states", None)
    return x, t, TextConditioning(ehs, kw)


def _bare(model, x, t, text):
    kw = {} if text.encoder_hidden_states is None else {"encoder_hidden_states": text.encoder_hidden_states}
    with torch.no_grad():
        out = model(hidden_states=x, timestep=t, return_dict=False, **kw, **text.extras)
    return out[0] if isinstance(out, tuple) else out


def _eq(a, b) -> bool:
    """torch.equal, also for a per-sample list of outputs (WanAnimate2)."""
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(torch.equal, a, b))
    return torch.equal(a, b)


def _hidden(block, args, kwargs):
    bound = inspect.signature(type(block).forward).bind(block, *args, **kwargs)
    return bound.arguments[HIDDEN_ARG.get(type(block).__name__, "hidden_states")]


def test_zoo_covers_every_video_transformer_class():
    """Every ``*Transformer3DModel`` of the installed diffusers is built here or listed with its reason."""
    every = {c.__name__ for c in video_transformer_classes()}
    assert len(every) >= 31
    assert not set(TINY) & set(NOT_BUILT)
    assert set(TINY) | set(NOT_BUILT) == every, sorted(every - set(TINY) - set(NOT_BUILT))


@pytest.mark.parametrize("name", CLASSES)
def test_generic_trace_is_exact_and_reads_what_torch_hooks_see(name):
    plain = _build(name)
    a = generic_adapter(getattr(diffusers, name))
    x, t, text = _call(name)
    blocks = a.blocks(plain)
    k = len(blocks) - 1
    seen, order = {}, []
    pre = [b.register_forward_pre_hook(lambda m, a, kw, p=p: order.append(p), with_kwargs=True) for p, b in blocks]
    pre.append(
        blocks[k][1].register_forward_pre_hook(
            lambda m, args, kwargs: seen.update(pre=_hidden(m, args, kwargs).clone()), with_kwargs=True
        )
    )
    idx = 0 if RETURNS[type(blocks[k][1]).__name__] else None
    post = blocks[k][1].register_forward_hook(lambda m, i, o: seen.update(post=(o if idx is None else o[idx]).clone()))
    ref = _bare(plain, x, t, text)
    for h in [*pre, post]:
        h.remove()
    assert order == [p for p, _ in blocks]  # blocks are numbered in execution order

    tr = Traced(_build(name), a)
    res = tr.run(x, t, text, plan=ForwardPlan(read=tr.sites))
    assert _eq(res.output, ref)
    assert _eq(res.acts["hook_out"], ref)
    assert tr.sites == ["hook_embed", *(f"blocks.{i}.{h}" for i in range(len(blocks)) for h in GENERIC_HOOKS),
                        "hook_out"]  # fmt: skip
    assert torch.equal(res.acts[f"blocks.{k}.hook_resid_pre"], seen["pre"])
    assert torch.equal(res.acts[f"blocks.{k}.hook_resid_post"], seen["post"])
    assert _eq(_bare(tr.dit.transformer, x, t, text), ref)  # the hooked model, called bare, is exact too


@pytest.mark.parametrize("name", CLASSES)
def test_generic_edit_and_skip_equal_plain_torch(name):
    a = generic_adapter(getattr(diffusers, name))
    plain = _build(name)
    x, t, text = _call(name)
    k = TINY[name].skip_block
    path, block = a.blocks(plain)[k]
    returns = RETURNS[type(block).__name__]
    unedited = _bare(plain, x, t, text)

    # skip: the block's forward replaced by the identity, by hand
    skipped = copy.deepcopy(plain)
    blk = skipped.get_submodule(path)
    sig = inspect.signature(type(blk).forward)

    def identity(*args, **kwargs):
        bound = sig.bind(blk, *args, **kwargs)
        bound.apply_defaults()
        hidden = bound.arguments[HIDDEN_ARG.get(type(blk).__name__, "hidden_states")]
        return hidden if returns is None else tuple(bound.arguments[n] for n in returns)

    blk.forward = identity
    ref = _bare(skipped, x, t, text)
    tr = Traced(_build(name), a)
    res = tr.run(x, t, text, plan=ForwardPlan(skip=[f"blocks.{k}"], read=[f"blocks.{k}.hook_resid_post"]))
    assert _eq(res.output, ref) and not _eq(ref, unedited)

    # edit: hook_resid_post of block k doubled, against a plain torch forward hook doing the same
    def double(m, i, o):
        return 2 * o if returns is None else (2 * o[0], *o[1:])

    edited = copy.deepcopy(plain)
    edited.get_submodule(path).register_forward_hook(double)
    ref_edit = _bare(edited, x, t, text)
    res = tr.run(x, t, text, plan=ForwardPlan(edit={f"blocks.{k}.hook_resid_post": lambda s, step, v: 2 * v}))
    assert _eq(res.output, ref_edit) and not _eq(ref_edit, unedited)


@pytest.mark.parametrize("exact", EXACT, ids=lambda a: a.family)
def test_generic_finds_the_exact_adapters_block_lists(exact):
    assert find_block_lists(exact.tiny(0)) == exact.block_lists


def test_generic_blocks_keep_diffusers_names_and_state():
    name = "MochiTransformer3DModel"
    plain, hooked = _build(name), _build(name)
    a = generic_adapter(getattr(diffusers, name))
    a.install_hooks(hooked)
    assert set(plain.state_dict()) == set(hooked.state_dict())  # hook points hold no state
    for (_, p), (_, h) in zip(a.blocks(plain), a.blocks(hooked)):
        assert type(h) is not type(p) and isinstance(h, type(p))
        assert type(h).__name__ == type(p).__name__ and type(h).__module__ == "interp.adapters.generic"
    assert a.block_hooks(a.blocks(hooked)[0][1]) == GENERIC_HOOKS


def test_get_adapter_falls_back_to_generic_once_warned(monkeypatch):
    name = "AllegroTransformer3DModel"  # no exact adapter
    monkeypatch.setattr(adapters, "_WARNED", set())
    with pytest.warns(UserWarning, match=f"{name} has no exact adapter: using the generic one"):
        a = get_adapter(name)
    assert isinstance(a, GenericAdapter) and a.model_class is diffusers.AllegroTransformer3DModel
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per class
        assert get_adapter(_build(name)) is a
    assert get_adapter("WanTransformer3DModel") is ADAPTERS["wan"]  # exact adapters win
    with pytest.raises(ValueError, match=rf"supported families: wan .*generic adapter.*{name}"):
        get_adapter("UNet2DConditionModel")


@pytest.mark.parametrize("name", ["MochiTransformer3DModel", "MotifVideoTransformer3DModel"])
def test_generic_hooked_model_keeps_first_block_cache_and_layer_skip(name):
    """diffusers registers these blocks; their generic hooked classes are registered alike (same outputs)."""
    from diffusers.hooks import FirstBlockCacheConfig, LayerSkipConfig, apply_layer_skip

    a = generic_adapter(getattr(diffusers, name))
    x, t, text = _call(name)
    fqn = a.block_lists_of(_build(name))[0]
    outs = []
    for hooked in (False, True):
        m = _build(name)
        if hooked:
            a.install_hooks(m)
        m.enable_cache(FirstBlockCacheConfig(threshold=10.0))
        with m.cache_context("cond"):
            first, second = _bare(m, x, t, text), _bare(m, 1.01 * x, t, text)
        m.disable_cache()
        apply_layer_skip(m, LayerSkipConfig(indices=[0], fqn=fqn))
        outs.append((first, second, _bare(m, x, t, text)))
    assert all(torch.equal(p, q) for p, q in zip(*outs))
    assert not torch.equal(outs[0][1], _bare(_build(name), 1.01 * x, t, text))  # the cache acted
    assert not torch.equal(outs[0][2], _bare(_build(name), x, t, text))  # the layer was skipped

"""A hooked (traced) model keeps diffusers' own features, with the same outputs as the bare model: FirstBlockCache,
LayerSkip (skip-layer guidance), regional compilation (``compile_repeated_blocks``) and ``_no_split_modules``
(device maps); and ``Traced`` changes the caller's model only as it documents (hook points, eval mode)."""

from __future__ import annotations

import re

import accelerate
import pytest
import torch
from conftest import tiny_inputs
from diffusers.hooks import FirstBlockCacheConfig, LayerSkipConfig, apply_layer_skip

from interp.adapters import ADAPTERS
from interp.trace import ForwardPlan, Traced


def _refusal(e: Exception) -> str:
    """The regex of the same refusal on the hooked model: diffusers names the block class, whose module is ours."""
    parts = re.split(r"<class '[\w.]*\.(\w+)'>", str(e))  # text, class name, text, ...
    return "".join(re.escape(p) if k % 2 == 0 else rf"<class '[\w.]*\.{p}'>" for k, p in enumerate(parts))


def _pair(family):
    """(bare model, hooked model): the same weights, the second with the adapter's hook points installed."""
    a = ADAPTERS[family]
    return a.tiny(0), a.install_hooks(a.tiny(0))


def test_first_block_cache_on_a_hooked_model(family):
    a = ADAPTERS[family]
    x, t, text = tiny_inputs(family, a.tiny(0))
    near = x * 1.01  # the second step is close to the first: the cache reuses the tail blocks' residual
    outs = []
    bare, hooked = _pair(family)
    try:
        bare.enable_cache(FirstBlockCacheConfig(threshold=10.0))
    except ValueError as e:  # diffusers has no FirstBlockCache for this family's blocks: the same refusal hooked
        with pytest.raises(ValueError, match=_refusal(e)):
            hooked.enable_cache(FirstBlockCacheConfig(threshold=10.0))
        return
    hooked.enable_cache(FirstBlockCacheConfig(threshold=10.0))
    for m in (bare, hooked):
        with torch.no_grad(), m.cache_context("cond"):
            outs.append((a.forward(m, x, t, text), a.forward(m, near, t, text)))
    (b1, b2), (h1, h2) = outs
    assert torch.equal(b1, h1) and torch.equal(b2, h2)
    with torch.no_grad():
        assert not torch.equal(b2, a.forward(a.tiny(0), near, t, text))  # the cache did act

    # through nnsight: a trace reading the head block and the output sees the cached forward's result
    hooked = a.install_hooks(a.tiny(0))
    hooked.enable_cache(FirstBlockCacheConfig(threshold=10.0))
    tr = Traced(hooked)
    with hooked.cache_context("cond"):
        tr.run(x, t, text, plan=ForwardPlan(read=["blocks.0.hook_resid_post"]))
        res = tr.run(near, t, text, plan=ForwardPlan(read=["blocks.0.hook_resid_post", "hook_out"]))
    assert torch.equal(res.output, b2) and torch.equal(res.acts["hook_out"], b2)


@pytest.mark.parametrize("whole_block", [True, False])
def test_layer_skip_on_a_hooked_model(family, whole_block):
    a = ADAPTERS[family]
    x, t, text = tiny_inputs(family, a.tiny(0))
    # whole_block: diffusers' block-skip hook (reads the block registry); else attention only, through diffusers'
    # attention-processor registry, which does not know these families' processors: the bare model refuses too
    cfg = dict(indices=[1], fqn=a.block_lists[0], skip_ff=whole_block)
    bare, hooked = _pair(family)
    try:
        apply_layer_skip(bare, LayerSkipConfig(**cfg))
        with torch.no_grad():
            ref = a.forward(bare, x, t, text)
    except (ValueError, AttributeError) as e:  # the same refusal on the hooked model, nothing more
        with pytest.raises(type(e), match=_refusal(e)):
            apply_layer_skip(hooked, LayerSkipConfig(**cfg))
            a.forward(hooked, x, t, text)
        # whole blocks: refused only where diffusers' own block registry lacks the family (bare and hooked alike)
        assert not whole_block or "not registered" in str(e), e
        return
    apply_layer_skip(hooked, LayerSkipConfig(**cfg))
    with torch.no_grad():
        out, unskipped = a.forward(hooked, x, t, text), a.forward(a.tiny(0), x, t, text)
    assert torch.equal(out, ref) and not torch.equal(ref, unskipped)
    res = Traced(hooked).run(x, t, text, plan=ForwardPlan(read=["hook_out"]))
    assert torch.equal(res.output, ref)


def test_no_split_modules_name_the_hooked_blocks(family, tmp_path):
    bare, hooked = _pair(family)
    a = ADAPTERS[family]
    names = type(bare)._no_split_modules
    if names is None:  # LTX-Video: diffusers itself has no device-map support
        with pytest.raises(ValueError, match="does not support `device_map"):
            hooked._get_no_split_modules("auto")
        return
    assert set(hooked._get_no_split_modules("auto")) == set(bare._get_no_split_modules("auto"))
    assert all(type(b).__name__ in names for _, b in a.blocks(hooked))
    # accelerate keeps every hooked block whole, as on the bare model (a tight budget forces a split)
    size = sum(p.numel() * p.element_size() for p in bare.parameters())
    budget = {"cpu": int(0.9 * size), "disk": 10 * size}  # the split falls inside the block lists

    def device_map(m, keep_whole):
        return accelerate.infer_auto_device_map(m, max_memory=budget, no_split_module_classes=keep_whole)

    maps = [device_map(m, m._get_no_split_modules("auto")) for m in (bare, hooked)]
    assert maps[0] == maps[1]
    if family in ("wanvace", "hunyuan15"):  # tiny configs whose 0.9 budget does not cut inside the main block list
        return
    assert set(maps[0].values()) == {"cpu", "disk"}

    def split(device_map):
        return [p for p, _ in a.blocks(hooked) if any(k.startswith(p + ".") for k in device_map)]

    assert not split(maps[1])
    assert split(device_map(hooked, []))  # without the names accelerate would cut a block: the names matter

    # the hooked model placed by that map (part offloaded to disk) computes the bare model's output, traced too
    x, t, text = tiny_inputs(family, bare)
    with torch.no_grad():
        ref = a.forward(bare, x, t, text)
    placed = accelerate.dispatch_model(hooked, device_map=maps[1], offload_dir=str(tmp_path))
    with torch.no_grad():
        assert torch.equal(a.forward(placed, x, t, text), ref)
    res = Traced(placed).run(x, t, text, plan=ForwardPlan(read=["blocks.*.hook_resid_post"]))
    assert torch.equal(res.output, ref) and len(res.acts) == len(a.blocks(placed))


@pytest.mark.slow
def test_compile_repeated_blocks_on_a_hooked_model(family):
    a = ADAPTERS[family]
    x, t, text = tiny_inputs(family, a.tiny(0))
    bare, hooked = _pair(family)
    if not type(bare)._repeated_blocks:  # CogVideoX: diffusers names no repeated blocks; the same error either way
        for m in (bare, hooked):
            with pytest.raises(ValueError, match="`_repeated_blocks` attribute is empty"):
                m.compile_repeated_blocks(backend="eager")
        return
    with torch.no_grad():
        ref = a.forward(bare, x, t, text)  # the bare model, uncompiled (compiling it gives the same, not re-checked)
    hooked.compile_repeated_blocks(backend="eager")
    assert all(b._compiled_call_impl is not None for _, b in a.blocks(hooked))  # every block (both lists) compiled
    with torch.no_grad():
        assert torch.equal(a.forward(hooked, x, t, text), ref)
    # reads through torch hooks: compiled once; an nnsight trace gives the same output but recompiles every call
    res = Traced(hooked, reads_via_hooks=True).run(x, t, text, plan=ForwardPlan(read=["blocks.*.hook_resid_post"]))
    assert torch.equal(res.output, ref) and len(res.acts) == len(a.blocks(hooked))


def test_traced_switches_to_eval_in_place_and_restores_on_exit():
    a = ADAPTERS["wan"]
    model = a.tiny(0).train()
    tr = Traced(model)
    assert not model.training and tr.was_training  # documented: eval in place (dropout off)
    tr.restore_mode()
    assert model.training
    x, t, text = tiny_inputs("wan", model)
    with Traced(model) as tr2:
        assert not model.training
        plan = ForwardPlan(read=["hook_out"], edit={"blocks.0.hook_mlp_out": lambda s, i, v: 0 * v}, skip=["blocks.1"])
        tr2.run(x, t, text, plan=plan)
    assert model.training  # the caller's mode is back
    with torch.no_grad():  # and, called bare after the traces, it computes what an untouched model does
        assert torch.equal(a.forward(model.eval(), x, t, text), a.forward(a.tiny(0), x, t, text))
    frozen = a.tiny(0).eval()
    with Traced(frozen):
        pass
    assert not frozen.training

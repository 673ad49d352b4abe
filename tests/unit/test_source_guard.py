"""The guard against diffusers changing under the exact adapters: each copied block forward carries the source hash
of diffusers' forward it was copied from; a diffusers whose forward differs fails here, naming the class and file."""

from __future__ import annotations

import pytest
from diffusers.models.transformers.transformer_wan import WanTransformerBlock

from interp.adapters import EXACT
from interp.adapters.attention import FAMILY_ATTENTION
from interp.adapters.base import install_hooked_class, source_sha, stale_copy
from interp.adapters.wan import HookedWanBlock


def _hooked_classes(adapter) -> set[type]:
    model = adapter.tiny(0)
    return {adapter.hooked_class(b) for _, b in adapter.blocks(model)}


@pytest.mark.parametrize("adapter", EXACT, ids=lambda a: a.family)
def test_installed_diffusers_matches_every_copied_forward(adapter):
    hooked = _hooked_classes(adapter)
    assert hooked
    for h in hooked:
        assert getattr(h, "COPIED_FROM_SHA", None), f"{h.__module__}: {h.__qualname__} has no COPIED_FROM_SHA"
        assert stale_copy(h) is None, stale_copy(h)


def test_a_changed_forward_is_named_and_warned_at_install(monkeypatch):
    def forward(self, hidden_states, encoder_hidden_states, temb, rotary_emb):  # diffusers "upgraded"
        return hidden_states

    monkeypatch.setattr(WanTransformerBlock, "forward", forward)
    msg = stale_copy(HookedWanBlock)
    assert msg is not None
    assert "transformer_wan.WanTransformerBlock.forward" in msg and "interp/adapters/wan.py" in msg
    assert source_sha(forward) in msg and HookedWanBlock.COPIED_FROM_SHA in msg


def test_install_over_a_changed_subclass_warns_and_installs():
    class ChangedBlock(WanTransformerBlock):
        def forward(self, hidden_states, encoder_hidden_states, temb, rotary_emb):
            return 2 * super().forward(hidden_states, encoder_hidden_states, temb, rotary_emb)

    class HookedChanged(ChangedBlock):
        HOOKS = HookedWanBlock.HOOKS
        COPIED_FROM_SHA = HookedWanBlock.COPIED_FROM_SHA  # copied from the base, which ChangedBlock changed
        forward = HookedWanBlock.forward

    block = ChangedBlock(dim=16, ffn_dim=32, num_heads=2)
    with pytest.warns(UserWarning, match=r"ChangedBlock\.forward .* differs from the copy in .*test_source_guard\.py"):
        install_hooked_class(block, HookedChanged)
    assert type(block) is HookedChanged and hasattr(block, "hook_resid_post")  # documented: warns, installs anyway


def _processors() -> list[type]:
    return sorted({p for specs in FAMILY_ATTENTION.values() for s in specs for p in s.processors},
                  key=lambda c: c.__name__)  # fmt: skip


@pytest.mark.parametrize("hooked", _processors(), ids=lambda c: c.__name__)
def test_installed_diffusers_matches_every_copied_attention_processor(hooked):
    """The hooked attention processors (per-head sites) are copies of diffusers' ``__call__``: its hash must match."""
    base = hooked.__mro__[1]
    assert base.__module__.startswith("diffusers."), base
    assert source_sha(base.__call__) == hooked.COPIED_FROM_SHA, (
        f"diffusers' {base.__module__}.{base.__name__}.__call__ changed: re-copy it into {hooked.__module__}."
        f"{hooked.__name__} and update COPIED_FROM_SHA"
    )


def test_every_exact_family_has_per_head_sites():
    assert {a.family for a in EXACT} == set(FAMILY_ATTENTION)

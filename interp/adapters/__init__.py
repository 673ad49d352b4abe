"""Model adapters, one per diffusers video DiT family, and their registry."""

from __future__ import annotations

from torch import nn

from interp.adapters.base import BLOCK_HOOKS, Adapter, HookPoint, TextConditioning, tokens_to_grid
from interp.adapters.cogvideox import CogVideoXAdapter
from interp.adapters.hunyuan import HunyuanAdapter
from interp.adapters.hunyuan15 import HunyuanVideo15Adapter
from interp.adapters.ltx import LTXAdapter
from interp.adapters.ltx2 import LTX2Adapter
from interp.adapters.mochi import MochiAdapter
from interp.adapters.skyreels import SkyReelsV2Adapter
from interp.adapters.wan import WanAdapter
from interp.adapters.wanvace import WanVACEAdapter

ADAPTERS: dict[str, Adapter] = {
    a.family: a
    for a in (
        WanAdapter(), CogVideoXAdapter(), LTXAdapter(), HunyuanAdapter(),
        WanVACEAdapter(), SkyReelsV2Adapter(), MochiAdapter(), HunyuanVideo15Adapter(), LTX2Adapter(),
    )
}  # fmt: skip
"""Family name -> adapter."""

_BY_CLASS = {a.class_name: a for a in ADAPTERS.values()}


def get_adapter(model_or_name: nn.Module | str) -> Adapter:
    """The adapter for a transformer instance, a diffusers class name (``_class_name``) or a family name."""
    name = model_or_name if isinstance(model_or_name, str) else type(model_or_name).__name__
    if name in ADAPTERS:
        return ADAPTERS[name]
    if name in _BY_CLASS:
        return _BY_CLASS[name]
    raise ValueError(
        f"no adapter for {name!r}; supported families: "
        + ", ".join(f"{a.family} ({a.class_name})" for a in ADAPTERS.values())
    )


__all__ = ["ADAPTERS", "BLOCK_HOOKS", "Adapter", "HookPoint", "TextConditioning", "get_adapter", "tokens_to_grid"]

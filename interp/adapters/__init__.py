"""Model adapters, one per diffusers video DiT family, and their registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp.adapters.base import BLOCK_HOOKS, Adapter, HookPoint, TextConditioning, tokens_to_grid

if TYPE_CHECKING:
    from torch import nn

# the family modules import diffusers (seconds of CPU): they load on the first use of the registry (PEP 562), so
# that readers of stored files (interp inspect, view, the store) start without them
_LAZY = ("ADAPTERS", "_BY_CLASS")


def _registry() -> dict[str, Adapter]:
    from interp.adapters.cogvideox import CogVideoXAdapter
    from interp.adapters.hunyuan import HunyuanAdapter
    from interp.adapters.ltx import LTXAdapter
    from interp.adapters.wan import WanAdapter

    return {a.family: a for a in (WanAdapter(), CogVideoXAdapter(), LTXAdapter(), HunyuanAdapter())}


def __getattr__(name: str):
    if name in _LAZY:
        if "_BY_CLASS" not in globals():
            adapters = _registry()
            globals().update(ADAPTERS=adapters, _BY_CLASS={a.class_name: a for a in adapters.values()})
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


ADAPTERS: dict[str, Adapter]
"""Family name -> adapter."""


def get_adapter(model_or_name: nn.Module | str) -> Adapter:
    """The adapter for a transformer instance, a diffusers class name (``_class_name``) or a family name."""
    name = model_or_name if isinstance(model_or_name, str) else type(model_or_name).__name__
    adapters, by_class = __getattr__("ADAPTERS"), __getattr__("_BY_CLASS")
    if name in adapters:
        return adapters[name]
    if name in by_class:
        return by_class[name]
    raise ValueError(
        f"no adapter for {name!r}; supported families: "
        + ", ".join(f"{a.family} ({a.class_name})" for a in adapters.values())
    )


__all__ = ["ADAPTERS", "BLOCK_HOOKS", "Adapter", "HookPoint", "TextConditioning", "get_adapter", "tokens_to_grid"]

"""Model adapters, one per diffusers video DiT family, and their registry.

``EXACT`` holds the exact adapters (a line-for-line copy of each block forward with every sublayer site); a new
one is one more instance in that tuple. Any other diffusers video transformer (``*Transformer3DModel``) gets the
generic adapter (:mod:`interp.adapters.generic`: block-level sites, diffusers' own forwards).
"""

from __future__ import annotations

import functools
import warnings

import diffusers
from torch import nn

from interp.adapters.base import BLOCK_HOOKS, Adapter, HookPoint, TextConditioning, tokens_to_grid
from interp.adapters.cogvideox import CogVideoXAdapter
from interp.adapters.generic import GENERIC_HOOKS, VIDEO_SUFFIX, GenericAdapter, video_transformer_classes
from interp.adapters.hunyuan import HunyuanAdapter
from interp.adapters.hunyuan15 import HunyuanVideo15Adapter
from interp.adapters.ltx import LTXAdapter
from interp.adapters.ltx2 import LTX2Adapter
from interp.adapters.mochi import MochiAdapter
from interp.adapters.skyreels import SkyReelsV2Adapter
from interp.adapters.wan import WanAdapter
from interp.adapters.wanvace import WanVACEAdapter

EXACT: tuple[Adapter, ...] = (
    WanAdapter(), CogVideoXAdapter(), LTXAdapter(), HunyuanAdapter(),
    WanVACEAdapter(), SkyReelsV2Adapter(), MochiAdapter(), HunyuanVideo15Adapter(), LTX2Adapter(),
)  # fmt: skip
"""The exact adapters, one per family."""

ADAPTERS: dict[str, Adapter] = {a.family: a for a in EXACT}
"""Family name -> exact adapter."""

_BY_CLASS = {a.class_name: a for a in EXACT}
_WARNED: set[str] = set()


@functools.cache
def generic_adapter(cls: type[nn.Module]) -> GenericAdapter:
    """The generic adapter of one diffusers video transformer class (one instance per class)."""
    return GenericAdapter(cls)


def _video_class(model_or_name: nn.Module | str) -> type[nn.Module] | None:
    if isinstance(model_or_name, nn.Module):
        cls = type(model_or_name)
        return cls if any(c.__name__.endswith(VIDEO_SUFFIX) and c.__module__.startswith("diffusers.")
                          for c in cls.__mro__) else None  # fmt: skip
    if model_or_name.endswith(VIDEO_SUFFIX):
        return getattr(diffusers, model_or_name, None)
    return None


def get_adapter(model_or_name: nn.Module | str) -> Adapter:
    """The adapter for a transformer instance, a diffusers class name (``_class_name``) or a family name.

    A diffusers video transformer without an exact adapter gets the generic one (block-level sites); that is said
    once per class, as a warning.
    """
    name = model_or_name if isinstance(model_or_name, str) else type(model_or_name).__name__
    if name in ADAPTERS:
        return ADAPTERS[name]
    if name in _BY_CLASS:
        return _BY_CLASS[name]
    cls = _video_class(model_or_name)
    if cls is not None:
        if cls.__name__ not in _WARNED:
            _WARNED.add(cls.__name__)
            warnings.warn(
                f"{cls.__name__} has no exact adapter: using the generic one (sites hook_embed, "
                f"blocks.{{i}}.{'/'.join(GENERIC_HOOKS)}, hook_out and block skip; no sublayer sites)",
                stacklevel=2,
            )
        return generic_adapter(cls)
    raise ValueError(
        f"no adapter for {name!r}; supported families: "
        + ", ".join(f"{a.family} ({a.class_name})" for a in EXACT)
        + f", and through the generic adapter any diffusers video transformer (*{VIDEO_SUFFIX}: "
        + ", ".join(c.__name__ for c in video_transformer_classes() if c.__name__ not in _BY_CLASS)
        + ")"
    )


__all__ = [
    "ADAPTERS",
    "BLOCK_HOOKS",
    "EXACT",
    "Adapter",
    "GenericAdapter",
    "HookPoint",
    "TextConditioning",
    "generic_adapter",
    "get_adapter",
    "tokens_to_grid",
]

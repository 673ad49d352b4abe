"""Model adapters, one per diffusers video DiT family, and their registry.

``EXACT`` holds the exact adapters (a line-for-line copy of each block forward with every sublayer site); a new
one is one more instance in :func:`_exact`. Any other diffusers video transformer (``*Transformer3DModel``) gets the
generic adapter (:mod:`interp.adapters.generic`: block-level sites, diffusers' own forwards).

The family modules import diffusers (seconds of CPU): ``EXACT``, ``ADAPTERS`` and ``GenericAdapter`` load on first
use (PEP 562), so readers of stored files (``interp inspect``, ``view``, the store) start without them.
"""

from __future__ import annotations

import functools
import warnings
from typing import TYPE_CHECKING

from interp.adapters.base import BLOCK_HOOKS, Adapter, HookPoint, TextConditioning, tokens_to_grid

if TYPE_CHECKING:
    from torch import nn

    from interp.adapters.generic import GenericAdapter

_LAZY = ("EXACT", "ADAPTERS", "_BY_CLASS")
_WARNED: set[str] = set()


def _exact() -> tuple[Adapter, ...]:
    # the family modules import diffusers: loaded on the registry's first use (see the module doc)
    from interp.adapters.cogvideox import CogVideoXAdapter
    from interp.adapters.hunyuan import HunyuanAdapter
    from interp.adapters.hunyuan15 import HunyuanVideo15Adapter
    from interp.adapters.ltx import LTXAdapter
    from interp.adapters.ltx2 import LTX2Adapter
    from interp.adapters.mochi import MochiAdapter
    from interp.adapters.skyreels import SkyReelsV2Adapter
    from interp.adapters.wan import WanAdapter
    from interp.adapters.wanvace import WanVACEAdapter

    return (
        WanAdapter(), CogVideoXAdapter(), LTXAdapter(), HunyuanAdapter(),
        WanVACEAdapter(), SkyReelsV2Adapter(), MochiAdapter(), HunyuanVideo15Adapter(), LTX2Adapter(),
    )  # fmt: skip


def __getattr__(name: str):
    if name in _LAZY:
        if "_BY_CLASS" not in globals():
            exact = _exact()
            globals().update(EXACT=exact, ADAPTERS={a.family: a for a in exact},
                             _BY_CLASS={a.class_name: a for a in exact})  # fmt: skip
        return globals()[name]
    if name == "GenericAdapter":
        from interp.adapters.generic import GenericAdapter  # imports diffusers: on first use

        return GenericAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


EXACT: tuple[Adapter, ...]
"""The exact adapters, one per family."""
ADAPTERS: dict[str, Adapter]
"""Family name -> exact adapter."""


@functools.cache
def generic_adapter(cls: type[nn.Module]) -> GenericAdapter:
    """The generic adapter of one diffusers video transformer class (one instance per class)."""
    from interp.adapters.generic import GenericAdapter  # imports diffusers: on first use

    return GenericAdapter(cls)


def _video_class(model_or_name: nn.Module | str) -> type[nn.Module] | None:
    from interp.adapters.generic import VIDEO_SUFFIX  # imports diffusers: on first use

    if not isinstance(model_or_name, str):
        cls = type(model_or_name)
        return cls if any(c.__name__.endswith(VIDEO_SUFFIX) and c.__module__.startswith("diffusers.")
                          for c in cls.__mro__) else None  # fmt: skip
    if model_or_name.endswith(VIDEO_SUFFIX):
        import diffusers  # the class by name

        return getattr(diffusers, model_or_name, None)
    return None


def get_adapter(model_or_name: nn.Module | str) -> Adapter:
    """The adapter for a transformer instance, a diffusers class name (``_class_name``) or a family name.

    A diffusers video transformer without an exact adapter gets the generic one (block-level sites); that is said
    once per class, as a warning.
    """
    from interp.adapters.generic import GENERIC_HOOKS, VIDEO_SUFFIX, video_transformer_classes  # diffusers

    name = model_or_name if isinstance(model_or_name, str) else type(model_or_name).__name__
    adapters, by_class = __getattr__("ADAPTERS"), __getattr__("_BY_CLASS")
    if name in adapters:
        return adapters[name]
    if name in by_class:
        return by_class[name]
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
        + ", ".join(f"{a.family} ({a.class_name})" for a in adapters.values())
        + f", and through the generic adapter any diffusers video transformer (*{VIDEO_SUFFIX}: "
        + ", ".join(c.__name__ for c in video_transformer_classes() if c.__name__ not in by_class)
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

"""Interventions as plain data (pyvene-style), one apply function each, separate from the model wrapper.

>>> from interp.interventions import Intervention, parse
>>> parse({"kind": "skip", "layers": [3], "steps": "0:10"})
Skip(steps='0:10', site='blocks.{layer}', layers=[3], frames=None, tokens=None, kind='skip')

Kinds: ``patch``, ``skip``, ``ablate``, ``noise``, ``swap``, ``ensemble``, ``steer``. Every kind selects ``steps``;
site kinds also ``site`` (with ``{layer}``), ``layers``, ``frames`` and ``tokens``. :mod:`interp.interventions.bind`
turns a batch of bound interventions into a :class:`~interp.trace.ForwardPlan` and a latent edit.

A new kind is one subclass of :class:`Spec` or :class:`SiteSpec` with its own ``kind: Literal["name"] = "name"``
(the built-ins are each one file here): defining it registers it, :data:`Intervention` (and so an experiment file)
accepts it from then on, and the engine reaches it only through the methods of :class:`Spec`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Union

from pydantic import Field, PlainValidator, SerializeAsAny, TypeAdapter

from interp.interventions.ablate import Ablate, apply_ablate
from interp.interventions.base import KIND_REGISTRY, Index, Read, Rows, SiteSpec, Spec, resolve_index
from interp.interventions.ensemble import Ensemble, apply_ensemble
from interp.interventions.noise import Noise, apply_noise
from interp.interventions.patch import Patch, Source, apply_patch
from interp.interventions.skip import Skip, apply_skip
from interp.interventions.steer import DirectionFile, Steer, apply_steer, load_direction
from interp.interventions.swap import Swap, apply_swap

KINDS = ("patch", "skip", "ablate", "noise", "swap", "ensemble", "steer")  # the built-in kinds


def kinds() -> dict[str, type[Spec]]:
    """Every kind defined so far, by tag: the built-ins in :data:`KINDS` order, then the others as defined."""
    return {k: KIND_REGISTRY[k] for k in KINDS} | {k: c for k, c in KIND_REGISTRY.items() if k not in KINDS}


@lru_cache(maxsize=None)
def _adapter(classes: tuple[type[Spec], ...]) -> TypeAdapter:
    return TypeAdapter(Annotated[Union[classes], Field(discriminator="kind")])


def parse(data: Any) -> Spec:
    """An intervention from plain data (YAML / JSON), validated as the kind its ``kind`` names."""
    return _adapter(tuple(kinds().values())).validate_python(data)


Intervention = Annotated[Spec, PlainValidator(parse), SerializeAsAny()]
"""An intervention field: validated by :func:`parse` against the kinds defined when it validates, dumped as its kind."""


__all__ = [
    "Intervention", "KINDS", "kinds", "parse", "Index", "Read", "Rows", "Spec", "SiteSpec", "resolve_index",
    "Patch", "Source", "Skip", "Ablate", "Noise", "Swap", "Ensemble", "Steer", "DirectionFile",
    "apply_patch", "apply_skip", "apply_ablate", "apply_noise", "apply_swap", "apply_ensemble", "apply_steer",
    "load_direction",
]  # fmt: skip

"""Interventions as plain data (pyvene-style), one apply function each, separate from the model wrapper.

>>> from interp.interventions import Intervention, parse
>>> parse({"kind": "skip", "layers": [3], "steps": "0:10"})
Skip(steps='0:10', site='blocks.{layer}', layers=[3], frames=None, tokens=None, kind='skip')

Kinds: ``patch``, ``skip``, ``ablate``, ``noise``, ``swap``, ``ensemble``, ``steer``. Every kind selects ``steps``;
site kinds also ``site`` (with ``{layer}``), ``layers``, ``frames`` and ``tokens``. :mod:`interp.interventions.bind`
turns a batch of bound interventions into a :class:`~interp.trace.ForwardPlan` and a latent edit.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field, TypeAdapter

from interp.interventions.ablate import Ablate, apply_ablate
from interp.interventions.base import Index, Rows, SiteSpec, Spec, resolve_index
from interp.interventions.ensemble import Ensemble, apply_ensemble
from interp.interventions.noise import Noise, apply_noise
from interp.interventions.patch import Patch, Source, apply_patch
from interp.interventions.skip import Skip, apply_skip
from interp.interventions.steer import DirectionFile, Steer, apply_steer, load_direction
from interp.interventions.swap import Swap, apply_swap

Intervention = Annotated[Union[Patch, Skip, Ablate, Noise, Swap, Ensemble, Steer], Field(discriminator="kind")]
KINDS = ("patch", "skip", "ablate", "noise", "swap", "ensemble", "steer")
_adapter = TypeAdapter(Intervention)


def parse(data: dict) -> Patch | Skip | Ablate | Noise | Swap | Ensemble | Steer:
    """An intervention from plain data (YAML / JSON), validated."""
    return _adapter.validate_python(data)


__all__ = [
    "Intervention", "KINDS", "parse", "Index", "Rows", "Spec", "SiteSpec", "resolve_index",
    "Patch", "Source", "Skip", "Ablate", "Noise", "Swap", "Ensemble", "Steer", "DirectionFile",
    "apply_patch", "apply_skip", "apply_ablate", "apply_noise", "apply_swap", "apply_ensemble", "apply_steer",
    "load_direction",
]  # fmt: skip

"""``steer``: ``scale * direction`` added to a site's value (e.g. a probe's weight vector from safetensors)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from jaxtyping import Float
from pydantic import BaseModel, ConfigDict

from interp.interventions.base import Rows, SiteSpec, put, take

if TYPE_CHECKING:
    from torch import Tensor


class DirectionFile(BaseModel):
    """A vector in a safetensors file: ``key`` (e.g. ``blocks.3.hook_resid_post/step_10/direction`` as
    ``interp probe`` writes), row ``index`` when the tensor is (k, d_model)."""

    model_config = ConfigDict(extra="forbid")
    file: str
    key: str
    index: int = 0


class Steer(SiteSpec):
    """``normalize``: use the unit vector, so ``scale`` is the added length."""

    kind: Literal["steer"] = "steer"
    direction: list[float] | DirectionFile
    scale: float = 1.0
    normalize: bool = True

    def edit(self, value, rows, pos, *, direction=None, block_input=None):
        return apply_steer(self, value, rows, pos, direction)

    def load_direction(self, base_dir=None):
        return load_direction(self, base_dir)


def load_direction(spec: Steer, base_dir: str | Path | None = None) -> Float[Tensor, " d"]:
    """The direction as a 1-D float tensor (a relative file path is taken from ``base_dir``)."""
    import torch  # torch loads on first use: validating an experiment file needs none (benchmarks/startup.py)

    d = spec.direction
    if isinstance(d, DirectionFile):
        from safetensors.torch import load_file

        path = Path(d.file)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if not path.exists():
            raise FileNotFoundError(f"steer direction file {path} does not exist")
        tensors = load_file(str(path))
        if d.key not in tensors:
            raise KeyError(
                f"no key {d.key!r} in {path}; keys: {sorted(tensors)[:10]}{' ...' if len(tensors) > 10 else ''}"
            )
        v = tensors[d.key]
        v = v[d.index] if v.ndim == 2 else v
    else:
        v = torch.tensor(d)
    v = v.float().flatten()
    if spec.normalize:
        v = v / v.norm().clamp_min(1e-12)
    return v


def apply_steer(
    spec: Steer, value: Float[Tensor, "batch pos d"], rows: Rows, pos: Tensor | None, direction: Float[Tensor, " d"]
) -> Float[Tensor, "batch pos d"]:
    if direction.shape[-1] != value.shape[-1]:
        raise ValueError(f"steer direction has {direction.shape[-1]} features, the site has {value.shape[-1]}")
    add = (spec.scale * direction).to(value)
    return put(value, rows.target, pos, take(value, rows.target, pos) + add)
